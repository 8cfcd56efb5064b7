"""Fault suite, hostile Label Studio exports.

Helpers live in faultkit.py, shared fixtures in conftest.py.
"""

from __future__ import annotations

import json

import pytest
from faultkit import count

from edgekd.errors import EdgekdError

pytestmark = pytest.mark.usefixtures("fault_counts")


# ------------------------------------------------------------------ hostile Label Studio exports


@pytest.fixture
def review_manifest(tmp_path):
    from edgekd.manifest import Utterance, write_manifest

    write_manifest(tmp_path / "audio.jsonl", [Utterance(id=f"u{i}", audio=str(tmp_path / f"u{i}.wav"), duration=1.0)
                                              for i in range(4)])
    return tmp_path / "audio.jsonl"


def _task(tid, uid, value):
    return {"id": tid, "data": {"utt_id": uid},
            "annotations": [{"created_at": "2026-01-01", "result": [{"type": "textarea", "value": value}]}]}


def test_label_studio_values_and_duplicates(tmp_path, review_manifest):
    from edgekd.manifest import read_manifest
    from edgekd.review import import_annotations

    tasks = [_task(1, "u0", {"text": "abc def"}),  # a string, not a list: one answer
             _task(2, "u1", {"text": {"abc": 1, "def": 2}}),  # a dict: an error, not its keys
             _task(3, "u2", {"text": ["ok", 5]}),
             _task(4, "u3", {"text": ["fine words"]}),
             _task(4, "u3", {"text": ["other words"]}),  # duplicate task id and utterance
             _task(5, "u2", "not a dict"),
             "not a task", {"id": 7, "data": None}, {"id": 8, "data": {"utt_id": ["u0"]}, "annotations": []}]
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    stats = import_annotations(tmp_path / "export.json", review_manifest, tmp_path / "out")
    labeled = {u.id: u.text for u in read_manifest(tmp_path / "out/labeled.jsonl")}
    assert labeled == {"u0": "abc def", "u3": "fine words"}
    errors = [json.loads(l) for l in (tmp_path / "out/import_errors.jsonl").read_text().splitlines()]
    assert stats["errors"] == len(errors) == 7
    assert any("already labeled by task 4" in e["error"] for e in errors)
    assert any("value.text must be a list of strings, got dict" in e["error"] for e in errors)
    count("inputs_tried", len(tasks))


@pytest.mark.parametrize("kind", ["latin1", "deep", "not_json", "a_dict", "empty", "missing"])
def test_label_studio_bad_files_are_one_line(tmp_path, review_manifest, kind):
    from edgekd.review import import_annotations

    p = tmp_path / "export.json"
    data = {"latin1": json.dumps([_task(1, "u0", {"text": ["café"]})]).encode().replace(b"\\u00e9", b"\xe9"),
            "deep": b"[" * 200000 + b"]" * 200000, "not_json": b"{oops", "a_dict": b'{"tasks": []}',
            "empty": b""}.get(kind)
    if data is not None:
        p.write_bytes(data)
    with pytest.raises(EdgekdError) as ei:
        import_annotations(p, review_manifest, tmp_path / "out")
    assert str(p) in str(ei.value) and "\n" not in str(ei.value)
    count("inputs_tried")
