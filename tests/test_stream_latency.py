"""The streaming latency suite: the runner's cache-aware loop (== OnnxStream, caches carried), its
records, the estimator on a streaming graph, and `edgekd profile` / `bench` on streaming files.
Tiny models, real runtimes: one dynamo export (the shipped path) and two TorchScript exports of the
same graph (same I/O, metadata and MACs, a fraction of the export time) for a chunk-size sweep."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from test_streaming import _model, _waves

from edgekd.audio import NEMO_FEATURES, featurize
from edgekd.bench import RUNNER_PATH
from edgekd.bench.runner import OnnxModel
from edgekd.bench.stream import CacheStream, Framing, window_starts
from edgekd.models import Checkpoint
from edgekd.profile.devices import load_device
from edgekd.tokens import DEFAULT_TOKENS

FAST = dict(seconds=1.5, warmup=1, iterations=3, min_iterations=2, max_time=5.0)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """{"ck": checkpoint, 4: dynamo export, 2 and 8: TorchScript exports} of one tiny streaming model."""
    from edgekd.export.streaming import export_streaming_onnx
    from edgekd.fit.space import (
        streaming_shape_graph,  # the TorchScript twin `edgekd fit` costs with
    )

    d = tmp_path_factory.mktemp("lat")
    ck = Checkpoint(model=_model(), featurizer=NEMO_FEATURES, tokens=DEFAULT_TOKENS, preset="tiny-stream", role="test")
    out = {"ck": ck, 4: export_streaming_onnx(ck, d / "c4" / "model.onnx", 4)}
    for chunk in (2, 8):
        out[chunk] = streaming_shape_graph(ck, chunk, d / f"stream-c{chunk}.onnx")
    return out


def _feats(ck) -> np.ndarray:
    from edgekd.export.streaming import with_tail

    f, n = featurize([with_tail(_waves()[1], 16000)], ck.featurizer)
    return f[0, : int(n[0])].numpy()


def test_the_runner_frames_audio_as_the_featurizer_does():
    from edgekd.bench.stream import CONTRACT

    fr = Framing({"featurizer": json.dumps(NEMO_FEATURES.to_dict())})
    for n in (400, 16000, 16079, 16080, 16159, 23456):
        assert fr.frames(n) == int(featurize([np.zeros(n, np.float32)], NEMO_FEATURES)[1][0]), n
    # runner.py tells a streaming model by this string before stream.py is imported
    assert f'"{CONTRACT}"' in RUNNER_PATH.read_text()


@pytest.mark.parametrize("chunk", [4, 8])
def test_the_runners_loop_equals_onnxstream_with_the_caches_carried(files, chunk):
    from edgekd.export.streaming import OnnxStream

    feats = _feats(files["ck"])
    stream = CacheStream(OnnxModel(files[chunk], 1))
    got, ref = stream.log_probs(feats), OnnxStream(files[chunk]).log_probs(feats)
    assert got.shape == ref.shape and len(ref) >= 8 * chunk  # enough chunks for the 8-frame cache to roll over
    assert np.abs(got - ref).max() <= 1e-5
    # the caches matter: windows run from zero caches each time give other outputs
    fresh = []
    for s in window_starts(len(feats), stream.window, stream.shift):
        stream.reset()
        fresh.append(stream.step(feats[s:s + stream.window]))
    assert np.abs(np.concatenate(fresh) - ref).max() > 1e-3


def test_host_pinned_streaming_records(files):
    from edgekd.profile.hostpin import run_host_pinned

    path = files[4]
    recs = run_host_pinned(load_device("rpi4"), path, threads=1, **FAST)
    m = {r["metric"]: r for r in recs}
    assert all(r["source"] == "measured-on-host" and r["threads"] == 1 for r in recs)
    assert {"rtf", "peak_rss", "chunk_latency_p50", "chunk_latency_p95", "chunk_latency_p99", "first_partial_latency_p50",
            "final_latency_p50", "final_latency_p95"} <= set(m)
    assert "latency_p50" not in m  # no per-utterance pass of fixed windows: the real chunk loop ran
    c = m["chunk_latency_p50"]
    meta = OnnxModel(path, 1).metadata
    fr, win, shift = Framing(meta), int(meta["window_size"]), int(meta["chunk_shift"])
    n_frames = fr.frames(int(1.5 * 16000) + int(0.66 * 16000))
    assert c["mode"] == "streaming" and c["chunk_ms"] == pytest.approx(float(meta["chunk_ms"]))
    assert c["chunks_per_pass"] == len(window_starts(n_frames, win, shift)) and c["frames"] == win
    assert m["chunk_latency_p50"]["value"] <= m["chunk_latency_p95"]["value"] <= m["chunk_latency_p99"]["value"] \
        <= m["chunk_latency_max"]["value"]
    # rtf: a pass's chunk compute over the audio its chunks advance; bounded by the chunk extremes
    chunk_s = shift / fr.fps
    assert 0 < m["rtf"]["value"] <= m["chunk_latency_max"]["value"] / 1e3 / chunk_s
    # first partial = the first window's audio + its compute; final = the windows owed at end of speech
    ready = fr.ready_s(win - 1) * 1e3
    assert ready <= m["first_partial_latency_p50"]["value"] <= ready + m["chunk_latency_max"]["value"]
    assert 0 < m["final_latency_p50"]["value"] <= m["final_latency_p95"]["value"]


def test_runner_alone_runs_a_streaming_model_with_stream_py_beside_it(files, tmp_path):
    """What ssh_bench and the Docker image copy: runner.py + stream.py, without torch or edgekd."""
    for f in ("runner.py", "stream.py"):
        (tmp_path / f).write_text(RUNNER_PATH.with_name(f).read_text())
    code = ("import sys, runpy; sys.argv=['runner.py','--model',sys.argv[1],'--seconds','1','--iterations','2',"
            "'--warmup','0','--threads','1']; import builtins; real=builtins.__import__\n"
            "def guard(n,*a,**k):\n    assert not n.startswith(('torch','edgekd')), n\n    return real(n,*a,**k)\n"
            "builtins.__import__=guard\nrunpy.run_path('runner.py', run_name='__main__')")
    p = subprocess.run([sys.executable, "-c", code, str(files[2])], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr[-500:]
    metrics = {json.loads(line)["metric"] for line in p.stdout.splitlines()}
    assert {"chunk_latency_p95", "final_latency_p50"} <= metrics


def test_runner_refuses_another_chunk_or_a_bundle_with_one_line(files, tmp_path):
    for extra, msg in ((["--chunk-seconds", "0.5"], "fixed at export"), (["--bundle", str(tmp_path)], "offline models")):
        p = subprocess.run([sys.executable, str(RUNNER_PATH), "--model", str(files[2]), "--seconds", "1", *extra],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode != 0 and msg in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_every_file_the_runner_imports_beside_it_is_shipped_with_it():
    """ssh_bench copies it, the Docker image COPYs it: else a device runs a runner that cannot import."""
    from pathlib import Path

    beside = {m for m in re.findall(r"^\s+from (\w+) import", RUNNER_PATH.read_text(), re.M)
              if RUNNER_PATH.with_name(m + ".py").exists()}
    assert beside == {"stream", "labelled"}
    root = Path(__file__).resolve().parent.parent
    copy = next(line for line in (root / "Dockerfile").read_text().splitlines()
                if line.startswith("COPY edgekd/bench/runner.py"))
    remote = (root / "edgekd" / "profile" / "remote.py").read_text()
    for m in beside:
        assert f"edgekd/bench/{m}.py" in copy, m
        assert f'RUNNER_PATH.with_name("{m}.py")' in remote, m


def test_the_estimator_learns_the_streaming_graph(files):
    import onnx

    from edgekd.profile.estimate import estimate_records
    from edgekd.profile.shapes import fix_inputs

    dev = load_device("rpi4")
    est = {c: {r["metric"]: r for r in estimate_records(files[c], dev, threads=1)} for c in (2, 8)}
    for c, m in est.items():
        assert all(r["source"] == "estimated" and r["mode"] == "streaming" for r in m.values())
        meta = OnnxModel(files[c], 1).metadata
        fr, win, shift = Framing(meta), int(meta["window_size"]), int(meta["chunk_shift"])
        chunk = m["chunk_latency_est"]["value"]
        assert m["chunk_latency_est"]["frames"] == win and m["rtf"]["value"] == pytest.approx(chunk / 1e3 / (shift / fr.fps))
        assert m["first_partial_latency_est"]["value"] == pytest.approx(fr.ready_s(win - 1) * 1e3 + chunk)
        # the tail padding always owes at least one window after the end of speech, run back to back
        assert chunk <= m["final_latency_est"]["value"] <= m["final_latency_est"]["extra"]["max_ms"]
        # the caches are graph inputs (a window of features on axis 2, fixed) and count as live memory
        fixed = fix_inputs(onnx.load(str(files[c])), 1000, 1)
        k = [1, *(int(meta[f"cache_last_channel_dim{i}"]) for i in (1, 2, 3))]
        assert fixed["audio_signal"][0] == [1, 80, win] and fixed["cache_last_channel"][0] == k
        assert m["peak_activation"]["value"] * 2**20 >= 4 * np.prod(k)
        assert m["memory_est"]["value"] >= m["weights_size"]["value"] + m["peak_activation"]["value"] - 1e-9
    # a chunk 4x as long costs more per call and less per second of audio
    assert est[8]["macs"]["value"] > 3 * est[2]["macs"]["value"]
    assert est[8]["chunk_latency_est"]["value"] > est[2]["chunk_latency_est"]["value"]
    assert est[8]["rtf"]["value"] < est[2]["rtf"]["value"]


def test_a_stream_slower_than_real_time_falls_behind():
    from edgekd.profile.estimate import streaming_latency

    fr = Framing({})  # 16 kHz, 10 ms hop
    fast = [streaming_latency(fr, 35, 32, 30.0, s)[1]["value"] for s in (5.0, 20.0)]  # 30 ms per 320 ms chunk
    slow = [streaming_latency(fr, 35, 32, 400.0, s)[1]["value"] for s in (5.0, 20.0)]  # 400 ms per 320 ms chunk
    assert fast[0] == pytest.approx(fast[1]) and fast[0] < 100  # a few owed windows, whatever the length
    assert slow[1] > slow[0] + 0.2 * 15 * 1e3 * 0.9  # 15 s more speech: (400 - 320) / 320 of it more backlog


def test_profile_on_streaming_artifacts_measures_estimates_and_plots(files, tmp_path):
    from edgekd.manifest import StageManifest
    from edgekd.profile import ProfileOptions, run_profile
    from edgekd.report import run_report

    opts = ProfileOptions(devices=("rpi4",), modes=("estimate", "host"), threads=1, seconds=1.0, iterations=2,
                          warmup=0, max_time=3.0)
    out = tmp_path / "profile"
    man = StageManifest.load(run_profile(opts, [files[2], files[8]], out))
    assert man.metrics["errors"] == 0, (out / "errors.jsonl").read_text()
    recs = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {r["source"] for r in recs} == {"estimated", "measured-on-host"}
    assert all(r.get("mode") == "streaming" for r in recs if r["metric"] == "rtf")
    rows = json.loads((out / man.outputs["streaming_rpi4"]).read_text())["rows"]
    assert {(r["chunk_ms"], r["source"]) for r in rows} == {(c, s) for c in (80.0, 320.0)
                                                            for s in ("estimated", "measured-on-host")}
    for r in rows:
        assert r["chunk_p50_ms"] > 0 and r["rtf"] > 0 and r["final_ms"] > 0 and r["first_partial_ms"] > 0
    table = json.loads((out / man.outputs["table_rpi4"]).read_text())["rows"]
    assert all(r["chunk_p50_ms"] > 0 and r["final_ms"] > 0 for r in table)
    assert (out / man.outputs["streaming_plot_rpi4"]).stat().st_size > 1000
    md = run_report(tmp_path)["md"].read_text()
    assert "Streaming latency" in md and "rpi4_streaming.png" in md


def test_cli_bench_prints_the_streaming_table(files, tmp_path):
    from typer.testing import CliRunner

    from edgekd.cli import app

    r = CliRunner().invoke(app, ["bench", "--model", str(files[2]), "--device", "rpi4", "--out", str(tmp_path / "b"),
                                 "--seconds", "1", "--iterations", "2", "--warmup", "0", "--threads", "1"])
    assert r.exit_code == 0, r.output
    assert "Streaming latency" in r.output and "final_ms" in r.output and "measured-on-host" in r.output
