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
            audio = _abs(root / audio)
        d["audio"] = audio
        try:
            utt = cls(**d)
        except TypeError as e:
            raise ManifestError(f"Utterance {rid}: {e}") from None
        utt.validate()
        return utt


def _abs(p: str | Path) -> str:
    """Absolute, symlinks resolved when they can be; a loop or dangling link keeps its own path
    (Path.resolve raises RuntimeError on a loop) so the audio check can name what is wrong."""
    try:
        return str(Path(p).resolve(strict=True))
    except (OSError, RuntimeError):
        return os.path.abspath(p)


def _relative(path: str, root: Path) -> str:
    p = Path(_abs(path))
    try:
        return str(p.relative_to(_abs(root)))
    except ValueError:
        return str(p)


def _open(path: Path, mode: str, gz: bool | None = None):
    if str(path).endswith(".gz") if gz is None else gz:
        return gzip.open(path, mode + "t", encoding="utf-8")
    return open(path, mode, encoding="utf-8")


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; a bad line raises naming file and line."""
    path = Path(path)
    try:
        with _open(path, "r") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield n, json.loads(line)
                except (json.JSONDecodeError, RecursionError) as e:
                    raise ManifestError(f"{path}:{n}: not valid JSON ({getattr(e, 'msg', 'nested too deeply')})") from None
    except UnicodeDecodeError as e:
        raise ManifestError(f"{path}: not UTF-8 text (byte {e.object[e.start]:#x}); re-save it as UTF-8") from None
    except (OSError, EOFError) as e:  # EOFError: a truncated .gz
        raise ManifestError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> Path:
    """Write atomically (edgekd.atomic) so a killed run never leaves half a manifest."""
    from edgekd.atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp, _open(tmp, "w", gz=path.name.endswith(".gz")) as f:  # compression follows the final name
        for r in rows:
            line = json.dumps(r, ensure_ascii=False)
            try:
                line.encode("utf-8")
            except UnicodeEncodeError:  # a name that was not UTF-8 on disk: \udcXX escapes are valid JSON
                line = json.dumps(r)
            f.write(line + "\n")
    return path


def read_manifest(path: str | Path) -> list[Utterance]:
    """Read an utterance manifest (.jsonl / .jsonl.gz); ids must be unique."""
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"manifest {path} does not exist")
    root = path.parent
    utts, seen = [], {}
    for n, d in iter_jsonl(path):
        u = Utterance.from_dict(d, root, where=f"{path.name}:{n}")
        if u.id in seen:
            raise ManifestError(f"Utterance {u.id}: duplicate id ({path}:{n}, first at line {seen[u.id]}); "
                                f"give one of them another id")
        seen[u.id] = n
        utts.append(u)
    return utts


def write_manifest(path: str | Path, utts: Iterable[Utterance]) -> Path:
    """Entries an importer marked bad (edgekd.audio.mark_rejected) never enter a manifest."""
    path = Path(path)
    return write_jsonl(path, (u.to_dict(path.parent) for u in utts if not getattr(u, "_rejected", None)))


# ---------------------------------------------------------------- importers


def _mark(u: Utterance, reason: str, detail: str = "") -> Utterance:
    from edgekd.audio import mark_rejected

    return mark_rejected(u, reason, detail)


def _read_lines(path: Path) -> list[str]:
    """Lines of a text file; bytes that are not UTF-8 become surrogates (one bad line must not
    sink the others: the caller rejects just the entries they touch)."""
    try:
        return path.read_bytes().decode("utf-8", errors="surrogateescape").splitlines()
    except OSError as e:
        raise ManifestError(f"{path}: cannot read ({e.strerror or e})") from None


def _not_utf8(s: str | None) -> bool:
    return s is not None and any("\udc80" <= c <= "\udcff" for c in s)


def _transcript(txt: Path) -> tuple[str | None, str]:
    """(text, problem) of a `<name>.txt` transcript; problem '' when fine."""
    try:
        raw = txt.read_bytes()
    except OSError as e:
        return None, f"{txt.name}: cannot read ({e.strerror or e})"
    try:
        return raw.decode("utf-8").strip(), ""
    except UnicodeDecodeError as e:
        return None, f"{txt.name} is not UTF-8 (byte {raw[e.start]:#x} at {e.start}); re-save it as UTF-8"


def _dedupe(utts: list[Utterance], where: dict[int, str]) -> list[Utterance]:
    """Keep the first entry of each id; later ones are marked 'duplicate-id' naming the first."""
    first: dict[str, int] = {}
    for i, u in enumerate(utts):
        if getattr(u, "_rejected", None):
            continue
        if u.id in first:
            _mark(u, "duplicate-id", f"id {u.id!r} is already used by {where.get(first[u.id], utts[first[u.id]].audio)}; "
                                     f"rename one of them")
        else:
            first[u.id] = i
    return utts


def import_folder(folder: str | Path, domain: str | None = None) -> list[Utterance]:
    """Every audio file under `folder` (recursively); id = relative path without suffix.

    A `<name>.txt` beside an audio file is taken as its transcript. Entries that cannot be used
    (a transcript that is not UTF-8, a second file with the same id, and — found by the audio
    check — dangling links, symlink loops, a folder named like audio) are kept in the list,
    marked, so that `check_manifest` lists each in rejected.jsonl with its reason.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ManifestError(f"{folder} is not a folder")
    found = []
    for dirpath, dirs, files in os.walk(folder, followlinks=False):  # no link is followed: no loop
        dirs.sort()
        for name in sorted(files + dirs):  # a folder named x.wav is listed (and rejected), not skipped
            if Path(name).suffix.lower() in AUDIO_SUFFIXES:
                found.append(Path(dirpath) / name)
    utts, where = [], {}
    for p in sorted(found):
        rel = p.relative_to(folder)
        uid = str(rel.with_suffix("")).replace(os.sep, "/")
        txt = p.with_suffix(".txt")
        text, problem = _transcript(txt) if os.path.isfile(txt) else (None, "")
        u = Utterance(id=uid, audio=_abs(p), text=text or None, domain=domain)
        if problem:
            _mark(u, "bad-transcript", problem)
        if _not_utf8(uid):
            _mark(u, "bad-name", "the file name is not UTF-8; rename it")
        where[len(utts)] = str(rel)
        utts.append(u)
    return _dedupe(utts, where)


def import_kaldi(data_dir: str | Path, domain: str | None = None) -> list[Utterance]:
    """A Kaldi data dir: `wav.scp` (`<id> <path>`) and optional `text` (`<id> <words>`).

    Piped commands in wav.scp (`... |`) are refused: edgekd never runs commands from data files.
    A line without a path, a duplicate id or a transcript that is not UTF-8 rejects that entry
    (listed by `check_manifest`), not the import.
    """
    data_dir = Path(data_dir)
    scp = data_dir / "wav.scp"
    if not scp.exists():
        raise ManifestError(f"{data_dir}: no wav.scp")
    texts: dict[str, str] = {}
    if (data_dir / "text").exists():
        for line in _read_lines(data_dir / "text"):
            if line.strip():
                uid, _, words = line.strip().partition(" ")
                texts[uid] = words.strip()
    utts, where = [], {}
    for n, line in enumerate(_read_lines(scp), 1):
        if not line.strip():
            continue
        uid, _, path = line.strip().partition(" ")
        path = path.strip()
        if path.endswith("|"):
            raise ManifestError(f"{scp}:{n}: utterance {uid} is a piped command; convert it to a file first")
        p = (Path(path) if os.path.isabs(path) else (data_dir / path)) if path else scp
        text = texts.get(uid)
        u = _entry(uid, p, path, text, domain, (f"{scp.name}:{n} gives utterance {uid} no path",
                                                 f"{scp.name}:{n} is not UTF-8; fix the line",
                                                 f"the line of {uid} in 'text' is not UTF-8; re-save it as UTF-8"))
        where[len(utts)] = f"{scp.name}:{n}"
        utts.append(u)
    return _dedupe(utts, where)


def _entry(uid: str, p: Path, path: str, text: str | None, domain: str | None, why: tuple[str, str, str]) -> Utterance:
    """One Kaldi/CSV row as an Utterance, marked (no path, bad name, bad transcript) with `why`'s
    matching message when it cannot be used; `check_manifest` lists it in rejected.jsonl."""
    u = Utterance(id=uid, audio=_abs(p), text=None if _not_utf8(text) else text, domain=domain)
    if not path:
        _mark(u, "no-path", why[0])
    elif _not_utf8(uid) or _not_utf8(path):
        _mark(u, "bad-name", why[1])
    elif _not_utf8(text):
        _mark(u, "bad-transcript", why[2])
    return u


def import_table(table: str | Path, domain: str | None = None) -> list[Utterance]:
    """A CSV or TSV with a header: a path column (`path`/`audio`/`file`/`wav_filename`) and an
    optional text column (`text`/`sentence`/`transcript`), as Common Voice and LibriSpeech users
    have. An `id` column is used when present, else the file stem. A row with no path, a
    duplicate id or bytes that are not UTF-8 rejects that row (listed by `check_manifest`)."""
    import io

    table = Path(table)
    try:
        text_all = table.read_bytes().decode("utf-8", errors="surrogateescape").lstrip("\ufeff")
    except OSError as e:
        raise ManifestError(f"{table}: cannot read ({e.strerror or e})") from None
    sample = text_all[:4096]
    delim = "\t" if table.suffix.lower() == ".tsv" or sample.count("\t") > sample.count(",") else ","
    try:
        reader = csv.DictReader(io.StringIO(text_all, newline=""), delimiter=delim)
        cols = {c.lower().strip(): c for c in (reader.fieldnames or [])}
        rows = list(reader)
    except csv.Error as e:
        raise ManifestError(f"{table}: not a valid CSV/TSV ({e})") from None
    pcol = next((cols[c] for c in ("path", "audio", "file", "wav_filename", "filename") if c in cols), None)
    tcol = next((cols[c] for c in ("text", "sentence", "transcript", "transcription") if c in cols), None)
    if pcol is None:
        raise ManifestError(f"{table}: no path column (one of path, audio, file, wav_filename)")
    utts, where = [], {}
    for n, row in enumerate(rows, 2):
        path = (row.get(pcol) or "").strip()
        p = (Path(path) if os.path.isabs(path) else (table.parent / path)) if path else table
        uid = (row.get(cols.get("id", ""), "") or "").strip() or (p.stem if path else f"{table.name}:{n}")
        text = ((row.get(tcol) or "").strip() or None) if tcol else None
        u = _entry(uid, p, path, text, domain, (f"{table.name}:{n} has an empty path",
                                                 f"{table.name}:{n}: the path or id is not UTF-8; fix the row",
                                                 f"{table.name}:{n}: the text is not UTF-8; re-save the table as UTF-8"))
        where[len(utts)] = f"{table.name}:{n}"
        utts.append(u)
    return _dedupe(utts, where)


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
        from edgekd.atomic import atomic_write

        return atomic_write(Path(out_dir) / "manifest.json", json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

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
