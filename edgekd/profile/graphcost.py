"""Static cost of an ONNX graph: MACs, bytes, parameters and peak activation memory per node.

`analyze(model, frames)` resolves every tensor's shape for an input of `frames` feature frames
(ONNX shape inference with data propagation; tensors it cannot resolve are resolved by one
onnxruntime run on zeros at that length), then counts per node: MACs, bytes moved (inputs +
outputs, weights included), parameters, and the **peak activation memory by tensor liveness**:
walking the nodes in graph (topological) order, a tensor is alive from the node that makes it
(graph inputs: from the start) to its last consumer (graph outputs: to the end); the peak is the
largest sum of live tensor sizes at any node. Weights are reported separately; in-place reuse and
allocator arenas are ignored (so the peak is an upper bound on what a planner must hold at once).

The latency model over these costs is `edgekd.profile.estimate`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.profile.shapes import dtype_size, fix_inputs, resolve_shapes

SHAPE_OPS = {"Shape", "Reshape", "Squeeze", "Unsqueeze", "Constant", "Identity", "Flatten", "ConstantOfShape",
             "Range", "Size"}
GEMM_OPS = {"MatMul", "Gemm", "MatMulInteger", "QLinearMatMul", "FusedMatMul", "MatMulIntegerToFloat",
            "DynamicQuantizeMatMul"}
CONV_OPS = {"Conv", "ConvInteger", "QLinearConv", "ConvTranspose", "FusedConv"}
INT8_OPS = {"MatMulInteger", "QLinearMatMul", "ConvInteger", "QLinearConv", "MatMulIntegerToFloat",
            "DynamicQuantizeMatMul"}


@dataclass
class OpCost:
    name: str
    op_type: str
    op_class: str  # gemm | conv | dwconv | other | shape
    precision: str  # fp32 | fp16 | int8
    macs: float
    bytes: float  # inputs + outputs, weights included
    weight_bytes: float


@dataclass
class GraphCost:
    path: str
    frames: int  # input time length the shapes were resolved for
    ops: list[OpCost]
    params: int  # weight elements (initializers and Constant tensors)
    weight_bytes: int
    peak_activation_bytes: int  # by tensor liveness (see module docstring)
    peak_at: str  # the node where the peak happens
    input_bytes: int
    per_type: dict[str, dict[str, float]] = field(default_factory=dict)  # op type -> {count, macs, bytes}

    @property
    def macs(self) -> float:
        return sum(o.macs for o in self.ops)


# ---------------------------------------------------------------- per-node cost


def _prod(xs) -> float:
    return float(np.prod(xs)) if len(xs) else 1.0


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            import onnx

            return onnx.helper.get_attribute_value(a)
    return default


def _node_macs(node, shp) -> tuple[float, str]:
    """(MACs, op class) of one node; shp(name) -> shape list or None."""
    op = node.op_type
    out = shp(node.output[0]) if node.output else None
    if op in GEMM_OPS:
        a = shp(node.input[0])
        if op == "Gemm" and a is not None and out is not None:
            k = a[0] if _attr(node, "transA", 0) else a[-1]
            return _prod(out) * k, "gemm"
        if a is not None and out is not None:
            return _prod(out) * a[-1], "gemm"
        return 0.0, "gemm"
    if op in CONV_OPS:
        widx = 3 if op == "QLinearConv" else 1
        w = shp(node.input[widx]) if len(node.input) > widx else None
        if w is None or out is None:
            return 0.0, "conv"
        group = _attr(node, "group", 1) or 1
        if op == "ConvTranspose":
            x = shp(node.input[0])
            macs = (_prod(x) if x else 0.0) * _prod(w[1:])
        else:
            macs = _prod(out) * _prod(w[1:])
        if group > 1:
            return macs, "dwconv"
        return macs, ("gemm" if _prod(w[2:]) == 1 else "conv")
    if op == "Einsum":
        eq = _attr(node, "equation", b"")
        eq = eq.decode() if isinstance(eq, bytes) else eq
        lhs = eq.replace(" ", "").split("->")[0].split(",")
        sizes: dict[str, int] = {}
        for term, name in zip(lhs, node.input):
            s = shp(name)
            if s is None or "." in term:
                return 0.0, "gemm"
            sizes.update(dict(zip(term, s)))
        return _prod(list(sizes.values())), "gemm"
    if op in ("LSTM", "GRU", "RNN"):
        x, w = shp(node.input[0]), shp(node.input[1])
        r = shp(node.input[2])
        if x and w and r:
            return x[0] * x[1] * (_prod(w) + _prod(r)), "gemm"
    if op in SHAPE_OPS:
        return 0.0, "shape"
    return 0.0, "other"


def analyze(model: Any, frames: int, batch: int = 1) -> GraphCost:
    """Static cost of the ONNX model (path or ModelProto) for an input of `frames` frames."""
    import onnx

    path = str(model) if isinstance(model, (str, Path)) else "<model>"
    if isinstance(model, (str, Path)):
        model = onnx.load(str(model))
    g = model.graph
    fixed = fix_inputs(model, frames, batch)
    shapes = resolve_shapes(model, fixed, frames)

    def shp(name):
        return shapes[name][0] if name in shapes else None

    def nbytes(name):
        if name not in shapes:
            return 0.0
        s, et = shapes[name]
        return _prod(s) * dtype_size(et)

    weights = {t.name for t in g.initializer}
    params = sum(int(_prod(t.dims)) for t in g.initializer)
    wbytes = sum(int(nbytes(t.name)) for t in g.initializer)
    for n in g.node:  # exporters sometimes keep weights in Constant nodes
        if n.op_type == "Constant" and n.output and n.output[0] in shapes and _prod(shapes[n.output[0]][0]) > 16:
            weights.add(n.output[0])
            params += int(_prod(shapes[n.output[0]][0]))
            wbytes += int(nbytes(n.output[0]))

    # Nodes computed from weights alone (a transposed embedding, a reshaped bias) are folded into
    # constants when the session loads: they cost nothing per inference and count as weights.
    folded = set()
    for n in g.node:
        if n.input and all((x in weights) or not x for x in n.input) and n.op_type not in ("Shape", "Size"):
            folded.add(n.name or id(n))
            weights.update(o for o in n.output if o)

    # QDQ graphs (static int8): a MatMul/Conv whose operands both come out of DequantizeLinear runs
    # as an int8 kernel once the runtime fuses the pattern, reading its operands as int8.
    dq_out = {o for n in g.node if n.op_type == "DequantizeLinear" for o in n.output}
    ops, per_type = [], defaultdict(lambda: {"count": 0, "macs": 0.0, "bytes": 0.0})
    for i, n in enumerate(g.node):
        if (n.name or id(n)) in folded:
            continue
        macs, cls = _node_macs(n, shp)
        qdq = cls in ("gemm", "conv", "dwconv") and len(n.input) >= 2 and all(x in dq_out for x in n.input[:2])
        prec = "int8" if n.op_type in INT8_OPS or qdq else (
            "fp16" if n.output and n.output[0] in shapes and shapes[n.output[0]][1] == 10 else "fp32")
        if cls == "shape" or (n.op_type == "Constant"):
            b = 0.0
            wb = 0.0
        elif n.op_type in ("Gather", "GatherElements", "GatherND"):  # reads only the rows it returns
            b = 2 * sum(nbytes(o) for o in n.output if o) + sum(nbytes(x) for x in n.input[1:] if x)
            wb = 0.0
        else:
            q = (lambda x: nbytes(x) / 4 if qdq and x in dq_out else nbytes(x))  # noqa: E731 -- fp32 -> int8 reads
            b = sum(q(x) for x in n.input if x) + sum(nbytes(o) for o in n.output if o)
            wb = sum(q(x) for x in n.input if x in weights)
        ops.append(OpCost(n.name or f"{n.op_type}_{i}", n.op_type, cls, prec, macs, b, wb))
        pt = per_type[n.op_type]
        pt["count"] += 1
        pt["macs"] += macs
        pt["bytes"] += b
    peak, at = peak_activation(model, lambda name: nbytes(name), weights)
    return GraphCost(path=path, frames=frames, ops=ops, params=params, weight_bytes=wbytes,
                     peak_activation_bytes=int(peak), peak_at=at,
                     input_bytes=int(sum(nbytes(k) for k in fixed)), per_type=dict(per_type))


def peak_activation(model, size_of, weights: set[str] | None = None) -> tuple[float, str]:
    """Largest sum of live activation bytes over the nodes, in graph order; (bytes, node name).

    Alive: graph inputs from the start, node outputs from their node; until the last node that
    reads them (graph outputs: until the end). Weights (initializers / `weights`) are excluded.
    """
    g = model.graph
    weights = set(weights or ()) | {t.name for t in g.initializer}
    n_nodes = len(g.node)
    birth: dict[str, int] = {}
    death: dict[str, int] = {}
    for vi in g.input:
        if vi.name not in weights:
            birth[vi.name] = 0
            death[vi.name] = 0
    for i, n in enumerate(g.node):
        for x in n.input:
            if x in birth:
                death[x] = max(death[x], i)
        for o in n.output:
            if o and o not in weights:
                birth[o] = i
                death[o] = i
    for vi in g.output:
        if vi.name in death:
            death[vi.name] = n_nodes - 1
    delta = np.zeros(n_nodes + 1)
    for t, b in birth.items():
        s = size_of(t)
        delta[b] += s
        delta[death[t] + 1] -= s
    live = np.cumsum(delta)[:n_nodes]
    if n_nodes == 0:
        return 0.0, ""
    i = int(np.argmax(live))
    return float(live[i]), g.node[i].name or f"{g.node[i].op_type}_{i}"
