"""ONNX export of a conformer checkpoint: dynamic time axis, self-describing metadata.

The graph follows sherpa-onnx's `zipformer2_ctc` contract, which is also what the on-device
runner (`edgekd.bench`) expects: inputs `x` (N, T, 80) float32 log-mel + `x_lens` (N,) int64,
outputs `log_probs` (N, T', V) + `log_probs_len` (N,). With `waveform=True` the featurizer is
inside the graph instead: `audio` (N, S) float32 in [-1, 1] + `audio_lens` (N,) int64.

Metadata (ONNX `metadata_props`, strings) makes the file usable with no other knowledge:
`model_type`, `vocab_size`, `subsampling_factor`, `frame_rate`, `featurizer` (JSON of
FeaturizerConfig), `tokens` (JSON list), `dims` (JSON), `preset`, `quantization`, `input`,
`edgekd_version`. `tokens.txt` is written beside it for sherpa-onnx.

`export_nemo_ctc` writes the same model in NeMo's `EncDecCTCModelBPE` layout instead (what NeMo's
own export gives sherpa-onnx): `audio_signal` (N, 80, T) + `length`, one output `logprobs`
(N, T // subsampling, V) with the blank last, metadata `vocab_size`, `subsampling_factor`,
`normalize_type` only: a stand-in for a NeMo model, to test the `onnx:` teacher's NeMo contract.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekd import __version__
from edgekd.audio import Featurizer
from edgekd.errors import EdgekdError
from edgekd.models import Checkpoint
from edgekd.tokens import Tokenizer, spm_to_text, tokens_txt

OPSET = 18
MAX_FRAMES = 100_000  # upper bound of the dynamic time axis: ~16 min of audio


class LogProbsGraph(torch.nn.Module):
    """(x, x_lens) -> (log_probs, log_probs_len): the exported contract."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor):
        return self.model.log_probs(x, x_lens)


class WaveformGraph(torch.nn.Module):
    """(audio, audio_lens) -> (log_probs, log_probs_len): features computed in the graph."""

    def __init__(self, model: torch.nn.Module, featurizer: Featurizer):
        super().__init__()
        self.model, self.featurizer = model, featurizer

    def forward(self, audio: torch.Tensor, audio_lens: torch.Tensor):
        x, x_lens = self.featurizer(audio, audio_lens)
        return self.model.log_probs(x, x_lens)


class NemoGraph(torch.nn.Module):
    """(audio_signal (N, C, T), length) -> logprobs (N, T // s, V), blank last: NeMo's layout.

    sherpa-onnx takes `length // subsampling_factor` as the output length without asking the
    graph, so the graph pads to that many frames, and every frame past a clip's own output length
    is made a certain blank (garbage from padding would otherwise be decoded)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model, self.s = model, model.dims.subsampling
        blank = torch.full((model.dims.vocab_size,), -1e4)
        blank[0] = 0.0
        self.register_buffer("blank", blank)

    def forward(self, audio_signal: torch.Tensor, length: torch.Tensor):
        lp, lens = self.model.log_probs(audio_signal.transpose(1, 2), length)
        n = audio_signal.shape[2] // self.s
        lp = torch.nn.functional.pad(lp, (0, 0, 0, n - lp.shape[1]))
        past = (torch.arange(n, device=lp.device)[None, :] >= lens[:, None])[..., None]
        lp = torch.where(past, self.blank, lp)
        return torch.cat([lp[..., 1:], lp[..., :1]], dim=-1)


def export_nemo_ctc(ck: Checkpoint, path: str | Path, normalize_type: str = "") -> Path:
    """`ck` in NeMo's EncDecCTCModelBPE ONNX layout + a blank-last `tokens.txt` beside it.

    The checkpoint must be trained on NEMO_FEATURES (what sherpa-onnx computes for this model type).
    `normalize_type` is written as is: "" (edgekd's models normalise inside the graph) or
    "per_feature" (NeMo's; the features are then normalised per utterance before the graph)."""
    from edgekd.audio import NEMO_FEATURES

    if ck.featurizer != NEMO_FEATURES:
        raise EdgekdError("the NeMo layout needs a model trained on NEMO_FEATURES (sherpa-onnx computes those for it)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = NemoGraph(ck.model.eval()).eval()
    g = torch.Generator().manual_seed(0)
    args = (torch.randn(2, ck.dims.n_mels, 200, generator=g), torch.tensor([200, 150], dtype=torch.int64))
    T = torch.export.Dim("T", min=ck.dims.min_frames, max=MAX_FRAMES)
    N = torch.export.Dim("N", min=1, max=256)

    def export(tmp: Path) -> None:
        prog = torch.onnx.export(graph, args, dynamo=True, input_names=["audio_signal", "length"],
                                 output_names=["logprobs"], dynamic_shapes=({0: N, 2: T}, {0: N}),
                                 opset_version=OPSET, verbose=False)
        prog.save(str(tmp), external_data=False)

    m = exported_graph(graph, [type(ck.model).__qualname__, ck.dims.to_dict(), "nemo"], export, path,
                       f"NeMo-layout ONNX export failed for {ck.preset or 'model'}")
    meta = {"model_type": "EncDecCTCModelBPE", "vocab_size": str(len(ck.tokens) - 1),  # NeMo counts without the blank
            "subsampling_factor": str(ck.dims.subsampling), "normalize_type": normalize_type}
    save_exported(m, path, meta, None)
    (path.parent / "tokens.txt").write_text(tokens_txt([*ck.tokens[1:], ck.tokens[0]]))
    return path


def metadata_for(ck: Checkpoint, quantization: str = "fp32", waveform: bool = False, **extra: Any) -> dict[str, str]:
    meta = {
        "model_type": "zipformer2_ctc",  # the sherpa-onnx CTC family whose I/O contract this graph follows
        "vocab_size": str(len(ck.tokens)),
        "subsampling_factor": str(ck.dims.subsampling),
        "frame_rate": f"{ck.frame_rate:g}",
        "featurizer": json.dumps(ck.featurizer.to_dict()),
        "tokens": json.dumps(list(ck.tokens)),
        "dims": json.dumps(ck.dims.to_dict()),
        "preset": ck.preset,
        "role": ck.role,
        "quantization": quantization,
        "input": "waveform" if waveform else "features",
        "edgekd_version": __version__,
        "comment": "edgekd conformer CTC; greedy CTC over log_probs, blank id 0",
    }
    if ck.sentencepiece:  # a subword set's text splitter, so an ONNX teacher splits as the checkpoint did
        meta["sentencepiece"] = spm_to_text(ck.sentencepiece)
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in extra.items()})
    return meta


def read_metadata(path: str | Path) -> dict[str, str]:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in m.metadata_props}


def set_metadata(path: str | Path, meta: dict[str, str]) -> None:
    """Replace the metadata of an ONNX file in place (atomic)."""
    import onnx

    path = Path(path)
    m = onnx.load(str(path))
    del m.metadata_props[:]
    onnx.helper.set_model_props(m, meta)
    tmp = path.with_name(path.name + ".tmp")
    onnx.save(m, str(tmp))
    tmp.replace(path)


def export_onnx(ck: Checkpoint, path: str | Path, *, waveform: bool = False, write_tokens: bool = True) -> Path:
    """Export `ck` to one self-contained ONNX file with a dynamic batch and time axis."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = ck.model.eval()
    if ck.dims.subsampling != 4:
        warnings.warn("sherpa-onnx's zipformer2_ctc loader assumes subsampling 4; "
                      f"this model uses {ck.dims.subsampling} (edgekd's runner reads the metadata)")
    T = torch.export.Dim("T", min=ck.dims.min_frames, max=MAX_FRAMES)
    N = torch.export.Dim("N", min=1, max=256)
    g = torch.Generator().manual_seed(0)  # example inputs: never from (or moving) the caller's RNG
    if waveform:
        fz = Featurizer(ck.featurizer)
        hop, win = ck.featurizer.hop_length, ck.featurizer.win_length
        graph = WaveformGraph(model, fz).eval()
        n = ck.featurizer.sample_rate  # 1 s
        # The example batch has two lengths so the batch axis and masking stay symbolic.
        args = (torch.randn(2, n, generator=g) * 0.1, torch.tensor([n, n - 3 * hop], dtype=torch.int64))
        S = torch.export.Dim("S", min=max(win, hop * (ck.dims.min_frames + 1)), max=MAX_FRAMES * hop)
        names, shapes = ["audio", "audio_lens"], ({0: N, 1: S}, {0: N})
    else:
        graph = LogProbsGraph(model).eval()
        args = (torch.randn(2, 200, ck.dims.n_mels, generator=g), torch.tensor([200, 150], dtype=torch.int64))
        names, shapes = ["x", "x_lens"], ({0: N, 1: T}, {0: N})

    def export(tmp: Path) -> None:
        prog = torch.onnx.export(graph, args, dynamo=True, input_names=names,
                                 output_names=["log_probs", "log_probs_len"], dynamic_shapes=shapes,
                                 opset_version=OPSET, verbose=False)
        prog.save(str(tmp), external_data=False)

    m = exported_graph(graph, [type(ck.model).__qualname__, ck.dims.to_dict(), waveform,
                               ck.featurizer.to_dict() if waveform else None], export, path,
                       f"ONNX export failed for {ck.preset or 'model'}")
    return save_exported(m, path, metadata_for(ck, waveform=waveform), ck.tokens if write_tokens else None)


def exported_graph(graph: torch.nn.Module, key: list, export, path: Path, failure: str):
    """The ModelProto `export(tmp_path)` writes for `graph`, made once per content (graphcache.built:
    the wrapper class, `key`, every parameter and buffer, torch's version and the opset)."""
    import onnx

    from edgekd.export.graphcache import built, content_digest

    data = built(content_digest(graph, [key, OPSET]), export, path.with_name(path.name + ".tmp.onnx"), failure,
                 lambda b: onnx.checker.check_model(onnx.load_from_string(b)), ".onnx")
    return onnx.load_from_string(data)


def save_exported(m, path: Path, meta: dict[str, str], tokens: tuple[str, ...] | None) -> Path:
    """Metadata in, exporter provenance out, checked, written atomically (+ tokens.txt beside it)."""
    import onnx

    for node in m.graph.node:  # exporter provenance (fx node text, stack) was 2/3 of a small file
        del node.metadata_props[:]
    onnx.helper.set_model_props(m, meta)
    onnx.checker.check_model(m)
    out_tmp = path.with_name(path.name + ".tmp")
    onnx.save(m, str(out_tmp))
    out_tmp.replace(path)
    if tokens is not None:
        (path.parent / "tokens.txt").write_text(Tokenizer(tokens).tokens_txt())
    return path


def ort_session(path: str | Path, threads: int = 1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run_onnx(sess, x: np.ndarray, x_lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    names = [i.name for i in sess.get_inputs()]
    lp, ol = sess.run(["log_probs", "log_probs_len"], {names[0]: x, names[1]: x_lens.astype(np.int64)})
    return lp, ol
