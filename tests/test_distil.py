"""Distillation end to end on tiny data: every loss mode trains, KD loss falls, DDP with 2 processes."""

import json
import os
import subprocess
import sys

import pytest
import torch

from edgekd.distil import DistilOptions, run_distil
from edgekd.models import load_checkpoint
from edgekd.train.loop import LoopOptions


@pytest.fixture(scope="module")
def soft_targets(tmp_path_factory, corpus):
    from edgekd.audio import FeaturizerConfig
    from edgekd.models import Checkpoint, load_preset
    from edgekd.models.conformer import ConformerCTC
    from edgekd.pseudolabel import PseudoLabelOptions, run_pseudolabel
    from edgekd.tokens import DEFAULT_TOKENS

    d = tmp_path_factory.mktemp("kd")
    (d / "c").symlink_to(corpus)  # the session corpus (read-only)
    torch.manual_seed(0)
    t = Checkpoint(ConformerCTC(load_preset("tiny")).eval(), FeaturizerConfig(), DEFAULT_TOKENS, "tiny").save(d / "t.safetensors")
    run_pseudolabel(PseudoLabelOptions(workers=1, review_fraction=0.3), d / "c/target/train.jsonl", [str(t)], d / "pl",
                    progress=False)
    return d


def _opts(loss, steps=16, **kw):
    return DistilOptions(preset="tiny", loss=loss, max_frames=3000, max_dev_utts=4,
                         loop=LoopOptions(max_steps=steps, lr=3e-3, warmup_steps=2, eval_every=0, ckpt_every=8,
                                          log_every=2, progress=False), **kw)


@pytest.mark.parametrize("loss", ["kd", "ctc", "kd+ctc", "annealing"])
def test_every_loss_mode_trains_a_self_describing_student(soft_targets, tmp_path, loss):
    p = run_distil(_opts(loss), soft_targets / "pl", tmp_path, dev_manifest=soft_targets / "c/target/dev.jsonl")
    m = json.loads(p.read_text())
    hist = [json.loads(l) for l in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert m["metrics"]["steps"] == 16 and all(torch.isfinite(torch.tensor(h["loss"])) for h in hist if "loss" in h)
    ck = load_checkpoint(tmp_path / "model.safetensors")
    assert ck.role == "student" and ck.train["config"]["loss"] == loss
    if loss == "annealing":
        temps = [h.get("anneal_T") for h in hist if "loss" in h]
        assert temps[0] is not None and temps[-1] is None  # phase 1 then phase 2


def test_kd_loss_falls(soft_targets, tmp_path):
    run_distil(_opts("kd", steps=60, temperature=2.0), soft_targets / "pl", tmp_path)
    kd = [json.loads(l)["kd"] for l in (tmp_path / "history.jsonl").read_text().splitlines() if '"kd"' in l]
    assert sum(kd[-3:]) / 3 < 0.7 * sum(kd[:3]) / 3


def test_bad_options():
    with pytest.raises(ValueError, match="loss must be one of"):
        DistilOptions(loss="magic")


def test_two_process_ddp_smoke(soft_targets, tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(f"""
import torch
from edgekd.distil import DistilOptions, run_distil
from edgekd.train.loop import LoopOptions
torch.set_num_threads(1)
run_distil(DistilOptions(preset="tiny", loss="kd", max_frames=3000,
           loop=LoopOptions(max_steps=30, lr=3e-3, warmup_steps=2, eval_every=0, ckpt_every=10, log_every=2,
                            progress=False)), {str(soft_targets / 'pl')!r}, {str(tmp_path / 'ddp')!r})
""")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        str(script)], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-6000:]
    hist = [json.loads(l) for l in (tmp_path / "ddp/history.jsonl").read_text().splitlines() if '"loss"' in l]
    assert len(hist) >= 10
    first, last = sum(h["kd"] for h in hist[:3]) / 3, sum(h["kd"] for h in hist[-3:]) / 3
    assert last < 0.8 * first  # both ranks train one model: the KD loss falls as in one process
    assert load_checkpoint(tmp_path / "ddp/model.safetensors").role == "student"
