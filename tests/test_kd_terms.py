"""Feature/relation KD, mutual learning and self-distillation wired into distil, on tiny models."""

import dataclasses
import json

import pytest
import torch

from edgekd.audio import FeaturizerConfig
from edgekd.distil import DistilOptions, run_distil
from edgekd.errors import EdgekdError
from edgekd.kd_terms import ExtraTerms, FeatureTeacher, KDTerms, Students
from edgekd.models import Checkpoint, load_checkpoint, load_preset
from edgekd.models.conformer import ConformerCTC
from edgekd.tokens import DEFAULT_TOKENS
from edgekd.train.loop import LoopOptions


def _teacher(path, n_layers=4, d_model=48):
    """A tiny teacher deeper and wider than the tiny student (2 layers x 32): projection and map matter."""
    torch.manual_seed(0)
    dims = dataclasses.replace(load_preset("tiny"), n_layers=n_layers, d_model=d_model, n_heads=2)
    return Checkpoint(ConformerCTC(dims).eval(), FeaturizerConfig(), DEFAULT_TOKENS, "tiny").save(path)


@pytest.fixture(scope="module")
def soft_targets(tmp_path_factory, corpus):
    from edgekd.pseudolabel import PseudoLabelOptions, run_pseudolabel

    d = tmp_path_factory.mktemp("kdterms")
    t = _teacher(d / "t.safetensors")
    run_pseudolabel(PseudoLabelOptions(workers=1, review_fraction=0.3), corpus / "target/train.jsonl", [str(t)],
                    d / "pl", progress=False)
    return d


def _opts(terms, steps=4):
    return DistilOptions(preset="tiny", loss="kd+ctc", max_frames=3000, max_dev_utts=2, terms=terms,
                         loop=LoopOptions(max_steps=steps, lr=3e-3, warmup_steps=1, eval_every=0, ckpt_every=2,
                                          log_every=1, progress=False))


def test_feature_teacher_maps_layers_projects_and_caches(soft_targets):
    t = FeatureTeacher(str(soft_targets / "t.safetensors"), FeaturizerConfig(), 2, 25.0, "all", cache=True)
    assert t.teacher_layers == [1, 3] and t.dim == 48  # student 1 <- teacher 2, student 2 <- teacher 4 (1-based)
    x, lens = torch.randn(2, 120, 80), torch.tensor([120, 80])
    olens = torch.tensor([29, 19])
    out = t(["a", "b"], x, lens, olens, 29)
    assert [o.shape for o in out] == [(2, 29, 48)] * 2 and out[0][1, 19:].abs().sum() == 0  # padding stays zero
    t.model = None  # cached now: a second batch of the same utterances must not run the teacher
    again = t(["b", "a"], x.flip(0), lens.flip(0), olens.flip(0), 29)
    assert torch.allclose(again[1][0], out[1][1], atol=1e-2)
    s = Students(ConformerCTC(load_preset("tiny")), KDTerms(feature_weight=1.0), t.dim, len(t.student_layers))
    assert [p(torch.randn(2, 5, 32)).shape for p in s.projector.proj] == [(2, 5, 48)] * 2


def test_feature_teacher_refuses_another_featurizer(soft_targets):
    with pytest.raises(EdgekdError, match="featurizer differs"):
        FeatureTeacher(str(soft_targets / "t.safetensors"), FeaturizerConfig(n_mels=64), 2, 25.0, "all", True)


def test_mutual_learning_step_updates_both_students():
    torch.manual_seed(0)
    a, b = ConformerCTC(load_preset("tiny")), ConformerCTC(load_preset("tiny"))
    m = Students(a, KDTerms(mutual_weight=1.0), 0, 0, peer=b).train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    x, lens = torch.randn(2, 100, 80), torch.tensor([100, 70])
    # no soft-target or CTC term at all: whatever moves the students is the mutual term alone
    loss, logs = ExtraTerms(KDTerms(mutual_weight=1.0), 2.0, None)(
        m, ["a", "b"], x, x, lens, None, lambda logits, olens: (logits.new_zeros(()), {}))
    assert logs["mutual"] > 0
    opt = torch.optim.SGD(m.parameters(), lr=1.0)
    loss.backward()
    opt.step()
    moved = {k.split(".")[0] for k, v in m.state_dict().items() if not torch.equal(v, before[k])}
    assert moved == {"student", "peer"}


def test_ema_teacher_trails_the_student():
    torch.manual_seed(0)
    s = Students(ConformerCTC(load_preset("tiny")), KDTerms(self_weight=1.0), 0, 0)
    assert not any(p.requires_grad for p in s.ema.parameters())  # the optimizer never moves it
    w = s.student.head.weight
    with torch.no_grad():
        w.add_(1.0)
    e0 = s.ema.head.weight.clone()
    s.update_ema(0.9)
    assert torch.allclose(s.ema.head.weight, 0.9 * e0 + 0.1 * w)


def test_distil_with_every_term_trains_and_saves_a_plain_student(soft_targets, tmp_path):
    terms = KDTerms(feature_weight=1.0, relation_weight=1.0, mutual_weight=0.5, self_weight=0.5)
    run_distil(_opts(terms), soft_targets / "pl", tmp_path)
    hist = [json.loads(l) for l in (tmp_path / "history.jsonl").read_text().splitlines()]
    steps = [h for h in hist if "loss" in h]
    assert len(steps) == 4 and all(k in steps[0] for k in ("kd", "ctc", "feature", "relation", "mutual", "self",
                                                          "teacher_ms"))
    ck = load_checkpoint(tmp_path / "model.safetensors")  # the student alone, no projector or peer inside
    assert ck.dims == load_preset("tiny", vocab_size=29) and ck.train["config"]["terms"]["feature_weight"] == 1.0
    assert load_checkpoint(tmp_path / "peer.safetensors").dims == ck.dims
    # resume: the wrapper's state (projector, peer, EMA) is in the one-file train state
    run_distil(_opts(terms, steps=6), soft_targets / "pl", tmp_path)
    assert json.loads((tmp_path / "manifest.json").read_text())["metrics"]["steps"] == 6


def test_terms_option_checks():
    with pytest.raises(ValueError, match="feature_loss"):
        KDTerms(feature_loss="l1")
    with pytest.raises(ValueError, match="not to loss=annealing"):
        DistilOptions(loss="annealing", terms=KDTerms(relation_weight=1.0))
    from edgekd.distil import config_dict

    assert "terms" not in config_dict(DistilOptions())  # runs without terms record what they did before
