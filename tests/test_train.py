"""Training: loss goes down, resume after a kill continues exactly, batches and SpecAugment behave."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from edgekd.audio import FeaturizerConfig
from edgekd.models import load_checkpoint
from edgekd.train import TrainOptions, run_train
from edgekd.train.data import BucketBatchSampler, spec_augment
from edgekd.train.loop import LoopOptions


def _opts(steps, **kw):
    return TrainOptions(preset="tiny", max_frames=3000, max_dev_utts=4,
                        loop=LoopOptions(max_steps=steps, lr=3e-3, warmup_steps=5, eval_every=0, ckpt_every=4,
                                         log_every=2, progress=False, **kw))


def test_ctc_training_drives_loss_down(corpus, tmp_path):
    run_train(_opts(40), corpus / "source/train.jsonl", corpus / "source/dev.jsonl", tmp_path / "r")
    import json

    hist = [json.loads(l) for l in (tmp_path / "r/history.jsonl").read_text().splitlines()]
    losses = [h["loss"] for h in hist if "loss" in h]
    assert losses[-1] < 0.8 * losses[0]
    ck = load_checkpoint(tmp_path / "r/model.safetensors", featurizer=FeaturizerConfig())
    assert ck.role == "teacher" and ck.train["config"]["preset"] == "tiny"
    assert not torch.allclose(ck.model.input_std, torch.ones(80))  # CMVN from the training data
    assert any("dev_wer" in h for h in hist)


def test_resume_after_kill_matches_uninterrupted(corpus, tmp_path, monkeypatch):
    tr, dev = corpus / "source/train.jsonl", corpus / "source/dev.jsonl"
    run_train(_opts(12), tr, dev, tmp_path / "full")
    import edgekd.train.loop as loop

    real = loop.lr_at
    calls = {"n": 0}

    def dying_lr(step, o):  # the "kill": the run dies while starting step 10 (last checkpoint: 8)
        if step == 10:
            raise KeyboardInterrupt
        return real(step, o)

    monkeypatch.setattr(loop, "lr_at", dying_lr)
    with pytest.raises(KeyboardInterrupt):
        run_train(_opts(12), tr, dev, tmp_path / "killed")
    monkeypatch.setattr(loop, "lr_at", real)
    state = torch.load(tmp_path / "killed/train_state.pt", weights_only=True)
    assert state["step"] == 8 and state["train_s"] > 0
    run_train(_opts(12), tr, dev, tmp_path / "killed")  # same command again: resumes at step 8
    import json

    timings = json.loads((tmp_path / "killed/manifest.json").read_text())["timings"]
    assert timings["train_s"] > state["train_s"] and timings["train_s"] > timings["wall_s"] - 5  # both legs counted
    a = load_file(str(tmp_path / "full/last.safetensors"))
    b = load_file(str(tmp_path / "killed/last.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k


def test_bucket_sampler_budget_shards_and_resume():
    lengths = np.random.default_rng(0).integers(50, 800, size=200)
    s = BucketBatchSampler(lengths, max_frames=3000, seed=1)
    it = iter(s)
    first = [next(it)[2] for _ in range(10)]
    for b in first:
        assert max(lengths[b]) * len(b) <= 3000 or len(b) == 1
    st = s.state()
    nxt = next(it)[2]
    s2 = BucketBatchSampler(lengths, max_frames=3000, seed=1)
    s2.load_state(st)
    assert next(iter(s2))[2] == nxt
    r0 = BucketBatchSampler(lengths, 3000, seed=1, rank=0, world=2)._batches(0)
    r1 = BucketBatchSampler(lengths, 3000, seed=1, rank=1, world=2)._batches(0)
    assert len(r0) == len(r1) and not set(map(tuple, r0)) & set(map(tuple, r1))
    epoch0 = sorted(i for b in s._batches(0) for i in b)
    assert epoch0 == list(range(200))  # every utterance once per epoch


def test_spec_augment_masks_only_valid_frames():
    x = torch.randn(2, 300, 80)
    lens = torch.tensor([300, 120])
    y = spec_augment(x, lens, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and not torch.equal(x, y)
    assert torch.equal(y[1, 120:], x[1, 120:])  # padding untouched
    assert (y != x).float().mean() < 0.5


def test_warm_start_from_checkpoint(corpus, tmp_path):
    tr, dev = corpus / "source/train.jsonl", corpus / "source/dev.jsonl"
    run_train(_opts(4), tr, dev, tmp_path / "a")
    first = load_checkpoint(tmp_path / "a/last.safetensors")
    import dataclasses

    # another seed: a run that ignored --init would start from different random weights
    run_train(dataclasses.replace(_opts(1, seed=1), init=str(tmp_path / "a/last.safetensors")), tr, dev, tmp_path / "b")
    run_train(_opts(1, seed=1), tr, dev, tmp_path / "fresh")  # the control: the same run without --init
    second = load_checkpoint(tmp_path / "b/last.safetensors")
    fresh = load_checkpoint(tmp_path / "fresh/last.safetensors")
    w1, w2, w0 = first.model.head.weight, second.model.head.weight, fresh.model.head.weight
    near, far = float((w1 - w2).abs().max()), float((w1 - w0).abs().max())
    assert near < 0.05 and far > 5 * near, (near, far)  # one small step from the warm start, not a fresh init
    from edgekd.errors import EdgekdError

    with pytest.raises(EdgekdError, match="dims differ"):
        run_train(dataclasses.replace(_opts(1), preset="student-xs", init=str(tmp_path / "a/last.safetensors")),
                  tr, dev, tmp_path / "c")
