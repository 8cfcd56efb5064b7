"""`edgekd pseudolabel --plan`: calibration on a sample, projections that scale the right way."""

import json

import pytest

from edgekd.manifest import Utterance, read_manifest
from edgekd.pseudolabel.plan import PlanOptions, plan_pseudolabel, spread_sample
from edgekd.pseudolabel import PseudoLabelOptions


def test_spread_sample_covers_short_to_long():
    utts = [Utterance(id=f"u{i}", audio="x.wav", duration=float(i)) for i in range(100)]
    s = spread_sample(utts, 5)
    assert [u.duration for u in s] == [0.0, 25.0, 50.0, 74.0, 99.0]  # evenly spaced, both ends included
    assert spread_sample(utts[:3], 5) == sorted(utts[:3], key=lambda u: u.duration)


def test_plan_on_a_tiny_manifest(corpus, tiny_ckpt_path, tmp_path):
    man = corpus / "target" / "train.jsonl"
    p = plan_pseudolabel(PseudoLabelOptions(workers=1), man, [str(tiny_ckpt_path)],
                         plan=PlanOptions(sample_minutes=0.3, nodes=(1, 4)))
    c, rows = p["calibration"], p["rows"]
    assert [r["audio_s"] > 0 for r in c["runs"]] == [True, True] and c["runs"][1]["audio_s"] > c["runs"][0]["audio_s"]
    assert c["x_realtime_per_node"] > 0 and c["bytes_per_frame"] > 0
    here = {r["nodes"]: r for r in rows if r["audio"].startswith("this manifest")}
    k = {r["nodes"]: r for r in rows if r["audio"] == "per 1,000 h"}
    assert here[1]["core_h"] == here[4]["core_h"] and here[4]["wall_h"] < here[1]["wall_h"]  # nodes cut wall, not work
    hours = sum(u.duration for u in read_manifest(man)) / 3600
    assert k[1]["soft_targets_GB"] == pytest.approx(here[1]["soft_targets_GB"] * 1000 / hours, rel=0.02)
    assert k[1]["core_h"] == pytest.approx(here[1]["core_h"] * 1000 / hours, rel=0.02)


def test_a_calibration_too_short_to_outweigh_start_up_is_flagged(monkeypatch, tmp_path):
    """A fast runtime on a short sample labels for seconds beside seconds of start-up: the plan
    says so, and how to fix it, instead of projecting noise silently."""
    from edgekd.manifest import Utterance, write_manifest
    from edgekd.pseudolabel import plan as plan_mod

    man = write_manifest(tmp_path / "m.jsonl", [Utterance(id=f"u{i}", audio=f"{i}.wav", duration=10.0)
                                                 for i in range(40)])

    def fake(wall_small, wall_big):
        runs = iter([(200.0, wall_small), (400.0, wall_big)])  # (audio s, wall s) of the small and big samples

        def calibrate(opts, sample, *a):
            audio, wall = next(runs)
            return {"audio_s": audio, "wall_s": wall, "frames": audio * 25, "bytes_per_frame": 8.0}
        monkeypatch.setattr(plan_mod, "_calibrate", calibrate)

    fake(12.0, 14.0)  # 100x real time after 10 s of start-up: 4 s of labeling in the big sample
    c = plan_mod.plan_pseudolabel(PseudoLabelOptions(workers=1), man, ["t"], plan=PlanOptions(sample_minutes=60))["calibration"]
    assert c["startup_s"] == 10.0 and len(c["warnings"]) == 1 and "whole manifest" in c["warnings"][0]
    fake(12.0, 14.0)
    c = plan_mod.plan_pseudolabel(PseudoLabelOptions(workers=1), man, ["t"], plan=PlanOptions(sample_minutes=1))["calibration"]
    assert "raise --plan-minutes (now 1)" in c["warnings"][0]
    fake(110.0, 210.0)  # 2x real time: 200 s of labeling beside 10 s of start-up
    assert not plan_mod.plan_pseudolabel(PseudoLabelOptions(workers=1), man, ["t"])["calibration"]["warnings"]


def test_plan_cli_writes_plan_json_and_labels_nothing(corpus, tiny_ckpt_path, tmp_path):
    from typer.testing import CliRunner

    from edgekd.cli import app

    out = tmp_path / "pl"
    r = CliRunner().invoke(app, ["pseudolabel", "-m", str(corpus / "target" / "train.jsonl"), "--teacher",
                                 str(tiny_ckpt_path), "--out", str(out), "--workers", "1", "--plan",
                                 "--plan-minutes", "0.2", "--plan-nodes", "1,2"])
    assert r.exit_code == 0, r.output
    assert "per 1,000 h" in r.output and "soft_targets_GB" in r.output
    assert json.loads((out / "plan.json").read_text())["rows"] and not list(out.glob("shard-*"))
