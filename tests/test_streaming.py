"""Streaming: chunk-by-chunk with caches == the masked full pass; ONNX == PyTorch; sherpa-onnx's
online recognizer gives edgekd's own streaming transcript. Tiny models, real runtimes."""

import dataclasses

import numpy as np
import pytest
import torch

from edgekd.audio import NEMO_FEATURES, featurize
from edgekd.models import Checkpoint, load_preset
from edgekd.models.conformer import ConformerCTC, ConformerDims
from edgekd.models.streaming import shift_frames, stream_log_probs, window_frames
from edgekd.tokens import DEFAULT_TOKENS, Tokenizer


def _model(**dims) -> ConformerCTC:
    torch.manual_seed(0)
    d = dataclasses.replace(load_preset("tiny-stream"), **dims)
    m = ConformerCTC(d).eval()
    with torch.no_grad():  # non-trivial input statistics, so the normalisation is exercised
        m.set_input_stats(torch.randn(d.n_mels), torch.rand(d.n_mels) + 0.5)
    return m


def _frames(dims: ConformerDims, chunk: int, n: int) -> int:
    """Feature frames for exactly n chunks, plus one so the last window is taken (`<`, as sherpa)."""
    return shift_frames(dims, chunk) * (n - 1) + window_frames(dims, chunk) + 1


@pytest.mark.parametrize("chunk,dims", [(1, {}), (4, {}), (16, {}),
                                        # pruned widths (conv layers of different widths share one padded cache)
                                        (3, {"attn_dims": (16, 16), "conv_dims": (16, 32)})])
def test_chunks_with_caches_equal_the_masked_full_pass(chunk, dims):
    m = _model(**dims)
    n = 7  # 7 chunks: the 8-frame attention cache fills and rolls over for every chunk size here
    t = _frames(m.dims, chunk, n)
    feats = torch.randn(t, m.dims.n_mels) * 3
    streamed = stream_log_probs(m, feats, chunk)
    with torch.no_grad():
        full, lens = m.log_probs(feats[None, : t - 1], torch.tensor([t - 1]), chunk=chunk)
    assert streamed.shape == (n * chunk, m.dims.vocab_size) and int(lens[0]) == n * chunk
    assert (streamed - full[0]).abs().max() <= 1e-4
    # and the chunk mask matters: full context gives other outputs
    with torch.no_grad():
        offline, _ = m.log_probs(feats[None, : t - 1], torch.tensor([t - 1]))
    assert (offline[0] - full[0]).abs().max() > 1e-2


def test_a_chunk_never_sees_the_future():
    m, chunk = _model(), 4
    t = _frames(m.dims, chunk, 6)
    feats = torch.randn(t, m.dims.n_mels)
    later = feats.clone()
    later[window_frames(m.dims, chunk) + shift_frames(m.dims, chunk):] += 5.0  # change audio after chunk 2's window
    a, b = stream_log_probs(m, feats, chunk), stream_log_probs(m, later, chunk)
    assert torch.equal(a[: 2 * chunk], b[: 2 * chunk])
    assert (a[2 * chunk:] - b[2 * chunk:]).abs().max() > 1e-3


def test_streaming_dims_are_checked():
    with pytest.raises(ValueError, match="left_context"):
        ConformerDims(causal=True)
    with pytest.raises(ValueError, match="left_context"):
        ConformerDims(left_context=8)
    with pytest.raises(ValueError, match="streaming model"):
        ConformerCTC(load_preset("tiny"))(torch.randn(1, 40, 80), torch.tensor([40]), chunk=4)
    # an offline model's dims stay what they were before streaming existed
    assert "causal" not in load_preset("tiny").to_dict()
    assert ConformerDims.from_dict(load_preset("tiny-stream").to_dict()) == load_preset("tiny-stream")


def test_nemo_features_are_kaldi_native_fbanks_librosa_mode():
    """sherpa-onnx computes these with kaldi-native-fbank for NeMo CTC models online."""
    knf = pytest.importorskip("kaldi_native_fbank")
    rng = np.random.default_rng(1)
    t = np.arange(24000) / 16000
    w = (0.3 * np.sin(2 * np.pi * 440 * t) + rng.standard_normal(len(t)) * 0.05).astype(np.float32)
    w[8000:12000] = 0  # digital silence: the log floor must match too
    o = knf.FbankOptions()
    o.frame_opts.dither, o.frame_opts.snip_edges, o.frame_opts.window_type = 0, False, "hann"
    o.frame_opts.remove_dc_offset = False
    o.mel_opts.num_bins, o.mel_opts.low_freq, o.mel_opts.high_freq, o.mel_opts.is_librosa = 80, 0, 8000, True
    fb = knf.OnlineFbank(o)
    fb.accept_waveform(16000, w.tolist())
    fb.input_finished()
    ref = np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)])
    f, n = featurize([w], NEMO_FEATURES)
    assert int(n[0]) == len(ref)
    assert np.abs(f[0, : int(n[0])].numpy() - ref).max() < 1e-3


def _waves() -> list[np.ndarray]:
    """Audio with structure (tones, noise bursts, silence) so a random model emits varied tokens."""
    rng = np.random.default_rng(3)
    out = []
    for dur in (1.3, 2.9):
        n = int(dur * 16000)
        t = np.arange(n) / 16000
        f0 = 200 + 600 * (1 + np.sin(2 * np.pi * 0.7 * t))
        w = 0.2 * np.sin(2 * np.pi * np.cumsum(f0) / 16000) * (np.sin(2 * np.pi * 2.3 * t) > -0.3)
        w += rng.standard_normal(n) * 0.02
        out.append(w.astype(np.float32))
    return out


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    from edgekd.export.streaming import write_streaming_package

    m = _model()
    ck = Checkpoint(model=m, featurizer=NEMO_FEATURES, tokens=DEFAULT_TOKENS, preset="tiny-stream", role="test")
    feats = torch.cat([featurize([w], NEMO_FEATURES)[0][0] for w in _waves()])
    with torch.no_grad():  # the audio's own statistics and a sharper head: a random model then emits
        m.set_input_stats(feats.mean(0), feats.std(0))  # varied tokens with clear argmax margins
        m.head.weight.mul_(8)
    return ck, write_streaming_package(ck, tmp_path_factory.mktemp("stream") / "pkg", chunk=4)


def test_onnx_streaming_equals_pytorch_chunk_by_chunk(package):
    from edgekd.export.streaming import TAIL_PADDING_S, OnnxStream

    ck, pkg = package
    stream = OnnxStream(pkg / "model.onnx")
    meta = stream.meta  # sherpa reads these; NeMo counts the vocabulary without the blank
    assert int(meta["vocab_size"]) == len(ck.tokens) - 1 and (pkg / "tokens.txt").read_text().startswith("<blk> 0\n")
    assert (int(meta["window_size"]), int(meta["chunk_shift"])) == (window_frames(ck.dims, 4), shift_frames(ck.dims, 4))
    for w in _waves():
        w = np.concatenate([w, np.zeros(int(TAIL_PADDING_S * 16000), np.float32)])
        f, n = featurize([w], ck.featurizer)
        feats = f[0, : int(n[0])]
        ref = stream_log_probs(ck.model, feats, 4).numpy()
        got = stream.log_probs(feats.numpy())
        assert got.shape == ref.shape and len(ref) >= 8
        assert np.abs(got - ref).max() <= 1e-4


def test_export_refuses_an_offline_model_or_other_features(tmp_path, tiny_model):
    from edgekd.errors import EdgekdError
    from edgekd.export.streaming import export_streaming_onnx

    with pytest.raises(EdgekdError, match="NEMO_FEATURES"):
        export_streaming_onnx(tiny_model, tmp_path / "m.onnx", 4)
    with pytest.raises(EdgekdError, match="offline model"):
        export_streaming_onnx(dataclasses.replace(tiny_model, featurizer=NEMO_FEATURES), tmp_path / "m.onnx", 4)


def test_sherpa_onnx_online_gives_edgekds_streaming_transcript(package):
    import sherpa_onnx  # a declared dependency

    from edgekd.export.runtime import normalize
    from edgekd.export.streaming import TAIL_PADDING_S

    ck, pkg = package
    tok = Tokenizer(ck.tokens)
    for model in ("model.onnx", "model.int8.onnx"):
        rec = sherpa_onnx.OnlineRecognizer.from_nemo_ctc(model=str(pkg / model), tokens=str(pkg / "tokens.txt"),
                                                         num_threads=1)
        for w in _waves():
            w = np.concatenate([w, np.zeros(int(TAIL_PADDING_S * 16000), np.float32)])
            s = rec.create_stream()
            for i in range(0, len(w), 1000):  # pieces that do not line up with chunks, as a microphone's
                s.accept_waveform(16000, w[i:i + 1000])
                while rec.is_ready(s):
                    rec.decode_stream(s)
            s.input_finished()
            while rec.is_ready(s):
                rec.decode_stream(s)
            got = normalize(rec.get_result(s))
            if model == "model.onnx":  # fp32: identical text, and a text with something in it
                f, n = featurize([w], ck.featurizer)
                ours = tok.ctc_collapse(stream_log_probs(ck.model, f[0, : int(n[0])], 4).argmax(-1).tolist())
                assert got == ours and len(set(ours)) >= 3, (got, ours)
            else:  # int8 loads and decodes in sherpa's runtime (its text is judged by WER elsewhere)
                assert isinstance(got, str)


def test_transcribe_runs_a_streaming_export_in_sherpa_onnx_online(package):
    """`edgekd transcribe` (open_model) on a streaming package or file: sherpa-onnx's online
    recognizer, giving edgekd's own streaming transcript; onnxruntime's offline path is refused."""
    from edgekd.errors import EdgekdError
    from edgekd.export.runtime import SherpaOnline, normalize, open_model
    from edgekd.export.streaming import stream_text

    ck, pkg = package
    for spec in (pkg, pkg / "model.onnx"):
        rt = open_model(spec)
        assert isinstance(rt, SherpaOnline)
        for w in _waves()[:2]:
            assert rt.decode(w).text == normalize(stream_text(ck, w, 4))
    with pytest.raises(EdgekdError, match="sherpa-onnx-online, not onnxruntime"):
        open_model(pkg / "model.onnx", runtime="onnxruntime")


@pytest.mark.slow  # litert-torch converts in 13 s on a quiet box, ~3 min on a busy one
def test_litert_streaming_equals_pytorch_chunk_by_chunk(package, tmp_path):
    from edgekd.export.litert import have_litert_torch

    if not have_litert_torch():
        pytest.skip("litert-torch not installed (pip install 'edgekd[tflite]')")
    from edgekd.export.litert_streaming import TfliteStream, export_streaming_tflite
    from edgekd.export.streaming import with_tail

    ck, _ = package
    path = export_streaming_tflite(ck, tmp_path / "m.tflite", 4)
    stream = TfliteStream(path)
    f, n = featurize([with_tail(_waves()[1], 16000)], ck.featurizer)
    feats = f[0, : int(n[0])]
    ref = stream_log_probs(ck.model, feats, 4).numpy()
    got = stream.log_probs(feats.numpy())
    assert got.shape == ref.shape and np.abs(got - ref).max() <= 1e-4
    # the torch-free runner's loop (what a device runs) on the same file: caches carried, latency suite
    from edgekd.bench.runner import LiteRtModel
    from edgekd.bench.stream import CacheStream
    from edgekd.profile.hostpin import run_local

    assert np.abs(CacheStream(LiteRtModel(path, 1)).log_probs(feats.numpy()) - got).max() <= 1e-5
    m = {r["metric"]: r for r in run_local(path, seconds=1.0, iterations=2, warmup=0, min_iterations=1, threads=1)}
    assert m["rtf"]["runtime"]["name"] == "litert" and m["chunk_latency_p95"]["mode"] == "streaming"
    assert m["final_latency_p50"]["value"] > 0
