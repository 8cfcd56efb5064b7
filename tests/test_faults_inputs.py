"""Fault suite, bad inputs: audio that cannot be decoded, broken imports and manifests.

Helpers live in faultkit.py, shared fixtures in conftest.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import soundfile as sf
from faultkit import ROOT, SR, build_corpus, cli, count, leftovers, speech, wav

pytestmark = pytest.mark.usefixtures("fault_counts")


# ------------------------------------------------------------------ the bad-input corpus


def _check_import(out: Path, good: set[str], bad: dict[str, str]) -> None:
    from edgekd.manifest import read_manifest

    ids = {u.id for u in read_manifest(out)}
    rej = [json.loads(l) for l in (out.parent / "rejected.jsonl").read_text().splitlines()]
    by_id = {r["id"]: r for r in rej}
    lost = good - ids
    count("inputs_tried", len(good) + len(bad))
    count("good_files_lost", len(lost))
    assert not lost, f"good files lost: {lost}"
    assert ids == good, f"bad files let in: {ids - good}"
    assert len(rej) == len(by_id) == len(bad), "one rejected.jsonl line per bad file"
    for uid, reason in bad.items():
        assert uid in by_id, f"{uid} not listed in rejected.jsonl"
        assert by_id[uid]["reason"] == reason, (uid, by_id[uid])
        assert by_id[uid]["detail"] or reason in ("not-a-file",), uid
    count("bad_inputs_listed", len(bad))


def test_bad_audio_corpus_via_cli(tmp_path):
    good, bad = build_corpus(tmp_path / "in")
    assert len(good) + len(bad) >= 40
    out = tmp_path / "out" / "m.jsonl"
    r = cli("import", tmp_path / "in", "--out", out)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    _check_import(out, good, bad)
    assert not (tmp_path / "pwned").exists() and not (ROOT / "pwned").exists()
    first = (out.parent / "rejected.jsonl").read_text().splitlines()
    # a rerun rewrites rejected.jsonl, never appends; a file fixed since the last run leaves it
    os.unlink(tmp_path / "in/dangling.wav")
    wav(tmp_path / "in/dangling.wav", speech(SR, seed=30))
    assert cli("import", tmp_path / "in", "--out", out).returncode == 0
    good.add("dangling")
    del bad["dangling"]
    _check_import(out, good, bad)
    assert (out.parent / "rejected.jsonl").read_text().splitlines() == [l for l in first if '"dangling"' not in l]
    assert not leftovers(tmp_path / "out")


def test_one_hour_wav_is_refused_from_its_header(tmp_path, monkeypatch):
    from edgekd.audio import load_audio
    from edgekd.errors import AudioError

    good, bad = build_corpus(tmp_path / "in")
    monkeypatch.setattr(sf, "read", lambda *a, **k: pytest.fail("decoded a file the header already refuses"))
    with pytest.raises(AudioError) as ei:
        load_audio(tmp_path / "in/one_hour.wav")
    assert ei.value.reason == "too-long" and "3600" in ei.value.detail


def test_kaldi_and_table_imports_reject_entries_not_the_import(tmp_path):
    """A symlink loop, a missing file, a duplicate id, a line with no path and a non-UTF-8
    transcript each reject their own entry; the good entries all arrive."""
    from edgekd.audio import Quarantine, check_manifest
    from edgekd.importers import import_any

    d = tmp_path / "kaldi"
    for i in range(3):
        wav(d / f"g{i}.wav", speech(SR, seed=i))
    os.symlink("loop.wav", d / "loop.wav")
    (d / "wav.scp").write_bytes(b"g0 g0.wav\ng1 g1.wav\ng2 g2.wav\nloop loop.wav\nmiss missing.wav\n"
                                b"g0 g1.wav\nnopath\n")
    (d / "text").write_bytes(b"g0 hello\ng1 caf\xe9\ng2 world\n")
    q = Quarantine(tmp_path / "rejected.jsonl", "import")
    utts, n_bad = check_manifest(import_any(d), q)
    assert {u.id for u in utts} == {"g0", "g2"} and n_bad == 5
    reasons = sorted(json.loads(l)["reason"] for l in (tmp_path / "rejected.jsonl").read_text().splitlines())
    assert reasons == ["bad-transcript", "duplicate-id", "missing", "no-path", "symlink-loop"]

    t = tmp_path / "table"
    for i in range(3):
        wav(t / f"c{i}.wav", speech(SR, seed=i))
    os.symlink("loop.wav", t / "loop.wav")
    (t / "list.csv").write_bytes(b"path,text\nc0.wav,one\nc1.wav,caf\xe9\nc2.wav,three\nloop.wav,x\n,empty\n"
                                 b"c0.wav,again\n")
    q = Quarantine(tmp_path / "rej2.jsonl", "import")
    utts, n_bad = check_manifest(import_any(t / "list.csv"), q)
    assert {u.id for u in utts} == {"c0", "c2"} and n_bad == 4
    count("inputs_tried", 14)
    count("bad_inputs_listed", 9)


def test_manifest_readers_name_the_problem(tmp_path):
    from edgekd.errors import ManifestError
    from edgekd.manifest import read_manifest

    os.symlink("loop.wav", tmp_path / "loop.wav")
    cases = {"dup.jsonl": (b'{"id": "a", "audio": "x.wav"}\n{"id": "a", "audio": "y.wav"}\n', "a: duplicate id"),
             "latin.jsonl": (b'{"id": "caf\xe9", "audio": "x.wav"}\n', "not UTF-8"),
             "deep.jsonl": (b"[" * 100000 + b"]" * 100000 + b"\n", "deep.jsonl:1"),
             "gz.jsonl.gz": (b"\x1f\x8b\x08\x00garbage", "cannot read")}
    for name, (data, msg) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ManifestError, match=msg):
            read_manifest(tmp_path / name)
    (tmp_path / "loop.jsonl").write_text('{"id": "l", "audio": "loop.wav"}\n')
    assert read_manifest(tmp_path / "loop.jsonl")[0].audio.endswith("loop.wav")  # no RuntimeError
    count("inputs_tried", len(cases) + 1)
