"""Shared test fixtures: one torch thread (the box has 2 cores shared by parallel tests)."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    torch.set_num_threads(1)
    yield


@pytest.fixture
def tiny_model():
    """A randomly initialised ~40k-param conformer with the default featurizer and tokens."""
    from edgekd.audio import FeaturizerConfig
    from edgekd.models import Checkpoint, load_preset
    from edgekd.models.conformer import ConformerCTC
    from edgekd.tokens import DEFAULT_TOKENS

    torch.manual_seed(0)
    return Checkpoint(model=ConformerCTC(load_preset("tiny")).eval(), featurizer=FeaturizerConfig(),
                      tokens=DEFAULT_TOKENS, preset="tiny", role="test")
