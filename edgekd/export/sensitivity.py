"""Which layers int8 hurts: quantize one weight MatMul at a time and measure what it moves.

Measured on the shipped student (1.07M params, `benchmarks/int8_sensitivity.py`): quantizing all
MatMuls at once changes the greedy transcript of ~1 utterance in 3, yet one layer at a time every
layer moves the output by a KL of ~1e-6 per frame, except two that move it ~14x more: the first
projection after the convolutional subsampling and the output projection onto the tokens. Those
two stay fp32 ("fallback"); the rest is int8. The rule is an outlier rule on the measured
sensitivities (score > `factor` x the median), not a fixed list, so it follows the model.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import numpy as np

from edgekd.errors import EdgekdError


def weight_matmuls(path: str | Path) -> list[str]:
    """Names of the MatMul nodes that multiply by a constant weight (what int8-dynamic quantizes)."""
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name for i in g.initializer}
    missing = [n for n in g.node if n.op_type == "MatMul" and not n.name]
    if missing:
        raise EdgekdError(f"{path}: {len(missing)} MatMul nodes have no name; sensitivity needs names to exclude")
    return [n.name for n in g.node if n.op_type == "MatMul" and any(i in inits for i in n.input)]


def _log_probs(path: Path, feats: list[np.ndarray]) -> list[np.ndarray]:
    from edgekd.export.onnx import ort_session, run_onnx

    sess = ort_session(path, 2)
    return [run_onnx(sess, f[None], np.array([len(f)], np.int64))[0][0] for f in feats]


def divergence(ref: list[np.ndarray], got: list[np.ndarray]) -> dict[str, float]:
    """Mean KL(ref || got) per frame and the share of frames whose best token agrees."""
    kl = np.concatenate([(np.exp(r) * (r - g)).sum(-1) for r, g in zip(ref, got)])
    agree = np.concatenate([r.argmax(-1) == g.argmax(-1) for r, g in zip(ref, got)])
    return {"kl": float(kl.mean()), "agreement": float(agree.mean())}


def layer_sensitivity(src: str | Path, calibration: list[np.ndarray], *, per_channel: bool = True,
                      progress: bool = False) -> list[dict]:
    """For each weight MatMul of `src` (fp32 ONNX): the divergence when only that node is int8.

    Sorted most sensitive first. Dynamic quantization needs no calibration pass, so this is one
    quantize + one run over `calibration` per node (seconds for a small student)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if not calibration:
        raise EdgekdError("sensitivity analysis needs calibration features (a manifest of real audio)")
    src = Path(src)
    ref = _log_probs(src, calibration)
    nodes = weight_matmuls(src)
    rows = []
    with tempfile.TemporaryDirectory() as td:
        one = Path(td) / "one.onnx"
        for i, node in enumerate(nodes):
            quantize_dynamic(str(src), str(one), nodes_to_quantize=[node], op_types_to_quantize=["MatMul"],
                             weight_type=QuantType.QInt8, per_channel=per_channel)
            rows.append({"node": node, **divergence(ref, _log_probs(one, calibration))})
            if progress and (i + 1) % 10 == 0:
                print(f"int8 sensitivity: {i + 1}/{len(nodes)} layers", flush=True)
    return sorted(rows, key=lambda r: -r["kl"])


def fallback_nodes(rows: list[dict], *, factor: float = 5.0, max_nodes: int = 4) -> list[str]:
    """The outliers: nodes whose KL exceeds `factor` x the median node's, at most `max_nodes`."""
    if len(rows) < 3:  # no median to stand out from
        return []
    med = statistics.median(r["kl"] for r in rows)
    return [r["node"] for r in sorted(rows, key=lambda r: -r["kl"]) if r["kl"] > factor * med][:max_nodes]
