"""The whole pipeline on a tiny config: every stage manifest, rerun skips, --force reruns dependants."""

import pytest
import yaml

from edgekd.errors import ConfigError
from edgekd.manifest import StageManifest
from edgekd.pipeline import run_pipeline


@pytest.fixture
def tiny_config(tmp_path, tiny_model):
    teacher = tiny_model.save(tmp_path / "teacher.safetensors")
    cfg = {"run_dir": str(tmp_path / "run"), "data": {"synth": True},
           "synth": {"seed": 5, "hours_source": 0.001, "hours_target": 0.001, "min_split_utts": 6,
                     "piper_fraction": 0.0},
           "teachers": [str(teacher)], "pseudolabel": {"review_fraction": 0.5, "shard_utts": 3},
           "drift": {"permutations": 50}, "review": {"simulate_annotators": 3},
           "distil": {"preset": "tiny", "max_frames": 3000,
                      "loop": {"max_steps": 6, "warmup_steps": 1, "eval_every": 3, "ckpt_every": 3, "progress": False}},
           "prune": {"multiple": 4, "finetune_steps": 3, "max_frames": 3000},
           "export": {"tflite": [], "calibration_utts": 3, "verify_utts": 4, "latency_repeats": 1},
           "profile": {"iterations": 2, "warmup": 0, "seconds": 2.0}, "devices": ["rpi4"]}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_pipeline_end_to_end_skip_and_force(tiny_config, tmp_path):
    logs = []
    res = run_pipeline(tiny_config, log=logs.append)
    assert set(res["status"].values()) == {"ran"}
    for stage in res["status"]:
        m = StageManifest.load(tmp_path / "run" / stage)
        assert m.stage == stage and m.fingerprint and m.outputs and "wall_s" in m.timings
    assert res["report"]["html"].exists() and "Teacher WER" in res["report"]["md"].read_text()
    again = run_pipeline(tiny_config, log=logs.append)
    assert set(again["status"].values()) == {"skipped"}
    forced = run_pipeline(tiny_config, force=("pseudolabel",), log=logs.append)
    assert forced["status"] == {"synth": "skipped", "teacher_eval": "skipped", "drift": "skipped",
                                "pseudolabel": "ran", "review": "ran", "distil": "ran", "prune": "ran",
                                "export": "ran", "profile": "ran"}
    from edgekd.pipeline import summary_lines

    summary = summary_lines(tmp_path / "run")
    assert len(summary) == 5 and "student" in summary[0] and "rpi4" in summary[4], summary
    md = forced["report"]["md"].read_text()
    assert "Teacher vs student" in md and "Every artifact checked" in md and "rpi4" in md
    everything = run_pipeline(tiny_config, force=("synth",), log=logs.append)
    assert set(everything["status"].values()) == {"ran"}
    review = StageManifest.load(tmp_path / "run" / "review")
    assert review.metrics["imported"] == review.metrics["tasks"] > 0  # simulated annotators answered every task
    html = res["report"]["html"].read_text()
    assert html.count("data:image/png;base64,") >= 2  # drift and confidence plots embedded


@pytest.mark.parametrize("override,msg", [
    ("synth.hours_source=lots", "synth.hours_source: expected a number"),
    ("data.nope=1", "unknown config key 'data.nope'"),
    ("teachers=[]", "at least one teacher"),
    ("extra_section.x=1", "unknown config key 'extra_section'"),
])
def test_bad_config_stops_before_any_work(tiny_config, tmp_path, override, msg):
    with pytest.raises(ConfigError, match=msg):
        run_pipeline(tiny_config, [override], log=lambda m: None)
    assert not (tmp_path / "run").exists()
