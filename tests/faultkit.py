"""Shared helpers of the fault suite (tests/test_faults_*.py, issue 17).

What the suite holds edgekd to: no good file lost, every bad input listed with a reason, no
traceback reaching a user (every user-facing failure is one line), every kill point resuming to
byte/tensor-identical outputs, and no temp file left behind by any failure. Counts are printed
(`pytest -s`, fixture `fault_counts` in conftest) so the closing numbers of a run can be quoted.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
SR = 16000
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "EDGEKD_FAULT_PAUSE": ""}
COUNTS: dict[str, int] = {}  # what the suite tried, summed over its files


def count(key: str, n: int = 1) -> None:
    COUNTS[key] = COUNTS.get(key, 0) + n



def cli(*args, env=None, timeout=900) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "edgekd.cli", *map(str, args)], capture_output=True, text=True,
                       env={**ENV, **(env or {})}, timeout=timeout, cwd=ROOT)
    count("cli_runs")
    count("tracebacks", "Traceback" in r.stderr)
    return r


def one_line_error(r: subprocess.CompletedProcess, *words: str) -> str:
    """A user error: exit 2, one stderr line, no traceback, naming each of `words`."""
    lines = [l for l in r.stderr.splitlines() if l.strip()]  # progress bars may come before it
    errors = [l for l in lines if l.startswith("edgekd: error:")]
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert len(errors) == 1 and lines[-1] == errors[0], r.stderr[-2000:]
    for w in words:
        assert w in errors[0], (w, errors[0])
    return errors[0]


def leftovers(folder: Path) -> list[str]:
    return sorted(str(p) for p in Path(folder).rglob("*") if ".tmp" in p.name)


def speech(n: int, sr: int = SR, seed: int = 0, ch: int = 1) -> np.ndarray:
    t = np.arange(n) / sr
    rng = np.random.default_rng(seed)
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(n)
    return np.stack([x * (0.5 + 0.1 * c) for c in range(ch)], 1).astype(np.float32) if ch > 1 else x.astype(np.float32)




def wav(path: Path, x, sr=SR, subtype="PCM_16", fmt="WAV"):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, sr, subtype=subtype, format=fmt)
    return path


def build_corpus(d: Path) -> tuple[set[str], dict[str, str]]:
    """A folder of good inputs that must survive and bad ones that must be listed.

    Returns (ids of good files, {id of bad file: expected reason}).
    """
    good: set[str] = set()
    bad: dict[str, str] = {}

    def g(name, x, sr=SR, **kw):
        wav(d / name, x, sr, **kw)
        good.add(str(Path(name).with_suffix("")))

    g("plain.wav", speech(SR))
    g("eight_channels.wav", speech(SR, ch=8))
    g("ulaw_8k.wav", speech(8000, 8000), 8000, subtype="ULAW")
    g("pcm24_44k.wav", speech(44100, 44100), 44100, subtype="PCM_24")
    g("float64_22k.wav", speech(22050, 22050), 22050, subtype="DOUBLE")
    g("stereo_48k.flac", speech(48000, 48000, ch=2), 48000, subtype="PCM_16", fmt="FLAC")
    g("vorbis.ogg", speech(SR), subtype="VORBIS", fmt="OGG")
    g("with space.wav", speech(SR, seed=1))
    g("new\nline.wav", speech(SR, seed=2))
    g("$(touch pwned);rm -rf x`id`|y&z.wav", speech(SR, seed=3))
    g("-rf.wav", speech(SR, seed=4))
    g("café ünï 日本.wav", speech(SR, seed=5))
    g("it's \"quoted\".wav", speech(SR, seed=6))
    g("sub/dir/deep.wav", speech(SR, seed=7))
    g("LOUD.WAV", np.clip(speech(SR, seed=8) * 10, -1, 1))
    g("labeled.wav", speech(SR, seed=9))
    (d / "labeled.txt").write_text("hello world\n", encoding="utf-8")
    g("dupstem.flac", speech(SR, seed=10), fmt="FLAC")  # first of a duplicate pair (sorted order)
    g("dc_offset.wav", speech(SR, seed=11) * 0.5 + 0.4)
    g("exactly_min.wav", speech(int(0.1 * SR)))
    g("u8.wav", speech(SR, seed=12), subtype="PCM_U8")
    g("chmod000.wav", speech(SR, seed=13))
    os.chmod(d / "chmod000.wav", 0)
    if os.geteuid() != 0:  # root reads it anyway: then it is a good file
        good.discard("chmod000")
        bad["chmod000"] = "permission-denied"
    os.symlink("plain.wav", d / "link_to_plain.wav")
    good.add("link_to_plain")

    def b(name, reason, data=None, x=None, sr=SR, **kw):
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if x is not None:
            wav(p, x, sr, **kw)
        if data is not None:
            p.write_bytes(data(p) if callable(data) else data)
        bad[str(Path(name).with_suffix(""))] = reason

    full = wav(d.parent / "scratch.wav", speech(SR)).read_bytes()
    b("empty.wav", "empty", b"")
    b("riff_only.wav", "unreadable", full[:4])
    b("header_cut.wav", "unreadable", full[:30])
    b("data_cut.wav", "truncated", full[: len(full) // 3])
    b("header_no_frames.wav", "empty", full[:44])
    b("text.wav", "unreadable", b"this is a text file, not audio\n" * 30)
    b("random.flac", "unreadable", np.random.default_rng(0).bytes(5000))
    b("png.wav", "unreadable", b"\x89PNG\r\n\x1a\n" + bytes(200))
    b("json.mp3", "unreadable", b'{"not": "audio"}' * 10)
    xn = speech(SR)
    xn[100:200] = np.nan
    b("nan.wav", "non-finite", x=xn, subtype="FLOAT")
    xi = speech(SR)
    xi[5] = np.inf
    b("inf.wav", "non-finite", x=xi, subtype="FLOAT")
    b("silence.wav", "silent", x=np.zeros(SR, np.float32))
    b("too_short.wav", "too-short", x=speech(400))
    b("too_long.flac", "too-long", x=np.tile(speech(SR), 121), fmt="FLAC")
    # a 1-hour WAV: a real, complete file (sparse on disk); must be refused from its header
    hour = d / "one_hour.wav"
    hdr = bytearray(full[:44])
    n = 3600 * SR * 2
    hdr[4:8], hdr[40:44] = (36 + n).to_bytes(4, "little"), n.to_bytes(4, "little")
    with open(hour, "wb") as f:
        f.write(hdr)
        f.truncate(44 + n)
    bad["one_hour"] = "too-long"
    os.symlink("loop.wav", d / "loop.wav")
    bad["loop"] = "symlink-loop"
    os.symlink("nowhere.wav", d / "dangling.wav")
    bad["dangling"] = "dangling-link"
    (d / "folder.wav").mkdir()
    bad["folder"] = "not-a-file"
    os.mkfifo(d / "fifo.wav")
    bad["fifo"] = "not-a-file"
    b("latin1_transcript.wav", "bad-transcript", x=speech(SR, seed=20))
    (d / "latin1_transcript.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    b("dupstem.wav", "duplicate-id", x=speech(SR, seed=21))
    return good, bad
