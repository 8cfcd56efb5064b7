"""Everything the repository ships loads: device profiles, model presets, pipeline configs, the teacher."""

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
DEVICE_YAMLS = sorted((ROOT / "devices").glob("*.yaml"))
PIPELINE_YAMLS = [ROOT / "edgekd" / "pipeline" / "demo.yaml", *sorted((ROOT / "examples").glob("*.yaml"))]


def test_there_is_something_to_check():
    assert len(DEVICE_YAMLS) >= 3 and len(PIPELINE_YAMLS) >= 2


@pytest.mark.parametrize("path", DEVICE_YAMLS, ids=lambda p: p.name)
def test_device_profile_loads(path):
    from edgekd.profile.devices import load_device_file

    dev = load_device_file(path)
    assert dev.name == path.stem and dev.cores >= 1 and dev.threads >= 1
    for kb in dev.known_broken:  # known-broken entries are data with a reason (executorch habit)
        assert kb.reason.strip()


def test_every_preset_builds():
    from edgekd.models import load_preset, preset_names
    from edgekd.models.conformer import ConformerCTC

    names = preset_names()
    assert {"tiny", "teacher-m", "student-xs"} <= set(names)
    for n in names:
        dims = load_preset(n)
        if n == "tiny":
            assert ConformerCTC(dims).num_params() > 0


@pytest.mark.parametrize("path", PIPELINE_YAMLS, ids=lambda p: p.name)
def test_pipeline_config_loads(path):
    from edgekd.pipeline.config import load_pipeline_config

    cfg = load_pipeline_config(path)
    assert cfg.teachers and cfg.devices


def test_shipped_teacher_loads_and_runs():
    from edgekd.teachers import SHIPPED_TEACHER, load_teacher

    if not SHIPPED_TEACHER.exists():
        pytest.fail(f"the shipped teacher {SHIPPED_TEACHER} is missing")
    t = load_teacher(SHIPPED_TEACHER)
    assert t.sample_rate == t.featurizer.sample_rate == 16000 and t.tokens[0] in ("<blk>", "<blank>")
    wave = (np.random.default_rng(0).standard_normal(2 * t.sample_rate) * 0.05).astype(np.float32)
    out = t([wave])
    assert out.logits.shape[0] == 1 and out.logits.shape[2] == len(t.tokens)
    assert abs(int(out.lengths[0]) - 2 * t.frame_rate) <= 2 + 0.05 * 2 * t.frame_rate
