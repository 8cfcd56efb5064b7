"""The search space of `edgekd fit` and its cost model.

A candidate is an architecture (conformer dims: the student presets plus widths and depths
between and around them) and a variant of it: a structured-pruning ratio and a precision. Latency
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


@dataclass(frozen=True)
class Arch:
    name: str
    dims: ConformerDims


@dataclass(frozen=True)
class Variant:
    arch: str
    prune: float
    precision: str

    @property
    def stem(self) -> str:
        """The weights this variant holds: the architecture, pruned or not (precisions share them)."""
        return self.arch + (f"-p{int(self.prune * 100)}" if self.prune else "")

    @property
    def name(self) -> str:
        return f"{self.stem}-{self.precision}"


PRESETS = ("student-xs", "student-s")


def architectures(vocab_size: int, n_mels: int = 80, widths=WIDTHS, depths=DEPTHS, presets=PRESETS) -> list[Arch]:
    """The student presets plus a width x depth grid (ffn 8/3 x width, the presets' ratio; 4 heads)."""
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


def variants(arch: Arch, precisions=PRECISIONS, prune_ratios=PRUNE_RATIOS) -> list[Variant]:
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


def cost_variants(arch: Arch, vs: list[Variant], targets: list[tuple], *, featurizer, tokens,
                  seconds: float = 10.0) -> list[dict[str, dict[str, float]]]:
    """Per (device, threads) in `targets`: estimated {rtf, latency_ms, memory_mb, size_mb, params,
    macs} per variant name.

    Export (`shape_graph`) + quantize of a random model of the right shape, once for all targets:
    weights change nothing the estimator reads (shapes, op types, precisions)."""
    from edgekd.export.quantize import quantize
    from edgekd.profile.estimate import estimate_records

    out: list[dict[str, dict[str, float]]] = [{} for _ in targets]
    with tempfile.TemporaryDirectory() as td:
        for prune in sorted({v.prune for v in vs}):
            ck = _random_checkpoint(arch.dims, featurizer, tokens, prune)
            fp32 = shape_graph(ck, Path(td) / f"p{prune}.onnx")
            for v in (v for v in vs if v.prune == prune):
                p = fp32 if v.precision == "fp32" else quantize(fp32, Path(td) / f"p{prune}.{v.precision}.onnx",
                                                               v.precision, fallback=False)
                for i, (device, threads) in enumerate(targets):
                    rec = {r["metric"]: r["value"] for r in estimate_records(p, device, seconds=seconds,
                                                                             threads=threads)}
                    out[i][v.name] = {"rtf": rec["rtf"], "latency_ms": rec["latency_est"],
                                      "memory_mb": rec["memory_est"], "size_mb": rec["model_size"],
                                      "params": rec["params"], "macs": rec["macs"]}
    return out
