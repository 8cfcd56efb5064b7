#!/usr/bin/env python3
"""On-device benchmark runner for an exported acoustic model (.onnx or .tflite).

Usage: python3 runner.py --model student.onnx --seconds 10 --threads 4 --out results.jsonl

Standalone on purpose: numpy + onnxruntime (or ai-edge-litert) only, nothing from edgekd, so this
one file can be copied to a Raspberry Pi or a phone (Termux). One JSON record per metric (JSONL):
model identity, runtime + version, CPU, threads, warm-up/iterations, `source` (measured-on-device
/ measured-on-host). Run it in a fresh process: peak RSS (VmHWM) is the whole process's.

Measured for `--seconds` of audio (features at the frame rate in the model's metadata, else 100/s):
load_time, first_inference, warmup_mean, latency p50/p90/p99/mean/std/min/max, rtf (p50 / audio s),
rss_after_load, peak_rss, model_size; for a fixed-length model (or --chunk-seconds) a streaming loop
of fixed windows one after another: chunk_latency p50/p90/p99/mean/std/max, rtf over passes. A
cache-aware streaming model (contract nemo-cache-aware-ctc): its chunk loop, caches fed back, and the
latency suite (stream.py). `--bundle` (labelled.py): wer, identical_transcripts vs the host's PyTorch
run, exit 3 below the gate. stream.py and labelled.py are copied beside this file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

SCHEMA = "edgekd-bench-1"
SOURCES = ("measured-on-device", "measured-on-host")
DEFAULT_FPS = 100.0  # 10 ms hop: the universal ASR filterbank frame rate


def _status_kb(key: str) -> float | None:
    """A field of /proc/self/status in kB (VmRSS, VmHWM); None where there is no procfs."""
    try:
        with open("/proc/self/status") as f:
            return next((float(line.split()[1]) for line in f if line.startswith(key + ":")), None)
    except OSError:
        return None


def cpu_info() -> dict:
    info = {"machine": platform.machine(), "system": platform.system(), "logical_cpus": os.cpu_count()}
    if hasattr(os, "sched_getaffinity"):
        info["affinity"] = sorted(os.sched_getaffinity(0))
    try:  # the first line of each key (reversed: dict keeps the last it sees)
        lines = reversed(Path("/proc/cpuinfo").read_text(errors="replace").splitlines())
        fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in lines if ":" in line)}
    except OSError:
        fields = {}
    for key in ("model name", "Hardware", "Model", "CPU part", "Features", "flags"):
        if key in fields:
            info[key.replace(" ", "_").lower()] = _isa(fields[key]) if key in ("Features", "flags") else fields[key]
    try:
        info["max_mhz"] = int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()) / 1000
    except (OSError, ValueError):
        pass
    return info


def _isa(flags: str) -> list[str]:
    """The ISA features that matter for inference kernels, from /proc/cpuinfo flags/Features."""
    names = {"asimd": "neon", "asimddp": "dotprod", "asimdhp": "fp16", "i8mm": "i8mm", "sve": "sve",
             "avx2": "avx2", "avx512f": "avx512", "avx512_vnni": "avx512vnni", "fma": "fma", "f16c": "f16c"}
    return sorted({v for k, v in names.items() if k in set(flags.split())})


def model_files(path: Path) -> list[Path]:
    """The model file plus the external-data files an ONNX model keeps its weights in."""
    files = [path]
    if path.suffix.lower() == ".onnx":
        try:
            import onnx

            m = onnx.load(str(path), load_external_data=False)
            locs = {e.value for t in m.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
                    for e in t.external_data if e.key == "location"}
            files += [path.parent / loc for loc in sorted(locs)]
        except ImportError:  # no onnx on the device: the exporter's usual sidecar name
            files += [p for p in [path.with_name(path.name + ".data")] if p.exists()]
    return files


def sha256_files(paths: list[Path]) -> str:
    """sha256 of one file, or of the concatenation of a model and its external data."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            while b := f.read(1 << 20):
                h.update(b)
    return h.hexdigest()


class _Input:
    def __init__(self, name: str, shape: list, dtype):  # noqa: D107
        self.name, self.shape, self.dtype = name, shape, np.dtype(dtype)


class OnnxModel:
    runtime = "onnxruntime"

    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        self.version = ort.__version__
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        tmap = {"float": "float32", "double": "float64", "bool": "bool"}  # else numpy's name: int64, float16...
        self.inputs = [_Input(i.name, [d if isinstance(d, int) else None for d in i.shape],
                              tmap.get(i.type[7:-1], i.type[7:-1])) for i in self.sess.get_inputs()]
        self.metadata = dict(self.sess.get_modelmeta().custom_metadata_map)

    def quantization(self, path: Path) -> str:
        if self.metadata.get("quantization"):
            return self.metadata["quantization"]
        try:
            import onnx

            m = onnx.load(str(path), load_external_data=False)
            ops = {n.op_type for n in m.graph.node}
            if ops & {"MatMulInteger", "ConvInteger", "QLinearMatMul", "QLinearConv", "DynamicQuantizeLinear",
                      "DequantizeLinear"}:
                return "int8"
            if any(t.data_type == onnx.TensorProto.FLOAT16 for t in m.graph.initializer):
                return "fp16"
            return "fp32"
        except ImportError:
            return "unknown"

    def run(self, feeds: dict) -> list:
        return self.sess.run(None, feeds)

    def resize(self, shapes: dict) -> None:  # ONNX takes any shape its dims allow
        return None


class LiteRtModel:
    runtime = "litert"

    def __init__(self, path: Path, threads: int):
        from importlib.metadata import PackageNotFoundError, version

        from ai_edge_litert import interpreter as lit

        try:
            self.version = version("ai-edge-litert")
        except PackageNotFoundError:  # hand-installed builds
            self.version = "unknown"
        self.it = lit.Interpreter(model_path=str(path), num_threads=threads)
        self.it.allocate_tensors()
        self.details = self.it.get_input_details()
        self.inputs = [_Input(d["name"], [int(s) if s >= 0 else None for s in d.get("shape_signature", d["shape"])],
                              d["dtype"]) for d in self.details]
        # edgekd writes the metadata ONNX files carry inside into a sidecar `<model>.tflite.json`
        side = Path(str(path) + ".json")
        try:
            self.metadata = {str(k): v if isinstance(v, str) else json.dumps(v)  # the contract is an object
                             for k, v in json.loads(side.read_text()).items()} if side.exists() else {}
        except (OSError, ValueError):
            self.metadata = {}

    def quantization(self, path: Path) -> str:
        kinds = {np.dtype(t["dtype"]) for t in self.it.get_tensor_details()}
        if np.dtype(np.int8) in kinds:
            return "int8"
        if np.dtype(np.float16) in kinds:
            return "fp16"
        return "fp32"

    def resize(self, shapes: dict) -> None:
        stale = [d for d in self.details if list(d["shape"]) != list(shapes[d["name"]])]
        for d in stale:
            self.it.resize_tensor_input(d["index"], list(shapes[d["name"]]))
        if stale:
            self.it.allocate_tensors()
            self.details = self.it.get_input_details()

    def run(self, feeds: dict) -> list:
        for d in self.details:
            self.it.set_tensor(d["index"], feeds[d["name"]])
        self.it.invoke()
        return [self.it.get_tensor(o["index"]) for o in self.it.get_output_details()]


def open_model(path: Path, threads: int, runtime: str = "auto"):
    if runtime == "auto":
        runtime = "litert" if path.suffix.lower() == ".tflite" else "onnxruntime"
    if runtime == "onnxruntime":
        return OnnxModel(path, threads)
    if runtime == "litert":
        return LiteRtModel(path, threads)
    raise SystemExit(f"runner: unknown runtime '{runtime}' (onnxruntime or litert)")


class InputSpec:
    """How to feed the model: which input carries features, its time axis, and the frame rate.

    Convention (edgekd / sherpa zipformer2_ctc): `x` (N, T, F) float32 + `x_lens` (N,) int64.
    Also handled: NeMo-style (N, F, T), a single features input, and fixed shapes (used as given).
    """

    def __init__(self, model, n_mels_hint: int | None = None):
        self.inputs = model.inputs
        meta = model.metadata
        try:
            feat = json.loads(meta.get("featurizer") or "{}")
        except (ValueError, TypeError):
            feat = {}
        sr, hop = feat.get("sample_rate"), feat.get("hop_length")
        self.fps = float(sr) / float(hop) if sr and hop else float(meta.get("feature_frame_rate", DEFAULT_FPS))
        n_mels = feat.get("n_mels") or n_mels_hint or 80  # 80 mel bands unless the model says otherwise
        floats = [i for i in self.inputs if i.dtype.kind == "f"]
        self.feat = next((i for i in floats if len(i.shape) == 3), floats[0] if floats else self.inputs[0])
        self.lens = next((i for i in self.inputs if i is not self.feat and i.dtype.kind in "iu" and len(i.shape) == 1), None)
        shape = self.feat.shape
        # time axis: the dynamic non-batch axis; else the one that is not the mel dim; else axis 1.
        # Only a rank-3 input is a feature sequence; anything else (an image, ...) runs as given.
        dyn = [a for a in range(1, len(shape)) if shape[a] is None]
        if dyn or len(shape) == 3:
            self.time_axis = dyn[0] if dyn else 2 if shape[1] == n_mels and shape[2] != n_mels else 1
        else:
            self.time_axis = None
        self.fixed_frames = shape[self.time_axis] if self.time_axis is not None else None

    def shapes(self, frames: int) -> dict:
        out = {}
        for i in self.inputs:
            s = [d if d is not None else 1 for d in i.shape]
            if i is self.feat and self.time_axis is not None:
                s[self.time_axis] = frames
                if len(s) == 3 and i.shape[3 - self.time_axis] is None:
                    s[3 - self.time_axis] = 80  # unknown feature dim: the usual 80 mel bands
            out[i.name] = s
        return out

    def feeds(self, frames: int, rng: np.random.Generator) -> dict:
        def fill(i, s):
            if i is self.lens:
                return np.full(s, frames, dtype=i.dtype)
            if i.dtype.kind == "f":
                return rng.standard_normal(s).astype(i.dtype)
            return (np.ones if i.dtype.kind == "b" else np.zeros)(s, dtype=i.dtype)
        return {i.name: fill(i, s) for i, s in zip(self.inputs, self.shapes(frames).values())}


def _stats(ms: list[float]) -> dict:
    a = np.asarray(ms, dtype=np.float64)
    return {**{f"p{q}": float(np.percentile(a, q)) for q in (50, 90, 99)}, "mean": float(a.mean()),
            "std": float(a.std()), "min": float(a.min()), "max": float(a.max())}


def measure(args) -> list[dict]:
    path = Path(args.model)
    if not path.is_file():
        raise SystemExit(f"runner: model {path} does not exist")
    threads = args.threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    rss0 = _status_kb("VmRSS")
    t0 = time.perf_counter()
    model = open_model(path, threads, args.runtime)
    load_ms = (time.perf_counter() - t0) * 1e3
    rss_load = _status_kb("VmRSS")
    spec = InputSpec(model)
    rng = np.random.default_rng(0)
    audio_s = float(args.seconds)
    files = model_files(path)
    size = sum(f.stat().st_size for f in files)
    base = {"schema": SCHEMA, "device": args.device, "threads": threads, "warmup": args.warmup, "source": args.source,
            "model": {"name": args.name or path.stem, "path": str(path), "format": path.suffix.lstrip(".").lower(),
                      "quantization": args.quantization or model.quantization(path), "sha256": sha256_files(files),
                      "size_bytes": size},
            "runtime": {"name": model.runtime, "version": model.version}, "cpu": cpu_info(),
            "audio_seconds": audio_s, "frames_per_second": spec.fps, "python": platform.python_version(),
            "numpy": np.__version__, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    recs: list[dict] = []

    def rec(metric, value, unit, **kw):
        recs.append(dict(base, metric=metric, value=value, unit=unit, **kw))

    rec("model_size", size / 2**20, "MiB", iterations=0, mode="static")
    rec("load_time", load_ms, "ms", iterations=1, mode="cold")
    if rss_load is not None:
        rec("rss_after_load", rss_load / 1024, "MiB", iterations=0, mode="static",
            extra={"rss_before_load_mib": (rss0 or 0) / 1024})

    sys.path.insert(0, str(Path(__file__).resolve().parent))  # stream.py, labelled.py: copied beside this file
    if model.metadata.get("contract") == "nemo-cache-aware-ctc":  # caches fed back: stream.py runs that loop
        from stream import stream_records
        stream_records(model, args, rng, rec)
    else:
        _window_loop(model, spec, args, rng, rec)
    hwm = _status_kb("VmHWM")
    if hwm is not None:
        rec("peak_rss", hwm / 1024, "MiB", iterations=0, mode="process")
    if args.bundle:  # on-device WER and host parity
        from labelled import bundle_records
        args.failure = bundle_records(args.bundle, model, spec, base["model"]["quantization"], args.min_identical, rec)
    return recs


def _window_loop(model, spec: InputSpec, args, rng, rec) -> None:
    """Offline: the whole utterance in one call; streaming: fixed windows one after another, as a
    device would feed a microphone. Both time passes over the utterance, chunk by chunk."""
    audio_s = float(args.seconds)
    total_frames, chunk_frames = max(1, int(round(audio_s * spec.fps))), None
    if args.chunk_seconds:
        chunk_frames = max(1, int(round(args.chunk_seconds * spec.fps)))
        if spec.fixed_frames and chunk_frames != spec.fixed_frames:
            raise SystemExit(f"runner: the model takes fixed windows of {spec.fixed_frames} frames; "
                             f"--chunk-seconds {args.chunk_seconds} gives {chunk_frames}")
    elif spec.fixed_frames:
        chunk_frames = spec.fixed_frames
    streaming = chunk_frames is not None
    frames = chunk_frames or total_frames
    n_chunks = max(1, math.ceil(total_frames / frames))
    model.resize(spec.shapes(frames))
    chunks = [spec.feeds(frames, rng) for _ in range(min(n_chunks, 8))]

    def run(c: int) -> float:  # ms
        t0 = time.perf_counter()
        model.run(chunks[c % len(chunks)])
        return (time.perf_counter() - t0) * 1e3

    first = run(0)
    warm = [run(i) for i in range(args.warmup)]
    per_chunk, passes = [], []
    deadline = time.perf_counter() + args.max_time
    while len(passes) < args.iterations and (len(passes) < args.min_iterations or time.perf_counter() < deadline):
        one = [run(c) for c in range(n_chunks)]
        per_chunk += one
        passes.append(sum(one))
    kw = (dict(mode="streaming", chunk_seconds=frames / spec.fps, frames=frames, chunks_per_pass=n_chunks)
          if streaming else dict(mode="offline", frames=total_frames))
    rec("first_inference", first, "ms", **dict(kw, iterations=1))
    if warm:
        rec("warmup_mean", float(np.mean(warm)), "ms", **dict(kw, iterations=len(warm)))
    if streaming:
        st = _stats(per_chunk)
        for k in ("p50", "p90", "p99", "mean", "std", "max"):
            rec(f"chunk_latency_{k}", st[k], "ms", **dict(kw, iterations=len(per_chunk)))
    pst = _stats(passes)
    per = {"extra": {"per": "utterance"}} if streaming else {}
    for k in ("p50", "p90", "p99", "mean", "std") + (() if streaming else ("min", "max")):
        rec(f"latency_{k}", pst[k], "ms", **dict(kw, iterations=len(passes), **per))
    basis = "sum of chunk times, p50 over passes" if streaming else "latency_p50"
    rec("rtf", pst["p50"] / 1e3 / audio_s, "ratio", **dict(kw, iterations=len(passes), extra={"basis": basis}))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgekd-bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help=".onnx or .tflite file")
    p.add_argument("--seconds", type=float, default=10.0, help="audio seconds per utterance (input length)")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = the CPUs this process may use)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs after the first inference")
    p.add_argument("--iterations", type=int, default=20, help="timed runs (utterances)")
    p.add_argument("--min-iterations", type=int, default=5, help="timed runs even past --max-time")
    p.add_argument("--max-time", type=float, default=60.0, help="stop timing after this many seconds")
    p.add_argument("--chunk-seconds", type=float, default=0.0,
                   help="streaming loop with fixed windows of this length (default: only for fixed-length models)")
    p.add_argument("--runtime", default="auto", choices=["auto", "onnxruntime", "litert"])
    p.add_argument("--device", default="unknown", help="device label recorded in every record")
    p.add_argument("--source", default="measured-on-device", choices=SOURCES)
    p.add_argument("--name", default="", help="model name (default: file stem)")
    p.add_argument("--quantization", default="", help="override the detected quantization label")
    p.add_argument("--out", default="", help="JSONL file to write (default: stdout)")
    p.add_argument("--bundle", default="", help="labelled bundle folder: also report WER and identical transcripts")
    p.add_argument("--min-identical", type=float, default=None, help="gate (default: the bundle's for this precision)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.seconds <= 0 or args.iterations < 1 or args.warmup < 0:
        raise SystemExit("runner: --seconds must be > 0, --iterations >= 1, --warmup >= 0")
    recs = measure(args)
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in recs)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        (tmp := out.with_name(out.name + ".tmp")).write_text(text)
        os.replace(tmp, out)  # atomic: a killed run leaves no half file
        print(f"{out}: {len(recs)} records", file=sys.stderr)
    else:
        sys.stdout.write(text)
    if getattr(args, "failure", ""):  # after writing: the records show what differed
        print(args.failure, file=sys.stderr)
    return 3 if getattr(args, "failure", "") else 0


if __name__ == "__main__":
    sys.exit(main())
