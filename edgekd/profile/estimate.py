"""Static cost of an ONNX graph, and a roofline-style latency estimate for a device profile.

`analyze(model, frames)` resolves every tensor's shape for an input of `frames` feature frames
(ONNX shape inference with data propagation; tensors it cannot resolve are resolved by one
onnxruntime run on zeros at that length), then counts per node: MACs, bytes moved (inputs +
outputs, weights included), parameters, and the **peak activation memory by tensor liveness**:
walking the nodes in graph (topological) order, a tensor is alive from the node that makes it
(graph inputs: from the start) to its last consumer (graph outputs: to the end); the peak is the
largest sum of live tensor sizes at any node. Weights are reported separately; in-place reuse and
allocator arenas are ignored (so the peak is an upper bound on what a planner must hold at once).

`estimate_latency(cost, device, threads, runtime)`: each node takes
    max(compute time, bytes / bandwidth) + a dispatch overhead,
summed over the graph (ops run one after another; intra-op threads split each op). The figures:
  * compute time on one core = FLOPs / (GHz x fp32 FLOP/cycle x precision factor x
    efficiency[runtime][op class][precision]) on the fastest core. Precision factor: fp32 1;
    fp16 2 with the fp16 ISA extension, else 1 (runs as fp32); int8 2 (widening multiply-
    accumulate, NEON/AVX2), 4 with dotprod/VNNI, 8 with i8mm.
  * on n threads (Amdahl): t1 x (s + (1 - s) / n'), s = the runtime's serial fraction, n' = the
    used cores' summed speed relative to the fastest (big.LITTLE). An op uses
    min(threads, FLOPs / PAR_GRAIN_FLOPS) threads: small ops do not split.
  * bandwidth: a working set below the last-level cache streams at CACHE_BYTES_PER_CYCLE per
    core-cycle (per runtime: what its element-wise kernels reach); above it, DRAM at the profile's
    theoretical peak x DRAM_EFF_ONE_CORE per thread, capped at DRAM_EFF_ALL_CORES.
  * dispatch overhead: DISPATCH cycles per node of the fastest core (a quarter for shape ops).
The per-runtime efficiencies, serial fractions and the dispatch cycles are *calibrated* by
benchmarks/calibrate_estimator.py into calibration.json next to this file -- on host
micro-benchmarks and on published figures kept apart from the ones benchmarks/bench_estimate.py
validates against; what calibration.json does not give falls back to the documented assumptions
below. Every estimate is labelled `source: estimated`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.profile.devices import Device
from edgekd.profile.shapes import dtype_size, fix_inputs, resolve_shapes

# ---------------------------------------------------------------- model constants
# Documented assumptions, used where calibration.json says nothing: the fraction of the cores'
# peak FLOP/s a kernel of this class reaches (MLAS / XNNPACK GEMMs reach well over half of peak on
# large shapes; im2col-free direct convolutions somewhat less; depthwise convolutions and
# everything else are bandwidth-bound and barely use the FMA units).
EFFICIENCY = {
    "gemm": {"fp32": 0.60, "fp16": 0.50, "int8": 0.45},
    "conv": {"fp32": 0.45, "fp16": 0.40, "int8": 0.35},
    "dwconv": {"fp32": 0.15, "fp16": 0.12, "int8": 0.10},
    "other": {"fp32": 0.10, "fp16": 0.10, "int8": 0.10},
}
SERIAL_FRACTION = 0.10  # Amdahl serial share of an op's compute (sync, imbalance, unsplit loops)
DISPATCH_CYCLES = 4000  # per-op runtime overhead (kernel lookup, allocation, thread wake-up)
PAR_GRAIN_FLOPS = 2e6  # an op gets one thread per this many FLOPs (thread-pool chunking)
CACHE_BYTES_PER_CYCLE = 16.0  # L1/L2 streaming per core-cycle for cache-resident working sets
DRAM_EFF_ONE_CORE = 0.30  # one core reaches ~30 % of theoretical DRAM bandwidth (latency-bound)
DRAM_EFF_ALL_CORES = 0.60  # all cores together reach ~60 %
CALIBRATION_FILE = Path(__file__).with_name("calibration.json")


def runtime_constants(runtime: str, calibration: dict | None = None) -> dict[str, Any]:
    """{"efficiency", "serial_fraction", "dispatch_cycles", "cache_bytes_per_cycle"} for `runtime`
    (onnxruntime | litert): fitted values over the documented assumptions above. `calibration`
    defaults to calibration.json's content; {} gives the documented assumptions alone."""
    if calibration is None:
        calibration = json.loads(CALIBRATION_FILE.read_text()) if CALIBRATION_FILE.exists() else {}
    cal = calibration
    rt = cal.get("runtimes", {}).get(runtime, {})
    eff = {cls: dict(row) for cls, row in EFFICIENCY.items()}
    for cls, row in rt.get("efficiency", {}).items():
        eff.setdefault(cls, {}).update(row)
    return {"efficiency": eff, "serial_fraction": rt.get("serial_fraction", SERIAL_FRACTION),
            "dispatch_cycles": cal.get("dispatch_cycles", {}).get("value", DISPATCH_CYCLES),
            "cache_bytes_per_cycle": rt.get("cache_bytes_per_cycle", CACHE_BYTES_PER_CYCLE)}


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


# ---------------------------------------------------------------- latency


def precision_factor(device: Device, precision: str) -> float:
    if precision == "int8":
        if "i8mm" in device.isa:
            return 8.0
        if "dotprod" in device.isa or "avx512vnni" in device.isa:
            return 4.0
        return 2.0
    if precision == "fp16":
        return 2.0 if "fp16" in device.isa else 1.0
    return 1.0


def op_time(op: OpCost, device: Device, threads: int, runtime: str | None = None,
            rt: dict | None = None) -> tuple[float, float, float]:
    """(compute s, memory s, overhead s) of one op on `threads` threads of `device` under `runtime`."""
    rt = rt or runtime_constants(runtime or device.runtime)
    cores = device.core_list()[:max(1, min(threads, device.cores))]
    flops = 2.0 * op.macs
    t_op = max(1, min(len(cores), int(flops // PAR_GRAIN_FLOPS) or 1))
    used = cores[:t_op]
    eff = rt["efficiency"].get(op.op_class, rt["efficiency"]["other"])[op.precision]
    fast = used[0].max_ghz * 1e9 * used[0].fp32_flops_per_cycle
    t1 = flops / (fast * precision_factor(device, op.precision) * eff) if flops else 0.0
    speed = sum(c.max_ghz * 1e9 * c.fp32_flops_per_cycle for c in used) / fast  # cores, in fastest-core units
    s = rt["serial_fraction"]
    t_compute = t1 * (s + (1.0 - s) / speed)
    if op.bytes <= device.llc_kb * 1024:
        bw = sum(c.max_ghz * 1e9 * rt["cache_bytes_per_cycle"] for c in used)
    else:
        bw = device.mem_bandwidth_gbs * 1e9 * min(DRAM_EFF_ALL_CORES, DRAM_EFF_ONE_CORE * t_op)
    t_mem = op.bytes / bw
    overhead = 0.0 if op.op_class == "shape" and op.bytes == 0 else rt["dispatch_cycles"] / (cores[0].max_ghz * 1e9)
    if op.op_class == "shape":
        overhead *= 0.25  # shape bookkeeping: no kernel launch, still a node to walk
    return t_compute, t_mem, overhead


def estimate_latency(cost: GraphCost, device: Device, threads: int | None = None,
                     runtime: str | None = None, constants: dict | None = None) -> dict[str, Any]:
    """Latency (ms) of one inference: sum over nodes of max(compute, memory) + overhead.
    `runtime` (onnxruntime | litert) picks the calibrated constants (default: the device's);
    `constants` (a `runtime_constants` dict) replaces them, as the calibration's fit does."""
    threads = threads or device.threads
    runtime = runtime or device.runtime
    rt = constants or runtime_constants(runtime)
    total = comp = mem = ovh = 0.0
    by_class: dict[str, float] = defaultdict(float)
    for op in cost.ops:
        c, m, o = op_time(op, device, threads, rt=rt)
        t = max(c, m) + o
        total += t
        comp += c
        mem += m
        ovh += o
        by_class[op.op_class] += t
    return {"latency_ms": total * 1e3, "compute_ms": comp * 1e3, "memory_ms": mem * 1e3, "overhead_ms": ovh * 1e3,
            "by_class_ms": {k: v * 1e3 for k, v in sorted(by_class.items())}, "threads": threads,
            "device": device.name, "runtime": runtime}


def estimate_records(model: str | Path, device: Device, *, seconds: float = 10.0, threads: int | None = None,
                     frames_per_second: float = 100.0, name: str = "", quantization: str = "") -> list[dict]:
    """Estimated records (same schema as the runner's, `source: estimated`) for one artifact."""
    from edgekd.bench.runner import model_files, sha256_files

    model = Path(model)
    frames = max(1, int(round(seconds * frames_per_second)))
    cost = analyze(model, frames)
    est = estimate_latency(cost, device, threads, runtime="onnxruntime")  # an .onnx file runs on onnxruntime
    files = model_files(model)
    quant = quantization or ("int8" if any(o.precision == "int8" for o in cost.ops) else
                             "fp16" if any(o.precision == "fp16" for o in cost.ops) else "fp32")
    base = {"schema": "edgekd-bench-1",
            "model": {"name": name or model.stem, "path": str(model), "format": model.suffix.lstrip("."),
                      "quantization": quant, "sha256": sha256_files(files),
                      "size_bytes": sum(f.stat().st_size for f in files)},
            "device": device.name, "threads": est["threads"], "warmup": 0, "iterations": 0, "source": "estimated",
            "runtime": {"name": "estimate:onnxruntime", "version": "edgekd-roofline-2"}, "cpu": {},
            "audio_seconds": seconds, "mode": "offline", "frames": frames}
    mb = 2.0**20
    rows = [("latency_est", est["latency_ms"], "ms", {k: est[k] for k in ("compute_ms", "memory_ms", "overhead_ms",
                                                                         "by_class_ms")}),
            ("rtf", est["latency_ms"] / 1e3 / seconds, "ratio", {"basis": "latency_est"}),
            ("macs", cost.macs, "MAC", {}), ("params", float(cost.params), "count", {}),
            ("weights_size", cost.weight_bytes / mb, "MiB", {}),
            ("peak_activation", cost.peak_activation_bytes / mb, "MiB", {"at": cost.peak_at}),
            ("memory_est", (cost.weight_bytes + cost.peak_activation_bytes) / mb, "MiB",
             {"note": "weights + peak live activations; excludes the runtime's own memory"}),
            ("model_size", base["model"]["size_bytes"] / mb, "MiB", {})]
    return [dict(base, metric=m, value=float(v), unit=u, extra=x) for m, v, u, x in rows]
