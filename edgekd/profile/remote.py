"""Run the benchmark on a real device: over ssh/scp (Raspberry Pi, Termux) or adb (Android).

ssh (tested against a real OpenSSH server on 127.0.0.1): copy runner.py (+ stream.py, and
labelled.py with a bundle) and the model (with its external-data files) into a folder on the device, create or reuse a venv there (or use the
device's own python), run, and copy the JSONL back. Uses the OpenSSH client (`ssh`, `scp`) so the
user's ~/.ssh/config, agents and keys work unchanged.

adb: push the model and LiteRT's `benchmark_model` binary (the user gives its path; it is built
for the phone's ABI) to /data/local/tmp, run it pinned to the big cores, and parse its output.
This path is tested on recorded benchmark_model output and command construction only: it has
NOT been verified on a phone here. Python on Android (Termux) is reached over ssh instead:
run `sshd` in Termux and use the ssh path with `port=8022`.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgekd.bench import RUNNER_PATH
from edgekd.bench.runner import model_files
from edgekd.errors import EdgekdError
from edgekd.profile.hostpin import read_records, runner_args


class RemoteError(EdgekdError):
    """A remote step failed: the message names the host, the step and the command's stderr."""


@dataclass(frozen=True)
class SshTarget:
    host: str  # user@host (or an alias from ~/.ssh/config)
    port: int = 22
    identity: str = ""  # private key file; empty = ssh's defaults / agent
    options: tuple[str, ...] = ()  # extra `-o Key=Value` options, e.g. UserKnownHostsFile=...
    remote_dir: str = "edgekd-bench"  # relative paths are under the remote user's home
    python: str = "python3"  # remote interpreter (used to create the venv, or run directly)
    venv: bool = True  # create/reuse <remote_dir>/venv with numpy + runtime; False = use `python` as is
    packages: tuple[str, ...] = ("numpy", "onnxruntime")  # pip-installed into a new venv
    system_site_packages: bool = False  # venv sees the system's numpy/onnxruntime (apt python3-numpy, ...)
    timeout: float = 1800  # seconds per remote command

    def __post_init__(self):
        self._verify()

    def _verify(self):
        # Each value lands in ssh/scp argv: one starting with '-' would be read as an option
        # (`-oProxyCommand=...` runs a local command), so such values are refused outright; argv
        # also gets `--` before the host as a second guard.
        for name in ("host", "identity", "python", "remote_dir"):
            v = getattr(self, name)
            if not isinstance(v, str) or v.startswith("-") or any(c in v for c in "\0\n\r"):
                raise RemoteError(f"--{name.replace('_', '-')} {v!r}: may not start with '-' or hold control "
                                  f"characters; give a host name / path")
        if not self.host or any(c.isspace() for c in self.host) or "/" in self.host:
            raise RemoteError(f"--host {self.host!r}: expected user@host or an ssh config alias")
        if not 0 < int(self.port) < 65536:
            raise RemoteError(f"--port {self.port}: expected 1..65535")

    def _base(self, prog: str) -> list[str]:
        cmd = [prog, "-o", "BatchMode=yes", "-o", "ConnectTimeout=15"]
        cmd += ["-p" if prog == "ssh" else "-P", str(self.port)]
        if self.identity:
            cmd += ["-i", self.identity, "-o", "IdentitiesOnly=yes"]
        for o in self.options:
            cmd += ["-o", o]
        return cmd

    def ssh_cmd(self, command: str) -> list[str]:
        return self._base("ssh") + ["--", self.host, command]

    def scp_cmd(self, sources: list[str], dest: str, recursive: bool = False) -> list[str]:
        return self._base("scp") + ["-q"] + (["-r"] if recursive else []) + ["--"] + sources + [dest]


def _run(cmd: list[str], what: str, host: str, timeout: float) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise RemoteError(f"{host}: {what}: '{cmd[0]}' is not installed (apt install openssh-client)") from None
    except subprocess.TimeoutExpired:
        raise RemoteError(f"{host}: {what}: timed out after {timeout:.0f} s") from None
    if p.returncode != 0:
        tail = " | ".join((p.stderr or p.stdout).strip().splitlines()[-3:])
        raise RemoteError(f"{host}: {what} failed (exit {p.returncode}): {tail}")
    return p.stdout


def ssh_bench(target: SshTarget, model: str | Path, out_jsonl: str | Path, **runner_kw) -> list[dict]:
    """Benchmark `model` on `target` over ssh; write the device's records to `out_jsonl`.

    `runner_kw` are runner options (seconds, threads, warmup, iterations, chunk_seconds, device,
    name, quantization, ...); `source` is always measured-on-device.
    """
    model = Path(model)
    files = model_files(model)
    rdir = target.remote_dir.rstrip("/")
    q = shlex.quote
    _run(target.ssh_cmd(f"mkdir -p {q(rdir)}/models"), "mkdir", target.host, 60)
    # stream.py beside the runner: a cache-aware streaming model's loop and latency suite
    _run(target.scp_cmd([str(RUNNER_PATH), str(RUNNER_PATH.with_name("stream.py"))], f"{target.host}:{rdir}/"),
         "copy runner", target.host, target.timeout)
    _run(target.scp_cmd([str(f) for f in files], f"{target.host}:{rdir}/models/"), "copy model", target.host,
         target.timeout)
    if runner_kw.get("bundle"):  # labelled bundle + its scorer: WER and host parity measured on the device
        _run(target.ssh_cmd(f"rm -rf {q(rdir)}/bundle"), "clear bundle", target.host, 60)
        _run(target.scp_cmd([str(RUNNER_PATH.with_name("labelled.py"))], f"{target.host}:{rdir}/labelled.py"),
             "copy scorer", target.host, target.timeout)
        _run(target.scp_cmd([str(runner_kw["bundle"])], f"{target.host}:{rdir}/bundle", recursive=True), "copy bundle",
             target.host, target.timeout)
        runner_kw = dict(runner_kw, bundle=f"{rdir}/bundle")
    py = target.python
    if target.venv:
        vpy = f"{rdir}/venv/bin/python"
        pkgs = " ".join(q(p) for p in target.packages)
        ssp = "--system-site-packages " if target.system_site_packages else ""
        setup = (f"if ! {q(vpy)} -c 'import numpy, onnxruntime' 2>/dev/null; then "
                 f"{q(py)} -m venv {ssp}{q(rdir)}/venv && "
                 f"({q(vpy)} -c 'import numpy, onnxruntime' 2>/dev/null || {q(vpy)} -m pip install -q {pkgs}); fi")
        _run(target.ssh_cmd(setup), "venv setup", target.host, target.timeout)
        py = vpy
    rmodel = f"{rdir}/models/{model.name}"
    rout = f"{rdir}/results-{model.stem}.jsonl"
    runner_kw = dict(runner_kw, source="measured-on-device")
    args = runner_args(rmodel, out=rout, **runner_kw)
    _run(target.ssh_cmd(" ".join(q(a) for a in [py, f"{rdir}/runner.py"] + args)), "benchmark", target.host,
         target.timeout)
    out_jsonl = Path(out_jsonl)
    out_jsonl.parent.mkdir(parents=True, exist_ok=True)
    _run(target.scp_cmd([f"{target.host}:{rout}"], str(out_jsonl)), "fetch results", target.host, 120)
    recs = read_records(out_jsonl)
    for r in recs:  # the device saw its own paths; record where the artifact lives here too
        r["model"]["local_path"] = str(model)
        r["remote"] = {"host": target.host, "port": target.port, "python": py}
    return recs


# ------------------------------------------------------------------ Android / adb


@dataclass(frozen=True)
class AdbTarget:
    serial: str  # `adb devices` serial
    benchmark_binary: str  # local path of LiteRT's benchmark_model built for the phone (android_arm64)
    adb: str = "adb"
    remote_dir: str = "/data/local/tmp/edgekd"
    cpu_mask: str = ""  # taskset mask for the big cores, e.g. "f0"; empty = no pinning
    extra_flags: tuple[str, ...] = ("--use_xnnpack=true",)


def adb_commands(target: AdbTarget, model: str | Path, *, threads: int, warmup: int = 3, iterations: int = 50,
                 max_secs: float = 60.0) -> list[list[str]]:
    """The adb argv lists that push the files and run benchmark_model (in order)."""
    model = Path(model)
    adb = [target.adb, "-s", target.serial]
    rbin = f"{target.remote_dir}/benchmark_model"
    rmodel = f"{target.remote_dir}/{model.name}"
    run = [rbin, f"--graph={rmodel}", f"--num_threads={threads}", f"--warmup_runs={warmup}",
           f"--num_runs={iterations}", f"--max_secs={max_secs:g}", *target.extra_flags]
    if target.cpu_mask:
        run = ["taskset", target.cpu_mask] + run
    return [adb + ["shell", "mkdir", "-p", target.remote_dir],
            adb + ["push", target.benchmark_binary, rbin],
            adb + ["shell", "chmod", "755", rbin],
            adb + ["push", str(model), rmodel],
            adb + ["shell", " ".join(shlex.quote(a) for a in run)]]


_NUM = r"([0-9.]+(?:[eE][+-]?[0-9]+)?)"


def parse_benchmark_model(text: str) -> dict[str, float]:
    """Numbers from LiteRT benchmark_model output (times in ms, memory in MB).

    Reads the summary line (`Inference timings in us: Init: .., First inference: .., Warmup (avg):
    .., Inference (avg): ..`), the last `count=.. avg=.. std=..` line (the timed runs), and the memory
    lines of old and new versions (`Peak memory footprint (MB): init= overall=`, `Memory footprint
    delta from the start of the tool (MB): init= overall=`, `Overall peak memory footprint (MB) via
    periodic monitoring: ..`). Raises ValueError if the summary line is missing.
    """
    text = text.replace("\r", "")
    out: dict[str, float] = {}
    m = re.search(rf"Inference timings in us: Init: {_NUM}, First inference: {_NUM}, Warmup \(avg\): {_NUM}, "
                  rf"Inference \(avg\): {_NUM}", text)
    if not m:
        raise ValueError("benchmark_model output has no 'Inference timings in us' line (did the run fail?)")
    for k, v in zip(("init_ms", "first_inference_ms", "warmup_avg_ms", "inference_avg_ms"), m.groups()):
        out[k] = float(v) / 1e3
    runs = re.findall(rf"count=(\d+) first={_NUM} curr={_NUM} min={_NUM} max={_NUM} avg={_NUM} std={_NUM}"
                      rf"(?: p5={_NUM} median={_NUM} p95={_NUM})?", text)
    if runs:
        c, _first, _curr, mn, mx, avg, std, p5, med, p95 = runs[-1]
        out.update(count=float(c), min_ms=float(mn) / 1e3, max_ms=float(mx) / 1e3, avg_ms=float(avg) / 1e3,
                   std_ms=float(std) / 1e3)
        if med:
            out.update(p5_ms=float(p5) / 1e3, median_ms=float(med) / 1e3, p95_ms=float(p95) / 1e3)
    m = re.search(rf"(?:Peak memory footprint|Memory footprint delta from the start of the tool) \(MB\): "
                  rf"init={_NUM} overall={_NUM}", text)
    if m:
        out["memory_init_mb"], out["memory_overall_mb"] = float(m.group(1)), float(m.group(2))
    m = re.search(rf"Overall peak memory footprint \(MB\) via periodic monitoring: {_NUM}", text)
    if m:
        out["memory_peak_mb"] = float(m.group(1))
    m = re.search(rf"The input model file size \(MB\): {_NUM}", text)
    if m:
        out["model_size_mb"] = float(m.group(1))
    return out


def benchmark_model_records(parsed: dict[str, float], *, model: dict, device: str, threads: int, warmup: int,
                            audio_seconds: float, version: str = "unknown") -> list[dict]:
    """Runner-style records from parsed benchmark_model numbers (source measured-on-device)."""
    base = {"schema": "edgekd-bench-1", "model": model, "device": device, "threads": threads, "warmup": warmup,
            "source": "measured-on-device", "runtime": {"name": "litert-benchmark_model", "version": version},
            "cpu": {}, "audio_seconds": audio_seconds, "mode": "offline"}
    n = int(parsed.get("count", 0))
    table = [("load_time", "init_ms", "ms", 1), ("first_inference", "first_inference_ms", "ms", 1),
             ("warmup_mean", "warmup_avg_ms", "ms", warmup), ("latency_mean", "inference_avg_ms", "ms", n),
             ("latency_std", "std_ms", "ms", n), ("latency_min", "min_ms", "ms", n), ("latency_max", "max_ms", "ms", n),
             ("latency_p50", "median_ms", "ms", n), ("peak_rss", "memory_overall_mb", "MiB", 0)]
    recs = [dict(base, metric=m, value=parsed[k], unit=u, iterations=it) for m, k, u, it in table if k in parsed]
    if "inference_avg_ms" in parsed:
        basis = "latency_p50" if "median_ms" in parsed else "latency_mean"
        val = parsed.get("median_ms", parsed["inference_avg_ms"])
        recs.append(dict(base, metric="rtf", value=val / 1e3 / audio_seconds, unit="ratio", iterations=n,
                         extra={"basis": basis}))
    return recs


def adb_bench(target: AdbTarget, model: str | Path, out_jsonl: str | Path, *, device: str, threads: int,
              audio_seconds: float, warmup: int = 3, iterations: int = 50, model_info: dict | None = None) -> list[dict]:
    """Push and run benchmark_model on the phone; parse and write records. NOT verified on hardware."""
    from edgekd.manifest import write_jsonl

    out = ""
    for cmd in adb_commands(target, model, threads=threads, warmup=warmup, iterations=iterations):
        out = _run(cmd, "adb " + cmd[3], target.serial, 1800)
    parsed = parse_benchmark_model(out)
    info = model_info or {"name": Path(model).stem, "path": str(model), "format": Path(model).suffix.lstrip(".")}
    recs = benchmark_model_records(parsed, model=info, device=device, threads=threads, warmup=warmup,
                                   audio_seconds=audio_seconds)
    write_jsonl(out_jsonl, recs)
    return recs


__all__ = ["SshTarget", "AdbTarget", "RemoteError", "ssh_bench", "adb_commands", "adb_bench",
           "parse_benchmark_model", "benchmark_model_records"]
