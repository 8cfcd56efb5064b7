"""Pseudo-labeling: outputs, quarantine, routing, ensemble math, kill/resume identity."""

import json

import numpy as np
import pytest
import torch

from edgekd.errors import EdgekdError
from edgekd.manifest import Utterance, read_manifest, write_manifest
from edgekd.pseudolabel import Ensemble, PseudoLabelOptions, confidence, route_labels, run_pseudolabel
from edgekd.softtargets import SoftTargets


@pytest.fixture(scope="module")
def data(tmp_path_factory, corpus):
    d = tmp_path_factory.mktemp("pl")
    (d / "corpus").symlink_to(corpus)  # the session corpus (read-only); this test's files go beside it
    utts = read_manifest(d / "corpus/target/train.jsonl")
    (d / "bad.wav").write_text("not audio at all")
    utts.append(Utterance(id="zz-bad", audio=str(d / "bad.wav"), duration=1.0))
    write_manifest(d / "unlabeled.jsonl", utts)
    return d


@pytest.fixture(scope="module")
def teacher(tiny_ckpt_path):
    return str(tiny_ckpt_path)  # the shared seed-0 tiny checkpoint (conftest)


def _outputs(d):
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())
            if p.suffix in (".npz", ".jsonl") or p.name in ("index.json", "meta.json")}


def test_outputs_quarantine_and_routing(data, teacher, tmp_path):
    opts = PseudoLabelOptions(shard_utts=4, review_fraction=0.25, workers=2)
    m = json.loads(run_pseudolabel(opts, data / "unlabeled.jsonl", [teacher], tmp_path, progress=False).read_text())
    n_good = len(read_manifest(data / "unlabeled.jsonl")) - 1
    labels = [json.loads(l) for l in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert len(labels) == n_good and m["metrics"]["rejected"] == 1
    rej = json.loads((tmp_path / "rejected.jsonl").read_text())
    assert rej["id"] == "zz-bad" and rej["reason"] == "unreadable"
    st = SoftTargets(tmp_path)
    assert set(st.ids) == {l["id"] for l in labels} and st.frame_rate == 25.0
    for l in labels[:3]:
        assert st.get(l["id"]).shape == (l["frames"], 29)
    routes = [l["route"] for l in labels]
    assert routes.count("review") >= 1 and routes.count("distil") + routes.count("review") == n_good
    assert len(read_manifest(tmp_path / "review.jsonl")) == routes.count("review")
    assert m["metrics"]["bytes_per_frame"] > 0


def test_kill_and_resume_gives_identical_outputs(data, teacher, tmp_path):
    opts = PseudoLabelOptions(shard_utts=3, workers=1)
    run_pseudolabel(opts, data / "unlabeled.jsonl", [teacher], tmp_path / "full", progress=False)
    with pytest.raises(RuntimeError, match="injected failure"):
        run_pseudolabel(opts, data / "unlabeled.jsonl", [teacher], tmp_path / "killed", progress=False,
                        fail_after_shards=1)
    assert len(list((tmp_path / "killed").glob("shard-*.npz"))) == 1
    run_pseudolabel(opts, data / "unlabeled.jsonl", [teacher], tmp_path / "killed", progress=False)
    assert _outputs(tmp_path / "full") == _outputs(tmp_path / "killed")


def test_ensemble_averages_probabilities(teacher, tmp_path):
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(16000).astype(np.float32) * 0.1]
    one = Ensemble([teacher])(waves)[0]
    two = Ensemble([teacher, teacher], [3.0, 1.0])(waves)[0]
    assert torch.allclose(one, two, atol=1e-5)
    from edgekd.audio import FeaturizerConfig
    from edgekd.models import Checkpoint, load_preset
    from edgekd.models.conformer import ConformerCTC
    from edgekd.tokens import DEFAULT_TOKENS

    torch.manual_seed(1)
    other = tmp_path / "other.safetensors"
    Checkpoint(ConformerCTC(load_preset("tiny")).eval(), FeaturizerConfig(), DEFAULT_TOKENS, "tiny").save(other)
    a, b = Ensemble([teacher])(waves)[0], Ensemble([str(other)])(waves)[0]
    mix = Ensemble([teacher, str(other)], [1, 3])(waves)[0]
    assert torch.allclose(mix.exp(), 0.25 * a.exp() + 0.75 * b.exp(), atol=1e-5)
    odd = tmp_path / "odd.safetensors"
    Checkpoint(ConformerCTC(load_preset("tiny", vocab_size=5)).eval(), FeaturizerConfig(),
               ("<blk>", "a", "b", "c", "d"), "tiny").save(odd)
    with pytest.raises(EdgekdError, match="token set differs"):
        Ensemble([teacher, str(odd)])


def test_confidence_weighting_trusts_the_sure_and_agreeing_teacher_per_utterance(teacher, tmp_path):
    from edgekd.pseudolabel.ensemble import utterance_weights

    def post(tok, p, t=4, v=5):  # (T, V): token `tok` with probability p on every frame, the rest spread
        x = torch.full((t, v), (1 - p) / (v - 1))
        x[:, tok] = p
        return x

    # utterance 0: teachers 0 and 1 agree on token 2, teacher 2 says 3, unsure; utterance 1: roles of 0 and 2 swap
    ps = torch.stack([torch.stack([post(2, 0.9), post(3, 0.9)]), torch.stack([post(2, 0.8), post(3, 0.8)]),
                      torch.stack([post(3, 0.4), post(2, 0.4)])])  # (K=3, B=2, T, V)
    w = utterance_weights(ps, torch.tensor([4, 4]), torch.full((3,), 1 / 3))
    assert torch.allclose(w.sum(0), torch.ones(2))
    assert w[2, 0] == 0 and w[0, 0] > w[1, 0] > 0  # the odd one out counts for nothing, the surer more
    assert w[0, 1] > w[1, 1] and w[2, 1] == 0  # per utterance, not per teacher
    blank = torch.zeros(3, 1, 4, 5)
    blank[..., 0] = 1  # nobody emits: confidence 0 everywhere -> the fixed weights stand
    assert torch.allclose(utterance_weights(blank, torch.tensor([4]), torch.tensor([0.5, 0.3, 0.2]))[:, 0],
                          torch.tensor([0.5, 0.3, 0.2]))
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(16000).astype(np.float32) * 0.1]
    one = Ensemble([teacher])(waves)[0]  # one teacher twice: any weighting gives its own posteriors
    assert torch.allclose(one, Ensemble([teacher, teacher], weighting="confidence")(waves)[0], atol=1e-5)
    from edgekd.audio import FeaturizerConfig
    from edgekd.models import Checkpoint, load_preset
    from edgekd.models.conformer import ConformerCTC
    from edgekd.tokens import DEFAULT_TOKENS

    torch.manual_seed(1)
    other = Checkpoint(ConformerCTC(load_preset("tiny")).eval(), FeaturizerConfig(), DEFAULT_TOKENS,
                       "tiny").save(tmp_path / "other.safetensors")
    a, b = one.exp(), Ensemble([str(other)])(waves)[0].exp()
    w = utterance_weights(torch.stack([a, b]), torch.tensor([a.shape[1]]), torch.tensor([0.25, 0.75]))
    mix = Ensemble([teacher, str(other)], [1, 3], weighting="confidence")(waves)[0].exp()
    assert torch.allclose(mix, w[0, 0] * a + w[1, 0] * b, atol=1e-5)  # the ensemble mixes with these weights
    with pytest.raises(ValueError, match="teacher_weighting"):
        PseudoLabelOptions(teacher_weighting="learned")


def test_confidence_and_routing_rules():
    lp = np.log(np.array([[0.99, 0.01, 0.0 + 1e-9], [0.2, 0.7, 0.1], [0.1, 0.3, 0.6]]) + 1e-12)
    assert confidence(lp) == pytest.approx((0.7 + 0.6) / 2, abs=1e-6)
    assert confidence(np.log(np.array([[0.9, 0.1]]))) == 0.0  # nothing emitted
    labels = [{"confidence": c, "text": "x"} for c in (0.1, 0.5, 0.9, 0.95)]
    assert route_labels(labels, PseudoLabelOptions(confidence_threshold=0.6)) == 0.6
    assert [l["route"] for l in labels] == ["review", "review", "distil", "distil"]
    route_labels(labels, PseudoLabelOptions(review_fraction=0.25))
    assert [l["route"] for l in labels].count("review") == 1
    with pytest.raises(ValueError, match="engine"):
        PseudoLabelOptions(engine="spark")


def test_beam_lm_labels_use_lm_words_and_leave_soft_targets_alone(data, teacher, tmp_path):
    pytest.importorskip("flashlight.lib.text")
    from edgekd.lm import build_arpa

    refs = [u.text for u in read_manifest(data / "corpus/target/train.ref.jsonl")]
    arpa = build_arpa(refs, tmp_path / "lm.arpa", order=2)
    vocab = {w for t in refs for w in t.split()}
    with pytest.raises(ValueError, match="beam"):
        PseudoLabelOptions(lm=str(arpa))
    with pytest.raises(EdgekdError, match="not found"):
        run_pseudolabel(PseudoLabelOptions(beam=4, lm=str(tmp_path / "nope.arpa")), data / "unlabeled.jsonl",
                        [teacher], tmp_path / "x", progress=False)
    greedy_dir, lm_dir = tmp_path / "greedy", tmp_path / "lm"
    run_pseudolabel(PseudoLabelOptions(shard_utts=4, workers=1), data / "unlabeled.jsonl", [teacher], greedy_dir,
                    progress=False)
    run_pseudolabel(PseudoLabelOptions(shard_utts=4, workers=1, beam=8, lm=str(arpa)), data / "unlabeled.jsonl",
                    [teacher], lm_dir, progress=False)
    labels = [json.loads(l) for l in (lm_dir / "labels.jsonl").read_text().splitlines()]
    assert labels and all(set(l["text"].split()) <= vocab for l in labels)  # lexicon-constrained
    for p in sorted(greedy_dir.glob("shard-*.npz")):
        assert p.read_bytes() == (lm_dir / p.name).read_bytes()


def test_onnx_teacher_runtime_passes_the_parity_gate_and_labels_like_torch(data, teacher, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEKD_CACHE", str(tmp_path / "cache"))
    runs = {}
    for rt in ("torch", "onnx"):
        opts = PseudoLabelOptions(workers=1, teacher_runtime=rt, parity_seconds=5.0)
        runs[rt] = json.loads(run_pseudolabel(opts, data / "unlabeled.jsonl", [teacher], tmp_path / rt,
                                              progress=False).read_text())
    par = runs["onnx"]["metrics"]["runtime_parity"]
    fig = next(iter(par.values()))
    assert fig["kl_per_frame"] < 1e-6 and fig["argmax_agree"] == 1.0 and fig["utterances"] >= 1
    assert list((tmp_path / "cache" / "teachers").glob("*/model.onnx"))  # exported once, cached by sha256
    a, b = SoftTargets(tmp_path / "torch"), SoftTargets(tmp_path / "onnx")
    labels = {rt: [json.loads(l) for l in (tmp_path / rt / "labels.jsonl").read_text().splitlines()] for rt in runs}
    assert [l["text"] for l in labels["torch"]] == [l["text"] for l in labels["onnx"]]
    for l in labels["torch"][:5]:
        assert (a.get(l["id"]).argmax(-1) == b.get(l["id"]).argmax(-1)).all()


def test_onnx_int8_runtime_is_the_cached_graph_in_int8_with_its_ends_fp32(data, teacher, tmp_path, monkeypatch):
    import onnx

    from edgekd.audio import load_audio
    from edgekd.export.onnx import read_metadata
    from edgekd.manifest import read_manifest
    from edgekd.teachers.runtime import load_runtime_teacher, onnx_int8_cached, parity

    monkeypatch.setenv("EDGEKD_CACHE", str(tmp_path / "cache"))
    q = onnx_int8_cached(teacher)
    assert q.parent == next((tmp_path / "cache" / "teachers").iterdir()) and (q.parent / "model.onnx").is_file()
    kept = read_metadata(q)["fp32_fallback"].split(",")
    ops = {n.name: n.op_type for n in onnx.load(str(q)).graph.node}
    assert len(kept) == 2 and all(ops[k] == "MatMul" for k in kept)  # the first and last stay fp32 ...
    assert "MatMulInteger" in ops.values()  # ... the others run in int8
    stamp = q.stat().st_mtime_ns
    assert onnx_int8_cached(teacher) == q and q.stat().st_mtime_ns == stamp  # cached: not quantized again
    waves = [load_audio(u.audio) for u in read_manifest(data / "unlabeled.jsonl")[:3]]
    fig = parity(load_runtime_teacher(teacher, "torch"), load_runtime_teacher(teacher, "onnx-int8"), waves)
    assert 0 < fig["kl_per_frame"] < 1e-2 and fig["argmax_agree"] > 0.9, fig  # int8: close, not exact


def test_a_runtime_that_fails_the_gate_is_refused_before_any_shard(data, teacher, tmp_path, monkeypatch):
    from edgekd.teachers import runtime

    monkeypatch.setenv("EDGEKD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(runtime.GATE, "argmax_agree", 1.01)  # a bound no runtime can meet
    opts = PseudoLabelOptions(workers=1, teacher_runtime="onnx", parity_seconds=3.0)
    with pytest.raises(EdgekdError, match=r"use teacher_runtime 'torch'"):
        run_pseudolabel(opts, data / "unlabeled.jsonl", [teacher], tmp_path / "out", progress=False)
    assert not list((tmp_path / "out").glob("shard-*"))
    assert runtime.gate_failures({"kl_per_frame": 2e-3, "argmax_agree": 0.995}) == \
        ["KL per frame 2.00e-03 > 0.001", "best token agrees on 99.50 % of frames < 101 %"]
