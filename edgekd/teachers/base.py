"""The teacher protocol: anything that turns waveforms at `sample_rate` into per-frame CTC posteriors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

if TYPE_CHECKING:
    from edgekd.audio import FeaturizerConfig


@dataclass
class TeacherOutput:
    logits: torch.Tensor  # (B, T', V) float32, before log_softmax
    lengths: torch.Tensor  # (B,) int64 valid output frames
    embeddings: torch.Tensor  # (B, D) mean-pooled encoder output over valid frames (for drift)


class Teacher(Protocol):
    name: str
    tokens: tuple[str, ...]  # id -> symbol, id 0 the CTC blank
    frame_rate: float  # output frames per second
    sample_rate: int  # Hz of the waveforms __call__ expects (callers resample to it)
    featurizer: "FeaturizerConfig | None"  # the features pinned to the weights; None: raw waveform in
    sentencepiece: bytes | None  # the model that splits text into a subword `tokens` set; None: characters / none known

    def __call__(self, waves: list[np.ndarray]) -> TeacherOutput:
        """Batch of mono float32 waves at `sample_rate` -> logits/lengths/embeddings."""
        ...
