"""Run the benchmark runner on this machine, in a fresh process, optionally pinned like a device.

A host-pinned run uses the device's thread count (intra-op threads, and `taskset` to as many of
this machine's CPUs, so the OS cannot spread work wider). The numbers are this machine's, not the
device's: every record says `source: measured-on-host`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from edgekd.bench import RUNNER_PATH
from edgekd.errors import EdgekdError
from edgekd.profile.devices import Device


class RunnerError(EdgekdError):
    """The runner failed on a model: the message names the model and ends with its stderr."""


def runner_args(model: str | Path, *, seconds: float = 10.0, threads: int = 0, warmup: int = 3,
                iterations: int = 20, min_iterations: int = 5, max_time: float = 60.0, chunk_seconds: float = 0.0,
                runtime: str = "auto", device: str = "host", source: str = "measured-on-host", name: str = "",
                quantization: str = "", out: str | Path = "", bundle: str | Path = "",
                min_identical: float | None = None) -> list[str]:
    """Command-line arguments for runner.py (the same list is used locally and over ssh)."""
    args = ["--model", str(model), "--seconds", str(seconds), "--threads", str(threads), "--warmup", str(warmup),
            "--iterations", str(iterations), "--min-iterations", str(min_iterations), "--max-time", str(max_time),
            "--runtime", runtime, "--device", device, "--source", source]
    if chunk_seconds:
        args += ["--chunk-seconds", str(chunk_seconds)]
    if name:
        args += ["--name", name]
    if quantization:
        args += ["--quantization", quantization]
    if out:
        args += ["--out", str(out)]
    if bundle:
        args += ["--bundle", str(bundle)]
    if min_identical is not None:
        args += ["--min-identical", str(min_identical)]
    return args


def read_records(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def run_local(model: str | Path, *, cpus: list[int] | None = None, python: str = sys.executable,
              timeout: float = 900, **kw) -> list[dict]:
    """Run runner.py in a fresh process here (so peak RSS is the model's), return its records.

    `cpus`: pin the process to these CPU ids with taskset (falls back to sched_setaffinity).
    """
    threads = kw.get("threads", 0)
    with tempfile.TemporaryDirectory(prefix="edgekd-bench-") as tmp:
        out = Path(tmp) / "results.jsonl"
        cmd = [python, str(RUNNER_PATH)] + runner_args(model, out=out, **kw)
        preexec = None
        if cpus:
            if shutil.which("taskset"):
                cmd = ["taskset", "-c", ",".join(map(str, cpus))] + cmd
            else:
                preexec = lambda: os.sched_setaffinity(0, cpus)  # noqa: E731
        env = dict(os.environ)
        if threads:  # OpenMP/BLAS pools inside runtimes follow the same count
            env["OMP_NUM_THREADS"] = str(threads)
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, preexec_fn=preexec)
        if p.returncode != 0 or not out.exists():
            tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
            raise RunnerError(f"{model}: runner failed (exit {p.returncode}): {' | '.join(tail)}")
        return read_records(out)


def pin_cpus(threads: int) -> list[int] | None:
    """The first `threads` CPUs this process may use, or None when pinning would change nothing."""
    avail = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    return avail[:threads] if threads < len(avail) else None


def run_host_pinned(device: Device, model: str | Path, *, threads: int | None = None, **kw) -> list[dict]:
    """Runner here with `device`'s thread count (capped at this machine's CPUs), measured-on-host."""
    avail = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    want = threads or device.threads
    t = min(want, avail)
    recs = run_local(model, cpus=pin_cpus(t), threads=t, device=device.name, source="measured-on-host", **kw)
    for r in recs:
        r["pinned"] = {"device_threads": want, "host_threads": t, "cpus": pin_cpus(t) or "all"}
    return recs


# Process CPU time, not wall time: both run on one thread, and on a shared machine wall time
# would fold other processes' work into this machine's "peak" (the estimator's host rows swung
# by a third between runs under load); the best of 20 / 8 tries, for the moments nothing shares the core.
_CALIBRATE = r"""
import time, numpy as np
a = np.random.default_rng(0).random((1024, 1024), dtype=np.float32); b = a.copy()
best = min((lambda t: (a @ b, time.process_time() - t)[1])(time.process_time()) for _ in range(20))
x = np.ones(1 << 26, np.float32); y = np.empty_like(x)
bt = min((lambda t: (np.copyto(y, x), time.process_time() - t)[1])(time.process_time()) for _ in range(8))
print(2 * 1024**3 / best / 1e9, 2 * x.nbytes / bt / 1e9)
"""


def cpu_ghz(default: float = 2.0) -> float:
    """This CPU's highest reported clock (/proc/cpuinfo), GHz."""
    try:
        mhz = [float(line.split(":")[1]) for line in Path("/proc/cpuinfo").read_text().splitlines()
               if line.startswith("cpu MHz")]
    except (OSError, ValueError):
        return default
    return max(mhz) / 1e3 if mhz else default


def host_device(threads: int | None = None) -> Device:
    """A device profile for this machine, calibrated by two one-thread micro-benchmarks.

    Peak FLOP/s is inferred from a numpy (OpenBLAS) 1024^3 sgemm assuming it runs at the
    estimator's GEMM efficiency, and DRAM bandwidth from a 256 MiB copy assuming one core reaches
    the estimator's one-core fraction -- so the estimator's own assumptions map the measured rates
    back onto themselves, and only the per-op-class model is being tested on this host.
    """
    from edgekd.profile import estimate as E
    from edgekd.profile.devices import Cluster

    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", _CALIBRATE], capture_output=True, text=True, env=env,
                         timeout=300, check=True).stdout.split()
    gflops, copy_gbs = float(out[0]), float(out[1])
    ghz = cpu_ghz()
    flags = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        flags = next((line.split(":", 1)[1] for line in text.splitlines() if line.startswith("flags")), "")
    except OSError:
        pass
    llc = 32768.0
    for idx in (3, 2):
        try:
            s = Path(f"/sys/devices/system/cpu/cpu0/cache/index{idx}/size").read_text().strip()
            llc = float(s.rstrip("K")) if s.endswith("K") else float(s.rstrip("M")) * 1024
            break
        except (OSError, ValueError):
            continue
    ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    isa = tuple(f for f, k in (("avx2", "avx2"), ("fma", "fma"), ("avx512", "avx512f"), ("avx512vnni", "avx512_vnni"))
                if k in flags.split())  # vnni: int8 dot products (estimate.precision_factor)
    gemm_eff = E.runtime_constants("onnxruntime")["efficiency"]["gemm"]["fp32"]
    return Device(name="host", description=f"this machine, calibrated ({gflops:.1f} GFLOP/s sgemm, {copy_gbs:.1f} GB/s copy)",
                  kind="host", soc="host", os=sys.platform, arch=os.uname().machine,
                  clusters=(Cluster("host-cpu", ncpu, ghz, gflops / gemm_eff / ghz),),
                  isa=isa, ram_gb=8.0, mem_bandwidth_gbs=copy_gbs / E.DRAM_EFF_ONE_CORE, llc_kb=llc,
                  runtime="onnxruntime", threads=min(threads or ncpu, ncpu), access="local")
