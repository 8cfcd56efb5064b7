"""Remote execution: the ssh path against a real OpenSSH server on 127.0.0.1; adb command
construction and LiteRT benchmark_model output parsing (no phone exists here)."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmodels import onnx_ctc
from edgekd.profile.remote import (AdbTarget, RemoteError, SshTarget, adb_commands, benchmark_model_records,
                                   parse_benchmark_model, ssh_bench)

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A throwaway OpenSSH server on 127.0.0.1, running as the current user, key auth only."""
    if not os.path.exists(SSHD) or not shutil.which("ssh") or not shutil.which("scp"):
        pytest.skip("OpenSSH server/client not installed (apt-get install openssh-server openssh-client)")
    d = tmp_path_factory.mktemp("sshd")
    for key in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True)
    (d / "authorized_keys").write_text((d / "user_key.pub").read_text())
    os.chmod(d / "authorized_keys", 0o600)
    if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation dir when root
    port = _free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n"
        f"PidFile {d}/sshd.pid\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nPermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n")
    log = open(d / "sshd.log", "w")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stdout=log, stderr=subprocess.STDOUT)
    user = os.environ.get("USER") or __import__("pwd").getpwuid(os.getuid()).pw_name
    target = SshTarget(f"{user}@127.0.0.1", port=port, identity=str(d / "user_key"),
                       options=("StrictHostKeyChecking=no", f"UserKnownHostsFile={d}/known_hosts", "LogLevel=ERROR"),
                       remote_dir=str(d / "remote"), python=sys.executable, venv=False)
    for _ in range(50):
        if proc.poll() is not None:
            break
        ok = subprocess.run(target.ssh_cmd("true"), capture_output=True, timeout=20).returncode == 0
        if ok:
            break
        time.sleep(0.2)
    else:
        ok = False
    if not ok:
        proc.terminate()
        pytest.skip(f"sshd could not start or accept the test key: {(d / 'sshd.log').read_text()[-300:]}")
    yield target
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


def test_ssh_bench_copies_runs_and_fetches(sshd, tmp_path):
    model = onnx_ctc(tmp_path / "student.onnx")
    out = tmp_path / "back" / "results.jsonl"
    recs = ssh_bench(sshd, model, out, seconds=2.0, threads=1, iterations=4, warmup=1, min_iterations=2,
                     device="rpi4", name="student")
    assert out.exists() and len(out.read_text().splitlines()) == len(recs) > 5
    m = {r["metric"]: r for r in recs}
    assert all(r["source"] == "measured-on-device" and r["device"] == "rpi4" for r in recs)
    assert m["latency_p50"]["value"] <= m["latency_p90"]["value"] <= m["latency_p99"]["value"]
    assert m["rtf"]["model"]["name"] == "student" and m["rtf"]["remote"]["port"] == sshd.port
    remote = Path(sshd.remote_dir)
    assert (remote / "runner.py").exists() and (remote / "models" / "student.onnx").exists()
    assert (remote / "stream.py").exists()  # beside the runner: a streaming model's loop
    from edgekd.manifest import sha256_file

    assert m["rtf"]["model"]["sha256"] == sha256_file(model)  # the device ran exactly this artifact


def test_ssh_bench_creates_and_reuses_a_venv(sshd, tmp_path):
    from dataclasses import replace

    target = replace(sshd, venv=True, system_site_packages=True, remote_dir=str(tmp_path / "rv"))
    model = onnx_ctc(tmp_path / "m.onnx")
    for _ in range(2):  # the second run finds the venv and skips setup
        recs = ssh_bench(target, model, tmp_path / "r.jsonl", seconds=0.5, threads=1, iterations=2, warmup=0,
                         min_iterations=1)
        assert recs[0]["remote"]["python"].endswith("venv/bin/python")
    assert (tmp_path / "rv" / "venv" / "bin" / "python").exists()


def test_ssh_errors_name_host_and_step(sshd, tmp_path):
    from dataclasses import replace

    bad = replace(sshd, python="/nonexistent/python3")
    with pytest.raises(RemoteError, match=r"127\.0\.0\.1: benchmark failed"):
        ssh_bench(bad, onnx_ctc(tmp_path / "m.onnx"), tmp_path / "r.jsonl", seconds=0.5, iterations=1)
    dead = replace(sshd, port=_free_port())
    with pytest.raises(RemoteError, match="mkdir failed"):
        ssh_bench(dead, onnx_ctc(tmp_path / "m.onnx"), tmp_path / "r.jsonl")


# --------------------------------------------------------------------------- adb / benchmark_model

# Output in the format LiteRT's benchmark_model prints (tensorflow/lite/tools/benchmark, as shown
# in its README and the TFLite performance docs): recent versions prefix lines with "INFO:", print
# p5/median/p95 and "Memory footprint delta"; older ones print "Peak memory footprint". Numbers
# here are written for the test, in that format.
NEW_OUTPUT = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Min num runs: [50]
INFO: Num threads: [4]
INFO: Min warmup runs: [3]
INFO: Graph: [/data/local/tmp/edgekd/student.tflite]
INFO: #threads used for CPU inference: [4]
INFO: Use xnnpack: [1]
INFO: Loaded model /data/local/tmp/edgekd/student.tflite
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
INFO: XNNPACK delegate created.
INFO: Explicitly applied XNNPACK delegate, and the model graph will be completely executed by the delegate.
INFO: The input model file size (MB): 5.1234
INFO: Initialized session in 41.52ms.
INFO: Running benchmark for at least 3 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=12 first=61234 curr=40110 min=39874 max=61234 avg=42011.5 std=5812 p5=39874 median=40307 p95=61234

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 60 seconds.
INFO: count=50 first=40201 curr=39950 min=39512 max=44870 avg=40380.2 std=912 p5=39601 median=40122 p95=42503

INFO: Inference timings in us: Init: 41520, First inference: 61234, Warmup (avg): 42011.5, Inference (avg): 40380.2
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=12.4023 overall=31.8789
INFO: Overall peak memory footprint (MB) via periodic monitoring: 38.5547
INFO: Memory status at the end of exeution:
INFO: - VmRSS              : 37 MB
"""

OLD_OUTPUT = """\
STARTING!
Num runs: [50]
Num threads: [4]
Graph: [/data/local/tmp/edgekd/student.tflite]
Loaded model /data/local/tmp/edgekd/student.tflite
Initialized session in 16.242ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=2 first=360262 curr=248910 min=248910 max=360262 avg=304586 std=55676

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=50 first=249042 curr=250889 min=247067 max=254474 avg=249684 std=1442

Inference timings in us: Init: 16242, First inference: 360262, Warmup (avg): 304586, Inference (avg): 249684
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
Peak memory footprint (MB): init=4.92969 overall=138.809
"""


def test_parse_new_benchmark_model_output():
    p = parse_benchmark_model(NEW_OUTPUT)
    assert p["init_ms"] == pytest.approx(41.52) and p["first_inference_ms"] == pytest.approx(61.234)
    assert p["warmup_avg_ms"] == pytest.approx(42.0115) and p["inference_avg_ms"] == pytest.approx(40.3802)
    assert p["count"] == 50 and p["std_ms"] == pytest.approx(0.912)  # the timed runs, not the warm-up line
    assert p["median_ms"] == pytest.approx(40.122) and p["min_ms"] <= p["median_ms"] <= p["p95_ms"] <= p["max_ms"]
    assert p["memory_init_mb"] == pytest.approx(12.4023) and p["memory_overall_mb"] == pytest.approx(31.8789)
    assert p["memory_peak_mb"] == pytest.approx(38.5547) and p["model_size_mb"] == pytest.approx(5.1234)


def test_parse_old_benchmark_model_output_and_records():
    p = parse_benchmark_model(OLD_OUTPUT.replace("\n", "\r\n"))  # adb shell may add carriage returns
    assert p["inference_avg_ms"] == pytest.approx(249.684) and p["count"] == 50
    assert p["memory_overall_mb"] == pytest.approx(138.809) and "median_ms" not in p
    recs = benchmark_model_records(p, model={"name": "s", "path": "s.tflite", "format": "tflite",
                                             "quantization": "fp32", "sha256": "0" * 64},
                                   device="pixel7", threads=4, warmup=1, audio_seconds=2.0)
    m = {r["metric"]: r for r in recs}
    assert m["rtf"]["value"] == pytest.approx(0.249684 / 2.0) and m["rtf"]["extra"]["basis"] == "latency_mean"
    assert all(r["source"] == "measured-on-device" for r in recs) and m["peak_rss"]["value"] == pytest.approx(138.809)


def test_parse_rejects_failed_runs():
    with pytest.raises(ValueError, match="Inference timings"):
        parse_benchmark_model("ERROR: Failed to allocate tensors!\nBenchmarking failed.\n")


def test_adb_commands(tmp_path):
    t = AdbTarget(serial="R58M123ABC", benchmark_binary="/opt/litert/benchmark_model", cpu_mask="f0")
    cmds = adb_commands(t, tmp_path / "student.tflite", threads=4, warmup=2, iterations=30)
    assert all(c[:3] == ["adb", "-s", "R58M123ABC"] for c in cmds)
    assert cmds[1][3:] == ["push", "/opt/litert/benchmark_model", "/data/local/tmp/edgekd/benchmark_model"]
    assert cmds[3][3] == "push" and cmds[3][-1] == "/data/local/tmp/edgekd/student.tflite"
    run = cmds[-1][-1]
    assert run.startswith("taskset f0 /data/local/tmp/edgekd/benchmark_model ")
    for flag in ("--graph=/data/local/tmp/edgekd/student.tflite", "--num_threads=4", "--warmup_runs=2",
                 "--num_runs=30", "--use_xnnpack=true"):
        assert flag in run.split()
