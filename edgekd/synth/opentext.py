"""Open-vocabulary sentences for synthesis, from text that Debian packages carry.

Why: a teacher trained on the ~1,500-word templates of `text.py` learned the templates, not
English (82-86 % WER on new sentences in its own voices). This pool has tens of thousands of
word types of natural English: WordNet's example sentences and glosses (`wordnet-base`) and the
fortune cookies of `fortunes` / `fortunes-min` (the offensive set is never read).

Every sentence is assigned to train/dev/test by a hash of its normalised transcript, so a
sentence (and every duplicate of it, from any source) lives in exactly one split, whatever the
seed or the order in which the files are read.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
from pathlib import Path

from edgekd.errors import EdgekdError
from edgekd.tokens import normalize_text

WORDNET_DIR = Path("/usr/share/wordnet")
FORTUNE_DIR = Path("/usr/share/games/fortunes")
SPLIT_PER_MILLE = {"test": 20, "dev": 10}  # the rest is train
MIN_WORDS, MAX_WORDS = 3, 24
# Sampling weight of each source: examples are the most natural speech, glosses widen the vocabulary.
SOURCE_WEIGHTS = {"wordnet-example": 0.4, "wordnet-gloss": 0.25, "fortune": 0.35}

# Only letters and speech punctuation: digits, symbols and markup read differently in every engine
# ("$5" -> "five dollars") and the transcript could not follow.
_SPEAKABLE = re.compile(r"^[A-Za-z][A-Za-z ,.;:!?'\"()-]*$")
# Abbreviations and all-capital words (acronyms, roman numerals) are expanded or spelled by TTS.
_ABBREV = re.compile(r"\b(?:[A-Z]{2,}|Mr|Mrs|Ms|Dr|St|Jr|Sr|Ft|Mt|Gen|Col|Capt|Lt|Sgt|Rev|Prof|Inc|Ltd|Co|No|etc|vs|viz|cf|e\.g|i\.e|[A-Za-z]\.[A-Za-z])\b\.?")

_LETTER = re.compile(r"(?<![A-Za-z'])(?![aAI]\b)[A-Za-z](?![A-Za-z'])")  # a lone letter is read as its name


def split_of(transcript: str) -> str:
    """'train' | 'dev' | 'test' for a normalised transcript: a pure function of its text."""
    h = int.from_bytes(hashlib.sha1(transcript.encode()).digest()[:4], "little") % 1000
    if h < SPLIT_PER_MILLE["test"]:
        return "test"
    return "dev" if h < SPLIT_PER_MILLE["test"] + SPLIT_PER_MILLE["dev"] else "train"


def clean(sentence: str) -> tuple[str, str] | None:
    """(text to speak, transcript) for a raw sentence, or None when TTS and transcript would disagree."""
    s = re.split(r'"\s*-', sentence)[0]  # WordNet examples end in '"- Author': the quote is the sentence
    s = " ".join(s.replace("`", "'").split()).strip(" -")
    if not _SPEAKABLE.match(s) or _ABBREV.search(s) or _LETTER.search(s) or "--" in s:
        return None
    t = normalize_text(s)
    if not MIN_WORDS <= len(t.split()) <= MAX_WORDS:
        return None
    return (s[0].upper() + s[1:]), t


def _wordnet() -> dict[str, list[str]]:
    examples, glosses = [], []
    for f in sorted(WORDNET_DIR.glob("data.*")):
        for line in f.read_text(encoding="latin-1").splitlines():
            if line.startswith("  ") or "|" not in line:  # the licence header
                continue
            for part in line.split("|", 1)[1].split(";"):
                part = part.strip()
                (examples if part.startswith('"') else glosses).append(part.strip('"'))
    return {"wordnet-example": examples, "wordnet-gloss": glosses}


def _fortunes() -> list[str]:
    out = []
    for f in sorted(p for p in FORTUNE_DIR.glob("*") if p.is_file() and p.suffix not in (".dat", ".u8")):
        for cookie in f.read_text(encoding="utf-8", errors="replace").split("\n%\n"):
            text = " ".join(cookie.split())
            out += re.split(r"(?<=[.!?])\s+", text)
    return out


@functools.lru_cache(maxsize=1)
def sentence_pool() -> dict[str, dict[str, list[tuple[str, str]]]]:
    """split -> source -> [(spoken, transcript)], deduplicated by transcript across sources."""
    raw = {}
    if WORDNET_DIR.is_dir():
        raw.update(_wordnet())
    if FORTUNE_DIR.is_dir():
        raw["fortune"] = _fortunes()
    if not raw:
        raise EdgekdError("open text needs Debian's wordnet-base and/or fortunes-min: "
                          "apt-get install wordnet-base fortunes-min fortunes")
    seen: set[str] = set()
    pool: dict[str, dict[str, list[tuple[str, str]]]] = {s: {k: [] for k in raw} for s in ("train", "dev", "test")}
    for source in sorted(raw):
        for sentence in raw[source]:
            c = clean(sentence)
            if c is None or c[1] in seen:
                continue
            seen.add(c[1])
            pool[split_of(c[1])][source].append(c)
    return pool


def make_transcript(rng: random.Random, split: str) -> tuple[str, str]:
    """(text to speak, normalised transcript) drawn from `split`'s sentences only."""
    pool = sentence_pool()[split]
    sources = [s for s in SOURCE_WEIGHTS if pool.get(s)]
    source = rng.choices(sources, weights=[SOURCE_WEIGHTS[s] for s in sources])[0]
    return rng.choice(pool[source])


def vocabulary(split: str = "train") -> set[str]:
    return {w for src in sentence_pool()[split].values() for _, t in src for w in t.split()}


def write_split_text(split: str, path: str | Path) -> Path:
    """All of `split`'s transcripts, one per line (sorted): the text an LM for this corpus may see."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = sorted(t for src in sentence_pool()[split].values() for _, t in src)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
