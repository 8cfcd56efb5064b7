"""The character token set shared by every model edgekd trains, and text normalisation.

Id 0 is the CTC blank, named `<blk>` so sherpa-onnx's greedy CTC search recognises it.
The token list is stored in every checkpoint and exported model; this module only holds the
default and the normaliser that maps free text onto it.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from edgekd.errors import EdgekdError

BLANK = "<blk>"
DEFAULT_TOKENS: tuple[str, ...] = (BLANK, " ", "'") + tuple("abcdefghijklmnopqrstuvwxyz")

_DIGITS = "zero one two three four five six seven eight nine".split()


def normalize_text(text: str) -> str:
    """Lowercase, strip accents, spell digits, keep [a-z' ], squeeze spaces."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = text.lower().replace("’", "'")
    text = re.sub(r"\d", lambda m: f" {_DIGITS[int(m.group())]} ", text)
    text = re.sub(r"[^a-z' ]+", " ", text)
    text = re.sub(r"\s*'\s*(?![a-z])|(?<![a-z])'", " ", text)  # drop quote-like apostrophes
    return re.sub(r"\s+", " ", text).strip()


class Tokenizer:
    """Maps normalised text to ids and back; `tokens[0]` must be the blank."""

    def __init__(self, tokens: tuple[str, ...] | list[str] = DEFAULT_TOKENS):
        tokens = tuple(tokens)
        if not tokens or tokens[0] != BLANK:
            raise ValueError(f"token list must start with the blank {BLANK!r}, got {tokens[:1]}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("token list has duplicates")
        self.tokens = tokens
        self._index = {t: i for i, t in enumerate(tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def blank_id(self) -> int:
        return 0

    def encode(self, text: str) -> list[int]:
        """Ids of `normalize_text(text)`; characters outside the set are dropped."""
        return [self._index[c] for c in normalize_text(text) if c in self._index]

    def decode(self, ids) -> str:
        return "".join(self.tokens[i] for i in ids if i != 0).strip()

    def ctc_collapse(self, ids) -> str:
        """Greedy CTC: merge repeats, drop blanks."""
        out, prev = [], -1
        for i in ids:
            i = int(i)
            if i != prev and i != 0:
                out.append(i)
            prev = i
        return re.sub(r"\s+", " ", self.decode(out)).strip()

    def tokens_txt(self) -> str:
        """sherpa-onnx `tokens.txt`: `<symbol> <id>` per line; the space is written as `▁`."""
        return "".join(f"{'▁' if t == ' ' else t} {i}\n" for i, t in enumerate(self.tokens))


def read_tokens_txt(path: str | Path) -> list[str]:
    """Symbols by id from a sherpa-onnx `tokens.txt` (what `Tokenizer.tokens_txt` writes), as
    written: `▁` stays `▁` (a character model's space, or a subword's word start)."""
    path = Path(path)
    table: dict[int, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        sym, _, idx = line.rpartition(" ")
        if not sym or not idx.lstrip("-").isdigit():
            raise EdgekdError(f"{path}:{n}: expected '<symbol> <id>', got {line!r}")
        table[int(idx)] = sym
    if sorted(table) != list(range(len(table))):
        raise EdgekdError(f"{path}: ids are not 0..{len(table) - 1}")
    return [table[i] for i in range(len(table))]
