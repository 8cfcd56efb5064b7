"""Typed records between stages: round trips, and validators that name the record id."""

import json
from pathlib import Path

import pytest

from edgekd.errors import ManifestError
from edgekd.records import (Artifact, ProfileRecord, PseudoLabel, ReviewAnswer, ReviewTask, read_artifacts,
                            read_pseudolabels, write_artifacts)


def _pl(**kw):
    d = dict(id="u1", audio="/a/u1.wav", duration=2.0, text="hello world", confidence=0.9, frames=50,
             route="distil", teachers=("t",))
    d.update(kw)
    return PseudoLabel(**d)


@pytest.mark.parametrize("rec", [
    _pl(),
    ReviewTask(utt_id="u1", audio="/a/u1.wav", prediction="hello", score=0.4),
    ReviewTask(utt_id="u2", audio="/a/u2.wav", prediction="hi", score=0.9, audit=True),
    ReviewAnswer(utt_id="u1", annotator="3", text="hello there", created_at="2026-01-01T00:00:00"),
    Artifact("onnx-int8-dynamic", "/x/model.int8-dynamic.onnx", "onnx", "int8-dynamic", size_bytes=10,
             metadata={"wer": 0.1}),
])
def test_round_trip_through_json(rec):
    d = json.loads(json.dumps(rec.to_dict()))
    assert type(rec).from_dict(d) == rec


def test_profile_record_round_trips_flat_and_keeps_every_field():
    row = {"schema": "edgekd-bench-1", "model": {"name": "m", "format": "onnx", "sha256": "ab"}, "metric": "rtf",
           "value": 0.2, "unit": "ratio", "device": "rpi4", "source": "measured-on-host", "threads": 4,
           "iterations": 5, "cpu": {"machine": "x86_64"}, "extra": {"basis": "latency_p50"}}
    rec = ProfileRecord.from_dict(row)
    assert rec.details["cpu"] == {"machine": "x86_64"} and rec.to_dict() == row


@pytest.mark.parametrize("rec,msg", [
    (lambda: _pl(confidence=1.5), "PseudoLabel 'u1': confidence has to be in"),
    (lambda: _pl(frames=0), "PseudoLabel 'u1': frames has to be > 0"),
    (lambda: _pl(route="maybe"), "PseudoLabel 'u1': route"),
    (lambda: _pl(duration=0), "PseudoLabel 'u1': duration"),
    (lambda: ReviewTask(utt_id="u9", audio="", prediction=None), "ReviewTask 'u9': audio"),
    (lambda: ReviewAnswer(utt_id="u9", annotator="1", text=["a"]), "ReviewAnswer 'u9': text must be a string"),
    (lambda: Artifact("t", "/m.tflite", "tflite", "fp32"), "Artifact 't': a LiteRT artifact needs its fixed window"),
    (lambda: Artifact("z", "/m.zip", "zip", "fp32"), "Artifact 'z': format"),
])
def test_validate_names_the_record(rec, msg):
    with pytest.raises(ManifestError, match=msg):
        rec().validate()


def test_soft_target_frames_must_match_duration_times_frame_rate(tmp_path):
    good = _pl(duration=2.0, frames=49)  # 25 frames/s: ~50, conv rounding allowed
    good.validate(frame_rate=25.0)
    with pytest.raises(ManifestError, match=r"PseudoLabel 'u1': 100 soft-target frames for 2.00 s at 25 frames/s"):
        _pl(duration=2.0, frames=100).validate(frame_rate=25.0)
    p = tmp_path / "labels.jsonl"
    p.write_text(json.dumps(_pl(frames=100).to_dict()) + "\n")
    assert len(read_pseudolabels(p)) == 1
    with pytest.raises(ManifestError, match="expected about 50"):
        read_pseudolabels(p, frame_rate=25.0)


def test_profile_record_refuses_bad_values():
    base = {"model": {"name": "m"}, "metric": "rtf", "value": 0.2, "unit": "ratio", "device": "rpi4",
            "source": "measured-on-host"}
    with pytest.raises(ManifestError, match="ProfileRecord m/rpi4/rtf: value has to be a finite number"):
        ProfileRecord.from_dict({**base, "value": float("nan")})
    with pytest.raises(ManifestError, match="source has to be one of"):
        ProfileRecord.from_dict({**base, "source": "guessed"})
    with pytest.raises(ManifestError, match="missing field"):
        ProfileRecord.from_dict({k: v for k, v in base.items() if k != "unit"})


def test_unknown_and_missing_fields_name_the_record():
    with pytest.raises(ManifestError, match="PseudoLabel 'u1': unknown field"):
        PseudoLabel.from_dict({**_pl().to_dict(), "colour": "red"})
    with pytest.raises(ManifestError, match="PseudoLabel 'u1': missing field.*frames"):
        PseudoLabel.from_dict({k: v for k, v in _pl().to_dict().items() if k != "frames"})


def test_artifacts_json_stores_relative_paths_and_reads_them_back_absolute(tmp_path):
    (tmp_path / "exp").mkdir()
    model = tmp_path / "exp" / "model.onnx"
    model.write_bytes(b"x")
    arts = [Artifact("onnx-fp32", str(model), "onnx", "fp32", size_bytes=1),
            Artifact("tflite-fp32.chunked", str(tmp_path / "exp" / "m.tflite"), "tflite", "fp32", 600, 48)]
    path = write_artifacts(arts, tmp_path / "exp" / "artifacts.json")
    rows = json.loads(path.read_text())
    assert rows[0]["path"] == "model.onnx" and rows[0]["runtime"] == "onnxruntime" and rows[1]["runtime"] == "litert"
    assert "zipformer2_ctc" in rows[0]["contract"]
    moved = tmp_path / "moved"
    (tmp_path / "exp").rename(moved)
    back = read_artifacts(moved / "artifacts.json")
    assert back[0].path == str(moved / "model.onnx") and back[1].window == 600
    (moved / "artifacts.json").write_text('[{"name": "x"}]')
    with pytest.raises(ManifestError, match="Artifact 'x': missing field"):
        read_artifacts(moved / "artifacts.json")


def test_artifacts_json_with_paths_relative_to_the_working_dir(tmp_path, monkeypatch):
    # `edgekd run` with run_dir=runs/demo hands relative paths around: they must not be doubled
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs/exp/student").mkdir(parents=True)
    (tmp_path / "runs/exp/student/model.onnx").write_bytes(b"x")
    inner = write_artifacts([Artifact("onnx-fp32", "runs/exp/student/model.onnx", "onnx", "fp32", size_bytes=1)],
                            Path("runs/exp/student/artifacts.json"))
    outer = write_artifacts(read_artifacts(inner), Path("runs/exp/artifacts.json"))
    assert json.loads(outer.read_text())[0]["path"] == "student/model.onnx"
    back = read_artifacts(outer)[0]
    assert Path(back.path).is_file() and Path(back.path).is_absolute()
