"""Manifests: round trips in every supported format, validation messages, stage manifests."""

import gzip
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from edgekd.errors import ManifestError
from edgekd.importers import import_any, import_folder, import_kaldi, import_table
from edgekd.manifest import StageManifest, Utterance, read_manifest, write_manifest
from edgekd.tokens import Tokenizer, normalize_text


@pytest.fixture
def audio_dir(tmp_path):
    d = tmp_path / "audio"
    (d / "spk1").mkdir(parents=True)
    for i, name in enumerate(["spk1/a", "spk1/b", "c"]):
        sf.write(d / f"{name}.wav", (np.sin(np.arange(8000) * (0.05 + i / 100)) * 0.3).astype(np.float32), 16000)
    (d / "spk1/a.txt").write_text("Hello world\n")
    return d


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_jsonl_round_trip_relative_paths(tmp_path, audio_dir, suffix):
    utts = [Utterance(id="a", audio=str(audio_dir / "spk1/a.wav"), duration=0.5, text="hello", tags={"snr": 3}),
            Utterance(id="x", audio="/elsewhere/x.wav", domain="target")]
    path = tmp_path / f"m{suffix}"
    write_manifest(path, utts)
    raw = gzip.open(path, "rt").read() if suffix.endswith(".gz") else path.read_text()
    assert '"audio": "audio/spk1/a.wav"' in raw and '"/elsewhere/x.wav"' in raw  # relative when under
    assert read_manifest(path) == utts


def test_folder_kaldi_and_tables(tmp_path, audio_dir):
    f = import_folder(audio_dir)
    assert [u.id for u in f] == ["c", "spk1/a", "spk1/b"] and f[1].text == "Hello world"
    kd = tmp_path / "kaldi"
    kd.mkdir()
    (kd / "wav.scp").write_text(f"u1 {audio_dir}/c.wav\nu2 ../audio/spk1/b.wav\n")
    (kd / "text").write_text("u1 some words\n")
    k = import_kaldi(kd)
    assert [(u.id, u.text) for u in k] == [("u1", "some words"), ("u2", None)]
    assert k[1].audio == str((audio_dir / "spk1/b.wav").resolve())
    (tmp_path / "cv.tsv").write_text("client_id\tpath\tsentence\nx\taudio/c.wav\tA sentence.\n")
    t = import_table(tmp_path / "cv.tsv")
    assert t[0].id == "c" and t[0].text == "A sentence." and t[0].audio == str((audio_dir / "c.wav").resolve())
    (tmp_path / "ls.csv").write_text("id,audio,text\nls-1,audio/spk1/a.wav,HELLO THERE\n")
    assert import_any(tmp_path / "ls.csv")[0].id == "ls-1"
    assert import_any(kd)[0].id == "u1" and len(import_any(audio_dir)) == 3


@pytest.mark.parametrize("content,msg", [
    ('{"id": "u1"}\n', "Utterance u1: needs both 'id' and 'audio'"),
    ('{"id": "u1", "audio": "a.wav", "duration": -1}\n', "Utterance u1: duration has to be > 0"),
    ('{"id": "u1", "audio": "a.wav", "speed": 2}\n', "Utterance u1: unknown field"),
    ('{"id": "u1", "audio": "a.wav"}\n{"id": "u1", "audio": "b.wav"}\n', "Utterance u1: duplicate id"),
    ('{"id": "u1", "audio": "a.wav"}\n{not json\n', "m.jsonl:2: not valid JSON"),
    ('[1, 2]\n', "record is not a JSON object"),
])
def test_validation_names_the_record(tmp_path, content, msg):
    (tmp_path / "m.jsonl").write_text(content)
    with pytest.raises(ManifestError, match=msg):
        read_manifest(tmp_path / "m.jsonl")


def test_kaldi_pipe_and_bad_tables_refused(tmp_path):
    (tmp_path / "wav.scp").write_text("u1 sox x.flac -t wav - |\n")
    with pytest.raises(ManifestError, match="u1 is a piped command"):
        import_kaldi(tmp_path)
    (tmp_path / "bad.csv").write_text("name,words\nx,y\n")
    with pytest.raises(ManifestError, match="no path column"):
        import_table(tmp_path / "bad.csv")


def test_stage_manifest_round_trip(tmp_path):
    (tmp_path / "in.txt").write_text("x")
    m = StageManifest(stage="s", config={"a": 1}, outputs={"o": "o.txt"}, metrics={"wer": 0.1})
    m.add_inputs(tmp_path / "in.txt")
    m.save(tmp_path)
    assert StageManifest.load(tmp_path) == m
    assert len(next(iter(m.inputs.values()))) == 64


def test_normalize_and_tokenizer():
    assert normalize_text("Café at 9, DON'T 'quote' me!") == "cafe at nine don't quote me"
    tok = Tokenizer()
    s = "it's a test"
    assert tok.decode(tok.encode(s)) == s
    assert tok.ctc_collapse([0, 5, 5, 0, 5, 1, 1, 0, 6]) == tok.decode([5, 5, 1, 6])
    assert tok.tokens_txt().splitlines()[0] == "<blk> 0"


def test_cli_import_and_user_error(tmp_path, audio_dir):
    (audio_dir / "bad.wav").write_text("not audio")
    out = tmp_path / "m.jsonl"
    r = subprocess.run([sys.executable, "-m", "edgekd.cli", "import", str(audio_dir), "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert len(read_manifest(out)) == 3
    rej = [json.loads(l) for l in (tmp_path / "rejected.jsonl").read_text().splitlines()]
    assert rej[0]["id"] == "bad" and rej[0]["reason"] == "unreadable"
    r = subprocess.run([sys.executable, "-m", "edgekd.cli", "import", str(tmp_path / "nope"), "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("edgekd: error:") and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run([sys.executable, "-m", "edgekd.cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "synth" in r.stdout and "train" in r.stdout
