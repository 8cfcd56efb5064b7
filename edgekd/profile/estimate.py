"""A roofline-style latency estimate of an ONNX graph for a device profile.

The graph's static cost (MACs, bytes, parameters and peak activation memory by tensor liveness, per
node, for an input of `frames` feature frames) comes from `edgekd.profile.graphcost.analyze`.

`estimate_latency(cost, device, threads, runtime)`: each node takes
    max(compute time, bytes / bandwidth) + a per-node overhead,
summed over the graph (ops run one after another; intra-op threads split each op). The figures:
  * compute time on one core = FLOPs / (GHz x fp32 FLOP/cycle x precision factor x
    efficiency[runtime][op class][precision]) on the fastest core. Precision factor: fp32 1;
    fp16 2 with the fp16 ISA extension, else 1 (runs as fp32); int8 2 (widening multiply-
    accumulate, NEON/AVX2), 4 with dotprod/VNNI, 8 with i8mm.
  * threads per node: a runtime splits a node only as far as its work pays for the threads
    (`node_threads`): onnxruntime gives a GEMM/conv one thread per 64 Ki multiply-accumulates
    (MLAS) and an element-wise node one per 100 k cycles of Eigen-costed memory traffic after a
    100 k-cycle start-up; LiteRT one per PAR_GRAIN_FLOPS. On n' of them (Amdahl):
    t1 x (s + (1 - s) / n'), s = the runtime's serial fraction, n' = the node's cores' summed
    speed relative to the fastest (big.LITTLE). So a decoder step's matrix-vector products and
    small element-wise nodes stay on one or two threads while large convolutions use them all.
  * bandwidth: a working set below the last-level cache streams at CACHE_BYTES_PER_CYCLE per
    core-cycle (per runtime: what its element-wise kernels reach); above it, DRAM at the profile's
    theoretical peak x DRAM_EFF_ONE_CORE per thread, capped at DRAM_EFF_ALL_CORES. When the
    graph's weights do not fit in the last-level cache, each node's weights come from DRAM.
  * per-node overhead: `dispatch_cycles` of the fastest core per node (a quarter for shape ops),
    plus, for element-wise / data-movement nodes, `node_cycles_per_byte` per byte they move (what
    a real graph's kernels cost beyond a chain of identical micro-benchmark nodes: broadcasting,
    strides, allocation), split over the node's threads like its compute.
The per-runtime efficiencies, serial fractions and overheads are *calibrated* by
benchmarks/calibrate_estimator.py into calibration.json next to this file -- on host graphs and
on published figures kept apart from the ones benchmarks/bench_estimate.py validates against;
what calibration.json does not give falls back to the documented assumptions below. Every
estimate is labelled `source: estimated`. A cache-aware streaming graph is costed per window,
with its first-partial and end-of-speech -> final latency (`estimate_records`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.profile.devices import Device
from edgekd.profile.graphcost import GraphCost, OpCost, analyze, peak_activation  # noqa: F401 -- public here too

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
PAR_GRAIN_FLOPS = 2e6  # LiteRT: an op gets one thread per this many FLOPs (thread-pool chunking)
# onnxruntime's own rules for how many threads a node gets (published source, not fitted):
MLAS_MACS_PER_THREAD = 64 * 1024  # microsoft/onnxruntime core/mlas/lib/mlasi.h MLAS_SGEMM_THREAD_COMPLEXITY:
#                                   GEMM / conv threads = multiplies / this + 1
EIGEN_STARTUP_CYCLES = 1e5  # libeigen unsupported/Eigen/CXX11/src/Tensor/TensorCostModel.h kStartupCycles and
EIGEN_PER_THREAD_CYCLES = 1e5  # kPerThreadCycles, which onnxruntime's ThreadPool::ParallelFor
EIGEN_CYCLES_PER_BYTE = 11 / 64  # (core/common/threadpool.cc) asks; its cost per byte loaded / stored
CACHE_BYTES_PER_CYCLE = 16.0  # L1/L2 streaming per core-cycle for cache-resident working sets
DRAM_EFF_ONE_CORE = 0.30  # one core reaches ~30 % of theoretical DRAM bandwidth (latency-bound)
DRAM_EFF_ALL_CORES = 0.60  # all cores together reach ~60 %
CALIBRATION_FILE = Path(__file__).with_name("calibration.json")


def runtime_constants(runtime: str, calibration: dict | None = None) -> dict[str, Any]:
    """{"efficiency", "serial_fraction", "dispatch_cycles", "node_cycles_per_byte",
    "cache_bytes_per_cycle"} for `runtime` (onnxruntime | litert): fitted values over the
    documented assumptions above (a runtime's own dispatch_cycles over the file's shared one).
    `calibration` defaults to calibration.json's content; {} gives the documented assumptions."""
    if calibration is None:
        calibration = json.loads(CALIBRATION_FILE.read_text()) if CALIBRATION_FILE.exists() else {}
    cal = calibration
    rt = cal.get("runtimes", {}).get(runtime, {})
    eff = {cls: dict(row) for cls, row in EFFICIENCY.items()}
    for cls, row in rt.get("efficiency", {}).items():
        eff.setdefault(cls, {}).update(row)
    shared = cal.get("dispatch_cycles", {}).get("value", DISPATCH_CYCLES)
    return {"efficiency": eff, "serial_fraction": rt.get("serial_fraction", SERIAL_FRACTION),
            "dispatch_cycles": rt.get("dispatch_cycles", {}).get("value", shared),
            "node_cycles_per_byte": rt.get("node_cycles_per_byte", {}).get("value", 0.0),
            "cache_bytes_per_cycle": rt.get("cache_bytes_per_cycle", CACHE_BYTES_PER_CYCLE), "runtime": runtime}


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


def node_threads(op: OpCost, threads: int, runtime: str) -> int:
    """How many of `threads` the runtime splits this node over: as many as its work pays for."""
    if op.op_class == "shape":
        return 1
    if runtime == "onnxruntime":
        if op.op_class in ("gemm", "conv", "dwconv"):
            n = int(op.macs // MLAS_MACS_PER_THREAD) + 1
        else:  # element-wise: ThreadPool::ParallelFor -> Eigen's cost model on the bytes it moves
            n = int((op.bytes * EIGEN_CYCLES_PER_BYTE - EIGEN_STARTUP_CYCLES) / EIGEN_PER_THREAD_CYCLES + 0.9)
    else:
        n = int(2.0 * op.macs // PAR_GRAIN_FLOPS)
    return max(1, min(threads, n))


def op_time(op: OpCost, device: Device, threads: int, runtime: str | None = None,
            rt: dict | None = None, weights_cached: bool = True) -> tuple[float, float, float]:
    """(compute s, memory s, overhead s) of one op on `threads` threads of `device` under `runtime`.
    `weights_cached`: False when the graph's weights exceed the last-level cache (read from DRAM)."""
    rt = rt or runtime_constants(runtime or device.runtime)
    runtime = runtime or rt.get("runtime") or device.runtime
    cores = device.core_list()[:max(1, min(threads, device.cores))]
    flops = 2.0 * op.macs
    t_op = node_threads(op, len(cores), runtime)
    used = cores[:t_op]
    eff = rt["efficiency"].get(op.op_class, rt["efficiency"]["other"])[op.precision]
    fast = used[0].max_ghz * 1e9 * used[0].fp32_flops_per_cycle
    t1 = flops / (fast * precision_factor(device, op.precision) * eff) if flops else 0.0
    speed = sum(c.max_ghz * 1e9 * c.fp32_flops_per_cycle for c in used) / fast  # cores, in fastest-core units
    s = rt["serial_fraction"]
    split = s + (1.0 - s) / speed  # Amdahl over the node's own threads (1 when it runs on one)
    t_compute = t1 * split
    dram = device.mem_bandwidth_gbs * 1e9 * min(DRAM_EFF_ALL_CORES, DRAM_EFF_ONE_CORE * t_op)
    streamed = 0.0 if weights_cached else op.weight_bytes
    act = op.bytes - streamed
    if act <= device.llc_kb * 1024:
        t_mem = act / sum(c.max_ghz * 1e9 * rt["cache_bytes_per_cycle"] for c in used) + streamed / dram
    else:
        t_mem = op.bytes / dram
    clock = cores[0].max_ghz * 1e9
    overhead = 0.0 if op.op_class == "shape" and op.bytes == 0 else rt["dispatch_cycles"] / clock
    if op.op_class == "shape":
        overhead *= 0.25  # shape bookkeeping: no kernel launch, still a node to walk
    elif op.op_class == "other":  # real element-wise kernels' cost beyond the micro-benchmark's
        overhead += rt.get("node_cycles_per_byte", 0.0) * op.bytes / clock * split
    return t_compute, t_mem, overhead


def estimate_latency(cost: GraphCost, device: Device, threads: int | None = None,
                     runtime: str | None = None, constants: dict | None = None) -> dict[str, Any]:
    """Latency (ms) of one inference: sum over nodes of max(compute, memory) + overhead.
    `runtime` (onnxruntime | litert) picks the calibrated constants (default: the device's);
    `constants` (a `runtime_constants` dict) replaces them, as the calibration's fit does."""
    threads = threads or device.threads
    runtime = runtime or device.runtime
    rt = dict(constants or runtime_constants(runtime), runtime=runtime)
    cached = cost.weight_bytes <= device.llc_kb * 1024  # else every call streams the weights from DRAM
    total = comp = mem = ovh = 0.0
    by_class: dict[str, float] = defaultdict(float)
    for op in cost.ops:
        c, m, o = op_time(op, device, threads, rt=rt, weights_cached=cached)
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
    """Estimated records (same schema as the runner's, `source: estimated`) for one ONNX artifact.

    An offline graph is costed for `seconds` of audio at `frames_per_second` (mode "offline":
    latency_est, rtf = latency / audio). A cache-aware streaming graph (metadata contract
    nemo-cache-aware-ctc) is costed for one window, its size, chunk and frame rate read from the
    file (mode "streaming"): chunk_latency_est (ms per chunk), rtf = chunk compute / chunk
    duration, first_partial_latency_est and final_latency_est (ms; the runner's definitions, see
    `streaming_latency`). Both: macs and peak_activation per call, params, weights_size,
    memory_est (weights + peak live activations: a stream's caches are graph inputs, so counted),
    model_size."""
    import onnx

    from edgekd.bench.runner import model_files, sha256_files
    from edgekd.bench.stream import Framing, is_cache_aware

    model = Path(model)
    proto = onnx.load(str(model))
    meta = {p.key: p.value for p in proto.metadata_props}
    streaming = is_cache_aware(meta)
    frames = int(meta["window_size"]) if streaming else max(1, int(round(seconds * frames_per_second)))
    cost = analyze(proto, frames)
    est = estimate_latency(cost, device, threads, runtime="onnxruntime")  # an .onnx file runs on onnxruntime
    files = model_files(model)
    # the file's own label first (as the runner reads it, so estimated and measured rows pair up)
    quant = quantization or meta.get("quantization") or (
        "int8" if any(o.precision == "int8" for o in cost.ops) else
        "fp16" if any(o.precision == "fp16" for o in cost.ops) else "fp32")
    base = {"schema": "edgekd-bench-1",
            "model": {"name": name or model.stem, "path": str(model), "format": model.suffix.lstrip("."),
                      "quantization": quant, "sha256": sha256_files(files),
                      "size_bytes": sum(f.stat().st_size for f in files)},
            "device": device.name, "threads": est["threads"], "warmup": 0, "iterations": 0, "source": "estimated",
            "runtime": {"name": "estimate:onnxruntime", "version": "edgekd-roofline-2"}, "cpu": {},
            "audio_seconds": seconds, "mode": "streaming" if streaming else "offline", "frames": frames}
    mb = 2.0**20
    split = {k: est[k] for k in ("compute_ms", "memory_ms", "overhead_ms", "by_class_ms")}
    if streaming:
        fr, shift = Framing(meta), int(meta["chunk_shift"])
        chunk_s = shift / fr.fps
        base.update(chunk_seconds=chunk_s, chunk_ms=chunk_s * 1e3, shift_frames=shift)
        first, final = streaming_latency(fr, frames, shift, est["latency_ms"], seconds)
        rows = [("chunk_latency_est", est["latency_ms"], "ms", split),
                ("rtf", est["latency_ms"] / 1e3 / chunk_s, "ratio", {"basis": "chunk_latency_est / chunk duration"}),
                ("first_partial_latency_est", first["value"], "ms", first["extra"]),
                ("final_latency_est", final["value"], "ms", final["extra"])]
    else:
        rows = [("latency_est", est["latency_ms"], "ms", split),
                ("rtf", est["latency_ms"] / 1e3 / seconds, "ratio", {"basis": "latency_est"})]
    rows += [("macs", cost.macs, "MAC", {}), ("params", float(cost.params), "count", {}),
             ("weights_size", cost.weight_bytes / mb, "MiB", {}),
             ("peak_activation", cost.peak_activation_bytes / mb, "MiB", {"at": cost.peak_at}),
             ("memory_est", (cost.weight_bytes + cost.peak_activation_bytes) / mb, "MiB",
              {"note": "weights + peak live activations" + (" (the stream's caches included)" if streaming else "")
                       + "; excludes the runtime's own memory"}),
             ("model_size", base["model"]["size_bytes"] / mb, "MiB", {})]
    return [dict(base, metric=m, value=float(v), unit=u, extra=x) for m, v, u, x in rows]


def streaming_latency(framing, window: int, shift: int, chunk_ms: float, seconds: float) -> tuple[dict, dict]:
    """First partial and end of speech -> final (ms) for chunks that each take `chunk_ms`: the
    runner's real-time replay (edgekd/bench/stream.py `replay`) with that constant compute, over
    `seconds` of speech ending at each frame of a chunk in turn (where speech ends within a chunk
    decides how many windows are still owed). A stream slower than real time falls further behind
    the longer it runs: its final then holds the backlog of `seconds` of speech."""
    from edgekd.bench.stream import TAIL_PADDING_S, replay

    def step(x):
        return np.zeros((1, 1), np.float32), chunk_ms / 1e3

    firsts, finals = [], []
    for phase in range(shift):
        speech = int(round(seconds * framing.sample_rate)) + phase * framing.hop
        n = framing.frames(speech + int(TAIL_PADDING_S * framing.sample_rate))
        _, first, final = replay(step, np.zeros((n, 1), np.float32), window, shift, framing, speech / framing.sample_rate)
        firsts.append(first)
        finals.append(final)
    first = {"value": 1e3 * float(np.mean(firsts)),
             "extra": {"basis": "audio to fill the first window + its compute (the first window taken to emit text)"}}
    final = {"value": 1e3 * float(np.mean(finals)),
             "extra": {"basis": f"mean over where speech ends within a chunk; {TAIL_PADDING_S:g} s tail padding sent "
                                "at once", "min_ms": 1e3 * min(finals), "max_ms": 1e3 * max(finals)}}
    return first, final
