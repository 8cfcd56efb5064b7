"""ONNX CTC teachers (`onnx:`): edgekd's own export matches the PyTorch teacher, in its own and in
NeMo's layout (which sherpa-onnx then decodes as the teacher does); the wenet_ctc and zipformer2_ctc
contracts on hand-built graphs; blank moved to id 0; clear one-line failures."""

import json
import math

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from edgekd.audio import FeaturizerConfig, featurize
from edgekd.errors import EdgekdError
from edgekd.teachers import load_teacher
from edgekd.tokens import DEFAULT_TOKENS

V, F = len(DEFAULT_TOKENS), 80


def _waves(n=3, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(16000 * 2) / 16000
    return [(0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t[: 16000 + 5000 * i])
             + 0.05 * rng.standard_normal(16000 + 5000 * i)).astype(np.float32) for i in range(n)]


def _kl(p_logits, q_logits):
    p, q = p_logits.log_softmax(-1).double(), q_logits.log_softmax(-1).double()
    return float((p.exp() * (p - q)).sum(-1).mean())


def test_edgekd_export_as_onnx_teacher_matches_pytorch(tiny_ckpt_path, tmp_path):
    from edgekd.export.onnx import export_onnx
    from edgekd.models import load_checkpoint

    export_onnx(load_checkpoint(tiny_ckpt_path), tmp_path / "model.onnx")
    pt, ox = load_teacher(tiny_ckpt_path), load_teacher(f"onnx:{tmp_path}")
    assert ox.tokens == pt.tokens and ox.frame_rate == pt.frame_rate and ox.sample_rate == 16000
    waves = _waves()
    a, b = pt(waves), ox(waves)
    assert torch.equal(a.lengths, b.lengths)
    for i, n in enumerate(a.lengths.tolist()):
        assert _kl(a.logits[i, :n], b.logits[i, :n]) <= 1e-4  # the parity bound, per frame
    # and through pseudo-labeling: the same 1-best and (quantised) soft targets as the PyTorch teacher
    import soundfile as sf

    from edgekd.manifest import Utterance, write_manifest
    from edgekd.pseudolabel import PseudoLabelOptions, run_pseudolabel
    from edgekd.records import read_pseudolabels
    from edgekd.softtargets import SoftTargets

    utts = []
    for i, w in enumerate(waves):
        sf.write(tmp_path / f"u{i}.wav", w, 16000)
        utts.append(Utterance(id=f"u{i}", audio=str(tmp_path / f"u{i}.wav"), duration=len(w) / 16000))
    man = write_manifest(tmp_path / "m.jsonl", utts)
    opts = PseudoLabelOptions(workers=1, review_fraction=0.0)
    outs = [run_pseudolabel(opts, man, [spec], tmp_path / name).parent
            for name, spec in (("pt", str(tiny_ckpt_path)), ("onnx", f"onnx:{tmp_path}"))]
    labels = [{p.id: p.text for p in read_pseudolabels(o / "labels.jsonl")} for o in outs]
    assert labels[0] == labels[1]
    st = [SoftTargets(o) for o in outs]
    for u in utts:
        assert np.abs(st[0].get(u.id) - st[1].get(u.id)).max() < 0.2  # within a few 1/16-nat steps


def _linear_graph(path, model_type, tokens, extra_meta=None, scale=1.0):
    """x (N, T, F), x_lens -> log_probs = log_softmax(scale * x @ W), log_probs_len = x_lens: a CTC
    model in sherpa-onnx's two-input contract, small enough to recompute here."""
    w = np.random.default_rng(1).standard_normal((F, len(tokens))).astype(np.float32) * 0.05
    nodes = [helper.make_node("Mul", ["x", "s"], ["xs"]), helper.make_node("MatMul", ["xs", "W"], ["z"]),
             helper.make_node("LogSoftmax", ["z"], ["log_probs"], axis=-1),
             helper.make_node("Identity", ["x_lens"], ["log_probs_len"])]
    g = helper.make_graph(nodes, "ctc", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "T", F]),
                                         helper.make_tensor_value_info("x_lens", TensorProto.INT64, ["N"])],
                          [helper.make_tensor_value_info("log_probs", TensorProto.FLOAT, ["N", "T", len(tokens)]),
                           helper.make_tensor_value_info("log_probs_len", TensorProto.INT64, ["N"])],
                          [helper.make_tensor("W", TensorProto.FLOAT, w.shape, w.ravel()),
                           helper.make_tensor("s", TensorProto.FLOAT, [], [scale])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    helper.set_model_props(m, {"model_type": model_type, "subsampling_factor": "1", **(extra_meta or {})})
    path.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(path / "model.onnx"))
    (path / "tokens.txt").write_text("".join(f"{'▁' if t == ' ' else t} {i}\n" for i, t in enumerate(tokens)))
    return w


def test_wenet_contract_features_on_int16_scale(tmp_path):
    """WeNet models take samples in int16 range: the teacher's log-mels are 2 ln 32768 higher than
    edgekd's, which the graph undoes here, so its posteriors equal the same matmul on edgekd's."""
    w = _linear_graph(tmp_path, "wenet_ctc", DEFAULT_TOKENS)
    t = load_teacher(f"onnx:{tmp_path / 'model.onnx'}")
    assert t.tokens == DEFAULT_TOKENS and t.frame_rate == 100.0
    waves = _waves(2)
    out = t(waves)
    feats, lens = featurize(waves, FeaturizerConfig())
    want = torch.from_numpy((feats.numpy() + 2 * math.log(32768)) @ w).log_softmax(-1)
    assert torch.equal(out.lengths, lens)
    for i, n in enumerate(lens.tolist()):
        assert torch.allclose(out.logits[i, :n].log_softmax(-1), want[i, :n], atol=1e-3)
    z = _linear_graph(tmp_path / "z", "zipformer2_ctc", DEFAULT_TOKENS)  # same graph, no int16 scaling
    got = load_teacher(f"onnx:{tmp_path / 'z'}")(waves[:1]).logits[0].log_softmax(-1)
    assert torch.allclose(got, torch.from_numpy(feats[0, : lens[0]].numpy() @ z).log_softmax(-1), atol=1e-3)


def test_blank_is_moved_to_id_zero(tmp_path):
    """NeMo-style token order (blank last): columns are reordered so blank is 0 and symbols follow."""
    tokens = list(DEFAULT_TOKENS[1:]) + ["<blk>"]
    w = _linear_graph(tmp_path, "zipformer2_ctc", tokens)
    t = load_teacher(f"onnx:{tmp_path}")
    assert t.tokens == DEFAULT_TOKENS
    waves = _waves(1)
    feats, _ = featurize(waves, FeaturizerConfig())
    raw = torch.from_numpy(feats[0].numpy() @ w).log_softmax(-1)
    got = t(waves).logits[0]
    assert torch.allclose(got[:, 0], raw[:, -1], atol=1e-4) and torch.allclose(got[:, 1:], raw[:, :-1], atol=1e-4)


@pytest.mark.parametrize("meta,tokens_txt,msg", [
    ({"model_type": "EncDecCTCModelBPE"}, True, "metadata has no 'vocab_size', which a EncDecCTCModelBPE"),
    ({"model_type": "EncDecCTCModel", "vocab_size": "28"}, True, "metadata has no 'normalize_type'"),
    ({"model_type": "EncDecCTCModel", "vocab_size": "28", "normalize_type": "all_features"}, True,
     "'normalize_type' is 'all_features'; supported: '' or 'per_feature'"),
    ({"model_type": None}, True, "metadata 'model_type' is None"),
    ({"subsampling_factor": None}, True, "neither 'frame_rate' nor 'subsampling_factor'"),
    ({}, False, "no tokens.txt beside it"),
])
def test_missing_or_unsupported_metadata_is_one_clear_line(tmp_path, meta, tokens_txt, msg):
    _linear_graph(tmp_path, "zipformer2_ctc", DEFAULT_TOKENS)
    m = onnx.load(str(tmp_path / "model.onnx"))
    props = {p.key: p.value for p in m.metadata_props}
    props.update({k: v for k, v in meta.items() if v is not None})
    for k in [k for k, v in meta.items() if v is None]:
        props.pop(k)
    del m.metadata_props[:]
    helper.set_model_props(m, props)
    onnx.save(m, str(tmp_path / "model.onnx"))
    if not tokens_txt:
        (tmp_path / "tokens.txt").unlink()
    with pytest.raises(EdgekdError, match=msg) as e:
        load_teacher(f"onnx:{tmp_path}")
    assert "\n" not in str(e.value) and str(tmp_path) in str(e.value)


def test_folder_with_several_models_names_them(tmp_path):
    _linear_graph(tmp_path, "zipformer2_ctc", DEFAULT_TOKENS)
    (tmp_path / "model.onnx").rename(tmp_path / "a.onnx")
    (tmp_path / "b.onnx").write_bytes((tmp_path / "a.onnx").read_bytes())
    with pytest.raises(EdgekdError, match=r"expected one \.onnx model.*a\.onnx.*b\.onnx"):
        load_teacher(f"onnx:{tmp_path}")
    (tmp_path / "b.onnx").unlink()
    assert load_teacher(f"onnx:{tmp_path}").name == "a"


def test_nemo_layout_teacher_matches_pytorch_and_sherpa(tmp_path):
    """edgekd's model exported in NeMo's EncDecCTCModelBPE layout (features (N, 80, T), blank last,
    normalize_type) loads as a teacher: NEMO_FEATURES computed as the metadata says, soft targets
    equal to the PyTorch model's, and sherpa-onnx's own NeMo recognizer decodes what it decodes."""
    import sherpa_onnx

    from edgekd.audio import NEMO_FEATURES
    from edgekd.decode import greedy
    from edgekd.export.onnx import export_nemo_ctc, read_metadata, set_metadata
    from edgekd.models import Checkpoint, load_preset
    from edgekd.models.conformer import ConformerCTC
    from edgekd.teachers.conformer import ConformerTeacher
    from edgekd.tokens import Tokenizer

    torch.manual_seed(0)
    model = ConformerCTC(load_preset("tiny")).eval()
    with torch.no_grad():
        model.head.weight.mul_(8.0)  # confident, so transcripts are not empty
    ck = Checkpoint(model, NEMO_FEATURES, DEFAULT_TOKENS, "tiny", "teacher")
    ck.save(tmp_path / "t.safetensors")
    waves = _waves()
    pt = ConformerTeacher(tmp_path / "t.safetensors")
    a = pt(waves)
    texts = {}
    for norm in ("", "per_feature"):
        d = tmp_path / (norm or "none")
        export_nemo_ctc(ck, d / "model.onnx", normalize_type=norm)
        assert (d / "tokens.txt").read_text().splitlines()[-1] == f"<blk> {V - 1}"  # NeMo: blank last
        ox = load_teacher(f"onnx:{d}")
        assert ox.tokens == DEFAULT_TOKENS and ox.frame_rate == pt.frame_rate and ox.featurizer == NEMO_FEATURES
        b = ox(waves)
        frames = featurize(waves, NEMO_FEATURES)[1]
        assert b.lengths.tolist() == (frames // 4).tolist()  # sherpa's length, T // subsampling_factor ...
        assert (b.lengths >= a.lengths).all()  # ... which may add a frame: a certain blank
        if not norm:  # the same features reach the same weights: the parity bound
            for i, n in enumerate(a.lengths.tolist()):
                assert _kl(a.logits[i, :n], b.logits[i, :n]) <= 1e-4
                assert (b.logits[i, n:int(b.lengths[i])].argmax(-1) == 0).all()
        texts[norm] = greedy(b.logits, b.lengths, Tokenizer(ox.tokens))
        rec = sherpa_onnx.OfflineRecognizer.from_nemo_ctc(model=str(d / "model.onnx"), tokens=str(d / "tokens.txt"),
                                                          num_threads=1)
        for w, want in zip(waves, texts[norm]):
            s = rec.create_stream()
            s.accept_waveform(16000, w)
            rec.decode_stream(s)
            assert " ".join(s.result.text.split()) == want, norm
    assert any(texts[""]) and texts[""] != texts["per_feature"]  # the normalisation was applied, and mattered
    # a NeMo model whose export lost a key sherpa-onnx needs fails with one line naming it
    meta = read_metadata(tmp_path / "none/model.onnx")
    del meta["normalize_type"]
    set_metadata(tmp_path / "none/model.onnx", meta)
    with pytest.raises(EdgekdError, match="metadata has no 'normalize_type'") as e:
        load_teacher(f"onnx:{tmp_path / 'none'}")
    assert "\n" not in str(e.value)
