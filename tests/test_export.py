"""Export, quantization, pruning, LiteRT, the sherpa-onnx package and verify, on a tiny model and real
(synthetic) speech. The model is random but made confident (scaled head) so token agreement means something."""

import json
import os

import numpy as np
import pytest
import torch

from edgekd.audio import FeaturizerConfig, featurize, load_audio
from edgekd.decode import greedy
from edgekd.export.known_broken import KNOWN_BROKEN
from edgekd.export.litert import have_litert_torch
from edgekd.manifest import read_manifest
from edgekd.models import Checkpoint, load_checkpoint, load_preset
from edgekd.models.conformer import ConformerCTC
from edgekd.tokens import DEFAULT_TOKENS, Tokenizer


@pytest.fixture(scope="module")
def setup(tmp_path_factory, corpus):
    d = tmp_path_factory.mktemp("export")
    (d / "c").symlink_to(corpus)  # the session corpus (read-only)
    torch.manual_seed(3)
    model = ConformerCTC(load_preset("tiny")).eval()
    with torch.no_grad():
        model.head.weight.mul_(8.0)  # confident outputs: a random model is otherwise near-uniform
    ck = Checkpoint(model, FeaturizerConfig(), DEFAULT_TOKENS, "tiny", "student")
    ck.save(d / "student.safetensors")
    return d


def test_onnx_export_is_self_describing_and_matches(setup, tmp_path):
    from edgekd.export.onnx import export_onnx, ort_session, read_metadata, run_onnx

    ck = load_checkpoint(setup / "student.safetensors")
    p = export_onnx(ck, tmp_path / "m.onnx")
    meta = read_metadata(p)
    assert meta["model_type"] == "zipformer2_ctc" and json.loads(meta["tokens"]) == list(DEFAULT_TOKENS)
    assert FeaturizerConfig.from_dict(json.loads(meta["featurizer"])) == ck.featurizer
    assert meta["subsampling_factor"] == "4" and meta["quantization"] == "fp32" and float(meta["frame_rate"]) == 25
    assert (tmp_path / "tokens.txt").read_text().splitlines()[1] == "▁ 1"
    sess = ort_session(p)
    for T in (37, 411):  # dynamic time axis, batch of 1 (what runtimes send)
        x = torch.randn(1, T, 80) * 3 - 4
        lp, n = run_onnx(sess, x.numpy(), np.array([T]))
        want, wn = ck.model.log_probs(x, torch.tensor([T]))
        assert int(n[0]) == int(wn[0]) and np.abs(lp - want.detach().numpy()).max() < 1e-4


def test_the_graph_memo_keys_on_content_and_leaves_the_rng_alone(tmp_path):
    """export_onnx / export_streaming_onnx remember the graphs they made in this process by content:
    the same weights come back without exporting, changed weights or another key never get a stale
    graph, the caller's RNG does not move, and an exporter error is one line."""
    import onnx

    from edgekd.errors import EdgekdError
    from edgekd.export.onnx import exported_graph

    lin, calls = torch.nn.Linear(3, 2), []

    def export(tmp):  # a real export of the module as it is now; its example input draws from the RNG
        calls.append(1)
        torch.onnx.export(lin, (torch.randn(1, 3),), str(tmp), dynamo=False)

    def weight(m):
        return sorted(onnx.numpy_helper.to_array(t).sum() for t in m.graph.initializer)

    state = torch.get_rng_state()
    a = exported_graph(lin, ["k"], export, tmp_path / "a.onnx", "failed")
    assert torch.equal(state, torch.get_rng_state())
    assert weight(exported_graph(lin, ["k"], export, tmp_path / "a.onnx", "failed")) == weight(a) and len(calls) == 1
    exported_graph(lin, ["other"], export, tmp_path / "a.onnx", "failed")
    assert len(calls) == 2
    with torch.no_grad():
        lin.weight.mul_(-1.0)
    b = exported_graph(lin, ["k"], export, tmp_path / "a.onnx", "failed")
    assert len(calls) == 3 and weight(b) != weight(a)

    def broken(tmp):
        raise RuntimeError("no\nmore")
    lin.bias.data += 1
    with pytest.raises(EdgekdError, match="^export of lin failed: no$"):
        exported_graph(lin, ["k"], broken, tmp_path / "a.onnx", "export of lin failed")


def test_graph_cache_on_disk_serves_other_processes_and_never_a_stale_or_damaged_graph(tmp_path, monkeypatch):
    """$EDGEKD_GRAPH_CACHE keeps graphs across processes (here: the process memo emptied): the same
    weights and code come back without exporting; a damaged file or other exporting code exports anew."""
    import onnx

    from edgekd.export import graphcache as gc
    from edgekd.export.onnx import exported_graph

    lin, calls = torch.nn.Linear(3, 2), []

    def export(tmp):
        calls.append(1)
        torch.onnx.export(lin, (torch.randn(1, 3),), str(tmp), dynamo=False)

    def get():
        monkeypatch.setattr(gc, "_GRAPHS", {})  # a new process: nothing in memory
        return exported_graph(lin, ["disk"], export, tmp_path / "a.onnx", "failed")

    monkeypatch.delenv(gc.GRAPH_CACHE_ENV, raising=False)
    get()
    assert len(calls) == 1 and not (tmp_path / "cache").exists()  # off unless asked for
    monkeypatch.setenv(gc.GRAPH_CACHE_ENV, str(tmp_path / "cache"))
    a = get()
    (f,) = (tmp_path / "cache").iterdir()
    assert len(calls) == 2 and get() == a and len(calls) == 2  # the second "process" read it from disk
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])  # a damaged file is exported anew and replaced
    assert get() == a and len(calls) == 3 and onnx.load(str(f)) == a
    monkeypatch.setattr(gc, "code_digest", lambda: "other exporting code")
    get()
    assert len(calls) == 4 and len(list((tmp_path / "cache").iterdir())) == 2


def test_waveform_graph_matches_featurizer_plus_model(setup, tmp_path):
    from edgekd.export.onnx import export_onnx, ort_session, run_onnx

    ck = load_checkpoint(setup / "student.safetensors")
    p = export_onnx(ck, tmp_path / "w.onnx", waveform=True)
    u = read_manifest(setup / "c/source/test.jsonl")[0]
    w = load_audio(u.audio)
    lp, n = run_onnx(ort_session(p), w[None], np.array([len(w)]))
    f, fl = featurize([w], ck.featurizer)
    want, wn = ck.model.log_probs(f, fl)
    assert int(n[0]) == int(wn[0]) and np.abs(lp - want.detach().numpy()).max() < 1e-3


def test_quantized_variants_run_within_tolerance(setup, tmp_path, monkeypatch):
    from edgekd.export.onnx import export_onnx, ort_session, read_metadata, run_onnx
    from edgekd.export.quantize import calibration_features, quantize

    ck = load_checkpoint(setup / "student.safetensors")
    p = export_onnx(ck, tmp_path / "m.onnx")
    cal = calibration_features(setup / "c/source/train.jsonl", ck.featurizer, 8)
    feats = cal[0][None]
    ref, _ = run_onnx(ort_session(p), feats, np.array([feats.shape[1]]))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # ORT's shape inference litters the working directory when it gives up
    for mode, tol, method in (("fp16", 0.05, "minmax"), ("int8-dynamic", None, "minmax"),
                              ("int8-static", None, "minmax"), ("int8-static", None, "percentile")):
        # relative src; percentile needs equal-length calibration pieces (ORT stacks its histograms)
        q = quantize(os.path.relpath(p, cwd), tmp_path / f"{mode}.onnx", mode, calibration=cal, method=method)
        assert read_metadata(q)["quantization"] == mode
        lp, _ = run_onnx(ort_session(q), feats, np.array([feats.shape[1]]))
        if tol:
            assert np.abs(lp - ref).max() < tol
        else:
            assert (lp.argmax(-1) == ref.argmax(-1)).mean() >= 0.9, mode
    assert (tmp_path / "int8-dynamic.onnx").stat().st_size < p.stat().st_size
    assert not list(cwd.iterdir()), "quantization left files in the working directory"
    with pytest.raises(Exception, match="already quantized"):
        quantize(tmp_path / "fp16.onnx", tmp_path / "x.onnx", "int8-dynamic")


def test_int8_sensitivity_keeps_the_layer_int8_hurts_in_fp32(setup, tmp_path):
    import onnx
    from onnx import numpy_helper

    from edgekd.export.onnx import export_onnx, ort_session, read_metadata, run_onnx
    from edgekd.export.quantize import calibration_features, quantize
    from edgekd.export.sensitivity import divergence

    ck = load_checkpoint(setup / "student.safetensors")
    # One layer made hostile to int8: a huge weight in every output channel sets that channel's
    # scale, so its ordinary weights round to nothing. Analysis must single it out.
    with torch.no_grad():
        ck.model.blocks[0].ff1.w2.weight[:, 0] = 40.0
    p = export_onnx(ck, tmp_path / "m.onnx")
    g = onnx.load(str(p)).graph
    big = {i.name for i in g.initializer if np.abs(numpy_helper.to_array(i)).max() >= 39}
    hostile = [n.name for n in g.node if n.op_type == "MatMul" and big & set(n.input)]
    assert len(hostile) == 1
    cal = calibration_features(setup / "c/source/train.jsonl", ck.featurizer, 6)
    # quantize() runs the analysis on its own pre-processed graph and keeps that layer fp32.
    kept = quantize(p, tmp_path / "fb.onnx", "int8-dynamic", calibration=cal)
    plain = quantize(p, tmp_path / "all.onnx", "int8-dynamic", calibration=cal, fallback=False)
    report = json.loads((tmp_path / "fb.sensitivity.json").read_text())
    rows = report["layers"]
    assert len(rows) == sum(n.op_type == "MatMul" and any(i in {x.name for x in g.initializer} for i in n.input)
                            for n in g.node)
    assert rows[0]["node"] == hostile[0] and report["fp32_fallback"][0] == hostile[0]
    assert all(r["kl"] >= 0 and 0 <= r["agreement"] <= 1 for r in rows)
    assert read_metadata(kept)["fp32_fallback"].split(",") == report["fp32_fallback"]
    assert "fp32_fallback" not in read_metadata(plain)
    ref = [run_onnx(ort_session(p), f[None], np.array([len(f)]))[0][0] for f in cal]
    kl = {m: divergence(ref, [run_onnx(ort_session(m), f[None], np.array([len(f)]))[0][0] for f in cal])["kl"]
          for m in (kept, plain)}
    assert kl[kept] < kl[plain] / 2, kl


def test_fallback_rule_picks_outliers_only():
    from edgekd.export.sensitivity import fallback_nodes

    rows = [{"node": f"n{i}", "kl": k} for i, k in enumerate([1e-6, 2e-6, 1.5e-6, 3e-5, 1e-6, 2.5e-5])]
    assert fallback_nodes(rows) == ["n3", "n5"]
    assert fallback_nodes(rows, max_nodes=1) == ["n3"]
    assert fallback_nodes([{"node": "a", "kl": 1.0}, {"node": "b", "kl": 1e-9}]) == []


def _sherpa_and_edgekd(rec, ck, tok, audio) -> tuple[str, str]:
    """One file's transcript by sherpa-onnx's offline recognizer `rec` and by edgekd's greedy decoding of `ck`."""
    w = load_audio(audio)
    s = rec.create_stream()
    s.accept_waveform(16000, w)
    rec.decode_stream(s)
    f, fl = featurize([w], ck.featurizer)
    with torch.no_grad():
        ours = greedy(ck.model(f, fl)[0], ck.model.output_lengths(fl), tok)[0]
    return s.result.text, ours


def test_sherpa_onnx_decodes_the_package_like_edgekd(setup, tmp_path):
    import sherpa_onnx  # a declared dependency
    from edgekd.export import write_sherpa_package
    from edgekd.export.onnx import export_onnx

    ck = load_checkpoint(setup / "student.safetensors")
    pkg = write_sherpa_package(export_onnx(ck, tmp_path / "m.onnx"), None, tmp_path / "pkg")
    rec = sherpa_onnx.OfflineRecognizer.from_zipformer_ctc(model=str(pkg / "model.onnx"),
                                                          tokens=str(pkg / "tokens.txt"), num_threads=1)
    tok = Tokenizer(ck.tokens)
    n_nonempty = 0
    for u in read_manifest(setup / "c/source/test.jsonl")[:6] + read_manifest(setup / "c/source/dev.jsonl")[:6]:
        theirs, ours = _sherpa_and_edgekd(rec, ck, tok, u.audio)
        assert " ".join(theirs.split()) == " ".join(ours.split()), u.id
        n_nonempty += bool(ours.strip())
    assert n_nonempty >= 1  # the comparison compared something


# a plain subword tokens.txt (pieces, `▁` starting a word) as large as the fixture's head
SUBWORD = ("<blk>", "▁the", "▁a", "▁s", "▁c", "▁", "at", "he", "in", "er") + tuple("abcdefghilmnoprstuw")


def test_sherpa_onnx_decodes_subword_tokens_like_edgekd(setup, tmp_path):
    """The same weights with subword tokens (the export is the graph above, from the memo): sherpa
    joins the `▁` pieces into words exactly as edgekd's greedy decoding does."""
    import sherpa_onnx
    from edgekd.export import write_sherpa_package
    from edgekd.export.onnx import export_onnx

    base = load_checkpoint(setup / "student.safetensors")
    ck = Checkpoint(base.model, base.featurizer, SUBWORD, "tiny", "student")
    pkg = write_sherpa_package(export_onnx(ck, tmp_path / "m.onnx"), None, tmp_path / "pkg")
    assert (pkg / "tokens.txt").read_text().splitlines()[1] == "▁the 1"
    rec = sherpa_onnx.OfflineRecognizer.from_zipformer_ctc(model=str(pkg / "model.onnx"),
                                                          tokens=str(pkg / "tokens.txt"), num_threads=1)
    words = 0
    for u in read_manifest(setup / "c/source/test.jsonl")[:6]:
        theirs, ours = _sherpa_and_edgekd(rec, ck, ck.tokenizer, u.audio)
        assert " ".join(theirs.split()) == ours, u.id
        words += len(ours.split())
    assert words >= 6  # pieces were joined into words, not compared as empty strings


def test_pruning_shrinks_and_still_exports(setup, tmp_path):
    from edgekd.export import PruneOptions, run_prune
    from edgekd.export.onnx import export_onnx, ort_session, run_onnx
    from edgekd.export.prune import count_macs_per_frame, magnitude_sparsity

    m = json.loads(run_prune(PruneOptions(ratio=0.5, multiple=4, finetune_steps=0), setup / "student.safetensors",
                             tmp_path / "p", progress=False).read_text())
    assert m["metrics"]["after"]["params"] < m["metrics"]["before"]["params"]
    assert m["metrics"]["after"]["weight_macs_per_frame"] < 0.8 * m["metrics"]["before"]["weight_macs_per_frame"]
    ck = load_checkpoint(tmp_path / "p/model.safetensors")
    assert ck.dims.ffn_dims and max(ck.dims.ffn_dims) < load_preset("tiny").ffn_dim
    assert ck.extra["pruning"]["ratio"] == 0.5
    p = export_onnx(ck, tmp_path / "pruned.onnx")
    x = torch.randn(1, 120, 80)
    lp, _ = run_onnx(ort_session(p), x.numpy(), np.array([120]))
    assert np.abs(lp - ck.model.log_probs(x, torch.tensor([120]))[0].detach().numpy()).max() < 1e-4
    orig = load_checkpoint(setup / "student.safetensors")
    sparse, achieved = magnitude_sparsity(orig, 0.5)
    assert 0.45 < achieved < 0.6 and count_macs_per_frame(sparse.model) == count_macs_per_frame(orig.model)


def test_pruning_then_kd_finetune(setup, tmp_path):
    from edgekd.export import PruneOptions, run_prune
    from edgekd.pseudolabel import PseudoLabelOptions, run_pseudolabel

    run_pseudolabel(PseudoLabelOptions(workers=1), setup / "c/source/train.jsonl", [str(setup / "student.safetensors")],
                    tmp_path / "pl", progress=False)
    m = json.loads(run_prune(PruneOptions(ratio=0.5, multiple=4, finetune_steps=6, max_frames=3000),
                             setup / "student.safetensors", tmp_path / "p", soft_targets=tmp_path / "pl",
                             progress=False).read_text())
    assert m["metrics"]["finetuned_from"] == "model.safetensors"
    ck = load_checkpoint(tmp_path / "p/model.safetensors")
    assert ck.dims.ffn_dims == tuple(m["metrics"]["ffn_dims"]) and ck.train["step"] == 6


@pytest.fixture(scope="module")
def tflite600(setup, tmp_path_factory):
    """One LiteRT conversion (~12 s) shared by the tests of the windowed .tflite: 600-frame window, 48 of
    context, the export defaults (test_transcribe_verify exports the same weights and window: with the
    run's graph cache, one conversion serves both files)."""
    from edgekd.export.litert import export_tflite

    if not have_litert_torch():
        pytest.skip("litert-torch not installed (pip install 'edgekd[tflite]')")
    ck = load_checkpoint(setup / "student.safetensors")
    return ck, export_tflite(ck, tmp_path_factory.mktemp("tflite") / "m.tflite", window_frames=600, context_frames=48)


def test_litert_window_export_and_chunking(tflite600):
    from edgekd.export.litert import TfliteModel, chunked_log_probs, sidecar

    ck, p = tflite600
    assert json.loads(sidecar(p).read_text())["window_frames"] == "600"
    m = TfliteModel(p)
    f = np.random.default_rng(0).standard_normal((450, 80)).astype(np.float32) * 3 - 4
    x = np.zeros((1, 600, 80), np.float32)
    x[0, :450] = f
    want, wn = ck.model.log_probs(torch.from_numpy(f)[None], torch.tensor([450]))
    assert np.abs(m(x, 450)[0, : int(wn[0])] - want[0].detach().numpy()).max() < 1e-4  # padding is masked
    long = np.tile(f, (5, 1))  # 2250 frames through a 600-frame window
    got = chunked_log_probs(m, long, 600, 48)
    full, fn = ck.model.log_probs(torch.from_numpy(long)[None], torch.tensor([2250]))
    assert got.shape == (int(fn[0]), len(DEFAULT_TOKENS))
    assert (got.argmax(-1) == full[0].detach().numpy().argmax(-1)).mean() > 0.8


def test_litert_converts_once_per_content(tflite600, setup, tmp_path, monkeypatch):
    """`edgekd export` asks for fp32 and int8 LiteRT files of the same weights and window: the second
    comes from the one conversion (here the fixture's), not from litert-torch again."""
    import litert_torch

    from edgekd.errors import EdgekdError
    from edgekd.export.litert import TfliteModel, export_tflite

    ck, p = tflite600

    def no_conversion(*a, **k):
        raise AssertionError("converted again")

    monkeypatch.setattr(litert_torch, "convert", no_conversion)
    q = export_tflite(ck, tmp_path / "q.tflite", window_frames=600, context_frames=48, mode="int8-dynamic")
    x = np.zeros((1, 600, 80), np.float32)
    assert TfliteModel(q)(x, 600).shape == TfliteModel(p)(x, 600).shape
    other = load_checkpoint(setup / "student.safetensors")
    with torch.no_grad():
        other.model.head.bias.add_(1.0)  # other weights: a real conversion (which now fails loudly)
    with pytest.raises(EdgekdError, match="LiteRT conversion failed: converted again"):
        export_tflite(other, tmp_path / "r.tflite", window_frames=600, context_frames=48)


def test_tflite_sidecar_carries_the_whole_io_contract(tflite600):
    """Artifacts describe themselves (issue 21, item 5): the sidecar holds the whole I/O contract."""
    from edgekd.export.litert import TfliteModel, sidecar
    from edgekd.export.runtime import open_model

    ck, p = tflite600
    meta = json.loads(sidecar(p).read_text())
    c = meta["contract"]
    assert FeaturizerConfig.from_dict(json.loads(meta["featurizer"])) == ck.featurizer
    assert json.loads(meta["tokens"]) == list(DEFAULT_TOKENS) and json.loads(meta["dims"]) == ck.dims.to_dict()
    assert c["window_frames"] == 600 and c["context_frames"] == 48 and meta["context_frames"] == "48"
    assert c["stride_frames"] == 504 and c["frame_rate"] == ck.frame_rate
    m = TfliteModel(p)
    assert list(m.x_in["shape"]) == c["input"]["shape"] and list(m.out["shape"]) == c["output"]["shape"]
    # the written output-length rule, applied as a reader would, is the model's own
    for n in (1, 7, 8, 9, 60, 119, 599, 600):
        k = n
        for _ in range(c["output_length"]["halvings"]):
            k = max((k - 1) // 2, 0)
        assert k == int(ck.model.output_lengths(torch.tensor([n]))[0]), n
    # a runner that knows only the file decodes with the context it was exported (and verified) with
    assert open_model(p).context == 48


def test_litert_fp16_and_static_int8_from_the_fp32_window_model(tflite600, setup, tmp_path):
    """fp16 (weights stored half) and int8-static (int8 weights and activations on the weight ops,
    ranges from calibration windows of real audio) decode like the fp32 .tflite; full integer
    (every op int8) is the known-broken recipe, and its row in the known-broken list says so."""
    from edgekd.errors import EdgekdError
    from edgekd.export.known_broken import check
    from edgekd.export.litert import TfliteModel, quantize_tflite, sidecar
    from edgekd.export.quantize import calibration_features

    ck, p = tflite600
    feats = calibration_features(setup / "c/target/dev.jsonl", ck.featurizer, 6)
    with pytest.raises(EdgekdError, match="int8-static needs calibration"):
        quantize_tflite(p, tmp_path / "s.tflite", "int8-static")
    half = quantize_tflite(p, tmp_path / "h.tflite", "fp16")
    static = quantize_tflite(p, tmp_path / "s.tflite", "int8-static", calibration=feats)
    full = quantize_tflite(p, tmp_path / "f.tflite", "int8-static", calibration=feats, full_integer=True)
    with pytest.raises(EdgekdError, match="takes an fp32 window model"):
        quantize_tflite(half, tmp_path / "x.tflite", "int8-dynamic")
    assert json.loads(sidecar(static).read_text())["quantization"] == "int8-static"
    ref, h, q, f = (TfliteModel(x) for x in (p, half, static, full))
    assert sum(d["dtype"] == np.float16 for d in h.interp.get_tensor_details()) >= 10  # the weights, stored half
    ops = [d["op_name"] for d in q.interp._get_ops_details()]
    assert "LOGISTIC" in ops and f.x_in["dtype"] == np.int8 and q.x_in["dtype"] == np.float32  # only some ops int8
    assert any(d["dtype"] == np.int8 for d in q.interp.get_tensor_details())
    k = min(len(feats[0]), 600)
    x = np.zeros((1, 600, 80), np.float32)
    x[0, :k] = feats[0][:k]
    n = int(ck.model.output_lengths(torch.tensor([k]))[0])
    want, gh, gq = ref(x, k)[0, :n], h(x, k)[0, :n], q(x, k)[0, :n]
    assert 0 < np.abs(gh - want).max() < 0.05  # really fp16 weights, and close
    gf = f(x, k)[0, :n]  # int8 in, int8 out: scaled by the runner as the tensors' quantization says
    # as on a real student (README: 97.5 % vs 64 % of frames), the weight ops alone keep the best
    # token; every op in int8 loses it
    assert (gq.argmax(-1) == want.argmax(-1)).mean() >= 0.9 and (gf.argmax(-1) == want.argmax(-1)).mean() < 0.7
    assert np.abs(gq - want).mean() < 0.3 and np.abs(gf - want).mean() < 3.0  # 1.7 read right, 4.9 mis-scaled
    assert check("export", "tflite", precision="int8-static", op_types="all", time_axis="fixed")
    # `edgekd quantize` takes the .tflite too: calibration features from its sidecar's featurizer
    import shutil

    from edgekd.cli.compress import quantize as cli_quantize

    cli_quantize(model=p, out=tmp_path / "c.tflite", mode="int8-static", calib=setup / "c/target/dev.jsonl",
                 calib_utts=1, method="minmax", fallback=True)
    assert json.loads(sidecar(tmp_path / "c.tflite").read_text())["quantization"] == "int8-static"
    shutil.copy(p, tmp_path / "bare.tflite")  # no sidecar beside it
    with pytest.raises(EdgekdError, match="bare.tflite.json .* is missing"):
        cli_quantize(model=tmp_path / "bare.tflite", out=tmp_path / "d.tflite", mode="fp16", calib=None,
                     calib_utts=3, method="minmax", fallback=True)


def test_run_export_writes_a_verified_table(setup, tmp_path):
    from edgekd.export import ExportOptions, run_export
    from edgekd.export.verify import COLUMNS

    # no LiteRT here: its conversion costs ~12 s, and run_export's LiteRT row (runtime, long audio,
    # gates) is test_transcribe_verify's, on the same tiny model
    opts = ExportOptions(tflite=(), calibration_utts=4, verify_utts=6, latency_repeats=2)
    m = json.loads(run_export(opts, setup / "student.safetensors", tmp_path, test_manifest=setup / "c/source/test.jsonl",
                              calib_manifest=setup / "c/source/train.jsonl", progress=False).read_text())
    rows = json.loads((tmp_path / "verify.table.json").read_text())["rows"]
    names = [r["artifact"] for r in rows]
    assert names[:4] == ["pytorch", "onnx-fp32", "onnx-int8-dynamic", "onnx-fp16"]  # int8-static: opt-in
    assert "sherpa-onnx" in names and (tmp_path / "sherpa-onnx/model.int8.onnx").exists()
    for r in rows:
        assert set(COLUMNS) <= set(r)
        assert r["wer"] is not None and (r["format"] == "sherpa-onnx" or r["latency_ms_10s_1thread"] > 0)
    fp32 = rows[1]
    assert fp32["ok"] and fp32["max_diff"] < 1e-3 and fp32["delta_wer"] == 0
    sherpa = next(r for r in rows if r["format"] == "sherpa-onnx")
    assert sherpa["delta_wer"] == 0  # same features, same graph: same transcripts
    assert m["metrics"]["failed"] == [r["artifact"] for r in rows if not r["ok"]]


def test_every_known_broken_combination_has_a_reason_and_is_consulted():
    from pathlib import Path

    from edgekd.export.known_broken import STAGES, check

    assert KNOWN_BROKEN
    root = Path(__file__).resolve().parent.parent / "edgekd"
    callers = {"export": root / "export" / "__init__.py", "prune": root / "export" / "__init__.py",
               "profile": root / "profile" / "stage.py"}
    for e in KNOWN_BROKEN:
        assert {"stage", "format", "when", "feature", "effect", "reason"} <= set(e) and len(e["reason"]) > 20, e
        assert e["stage"] in STAGES and e["when"], e
        assert e in check(e["stage"], e["format"], **e["when"])  # the combination finds its entry
        src = callers[e["stage"]].read_text()
        assert f'check("{e["stage"]}"' in src, f"stage {e['stage']} never consults the known-broken list"
    assert check("export", "onnx", precision="int8-dynamic", op_types="MatMul") == []  # the default is fine


def test_cli_errors_are_one_line(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "edgekd.cli", "quantize", "--model", str(tmp_path / "nope.onnx"),
                        "--out", str(tmp_path / "q.onnx")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "does not exist" in r.stderr
    r = subprocess.run([sys.executable, "-m", "edgekd.cli", "prune", "--model", str(tmp_path / "nope.safetensors"),
                        "--out", str(tmp_path / "p"), "--ratio", "1.5"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "ratio" in r.stderr


def test_qat_fake_quant_mirrors_onnxruntime_int8_dynamic(setup, tmp_path):
    """The rounding QAT trains against is ORT's: the fake-quant PyTorch model lands far closer to
    the int8-dynamic ONNX model's outputs than the fp32 model does."""
    import copy

    from edgekd.export.onnx import export_onnx, ort_session, run_onnx
    from edgekd.export.qat import fake_quantize, strip_fake_quant
    from edgekd.export.quantize import quantize

    ck = load_checkpoint(setup / "student.safetensors")
    p = export_onnx(ck, tmp_path / "m.onnx")  # the graph memo: the weights test_onnx_export made
    q = quantize(p, tmp_path / "q.onnx", "int8-dynamic")  # no calibration: every weight MatMul int8
    x = torch.randn(1, 300, 80, generator=torch.Generator().manual_seed(1)) * 3 - 4
    n = torch.tensor([300])
    ort_lp = run_onnx(ort_session(q), x.numpy(), n.numpy())[0][0]
    fake = copy.deepcopy(ck.model)
    assert fake_quantize(fake) == sum(isinstance(m, torch.nn.Linear) for m in ck.model.modules())
    with torch.no_grad():
        fp = ck.model.log_probs(x, n)[0][0].numpy()
        fq = fake.log_probs(x, n)[0][0].numpy()
        strip_fake_quant(fake)
        assert np.array_equal(fake.log_probs(x, n)[0][0].numpy(), fp)  # stripped: the fp32 model again
    err_fq, err_fp = np.abs(fq - ort_lp).mean(), np.abs(fp - ort_lp).mean()
    assert err_fq < 0.2 * err_fp, (err_fq, err_fp)


def test_qat_moves_the_model_toward_its_int8_self_and_records_the_run(setup, tmp_path):
    from edgekd.export.qat import QATOptions, run_qat

    out = run_qat(QATOptions(steps=20, lr=3e-6, max_frames=2000, progress=False), setup / "student.safetensors",
                  setup / "c/source/train.jsonl", tmp_path / "qat.safetensors")
    ck, before = load_checkpoint(out), load_checkpoint(setup / "student.safetensors")
    info = ck.train["qat"]
    assert info["steps"] == 20 and info["linear_layers"] > 0 and ck.dims == before.dims
    # on the same probe audio, the fake-quant model's outputs moved toward the fp32 model's
    assert info["probe_kl_after"] < 0.9 * info["probe_kl_before"], info
    assert any(not torch.equal(a, b) for a, b in zip(ck.model.state_dict().values(), before.model.state_dict().values()))
    with pytest.raises(ValueError, match="steps >= 1"):
        QATOptions(steps=0)
