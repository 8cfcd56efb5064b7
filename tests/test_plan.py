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
