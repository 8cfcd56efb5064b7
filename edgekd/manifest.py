"""Typed records that stages exchange, and their file formats.

An utterance manifest is JSONL (optionally gzipped), one `Utterance` per line. Audio paths are
stored relative to the manifest's folder when the audio lies under it (so a data folder can be
moved or copied to a Pi) and are absolute in memory. Every stage writes a `StageManifest`
(`manifest.json`) naming its config, inputs (with sha256) and outputs.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from edgekd import __version__
from edgekd.errors import ManifestError

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif", ".au", ".sph"}


@dataclass(frozen=True)
class Utterance:
    id: str  # unique within a manifest
    audio: str  # path to the audio file (absolute in memory)
    duration: float | None = None  # seconds; None until probed
    sample_rate: int | None = None  # of the file on disk, before resampling
    channels: int | None = None
    text: str | None = None  # normalised transcript, if labeled
    speaker: str | None = None
    domain: str | None = None  # e.g. "source", "target"
    md5: str | None = None  # of the audio file, for reproducibility checks
    tags: dict[str, Any] = field(default_factory=dict)  # free-form (voice, snr_db, ...)

    def validate(self) -> None:
        """Raise ManifestError naming this record if a field is out of range."""
        if not self.id or not isinstance(self.id, str):
            raise ManifestError(f"Utterance {self.id!r}: id must be a non-empty string")
        if not self.audio:
            raise ManifestError(f"Utterance {self.id}: audio path is empty")
        if self.duration is not None and not (self.duration > 0):
            raise ManifestError(f"Utterance {self.id}: duration has to be > 0 (is {self.duration})")
        if self.sample_rate is not None and not (self.sample_rate > 0):
            raise ManifestError(f"Utterance {self.id}: sample_rate has to be > 0 (is {self.sample_rate})")
        if self.channels is not None and not (self.channels > 0):
            raise ManifestError(f"Utterance {self.id}: channels has to be > 0 (is {self.channels})")
        if self.text is not None and not isinstance(self.text, str):
            raise ManifestError(f"Utterance {self.id}: text must be a string")

    def to_dict(self, root: Path | None = None) -> dict[str, Any]:
        d = {k: v for k, v in dataclasses.asdict(self).items() if v is not None and v != {}}
        if root is not None:
            d["audio"] = _relative(self.audio, root)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], root: Path | None = None, where: str = "") -> "Utterance":
        rid = d.get("id", where or "?") if isinstance(d, dict) else where
        if not isinstance(d, dict):
            raise ManifestError(f"Utterance {rid}: record is not a JSON object")
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ManifestError(f"Utterance {rid}: unknown field(s) {', '.join(sorted(unknown))}")
        if "id" not in d or "audio" not in d:
            raise ManifestError(f"Utterance {rid}: needs both 'id' and 'audio'")
        d = dict(d)
        d["id"] = str(d["id"])
        audio = str(d["audio"])
        if root is not None and not os.path.isabs(audio):
            audio = str((root / audio).resolve())
        d["audio"] = audio
        try:
            utt = cls(**d)
        except TypeError as e:
            raise ManifestError(f"Utterance {rid}: {e}") from None
        utt.validate()
        return utt


def _relative(path: str, root: Path) -> str:
    p = Path(path).resolve()
    try:
        return str(p.relative_to(root.resolve()))
    except ValueError:
        return str(p)


def _open(path: Path, mode: str, gz: bool | None = None):
    if str(path).endswith(".gz") if gz is None else gz:
        return gzip.open(path, mode + "t", encoding="utf-8")
    return open(path, mode, encoding="utf-8")


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; a bad line raises naming file and line."""
    path = Path(path)
    with _open(path, "r") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as e:
                raise ManifestError(f"{path}:{n}: not valid JSON ({e.msg})") from None


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> Path:
    """Write atomically (temp + rename) so a killed run never leaves half a manifest."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with _open(tmp, "w", gz=path.name.endswith(".gz")) as f:  # compression follows the final name
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def read_manifest(path: str | Path) -> list[Utterance]:
    """Read an utterance manifest (.jsonl / .jsonl.gz); ids must be unique."""
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"manifest {path} does not exist")
    root = path.parent
    utts, seen = [], set()
    for n, d in iter_jsonl(path):
        u = Utterance.from_dict(d, root, where=f"{path.name}:{n}")
        if u.id in seen:
            raise ManifestError(f"Utterance {u.id}: duplicate id ({path}:{n})")
        seen.add(u.id)
        utts.append(u)
    return utts


def write_manifest(path: str | Path, utts: Iterable[Utterance]) -> Path:
    path = Path(path)
    return write_jsonl(path, (u.to_dict(path.parent) for u in utts))


# ---------------------------------------------------------------- importers


def import_folder(folder: str | Path, domain: str | None = None) -> list[Utterance]:
    """Every audio file under `folder` (recursively); id = relative path without suffix.

    A `<name>.txt` beside an audio file is taken as its transcript.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ManifestError(f"{folder} is not a folder")
    utts = []
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() not in AUDIO_SUFFIXES or not p.is_file():
            continue
        txt = p.with_suffix(".txt")
        text = txt.read_text(encoding="utf-8").strip() if txt.exists() else None
        uid = str(p.relative_to(folder).with_suffix("")).replace(os.sep, "/")
        utts.append(Utterance(id=uid, audio=str(p.resolve()), text=text, domain=domain))
    return utts


def import_kaldi(data_dir: str | Path, domain: str | None = None) -> list[Utterance]:
    """A Kaldi data dir: `wav.scp` (`<id> <path>`) and optional `text` (`<id> <words>`).

    Piped commands in wav.scp (`... |`) are refused: edgekd never runs commands from data files.
    """
    data_dir = Path(data_dir)
    scp = data_dir / "wav.scp"
    if not scp.exists():
        raise ManifestError(f"{data_dir}: no wav.scp")
    texts: dict[str, str] = {}
    if (data_dir / "text").exists():
        for n, line in enumerate((data_dir / "text").read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                uid, _, words = line.strip().partition(" ")
                texts[uid] = words.strip()
    utts, seen = [], set()
    for n, line in enumerate(scp.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        uid, _, path = line.strip().partition(" ")
        path = path.strip()
        if not path:
            raise ManifestError(f"{scp}:{n}: utterance {uid} has no path")
        if path.endswith("|"):
            raise ManifestError(f"{scp}:{n}: utterance {uid} is a piped command; convert it to a file first")
        if uid in seen:
            raise ManifestError(f"{scp}:{n}: duplicate utterance id {uid}")
        seen.add(uid)
        p = Path(path) if os.path.isabs(path) else (data_dir / path)
        utts.append(Utterance(id=uid, audio=str(p.resolve()), text=texts.get(uid), domain=domain))
    return utts


def import_table(table: str | Path, domain: str | None = None) -> list[Utterance]:
    """A CSV or TSV with a header: a path column (`path`/`audio`/`file`/`wav_filename`) and an
    optional text column (`text`/`sentence`/`transcript`), as Common Voice and LibriSpeech users
    have. An `id` column is used when present, else the file stem."""
    table = Path(table)
    with open(table, newline="", encoding="utf-8") as f:
        sample = f.read(4096)
        f.seek(0)
        delim = "\t" if table.suffix.lower() == ".tsv" or sample.count("\t") > sample.count(",") else ","
        reader = csv.DictReader(f, delimiter=delim)
        cols = {c.lower().strip(): c for c in (reader.fieldnames or [])}
        pcol = next((cols[c] for c in ("path", "audio", "file", "wav_filename", "filename") if c in cols), None)
        tcol = next((cols[c] for c in ("text", "sentence", "transcript", "transcription") if c in cols), None)
        if pcol is None:
            raise ManifestError(f"{table}: no path column (one of path, audio, file, wav_filename)")
        utts, seen = [], set()
        for n, row in enumerate(reader, 2):
            path = (row.get(pcol) or "").strip()
            if not path:
                raise ManifestError(f"{table}:{n}: empty path")
            p = Path(path) if os.path.isabs(path) else (table.parent / path)
            uid = (row.get(cols.get("id", ""), "") or "").strip() or p.stem
            if uid in seen:
                raise ManifestError(f"{table}:{n}: duplicate utterance id {uid}")
            seen.add(uid)
            text = (row.get(tcol) or "").strip() if tcol else None
            utts.append(Utterance(id=uid, audio=str(p.resolve()), text=text or None, domain=domain))
    return utts


def import_any(src: str | Path, domain: str | None = None) -> list[Utterance]:
    """Dispatch on what `src` is: manifest, Kaldi dir, folder of audio, or CSV/TSV."""
    src = Path(src)
    name = src.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        return read_manifest(src)
    if src.is_dir():
        return import_kaldi(src, domain) if (src / "wav.scp").exists() else import_folder(src, domain)
    if src.suffix.lower() in (".csv", ".tsv"):
        return import_table(src, domain)
    raise ManifestError(f"{src}: not a manifest (.jsonl), Kaldi dir, audio folder or .csv/.tsv")


# ---------------------------------------------------------------- stage manifest


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


@dataclass
class StageManifest:
    """What a stage did: enough to skip it when nothing changed and to audit it later."""

    stage: str
    config: dict[str, Any]
    inputs: dict[str, str] = field(default_factory=dict)  # path -> sha256
    outputs: dict[str, str] = field(default_factory=dict)  # name -> path (relative to out dir)
    metrics: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # seconds
    fingerprint: str = ""  # hash of config + inputs + upstream manifests (pipeline skip/resume)
    edgekd_version: str = __version__
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StageManifest":
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown or "stage" not in d or "config" not in d:
            raise ManifestError(f"stage manifest {d.get('stage', '?')}: bad fields {sorted(unknown) or 'missing stage/config'}")
        return cls(**d)

    def save(self, out_dir: str | Path) -> Path:
        path = Path(out_dir) / "manifest.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name("manifest.json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "StageManifest":
        path = Path(path)
        if path.is_dir():
            path = path / "manifest.json"
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as e:
            raise ManifestError(f"{path}: cannot read stage manifest ({e})") from None

    def add_inputs(self, *paths: str | Path) -> None:
        for p in paths:
            self.inputs[str(p)] = sha256_file(p)
