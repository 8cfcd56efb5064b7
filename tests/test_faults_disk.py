"""Fault suite, read-only and full disks, ENOSPC at every writer, OS errors.

Helpers live in faultkit.py, shared fixtures in conftest.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from faultkit import (
    SR,
    build_corpus,
    cli,
    count,
    leftovers,
    one_line_error,
    speech,
    wav,
)

pytestmark = pytest.mark.usefixtures("fault_counts")


# ------------------------------------------------------------------ read-only and full disks


@pytest.fixture
def tmpfs(tmp_path):
    """A 2 MB tmpfs (root only): the real ENOSPC and EROFS, not a simulation."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()[:100]}); the injected-fault test covers it")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(mnt: Path) -> None:
    with open(mnt / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def test_full_disk_one_line_and_no_temp_files(tmpfs, small_corpus, teacher, tmp_path):
    good, bad = build_corpus(tmp_path / "in")
    _fill(tmpfs)
    runs = {"import": ("import", tmp_path / "in", "--out", tmpfs / "imp/m.jsonl"),
            "pseudolabel": ("pseudolabel", "-m", small_corpus / "target/train.jsonl", "--teacher", teacher,
                            "--out", tmpfs / "pl", "--workers", "1"),
            "train": ("train", "--train", small_corpus / "source/train.jsonl", "--out", tmpfs / "tr/run", "--preset",
                      "tiny", "--steps", "2", "--threads", "1"),
            "synth": ("synth", "--out", tmpfs / "syn", "--hours-source", "0.0005", "--hours-target", "0.0005",
                      "--piper-fraction", "0")}
    for name, args in runs.items():
        r = cli(*args)
        one_line_error(r, "No space left on device", "free space")
        count("disk_full_runs")
    assert not leftovers(tmpfs), leftovers(tmpfs)
    assert not [p for p in tmpfs.rglob("*.wav") if p.stat().st_size == 0]
    count("leftovers", len(leftovers(tmpfs)))


def test_read_only_output_one_line(tmpfs, small_corpus, teacher, tmp_path):
    good, bad = build_corpus(tmp_path / "in")
    (tmpfs / "ro").mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    for args in (("import", tmp_path / "in", "--out", tmpfs / "ro/m.jsonl"),
                 ("pseudolabel", "-m", small_corpus / "target/train.jsonl", "--teacher", teacher,
                  "--out", tmpfs / "ro/pl")):
        one_line_error(cli(*args), "Read-only file system", "another --out")
        count("read_only_runs")


def _writers(tmp_path: Path, good_ckpt_path: Path):
    """Every kind of output file edgekd writes, each as a callable writing `target`."""
    from edgekd.audio import FeaturizerConfig, Quarantine
    from edgekd.manifest import StageManifest, Utterance, write_jsonl, write_manifest
    from edgekd.models import load_checkpoint
    from edgekd.softtargets import encode_topk, write_shard
    from edgekd.train.data import cache_features

    w = wav(tmp_path / "src/a.wav", speech(SR))
    utt = Utterance(id="a", audio=str(w), text="a")
    lp = np.log(np.full((4, 29), 1 / 29, np.float32))
    ck = load_checkpoint(good_ckpt_path)
    return {
        "jsonl": (tmp_path / "w/x.jsonl", lambda t: write_jsonl(t, [{"a": 1}])),
        "jsonl.gz": (tmp_path / "w/x.jsonl.gz", lambda t: write_jsonl(t, [{"a": 1}])),
        "manifest": (tmp_path / "w/m.jsonl", lambda t: write_manifest(t, [utt])),
        "stage_manifest": (tmp_path / "w/manifest.json", lambda t: StageManifest("s", {}).save(t.parent)),
        "checkpoint": (tmp_path / "w/c.safetensors", lambda t: ck.save(t)),
        "shard": (tmp_path / "w/shard-00000.npz",
                  lambda t: write_shard(t.parent, 0, [("a", encode_topk(lp, with_tail=True))])),
        "quarantine": (tmp_path / "w/rejected.jsonl", lambda t: Quarantine(t, "x").add("a", "a.wav", "bad")),
        "feature_cache": (tmp_path / "w/cache", lambda t: cache_features([utt], FeaturizerConfig(), t, progress=False)),
    }


def test_injected_enospc_at_every_writer(good_ckpt, tmp_path, monkeypatch):
    """Where no tmpfs can be mounted: the OS's ENOSPC injected at the fsync every write passes
    through. The old file stays whole, no temp file stays, the error is one line naming the file."""
    import errno as errno_mod

    import edgekd.atomic as atomic

    writers = _writers(tmp_path, good_ckpt)
    for name, (target, write) in writers.items():
        if target.suffix and name != "feature_cache":
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(b"OLD")

    def no_space(fd):
        raise OSError(errno_mod.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", no_space)
    for name, (target, write) in writers.items():
        with pytest.raises(atomic.WriteError) as ei:
            write(target)
        msg = str(ei.value)
        assert "No space left on device" in msg and "\n" not in msg and str(target.parent) in msg, (name, msg)
        if target.suffix and name != "feature_cache":
            assert target.read_bytes() == b"OLD", name
        count("enospc_writers")
    assert not leftovers(tmp_path), leftovers(tmp_path)


def test_os_errors_in_any_command_are_one_line(tmp_path):
    # a command that does not wrap its own writes (here `lm`) still ends in one line, not a traceback
    txt = tmp_path / "t.txt"
    txt.write_text("a small text\nanother small text\n")
    r = cli("lm", txt, "--out", "/proc/edgekd-no-such-dir/lm.arpa")
    one_line_error(r, "/proc/edgekd-no-such-dir")
