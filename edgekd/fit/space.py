"""The search space of `edgekd fit` and its cost model.

A candidate is an architecture (conformer dims: the student presets plus widths and depths
between and around them; offline, or streaming: causal conv + chunked attention with a left
context) and a variant of it: a structured-pruning ratio, a precision, and for a streaming
architecture the chunk size it is exported for (one streaming model serves every chunk size it
was trained on, so chunks share weights and training). Latency
and memory do not depend on the weights, so every candidate is costed *before any training*: a
randomly initialised model of its dims is built (and pruned with the same torch-pruning code the
prune stage uses, so the shapes are exact), exported to ONNX, quantized, and run through the
roofline estimator for the device (`edgekd.profile.estimate`). Only architectures with at least
one variant under budget are ever trained.
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from edgekd.models import load_preset
from edgekd.models.conformer import ConformerDims

PRECISIONS = ("fp32", "fp16", "int8-dynamic")  # int8-static: opt-in only (slower and less faithful; README)
PRUNE_RATIOS = (0.0, 0.5)
WIDTHS = (64, 96, 128, 160)  # d_model; ffn = 8/3 x d_model rounded to 32 (the presets' ratio)
DEPTHS = (4, 6, 8)
STREAMING_PRECISIONS = ("fp32", "int8-dynamic")  # what the sherpa-onnx online package ships
CHUNKS_MS = (160, 320, 640)  # streaming chunk sizes searched when a budget leaves chunk_ms out


@dataclass(frozen=True)
class Arch:
    name: str
    dims: ConformerDims

    @property
    def streaming(self) -> bool:
        return self.dims.causal


@dataclass(frozen=True)
class Variant:
    arch: str
    prune: float
    precision: str
    chunk_ms: int = 0  # streaming: the chunk the file is exported for; 0 = offline

    @property
    def stem(self) -> str:
        """The weights this variant holds: the architecture, pruned or not (precisions share them)."""
        return self.arch + (f"-p{int(self.prune * 100)}" if self.prune else "")

    @property
    def name(self) -> str:
        return f"{self.stem}-{f'c{self.chunk_ms}-' if self.chunk_ms else ''}{self.precision}"


PRESETS = ("student-xs", "student-s")
STREAMING_SUFFIX = "-stream"  # a streaming architecture's name: its offline twin's + this


def architectures(vocab_size: int, n_mels: int = 80, widths=WIDTHS, depths=DEPTHS, presets=PRESETS,
                  streaming=None) -> list[Arch]:
    """The student presets plus a width x depth grid (ffn 8/3 x width, the presets' ratio; 4 heads).
    `streaming` (a ChunkTraining) gives the streaming twins instead: same dims, causal conv and
    chunked attention with its left context, named `<offline name>-stream`."""
    if streaming is not None:
        return [Arch(a.name + STREAMING_SUFFIX, streaming.streaming_dims(a.dims))
                for a in architectures(vocab_size, n_mels, widths, depths, presets)]
    out = {p: load_preset(p, vocab_size, n_mels) for p in presets}
    base = load_preset("student-xs", vocab_size, n_mels)
    for w in widths:
        for d in depths:
            ffn = max(32, int(round(w * 8 / 3 / 32)) * 32)
            dims = dataclasses.replace(base, d_model=w, n_layers=d, ffn_dim=ffn,
                                       subsampling_channels=max(16, w // 3 // 8 * 8))
            if all(dims != x for x in out.values()) and w % base.n_heads == 0:
                out[f"w{w}-d{d}"] = dims
    return [Arch(k, v) for k, v in out.items()]


def variants(arch: Arch, precisions=PRECISIONS, prune_ratios=PRUNE_RATIOS, chunks_ms=CHUNKS_MS) -> list[Variant]:
    if arch.streaming:
        return [Variant(arch.name, r, p, int(c)) for r in prune_ratios for c in chunks_ms for p in precisions]
    return [Variant(arch.name, r, p) for r in prune_ratios for p in precisions]


def _random_checkpoint(dims: ConformerDims, featurizer, tokens, prune: float):
    from edgekd.export.prune import structured_prune
    from edgekd.models import Checkpoint
    from edgekd.models.conformer import ConformerCTC

    torch.manual_seed(0)
    ck = Checkpoint(ConformerCTC(dims).eval(), featurizer, tuple(tokens), "fit-candidate", "student")
    return structured_prune(ck, prune) if prune else ck


def shape_graph(ck, path: Path) -> Path:
    """An ONNX graph of `ck`'s shapes for the estimator, via the TorchScript exporter.

    Costing reads shapes, op types and precisions only. On student-xs and a tiny model this graph
    gave the same MACs, RTF within 2 % and memory within 1 % of the dynamo export (the one edgekd
    ships), in 0.2-0.8 s instead of 8-26 s; its file is up to 0.1 MB larger (constants stored
    apart), so size budgets err on the safe side. A fit exports one per architecture and pruning
    ratio: this was most of the cost model's time."""
    import warnings

    from edgekd.export.onnx import LogProbsGraph

    x, lens = torch.randn(1, 200, ck.dims.n_mels), torch.tensor([200])
    with warnings.catch_warnings():  # tracer warnings about Python control flow: shapes are what we keep
        warnings.simplefilter("ignore")
        torch.onnx.export(LogProbsGraph(ck.model), (x, lens), str(path), input_names=["x", "x_lens"],
                          output_names=["log_probs", "log_probs_len"], opset_version=18, dynamo=False,
                          dynamic_axes={"x": {0: "N", 1: "T"}, "x_lens": {0: "N"}, "log_probs": {0: "N", 1: "T2"},
                                        "log_probs_len": {0: "N"}})
    return path


def streaming_shape_graph(ck, chunk: int, path: Path) -> Path:
    """The NeMo cache-aware graph (`edgekd.export.streaming`) of `ck` for chunks of `chunk` output
    frames, via the TorchScript exporter, with the streaming metadata the estimator reads. On
    student-xs-stream it has the MACs of the dynamo export and outputs within 1e-6 (checked when
    this was written); the shipped streaming file still comes from `export_streaming_onnx`."""
    import warnings

    from edgekd.export.onnx import set_metadata
    from edgekd.export.streaming import (
        INPUTS,
        OUTPUTS,
        NemoStreamingGraph,
        example_inputs,
        streaming_metadata,
    )
    from edgekd.models.streaming import StreamingStep

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(NemoStreamingGraph(StreamingStep(ck.model.eval(), chunk)).eval(),
                          example_inputs(ck.dims, chunk), str(path),
                          input_names=list(INPUTS), output_names=list(OUTPUTS), opset_version=18, dynamo=False,
                          dynamic_axes={n: {0: "B"} for n in INPUTS + OUTPUTS})
    set_metadata(path, streaming_metadata(ck, chunk))
    return path


def _offline_cost(rec: dict) -> dict[str, float]:
    return {"rtf": rec["rtf"], "latency_ms": rec["latency_est"], "memory_mb": rec["memory_est"],
            "size_mb": rec["model_size"], "params": rec["params"], "macs": rec["macs"]}


def _streaming_cost(rec: dict, chunk_ms: float, lookahead_ms: float) -> dict[str, float]:
    """Per chunk: compute (one call of the graph), rtf = compute / chunk, and the latency a word's
    text can have at worst: it waits for its chunk and the lookahead, then the chunk's compute."""
    compute = rec["chunk_latency_est"]
    return {"rtf": compute / chunk_ms, "latency_ms": chunk_ms + lookahead_ms + compute, "chunk_compute_ms": compute,
            "memory_mb": rec["memory_est"], "size_mb": rec["model_size"], "params": rec["params"], "macs": rec["macs"]}


def cost_variants(arch: Arch, vs: list[Variant], targets: list[tuple], *, featurizer, tokens,
                  seconds: float = 10.0) -> list[dict[str, dict[str, float]]]:
    """Per (device, threads) in `targets`: estimated {rtf, latency_ms, memory_mb, size_mb, params,
    macs} per variant name (streaming adds chunk_compute_ms; its latency_ms is word-to-text, see
    `_streaming_cost`; an offline one's is one `seconds` inference).

    Export (`shape_graph`) + quantize of a random model of the right shape, once for all targets:
    weights change nothing the estimator reads (shapes, op types, precisions)."""
    from edgekd.export.quantize import quantize
    from edgekd.models.streaming import chunk_frames, shift_frames, window_frames
    from edgekd.profile.estimate import estimate_records

    out: list[dict[str, dict[str, float]]] = [{} for _ in targets]
    hop_ms = 1000.0 / featurizer.frame_rate
    with tempfile.TemporaryDirectory() as td:
        for prune in sorted({v.prune for v in vs}):
            ck = _random_checkpoint(arch.dims, featurizer, tokens, prune)
            for chunk_ms in sorted({v.chunk_ms for v in vs if v.prune == prune}):
                stem = Path(td) / f"p{prune}-c{chunk_ms}"
                if chunk_ms:
                    chunk = chunk_frames(ck.dims, chunk_ms, featurizer.frame_rate)
                    fp32 = streaming_shape_graph(ck, chunk, stem.with_suffix(".onnx"))
                    lookahead = (window_frames(ck.dims, chunk) - shift_frames(ck.dims, chunk)) * hop_ms
                else:
                    fp32 = shape_graph(ck, stem.with_suffix(".onnx"))
                for v in (v for v in vs if v.prune == prune and v.chunk_ms == chunk_ms):
                    p = fp32 if v.precision == "fp32" else quantize(fp32, Path(f"{stem}.{v.precision}.onnx"),
                                                                   v.precision, fallback=False)
                    for i, (device, threads) in enumerate(targets):
                        rec = {r["metric"]: r["value"] for r in estimate_records(p, device, seconds=seconds,
                                                                                 threads=threads)}
                        out[i][v.name] = (_streaming_cost(rec, chunk_ms, lookahead) if chunk_ms else _offline_cost(rec))
    return out
