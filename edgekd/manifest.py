"""The utterance record, JSONL manifests, and the stage manifest.

An utterance manifest is JSONL (optionally gzipped), one `Utterance` per line. Audio paths are
stored relative to the manifest's folder when the audio lies under it (so a data folder can be
moved or copied to a Pi) and are absolute in memory. Every stage writes a `StageManifest`
(`manifest.json`) naming its config, inputs (with sha256) and outputs. Importers (Kaldi dir,
CSV/TSV, audio folder) live in edgekd/importers.py.
"""

from __future__ import annotations

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
            audio = abs_path(root / audio)
        d["audio"] = audio
        try:
            utt = cls(**d)
        except TypeError as e:
            raise ManifestError(f"Utterance {rid}: {e}") from None
        utt.validate()
        return utt


def abs_path(p: str | Path) -> str:
    """Absolute, symlinks resolved when they can be; a loop or dangling link keeps its own path
    (Path.resolve raises RuntimeError on a loop) so the audio check can name what is wrong."""
    try:
        return str(Path(p).resolve(strict=True))
    except (OSError, RuntimeError):
        return os.path.abspath(p)


def _relative(path: str, root: Path) -> str:
    p = Path(abs_path(path))
    try:
        return str(p.relative_to(abs_path(root)))
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


def read_texts(paths: Iterable[str | Path]) -> list[str]:
    """Transcripts of labeled manifests, or the lines of plain `.txt` files (one sentence a line,
    e.g. the `text/train.txt` that `edgekd synth --text open` writes); empty ones left out."""
    texts: list[str] = []
    for m in paths:
        if str(m).endswith(".txt"):
            texts += [line.strip() for line in Path(m).read_text(encoding="utf-8").splitlines() if line.strip()]
        else:
            texts += [u.text for u in read_manifest(m) if u.text]
    return texts
