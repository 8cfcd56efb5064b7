"""The profile stage: results + per-device tables + Pareto plot + manifest; errors and resume."""

import json

import pytest

from benchmodels import onnx_ctc
from edgekd.manifest import StageManifest
from edgekd.profile import ProfileOptions, device_table, pareto_front, run_profile
from edgekd.profile.devices import load_device

FAST = dict(seconds=1.0, iterations=3, warmup=0, max_time=3.0)


def test_run_profile_writes_tables_plot_and_manifest(tmp_path):
    small = onnx_ctc(tmp_path / "small.onnx", hidden=16)
    big = onnx_ctc(tmp_path / "big.onnx", hidden=256)
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a model")
    opts = ProfileOptions(devices=("rpi4",), modes=("estimate", "host"), threads=1, **FAST)
    man = StageManifest.load(run_profile(opts, [small, big, bad, tmp_path / "missing.onnx"], tmp_path / "out",
                                         wer={"small": 0.4, "big.onnx": 0.2}))
    out = tmp_path / "out"
    assert man.stage == "profile" and man.metrics["errors"] == 3  # broken x 2 modes + missing
    errs = [json.loads(x) for x in (out / "errors.jsonl").read_text().splitlines()]
    assert {e["artifact"].split("/")[-1] for e in errs} == {"broken.onnx", "missing.onnx"}
    table = json.loads((out / man.outputs["table_rpi4"]).read_text())
    rows = table["rows"]
    assert {(r["artifact"], r["source"]) for r in rows} == {(a, s) for a in ("small.onnx", "big.onnx")
                                                            for s in ("estimated", "measured-on-host")}
    for r in rows:
        assert r["p50_ms"] > 0 and r["rtf"] > 0 and r["peak_mem_mib"] > 0 and r["size_mib"] > 0
        assert r["wer"] in (0.4, 0.2) and r["budget"]
        if r["source"] == "measured-on-host":
            assert r["p90_ms"] >= r["p50_ms"]
    assert (out / man.outputs["pareto_rpi4"]).stat().st_size > 1000
    n = man.metrics["records"]
    # a second run finds every record and measures nothing again
    man2 = StageManifest.load(run_profile(opts, [small, big], out))
    assert man2.metrics["records"] == n


def test_known_broken_configs_are_skipped_with_reason(tmp_path):
    model = onnx_ctc(tmp_path / "m.onnx")
    opts = ProfileOptions(devices=("rpi4",), modes=("host",), threads=1, **FAST)
    dev = load_device("rpi4")
    assert not dev.broken_for({"runtime": "onnxruntime", "via": "host"})
    man = StageManifest.load(run_profile(opts, [model], tmp_path / "o"))
    assert man.metrics["skipped"] == 0
    # the estimator cannot read a .tflite: skipped with the reason, not counted as an error
    tfl = tmp_path / "m.tflite"
    tfl.write_bytes(b"TFL3" + bytes(60))
    man = StageManifest.load(run_profile(ProfileOptions(devices=("rpi4",), modes=("estimate",), **FAST), [tfl],
                                         tmp_path / "t"))
    assert man.metrics["skipped"] == 1 and man.metrics["errors"] == 0
    assert "ONNX graphs only" in (tmp_path / "t" / "skipped.jsonl").read_text()
    budget = load_device("android-budget")
    assert budget.broken_for({"runtime": "onnxruntime", "via": "termux"})[0].reason


def test_options_verify_names_the_conflict():
    with pytest.raises(ValueError, match="ssh_host"):
        ProfileOptions(modes=("ssh",))
    with pytest.raises(ValueError, match="one physical device"):
        ProfileOptions(devices=("rpi4", "rpi5"), modes=("ssh",), ssh_host="pi@x")
    with pytest.raises(ValueError, match="modes"):
        ProfileOptions(modes=("quantum",))


def test_pareto_front():
    rows = [{"artifact": a, "p50_ms": p, "wer": w} for a, p, w in
            [("a", 10, 0.5), ("b", 20, 0.3), ("c", 25, 0.4), ("d", 40, 0.1), ("e", 5, 0.9)]]
    assert [r["artifact"] for r in pareto_front(rows)] == ["e", "a", "b", "d"]


def test_table_budget_flags_misses():
    rec = lambda metric, value: {"device": "rpi4", "source": "estimated", "threads": 4, "audio_seconds": 10.0,  # noqa
                                 "metric": metric, "value": value,
                                 "model": {"name": "m", "artifact": "m.onnx", "format": "onnx", "size_bytes": 1 << 20}}
    rows = device_table([rec("latency_est", 9000.0), rec("rtf", 0.9), rec("memory_est", 10.0)], "rpi4")
    assert "rtf 0.90 > 0.5" in rows[0]["budget"] and "latency" in rows[0]["budget"]


def test_cli_profile_and_bench(tmp_path):
    from typer.testing import CliRunner

    from edgekd.cli import app

    model = onnx_ctc(tmp_path / "m.onnx")
    r = CliRunner().invoke(app, ["profile", str(model), "--device", "rpi5", "--estimate", "--out", str(tmp_path / "p")])
    assert r.exit_code == 0, r.output
    assert "estimated" in r.output and "m.onnx" in r.output
    r = CliRunner().invoke(app, ["bench", "--model", str(model), "--device", "rpi4", "--out", str(tmp_path / "b"),
                                 "--seconds", "1", "--iterations", "3", "--warmup", "0", "--threads", "1"])
    assert r.exit_code == 0, r.output
    assert "measured-on-host" in r.output


def test_artifacts_sharing_a_file_name_get_their_folder_in_the_table(tmp_path):
    (tmp_path / "student").mkdir()
    (tmp_path / "pruned").mkdir()
    a = onnx_ctc(tmp_path / "student" / "model.onnx", hidden=64)
    b = onnx_ctc(tmp_path / "pruned" / "model.onnx", hidden=32)
    c = onnx_ctc(tmp_path / "student" / "other.onnx", hidden=16)
    man = StageManifest.load(run_profile(ProfileOptions(devices=("rpi4",), modes=("estimate",), **FAST), [a, b, c],
                                         tmp_path / "out"))
    rows = json.loads((tmp_path / "out" / man.outputs["table_rpi4"]).read_text())["rows"]
    assert sorted(r["artifact"] for r in rows) == ["other.onnx", "pruned/model.onnx", "student/model.onnx"]
    by = {r["artifact"]: r["p50_ms"] for r in rows}
    assert by["student/model.onnx"] > by["pruned/model.onnx"]  # two models, not one row written twice
