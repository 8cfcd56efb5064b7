"""Streaming ONNX export in the NeMo cache-aware CTC contract that sherpa-onnx runs online.

What `sherpa_onnx.OnlineRecognizer.from_nemo_ctc` expects (read in sherpa-onnx's
csrc/online-nemo-ctc-model.cc and online-recognizer-ctc-impl.h, and checked by
tests/test_streaming.py against the installed sherpa-onnx):
- inputs, in this order (sherpa passes them by position, with the names the session reports):
  `audio_signal` (B, 80, window_size) float32 kaldi fbank, `length` (B,) int64 (always
  window_size), `cache_last_channel`, `cache_last_time` (float32, batch first: sherpa stacks
  streams on axis 0), `cache_last_channel_len` (B,) int64;
- outputs, in this order: log-probs (B, C, V), lengths (ignored), then the three next caches;
- metadata ints `window_size` (frames per call), `chunk_shift` (frames the stream advances),
  `subsampling_factor`, `vocab_size` (NeMo counts it *without* the blank: sherpa adds 1), and
  `cache_last_channel_dim1..3`, `cache_last_time_dim1..3` (sherpa starts every stream from zeros
  of these shapes, and from cache_last_channel_len = 0);
- the blank is whatever id `tokens.txt` gives `<blk>` (sherpa looks the symbol up), so edgekd's
  blank 0 works as is; NeMo's "blank last" is a property of NeMo's vocabularies, not of the contract;
- features: NOT FeatureExtractorConfig's kaldi defaults: for this model type sherpa-onnx 2.0.1
  computes NeMo-style fbank (`edgekd.audio.NEMO_FEATURES`: hann, no DC removal, librosa mel
  0-8000 Hz, no dither, no normalisation; measured with a probe model echoing its input), so a
  streaming model is trained on NEMO_FEATURES and the export refuses any other featurizer.
The chunk size is fixed per file (sherpa feeds exactly window_size frames); export one file per
chunk size. The edgekd facts (featurizer, tokens, dims, chunk) ride along as in `export/onnx.py`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgekd.audio import NEMO_FEATURES
# the contract's names and the tail padding a client sends, defined once beside the on-device runner
from edgekd.bench.stream import CONTRACT, INPUTS, OUTPUTS, TAIL_PADDING_S
from edgekd.errors import EdgekdError
from edgekd.export.onnx import OPSET, exported_graph, metadata_for, save_exported
from edgekd.models import Checkpoint
from edgekd.models.streaming import (
    StreamingStep,
    cache_shapes,
    shift_frames,
    window_frames,
)
from edgekd.tokens import Tokenizer


class NemoStreamingGraph(torch.nn.Module):
    """The NeMo contract around `StreamingStep`: features channel-first, a length in, lengths out."""

    def __init__(self, step: StreamingStep):
        super().__init__()
        self.step = step

    def forward(self, audio_signal, length, cache_last_channel, cache_last_time, cache_last_channel_len):
        lp, ck, cc, cl = self.step(audio_signal.transpose(1, 2), cache_last_channel, cache_last_time,
                                   cache_last_channel_len)
        # `length` must reach an output or the exporter drops the input and sherpa's positional
        # inputs no longer line up; every window yields `chunk` frames, which this equals
        return lp, self.step.model.output_lengths(length), ck, cc, cl


def streaming_metadata(ck: Checkpoint, chunk: int) -> dict[str, str]:
    k, c = cache_shapes(ck.dims)
    win, shift = window_frames(ck.dims, chunk), shift_frames(ck.dims, chunk)
    meta = metadata_for(ck, contract=CONTRACT)
    meta.update({
        "model_type": "EncDecCTCModelBPE",  # NeMo's CTC class name (sherpa's online path ignores it)
        "vocab_size": str(len(ck.tokens) - 1),  # NeMo convention: without the blank (sherpa adds 1)
        "window_size": str(win), "chunk_shift": str(shift),
        "chunk_frames": str(chunk), "chunk_ms": f"{1000 * shift / ck.featurizer.frame_rate:g}",
        "left_context": str(ck.dims.left_context),
        **{f"cache_last_channel_dim{i + 1}": str(n) for i, n in enumerate(k)},
        **{f"cache_last_time_dim{i + 1}": str(n) for i, n in enumerate(c)},
        "input": "features-streaming",
        "comment": f"edgekd streaming conformer CTC, {CONTRACT}; greedy CTC, blank id 0 (<blk> in tokens.txt)",
    })
    return meta


def example_inputs(dims, chunk: int) -> tuple[torch.Tensor, ...]:
    """The exporters' example inputs, in INPUTS order: two streams at different points (one fresh,
    one with a full cache) keep batch and masking symbolic. Drawn from their own generator, so an
    export never moves the caller's RNG."""
    k, c = cache_shapes(dims)
    win = window_frames(dims, chunk)
    g = torch.Generator().manual_seed(0)
    return (torch.randn(2, dims.n_mels, win, generator=g), torch.full((2,), win, dtype=torch.int64),
            torch.randn(2, *k, generator=g), torch.randn(2, *c, generator=g),
            torch.tensor([0, dims.left_context], dtype=torch.int64))


def export_streaming_onnx(ck: Checkpoint, path: str | Path, chunk: int, *, write_tokens: bool = True) -> Path:
    """Export `ck` (a streaming model) for chunks of `chunk` output frames; dynamic batch."""

    if ck.featurizer != NEMO_FEATURES:
        raise EdgekdError(f"{ck.preset or 'model'}: sherpa-onnx computes NeMo-style fbank for this contract "
                          f"(edgekd.audio.NEMO_FEATURES); this model was trained on {ck.featurizer.to_dict()}: "
                          "train it with `edgekd distil --streaming`")
    if not ck.dims.causal:
        raise EdgekdError(f"{ck.preset or 'model'} is an offline model (no causal conv / chunked attention): "
                          "train a streaming one with `edgekd distil --streaming`")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = NemoStreamingGraph(StreamingStep(ck.model.eval(), chunk)).eval()
    args = example_inputs(ck.dims, chunk)
    B = torch.export.Dim("B", min=1, max=64)
    shapes = tuple({0: B} for _ in INPUTS)

    def export(tmp: Path) -> None:
        prog = torch.onnx.export(graph, args, dynamo=True, input_names=list(INPUTS), output_names=list(OUTPUTS),
                                 dynamic_shapes=shapes, opset_version=OPSET, verbose=False)
        prog.save(str(tmp), external_data=False)

    m = exported_graph(graph, [ck.dims.to_dict(), chunk], export, path,
                       f"streaming ONNX export failed for {ck.preset or 'model'}")
    got = tuple(i.name for i in m.graph.input)
    if got != INPUTS:  # sherpa binds inputs by position: a dropped or reordered input is a broken file
        raise EdgekdError(f"streaming export produced inputs {got}, the NeMo contract needs {INPUTS}")
    return save_exported(m, path, streaming_metadata(ck, chunk), ck.tokens if write_tokens else None)


def write_streaming_package(ck: Checkpoint, out: str | Path, chunk: int, *, int8: bool = True) -> Path:
    """A folder `OnlineRecognizer.from_nemo_ctc(model=..., tokens=...)` loads: model.onnx,
    model.int8.onnx (MatMul-only dynamic int8: ConvInteger was slower, DESIGN.md), tokens.txt, README."""
    out = Path(out)
    model = export_streaming_onnx(ck, out / "model.onnx", chunk)
    if int8:
        from edgekd.export.quantize import quantize

        quantize(model, out / "model.int8.onnx", "int8-dynamic")
    meta = streaming_metadata(ck, chunk)
    (out / "README.md").write_text(
        f"# sherpa-onnx streaming package (edgekd)\n\nCTC conformer in NeMo's cache-aware streaming contract: "
        f"chunks of {meta['chunk_ms']} ms ({chunk} output frames; window {meta['window_size']} fbank frames, "
        f"shift {meta['chunk_shift']}), {ck.dims.left_context} frames of left context.\n\n```python\n"
        "import numpy as np, sherpa_onnx\n"
        "rec = sherpa_onnx.OnlineRecognizer.from_nemo_ctc(model='model.onnx', tokens='tokens.txt', num_threads=1)\n"
        "s = rec.create_stream()\n"
        f"s.accept_waveform({ck.featurizer.sample_rate}, samples)  # float32 in [-1, 1], any piece size\n"
        "while rec.is_ready(s):\n    rec.decode_stream(s)\nprint(rec.get_result(s))  # partial text\n"
        f"s.accept_waveform({ck.featurizer.sample_rate}, np.zeros(int({TAIL_PADDING_S} * "
        f"{ck.featurizer.sample_rate}), np.float32))  # tail padding\n"
        "s.input_finished()\nwhile rec.is_ready(s):\n    rec.decode_stream(s)\nprint(rec.get_result(s))\n```\n")
    return out


class OnnxStream:
    """The exported streaming graph driven by onnxruntime, chunk by chunk (the test's middle link)."""

    def __init__(self, path: str | Path, threads: int = 1):
        from edgekd.export.onnx import ort_session, read_metadata

        self.meta = read_metadata(path)
        if self.meta.get("contract") != CONTRACT:
            raise EdgekdError(f"{path}: not an edgekd streaming export (metadata contract is {self.meta.get('contract')!r})")
        self.sess = ort_session(path, threads)
        self.window, self.shift = int(self.meta["window_size"]), int(self.meta["chunk_shift"])
        self.shapes = [(1, *(int(self.meta[f"{n}_dim{i}"]) for i in (1, 2, 3)))
                       for n in ("cache_last_channel", "cache_last_time")]

    def log_probs(self, feats: np.ndarray) -> np.ndarray:
        """(T, 80) -> (n*C, V), windows taken as sherpa takes them (see `stream_log_probs`)."""
        ck = np.zeros(self.shapes[0], np.float32)
        cc = np.zeros(self.shapes[1], np.float32)
        cl = np.zeros(1, np.int64)
        out, done = [], 0
        while done + self.window < len(feats):
            x = feats[None, done:done + self.window].transpose(0, 2, 1).astype(np.float32)
            lp, _, ck, cc, cl = self.sess.run(list(OUTPUTS), {"audio_signal": x, "length": np.array([self.window], np.int64),
                                                              "cache_last_channel": ck, "cache_last_time": cc,
                                                              "cache_last_channel_len": cl})
            out.append(lp[0])
            done += self.shift
        return np.concatenate(out) if out else np.zeros((0, int(self.meta["vocab_size"]) + 1), np.float32)



def with_tail(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """`wave` + TAIL_PADDING_S of silence: what a client sends before `input_finished()`."""
    return np.concatenate([wave, np.zeros(int(TAIL_PADDING_S * sample_rate), np.float32)])


def stream_text(ck: Checkpoint, wave: np.ndarray, chunk: int) -> str:
    """edgekd's own streaming greedy transcript: the PyTorch chunk loop over the tail-padded audio."""
    from edgekd.audio import featurize
    from edgekd.models.streaming import stream_log_probs

    f, n = featurize([with_tail(wave, ck.featurizer.sample_rate)], ck.featurizer)
    lp = stream_log_probs(ck.model, f[0, : int(n[0])], chunk)
    return Tokenizer(ck.tokens).ctc_collapse(lp.argmax(-1).tolist())
