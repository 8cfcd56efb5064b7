"""Importers: an audio folder, a Kaldi data dir or a CSV/TSV table -> `Utterance` records.

Entries that cannot be used are kept in the returned list, marked (edgekd.audio.mark_rejected),
so that `check_manifest` lists each in rejected.jsonl with its reason and `write_manifest` leaves
them out; only a source that cannot be read at all raises ManifestError.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from edgekd.errors import ManifestError
from edgekd.manifest import AUDIO_SUFFIXES, Utterance, abs_path, read_manifest


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
        u = Utterance(id=uid, audio=abs_path(p), text=text or None, domain=domain)
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
    rows = _Rows(data_dir, scp, domain)
    for n, line in enumerate(_read_lines(scp), 1):
        if not line.strip():
            continue
        uid, _, path = line.strip().partition(" ")
        path = path.strip()
        if path.endswith("|"):
            raise ManifestError(f"{scp}:{n}: utterance {uid} is a piped command; convert it to a file first")
        rows.add(uid, path, texts.get(uid), f"{scp.name}:{n}",
                 no_path=f"{scp.name}:{n} gives utterance {uid} no path",
                 bad_name=f"{scp.name}:{n} is not UTF-8; fix the line",
                 bad_text=f"the line of {uid} in 'text' is not UTF-8; re-save it as UTF-8")
    return rows.utterances()


class _Rows:
    """Rows of a Kaldi wav.scp or a CSV/TSV table becoming Utterances. A row that cannot be used
    (no path, a name or transcript that is not UTF-8, a duplicate id) is kept, marked with its
    message, so that `check_manifest` lists it in rejected.jsonl; the other rows go on."""

    def __init__(self, base: Path, source: Path, domain: str | None):
        self.base, self.source, self.domain = base, source, domain  # relative paths start at `base`
        self.utts: list[Utterance] = []
        self.where: dict[int, str] = {}  # row index -> "file:line", named in duplicate messages

    def resolve(self, path: str) -> Path:
        return (Path(path) if os.path.isabs(path) else self.base / path) if path else self.source

    def add(self, uid: str, path: str, text: str | None, where: str, *, no_path: str, bad_name: str,
            bad_text: str) -> None:
        u = Utterance(id=uid, audio=abs_path(self.resolve(path)), text=None if _not_utf8(text) else text,
                      domain=self.domain)
        if not path:
            _mark(u, "no-path", no_path)
        elif _not_utf8(uid) or _not_utf8(path):
            _mark(u, "bad-name", bad_name)
        elif _not_utf8(text):
            _mark(u, "bad-transcript", bad_text)
        self.where[len(self.utts)] = where
        self.utts.append(u)

    def utterances(self) -> list[Utterance]:
        return _dedupe(self.utts, self.where)


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
    out = _Rows(table.parent, table, domain)
    for n, row in enumerate(rows, 2):
        path = (row.get(pcol) or "").strip()
        uid = (row.get(cols.get("id", ""), "") or "").strip() or (out.resolve(path).stem if path else f"{table.name}:{n}")
        text = ((row.get(tcol) or "").strip() or None) if tcol else None
        out.add(uid, path, text, f"{table.name}:{n}", no_path=f"{table.name}:{n} has an empty path",
                bad_name=f"{table.name}:{n}: the path or id is not UTF-8; fix the row",
                bad_text=f"{table.name}:{n}: the text is not UTF-8; re-save the table as UTF-8")
    return out.utterances()


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
