"""Label Studio round trip: task schema, majority vote with 3 annotators, ties, malformed tasks."""

import json
import xml.etree.ElementTree as ET

import pytest

from edgekd.errors import EdgekdError
from edgekd.manifest import Utterance, read_manifest, write_jsonl, write_manifest
from edgekd.records import PseudoLabel
from edgekd.review import export_tasks, import_annotations, majority


@pytest.fixture
def review_set(tmp_path):
    utts = [Utterance(id=f"u{i}", audio=str(tmp_path / f"u{i}.wav"), duration=1.0 + i) for i in range(4)]
    write_manifest(tmp_path / "review.jsonl", utts)
    write_jsonl(tmp_path / "labels.jsonl", [PseudoLabel(id=u.id, audio=u.audio, duration=u.duration, text=f"guess {i}",
                                                        confidence=0.1 * i, frames=25, route="review").to_dict()
                                            for i, u in enumerate(utts)])
    return tmp_path


def _ann(text, when, cancelled=False):
    return {"created_at": when, "was_cancelled": cancelled,
            "result": [{"from_name": "transcription", "to_name": "audio", "type": "textarea",
                        "value": {"text": [text]}}]}


def test_export_matches_label_studio_schema(review_set):
    out = export_tasks(review_set / "review.jsonl", review_set / "labels.jsonl", review_set / "ls")
    tasks = json.loads(out["tasks"].read_text())
    assert len(tasks) == 4
    cfg = ET.fromstring(out["config"].read_text())
    names = {e.get("name"): e.tag for e in cfg.iter() if e.get("name")}
    assert names == {"audio": "Audio", "transcription": "TextArea"}
    for t in tasks:
        assert set(t) == {"data", "predictions"} and t["data"]["audio"].endswith(".wav")
        (pred,) = t["predictions"]
        assert 0 <= pred["score"] <= 1 and isinstance(pred["model_version"], str)
        (res,) = pred["result"]
        # every result points at names that exist in the labeling config, with the right types
        assert names[res["from_name"]] == "TextArea" and names[res["to_name"]] == "Audio"
        assert res["type"] == "textarea" and isinstance(res["value"]["text"], list)


def test_import_three_annotators_majority_and_agreement(review_set):
    export = [
        {"id": 1, "data": {"utt_id": "u0"}, "annotations": [_ann("The cat sat.", "1"), _ann("the cat sat", "2"),
                                                             _ann("the hat sat", "3")]},
        {"id": 2, "data": {"utt_id": "u1"}, "annotations": [_ann("a b c", "1"), _ann("a b c", "2"),
                                                             _ann("a b c", "3")]},
        {"id": 3, "data": {"utt_id": "u2"}, "annotations": [_ann("x y", "1", cancelled=True), _ann("one two", "2"),
                                                             _ann("one two", "3")]},
        {"id": 4, "data": {"utt_id": "nope"}, "annotations": []},
        {"id": 5, "data": {"utt_id": "u3"}},
        "garbage",
    ]
    (review_set / "export.json").write_text(json.dumps(export))
    stats = import_annotations(review_set / "export.json", review_set / "review.jsonl", review_set / "imp")
    got = {u.id: u.text for u in read_manifest(review_set / "imp/labeled.jsonl")}
    assert got == {"u0": "the cat sat", "u1": "a b c", "u2": "one two"}
    errs = [json.loads(l) for l in (review_set / "imp/import_errors.jsonl").read_text().splitlines()]
    assert {e["task"] for e in errs} == {4, 5, "#5"}
    assert stats["imported"] == 3 and stats["errors"] == 3
    assert stats["fraction_unanimous"] == pytest.approx(2 / 3, abs=1e-3)
    assert 0 < stats["mean_pairwise_wer"] < 1


def test_tie_rule_most_central_then_earliest():
    assert majority(["a b c d", "a b x d", "a b c y"]) == "a b c d"  # central answer wins the 3-way tie
    assert majority(["one two", "three four"]) == "one two"  # symmetric tie: earliest


def test_malformed_export_is_a_clear_error(review_set):
    (review_set / "bad.json").write_text("{not json")
    with pytest.raises(EdgekdError, match="not a Label Studio export"):
        import_annotations(review_set / "bad.json", review_set / "review.jsonl", review_set / "x")


def test_export_refuses_a_labels_file_that_is_not_pseudolabels(review_set):
    from edgekd.errors import ManifestError

    (review_set / "partial.jsonl").write_text(json.dumps({"id": "u1", "text": "guess"}) + "\n")
    with pytest.raises(ManifestError, match="PseudoLabel 'u1': missing field"):
        export_tasks(review_set / "review.jsonl", review_set / "partial.jsonl", review_set / "ls")
