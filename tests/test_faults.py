"""Fault suite: bad inputs, hostile files, SIGKILL, read-only and full disks (issue 17).

What it holds edgekd to: no good file lost, every bad input listed with a reason, no traceback
reaching a user (every user-facing failure is one line), every kill point resuming to
byte/tensor-identical outputs, and no temp file left behind by any failure. Counts are printed
(`pytest -s`) so the closing numbers of a run can be quoted.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from edgekd.errors import EdgekdError

ROOT = Path(__file__).resolve().parents[1]
SR = 16000
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "EDGEKD_FAULT_PAUSE": ""}
COUNTS: dict[str, int] = {}


def _count(key: str, n: int = 1) -> None:
    COUNTS[key] = COUNTS.get(key, 0) + n


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    yield
    print("\nfault suite counts:", json.dumps(COUNTS, sort_keys=True))


def _cli(*args, env=None, timeout=900) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "edgekd.cli", *map(str, args)], capture_output=True, text=True,
                       env={**ENV, **(env or {})}, timeout=timeout, cwd=ROOT)
    _count("cli_runs")
    _count("tracebacks", "Traceback" in r.stderr)
    return r


def _one_line_error(r: subprocess.CompletedProcess, *words: str) -> str:
    """A user error: exit 2, one stderr line, no traceback, naming each of `words`."""
    lines = [l for l in r.stderr.splitlines() if l.strip()]  # progress bars may come before it
    errors = [l for l in lines if l.startswith("edgekd: error:")]
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert len(errors) == 1 and lines[-1] == errors[0], r.stderr[-2000:]
    for w in words:
        assert w in errors[0], (w, errors[0])
    return errors[0]


def _leftovers(folder: Path) -> list[str]:
    return sorted(str(p) for p in Path(folder).rglob("*") if ".tmp" in p.name)


def _speech(n: int, sr: int = SR, seed: int = 0, ch: int = 1) -> np.ndarray:
    t = np.arange(n) / sr
    rng = np.random.default_rng(seed)
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(n)
    return np.stack([x * (0.5 + 0.1 * c) for c in range(ch)], 1).astype(np.float32) if ch > 1 else x.astype(np.float32)


# ------------------------------------------------------------------ the bad-input corpus


def _wav(path: Path, x, sr=SR, subtype="PCM_16", fmt="WAV"):
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
        _wav(d / name, x, sr, **kw)
        good.add(str(Path(name).with_suffix("")))

    g("plain.wav", _speech(SR))
    g("eight_channels.wav", _speech(SR, ch=8))
    g("ulaw_8k.wav", _speech(8000, 8000), 8000, subtype="ULAW")
    g("pcm24_44k.wav", _speech(44100, 44100), 44100, subtype="PCM_24")
    g("float64_22k.wav", _speech(22050, 22050), 22050, subtype="DOUBLE")
    g("stereo_48k.flac", _speech(48000, 48000, ch=2), 48000, subtype="PCM_16", fmt="FLAC")
    g("vorbis.ogg", _speech(SR), subtype="VORBIS", fmt="OGG")
    g("with space.wav", _speech(SR, seed=1))
    g("new\nline.wav", _speech(SR, seed=2))
    g("$(touch pwned);rm -rf x`id`|y&z.wav", _speech(SR, seed=3))
    g("-rf.wav", _speech(SR, seed=4))
    g("café ünï 日本.wav", _speech(SR, seed=5))
    g("it's \"quoted\".wav", _speech(SR, seed=6))
    g("sub/dir/deep.wav", _speech(SR, seed=7))
    g("LOUD.WAV", np.clip(_speech(SR, seed=8) * 10, -1, 1))
    g("labeled.wav", _speech(SR, seed=9))
    (d / "labeled.txt").write_text("hello world\n", encoding="utf-8")
    g("dupstem.flac", _speech(SR, seed=10), fmt="FLAC")  # first of a duplicate pair (sorted order)
    g("dc_offset.wav", _speech(SR, seed=11) * 0.5 + 0.4)
    g("exactly_min.wav", _speech(int(0.1 * SR)))
    g("u8.wav", _speech(SR, seed=12), subtype="PCM_U8")
    g("chmod000.wav", _speech(SR, seed=13))
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
            _wav(p, x, sr, **kw)
        if data is not None:
            p.write_bytes(data(p) if callable(data) else data)
        bad[str(Path(name).with_suffix(""))] = reason

    full = _wav(d.parent / "scratch.wav", _speech(SR)).read_bytes()
    b("empty.wav", "empty", b"")
    b("riff_only.wav", "unreadable", full[:4])
    b("header_cut.wav", "unreadable", full[:30])
    b("data_cut.wav", "truncated", full[: len(full) // 3])
    b("header_no_frames.wav", "empty", full[:44])
    b("text.wav", "unreadable", b"this is a text file, not audio\n" * 30)
    b("random.flac", "unreadable", np.random.default_rng(0).bytes(5000))
    b("png.wav", "unreadable", b"\x89PNG\r\n\x1a\n" + bytes(200))
    b("json.mp3", "unreadable", b'{"not": "audio"}' * 10)
    xn = _speech(SR)
    xn[100:200] = np.nan
    b("nan.wav", "non-finite", x=xn, subtype="FLOAT")
    xi = _speech(SR)
    xi[5] = np.inf
    b("inf.wav", "non-finite", x=xi, subtype="FLOAT")
    b("silence.wav", "silent", x=np.zeros(SR, np.float32))
    b("too_short.wav", "too-short", x=_speech(400))
    b("too_long.flac", "too-long", x=np.tile(_speech(SR), 121), fmt="FLAC")
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
    b("latin1_transcript.wav", "bad-transcript", x=_speech(SR, seed=20))
    (d / "latin1_transcript.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    b("dupstem.wav", "duplicate-id", x=_speech(SR, seed=21))
    return good, bad


def _check_import(out: Path, good: set[str], bad: dict[str, str]) -> None:
    from edgekd.manifest import read_manifest

    ids = {u.id for u in read_manifest(out)}
    rej = [json.loads(l) for l in (out.parent / "rejected.jsonl").read_text().splitlines()]
    by_id = {r["id"]: r for r in rej}
    lost = good - ids
    _count("inputs_tried", len(good) + len(bad))
    _count("good_files_lost", len(lost))
    assert not lost, f"good files lost: {lost}"
    assert ids == good, f"bad files let in: {ids - good}"
    assert len(rej) == len(by_id) == len(bad), "one rejected.jsonl line per bad file"
    for uid, reason in bad.items():
        assert uid in by_id, f"{uid} not listed in rejected.jsonl"
        assert by_id[uid]["reason"] == reason, (uid, by_id[uid])
        assert by_id[uid]["detail"] or reason in ("not-a-file",), uid
    _count("bad_inputs_listed", len(bad))


def test_bad_audio_corpus_via_cli(tmp_path):
    good, bad = build_corpus(tmp_path / "in")
    assert len(good) + len(bad) >= 40
    out = tmp_path / "out" / "m.jsonl"
    r = _cli("import", tmp_path / "in", "--out", out)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    _check_import(out, good, bad)
    assert not (tmp_path / "pwned").exists() and not (ROOT / "pwned").exists()
    first = (out.parent / "rejected.jsonl").read_text().splitlines()
    # a rerun rewrites rejected.jsonl, never appends; a file fixed since the last run leaves it
    os.unlink(tmp_path / "in/dangling.wav")
    _wav(tmp_path / "in/dangling.wav", _speech(SR, seed=30))
    assert _cli("import", tmp_path / "in", "--out", out).returncode == 0
    good.add("dangling")
    del bad["dangling"]
    _check_import(out, good, bad)
    assert (out.parent / "rejected.jsonl").read_text().splitlines() == [l for l in first if '"dangling"' not in l]
    assert not _leftovers(tmp_path / "out")


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
        _wav(d / f"g{i}.wav", _speech(SR, seed=i))
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
        _wav(t / f"c{i}.wav", _speech(SR, seed=i))
    os.symlink("loop.wav", t / "loop.wav")
    (t / "list.csv").write_bytes(b"path,text\nc0.wav,one\nc1.wav,caf\xe9\nc2.wav,three\nloop.wav,x\n,empty\n"
                                 b"c0.wav,again\n")
    q = Quarantine(tmp_path / "rej2.jsonl", "import")
    utts, n_bad = check_manifest(import_any(t / "list.csv"), q)
    assert {u.id for u in utts} == {"c0", "c2"} and n_bad == 4
    _count("inputs_tried", 14)
    _count("bad_inputs_listed", 9)


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
    _count("inputs_tried", len(cases) + 1)


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
    _count("inputs_tried", len(tasks))


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
    _count("inputs_tried")


# ------------------------------------------------------------------ hostile checkpoints and YAML


@pytest.fixture(scope="module")
def good_ckpt(tiny_ckpt_path):
    return tiny_ckpt_path  # the shared seed-0 tiny checkpoint (conftest)


def _hostile_checkpoints(good: Path, d: Path) -> dict[str, Path]:
    from safetensors.torch import load_file, save_file

    raw = good.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    sd = load_file(str(good))
    meta = dict(header["__metadata__"])
    out = {}

    def put(name, data: bytes):
        out[name] = d / f"{name}.safetensors"
        out[name].write_bytes(data)

    def with_header(name, h):
        b = json.dumps(h).encode()
        put(name, len(b).to_bytes(8, "little") + b + raw[8 + n :])

    def with_meta(name, **changes):
        m = dict(meta, **changes)
        out[name] = d / f"{name}.safetensors"
        save_file(sd, str(out[name]), metadata=m)

    def with_tensors(name, tensors):
        out[name] = d / f"{name}.safetensors"
        save_file(tensors, str(out[name]), metadata=meta)

    dims = json.loads(meta["dims"])
    put("empty", b"")
    put("seven_bytes", raw[:7])
    put("truncated_header", raw[: 8 + n // 2])
    put("truncated_data", raw[: len(raw) // 2])
    put("huge_header_len", (2**62).to_bytes(8, "little") + raw[8:])
    put("header_not_json", n.to_bytes(8, "little") + b"{" * n)
    put("pickle", b"\x80\x04\x95" + bytes(100))
    with_header("offsets_out_of_file", {**header, **{k: {**v, "data_offsets": [0, 10**12]}
                                                     for k, v in header.items() if k != "__metadata__"}})
    with_meta("not_edgekd", format="something-else")
    with_meta("dims_not_json", dims="{oops")
    with_meta("dims_a_list", dims="[1, 2]")
    with_meta("dims_unknown_key", dims=json.dumps({**dims, "evil": 1}))
    with_meta("dims_bad_type", dims=json.dumps({**dims, "d_model": "wide"}))
    with_meta("n_layers_2000", dims=json.dumps({**dims, "n_layers": 2000, "d_model": 1 << 20, "n_heads": 1}))
    with_meta("featurizer_bad", featurizer=json.dumps({"n_fft": -1}))
    with_meta("tokens_not_list", tokens=json.dumps("abc"))
    with_meta("tokens_wrong_count", tokens=json.dumps(["a", "b"]))
    with_tensors("missing_tensor", {k: v for i, (k, v) in enumerate(sd.items()) if i != 3})
    with_tensors("wrong_shape", {k: (v[..., :1].contiguous() if k == "head.weight" else v) for k, v in sd.items()})
    with_tensors("wrong_dtype", {k: (v.to(torch.int32) if k.endswith("w1.weight") else v) for k, v in sd.items()})
    with_tensors("extra_tensor", {**sd, "evil.weight": torch.zeros(3)})
    with_tensors("no_tensors", {"x": torch.zeros(1)})
    return out


def test_hostile_checkpoints_are_one_line_and_build_nothing(good_ckpt, tmp_path, monkeypatch):
    import edgekd.models as models
    from edgekd.models import load_checkpoint

    bad = _hostile_checkpoints(good_ckpt, tmp_path)
    assert len(bad) >= 20
    built = []
    real = models.ConformerCTC

    class Watch(real):
        def __init__(self, dims):
            built.append(dims.n_layers)
            if dims.n_layers >= 100:  # stop before the bomb goes off, should the check ever be lost
                raise AssertionError(f"a {dims.n_layers}-layer model was built from unchecked metadata")
            super().__init__(dims)

    monkeypatch.setattr(models, "ConformerCTC", Watch)
    for name, p in bad.items():
        with pytest.raises(EdgekdError) as ei:
            load_checkpoint(p)
        msg = str(ei.value)
        assert str(p) in msg and "\n" not in msg, (name, msg)
        _count("inputs_tried")
    assert all(n < 100 for n in built), "a model was built from metadata the tensors do not back"
    assert load_checkpoint(good_ckpt).dims.n_layers == 2  # the good one still loads
    from edgekd.manifest import Utterance, write_manifest

    write_manifest(tmp_path / "m.jsonl", [Utterance(id="a", audio=str(_wav(tmp_path / "a.wav", _speech(SR))))])
    r = _cli("pseudolabel", "-m", tmp_path / "m.jsonl", "--teacher", bad["n_layers_2000"], "--out", tmp_path / "pl")
    _one_line_error(r, "2000 layers", "n_layers_2000.safetensors")
    assert not (tmp_path / "pl").exists()  # a failed start claims no folder


@pytest.mark.parametrize("text", ["!!python/object/apply:os.system ['touch pwned']", "- a\n- b\n",
                                  "d_model: [\n", "a: &a [*a]\n", "x: " + "[" * 5000 + "]" * 5000,
                                  "n_layers: {x: 1}\n", "d_model: 7\nn_heads: 4\n", None],
                         ids=["python_tag", "a_list", "unclosed", "alias_loop", "deep", "dict_value", "indivisible",
                              "latin1"])
def test_hostile_preset_yaml(tmp_path, text):
    from edgekd.models import load_preset

    p = tmp_path / "p.yaml"
    p.write_bytes("d_model: 144 # caf\xe9\n".encode("latin-1") if text is None else text.encode())
    with pytest.raises(EdgekdError) as ei:
        load_preset(str(p))
    assert str(p) in str(ei.value) and "\n" not in str(ei.value)
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    _count("inputs_tried")


@pytest.mark.parametrize("text", ["!!python/object/apply:os.system ['touch pwned']", "- a\n", "run_dir: [\n",
                                  "x: " + "[" * 5000 + "]" * 5000, b"run_dir: caf\xe9\n"],
                         ids=["python_tag", "a_list", "unclosed", "deep", "latin1"])
def test_hostile_pipeline_yaml(tmp_path, text):
    from edgekd.config import load_yaml

    p = tmp_path / "c.yaml"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(EdgekdError) as ei:
        load_yaml(p)
    assert "\n" not in str(ei.value)
    _count("inputs_tried")


# ------------------------------------------------------------------ remote argv


@pytest.mark.parametrize("field,value", [("host", "-oProxyCommand=touch /tmp/edgekd-pwned"), ("host", "-V"),
                                         ("host", "a b"), ("host", "evil\n-oProxyCommand=x"), ("host", ""),
                                         ("identity", "-oProxyCommand=touch /tmp/edgekd-pwned"),
                                         ("python", "-c"), ("python", "-mhttp.server"),
                                         ("remote_dir", "--help"), ("host", "pi@host/x")])
def test_remote_argv_injection_refused(field, value):
    from edgekd.profile.remote import RemoteError, SshTarget

    kw = {"host": "pi@raspberrypi.local", field: value}
    with pytest.raises(RemoteError) as ei:
        SshTarget(**kw)
    assert "\n" not in str(ei.value)
    _count("inputs_tried")


def test_remote_argv_ends_options_before_host():
    from edgekd.profile.remote import SshTarget

    t = SshTarget("pi@raspberrypi.local", identity="/keys/id", python="/usr/bin/python3")
    s = t.ssh_cmd("true")
    assert s[s.index("--") + 1] == "pi@raspberrypi.local" and s[-1] == "true"
    c = t.scp_cmd(["-weird-local-file"], "pi@raspberrypi.local:x")
    assert c.index("--") < c.index("-weird-local-file")


# ------------------------------------------------------------------ SIGKILL and resume


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from edgekd.synth import SynthOptions, run_synth

    d = tmp_path_factory.mktemp("corpus")
    run_synth(SynthOptions(seed=3, hours_source=0.006, hours_target=0.004, min_split_utts=2, piper_fraction=0.0),
              d, progress=False)
    return d


@pytest.fixture(scope="module")
def teacher(tiny_ckpt_path):
    return tiny_ckpt_path  # the shared seed-0 tiny checkpoint (conftest)


def _launch(argv: list, log: Path, pause: str = "") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *map(str, argv)], stdout=subprocess.DEVNULL, stderr=open(log, "w"),
                            env={**ENV, "EDGEKD_FAULT_PAUSE": pause}, cwd=ROOT)


def _wait_for(p: subprocess.Popen, log: Path, what, timeout: float = 900) -> bool:
    """True once `what` (a text in the process's stderr, or a predicate) holds; False if it exited first."""
    seen = what if callable(what) else (lambda: what in log.read_text(errors="replace"))
    end = time.time() + timeout
    while time.time() < end:
        if seen():
            return True
        if p.poll() is not None:
            return seen()
        time.sleep(0.02)
    raise AssertionError(f"no {what!r} within {timeout} s: {log.read_text()[-2000:]}")


def _kill_chain(argv: list, log: Path, point: str, started, plan: list[str], seed: int,
                on_kill=None) -> int:
    """Run `argv` to completion through SIGKILLs: 'between' kills at the fault point, 'random' at a
    random moment after `started` shows in stderr. Returns the number of real kills."""
    rng = random.Random(seed)
    kills = 0
    for kind in plan:
        p = _launch(argv, log, pause=f"{point}:900" if kind == "between" else "")
        hit = _wait_for(p, log, "edgekd-fault-point" if kind == "between" else started)
        if kind == "random" and hit:
            time.sleep(rng.uniform(0.0, 1.0))
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            assert p.wait(30) == -signal.SIGKILL
            kills += 1
            _count(f"kill_points_{kind}")
            if on_kill:
                on_kill(kind)
        else:
            assert p.returncode == 0, log.read_text()[-3000:]
    p = _launch(argv, log)
    assert p.wait(900) == 0, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()
    return kills


def _train_argv(corpus: Path, out: Path) -> list:
    return ["-m", "edgekd.cli", "train", "--train", corpus / "source/train.jsonl", "--out", out, "--preset", "tiny",
            "--steps", "40", "--lr", "3e-3", "--warmup", "5", "--max-frames", "3000", "--eval-every", "0",
            "--ckpt-every", "2", "--threads", "1"]


def _same_training(a: Path, b: Path, history: bool = True) -> None:
    from safetensors.torch import load_file

    for name in ("last.safetensors", "model.safetensors"):
        x, y = load_file(str(a / name)), load_file(str(b / name))
        assert x.keys() == y.keys()
        for k in x:
            assert torch.equal(x[k], y[k]), (name, k)
    sa, sb = (torch.load(d / "train_state.pt", weights_only=True) for d in (a, b))
    assert sa["step"] == sb["step"] and sa["sampler"] == sb["sampler"]
    for (ka, va), (kb, vb) in zip(sa["optim"]["state"].items(), sb["optim"]["state"].items()):
        assert all(torch.equal(va[s], vb[s]) for s in va), ka
    assert torch.equal(sa["torch_rng"], sb["torch_rng"]) and torch.equal(sa["gen_rng"], sb["gen_rng"])
    strip = lambda h: [{k: v for k, v in e.items() if k not in ("train_s", "audio_s_per_s")} for e in h]  # noqa: E731
    assert not history or strip(sa["history"]) == strip(sb["history"])


@pytest.fixture(scope="module")
def train_full(corpus, tmp_path_factory):
    """The uninterrupted run every resumed one must equal."""
    d = tmp_path_factory.mktemp("train")
    p = _launch(_train_argv(corpus, d / "full"), d / "full.log")
    assert p.wait(900) == 0, (d / "full.log").read_text()[-3000:]
    return d / "full"


def test_train_sigkill_anywhere_resumes_tensor_identical(corpus, train_full, tmp_path):
    from safetensors import safe_open

    out = tmp_path / "killed"
    windows = []

    def check_window(kind):  # the kill between the two files left them at different steps
        if kind == "between":
            state, last = out / "train_state.pt", out / "last.safetensors"
            s = torch.load(state, weights_only=True)["step"] if state.exists() else -1
            step = json.loads(safe_open(str(last), "pt").metadata()["train"])["step"] if last.exists() else -1
            windows.append((s, step))

    kills = _kill_chain(_train_argv(corpus, out), tmp_path / "killed.log", "train-between-checkpoint-files",
                        "train:", ["between", "random", "between", "random"], seed=5,
                        on_kill=check_window)
    _same_training(train_full, out)
    # and the window was hit: the state file already at the new step, last.safetensors still older
    assert kills >= 3 and len(windows) == 2 and all(s > l for s, l in windows), windows
    _count("identical_resumes")
    assert not _leftovers(out)


def test_train_resumes_a_folder_of_the_old_two_file_format(corpus, train_full, tmp_path):
    """Folders written before train_state.pt held the weights (weights in last.safetensors only)."""
    from safetensors.torch import save_file

    out = tmp_path / "old"
    p = _launch(_train_argv(corpus, out), tmp_path / "old.log", pause="train-between-checkpoint-files:900")
    _wait_for(p, tmp_path / "old.log", "edgekd-fault-point")
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    st = torch.load(out / "train_state.pt", weights_only=True)
    save_file(st.pop("model"), str(out / "last.safetensors"))  # the old pair: exact weights, state without them
    st.pop("logs_acc"), st.pop("n_acc")  # nor partial log means: history may differ, tensors may not
    torch.save(st, out / "train_state.pt")
    p = _launch(_train_argv(corpus, out), tmp_path / "old.log")
    assert p.wait(900) == 0, (tmp_path / "old.log").read_text()[-3000:]
    _same_training(train_full, out, history=False)
    _count("identical_resumes")


_PL_DRIVER = ("import sys, torch; torch.set_num_threads(1)\n"
              "from edgekd.pseudolabel import PseudoLabelOptions, run_pseudolabel\n"
              "run_pseudolabel(PseudoLabelOptions(shard_utts=1, workers=1, k=int(sys.argv[4])), sys.argv[1], "
              "[sys.argv[2]], sys.argv[3], progress=False)\n"
              "print('pseudolabel: done', file=sys.stderr)\n")


def _pl_outputs(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())
            if p.suffix in (".npz", ".jsonl") or p.name in ("index.json", "meta.json", "resume.json")}


def test_pseudolabel_sigkill_anywhere_resumes_byte_identical(corpus, teacher, tmp_path):
    from edgekd.manifest import read_manifest

    manifest = corpus / "target/train.jsonl"
    assert len(read_manifest(manifest)) >= 4  # >= 4 shards of 1
    argv = lambda out, k=8: ["-c", _PL_DRIVER, manifest, teacher, out, k]  # noqa: E731
    p = _launch(argv(tmp_path / "full"), tmp_path / "full.log")
    assert p.wait(900) == 0, (tmp_path / "full.log").read_text()[-3000:]
    out = tmp_path / "killed"
    kills = _kill_chain(argv(out), tmp_path / "killed.log", "pseudolabel-between-shard-files",
                        lambda: (out / "resume.json").exists(),
                        ["between", "random", "between"], seed=9)
    assert kills >= 2
    assert _pl_outputs(tmp_path / "full") == _pl_outputs(out)
    _count("identical_resumes")
    assert not _leftovers(out)

    # resuming into it with another manifest or other options: one line, the folder untouched
    before = _pl_outputs(out)
    from edgekd.manifest import write_manifest

    other = write_manifest(tmp_path / "other.jsonl", read_manifest(manifest)[:-1])
    r = _cli("pseudolabel", "-m", other, "--teacher", teacher, "--out", out, "--workers", "1")
    _one_line_error(r, str(out), "another run", "manifest", "new --out")
    r = _cli("pseudolabel", "-m", manifest, "--teacher", teacher, "--out", out, "--workers", "1", "--k", "2")
    _one_line_error(r, "k 8 -> 2")
    assert _pl_outputs(out) == before


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


def test_full_disk_one_line_and_no_temp_files(tmpfs, corpus, teacher, tmp_path):
    good, bad = build_corpus(tmp_path / "in")
    _fill(tmpfs)
    runs = {"import": ("import", tmp_path / "in", "--out", tmpfs / "imp/m.jsonl"),
            "pseudolabel": ("pseudolabel", "-m", corpus / "target/train.jsonl", "--teacher", teacher,
                            "--out", tmpfs / "pl", "--workers", "1"),
            "train": ("train", "--train", corpus / "source/train.jsonl", "--out", tmpfs / "tr/run", "--preset",
                      "tiny", "--steps", "2", "--threads", "1"),
            "synth": ("synth", "--out", tmpfs / "syn", "--hours-source", "0.0005", "--hours-target", "0.0005",
                      "--piper-fraction", "0")}
    for name, args in runs.items():
        r = _cli(*args)
        _one_line_error(r, "No space left on device", "free space")
        _count("disk_full_runs")
    assert not _leftovers(tmpfs), _leftovers(tmpfs)
    assert not [p for p in tmpfs.rglob("*.wav") if p.stat().st_size == 0]
    _count("leftovers", len(_leftovers(tmpfs)))


def test_read_only_output_one_line(tmpfs, corpus, teacher, tmp_path):
    good, bad = build_corpus(tmp_path / "in")
    (tmpfs / "ro").mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    for args in (("import", tmp_path / "in", "--out", tmpfs / "ro/m.jsonl"),
                 ("pseudolabel", "-m", corpus / "target/train.jsonl", "--teacher", teacher, "--out", tmpfs / "ro/pl")):
        _one_line_error(_cli(*args), "Read-only file system", "another --out")
        _count("read_only_runs")


def _writers(tmp_path: Path, good_ckpt_path: Path):
    """Every kind of output file edgekd writes, each as a callable writing `target`."""
    from edgekd.audio import FeaturizerConfig, Quarantine
    from edgekd.manifest import StageManifest, Utterance, write_jsonl, write_manifest
    from edgekd.models import load_checkpoint
    from edgekd.softtargets import encode_topk, write_shard
    from edgekd.train.data import cache_features

    wav = _wav(tmp_path / "src/a.wav", _speech(SR))
    utt = Utterance(id="a", audio=str(wav), text="a")
    lp = np.log(np.full((4, 29), 1 / 29, np.float32))
    ck = load_checkpoint(good_ckpt_path)
    return {
        "jsonl": (tmp_path / "w/x.jsonl", lambda t: write_jsonl(t, [{"a": 1}])),
        "jsonl.gz": (tmp_path / "w/x.jsonl.gz", lambda t: write_jsonl(t, [{"a": 1}])),
        "manifest": (tmp_path / "w/m.jsonl", lambda t: write_manifest(t, [utt])),
        "stage_manifest": (tmp_path / "w/manifest.json", lambda t: StageManifest("s", {}).save(t.parent)),
        "checkpoint": (tmp_path / "w/c.safetensors", lambda t: ck.save(t)),
        "shard": (tmp_path / "w/shard-00000.npz", lambda t: write_shard(t.parent, 0, [("a", encode_topk(lp))])),
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
        _count("enospc_writers")
    assert not _leftovers(tmp_path), _leftovers(tmp_path)


def test_os_errors_in_any_command_are_one_line(tmp_path):
    # a command that does not wrap its own writes (here `lm`) still ends in one line, not a traceback
    txt = tmp_path / "t.txt"
    txt.write_text("a small text\nanother small text\n")
    r = _cli("lm", txt, "--out", "/proc/edgekd-no-such-dir/lm.arpa")
    _one_line_error(r, "/proc/edgekd-no-such-dir")
