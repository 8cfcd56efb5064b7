"""Token sets as data: the default 29 characters, sentencepiece subwords, or any `tokens.txt`.

Inside edgekd id 0 is always the CTC blank, named `<blk>` so sherpa-onnx's greedy CTC search
recognises it; a token set that has its blank elsewhere (NeMo puts it last) is reordered once
where it is read (`canonical_tokens`). Two kinds of sets, told apart by their symbols alone:
- characters: single characters with `" "` the word boundary (`DEFAULT_TOKENS`);
- subwords: pieces where `▁` starts a word (sentencepiece's convention, what sherpa-onnx decodes).
The token list is stored in every checkpoint and exported model, and a subword set also carries
its sentencepiece model (bytes: a protobuf that is parsed, never executed) so text is split the
way the set was trained; a plain subword `tokens.txt` without one is split greedily by the longest
piece. `normalize_text` maps free text onto the alphabet both kinds are built from.
"""

from __future__ import annotations

import base64
import re
import unicodedata
from pathlib import Path

from edgekd.errors import EdgekdError

BLANK = "<blk>"
BLANKS = ("<blk>", "<blank>", "<eps>")  # the blank symbols sherpa-onnx's CTC search recognises
WORD = "▁"  # sentencepiece's word start; also how tokens.txt writes a character model's space
ALPHABET = "abcdefghijklmnopqrstuvwxyz'"  # what normalize_text leaves besides spaces
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


def is_subword(tokens) -> bool:
    """A set without a space token marks words with `▁` (subwords); one with it is a character set."""
    return " " not in tuple(tokens)[1:]


def _special(t: str) -> bool:
    return len(t) > 2 and t[0] == "<" and t[-1] == ">"  # <unk>, <s>, </s>: never part of a transcript


class Tokenizer:
    """Maps normalised text to ids and back; `tokens[0]` must be the blank.

    `spm`: a sentencepiece model (bytes) whose pieces are these tokens; it splits text for
    `encode`. Without one a subword set splits each word greedily into its longest pieces."""

    def __init__(self, tokens: tuple[str, ...] | list[str] = DEFAULT_TOKENS, spm: bytes | None = None):
        tokens = tuple(tokens)
        if not tokens or tokens[0] != BLANK:
            raise ValueError(f"token list must start with the blank {BLANK!r}, got {tokens[:1]}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("token list has duplicates")
        self.tokens, self.spm = tokens, spm or None
        self.subword = is_subword(tokens)
        self._index = {t: i for i, t in enumerate(tokens)}
        self._sp = None
        self._longest = max(len(t) for t in tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def blank_id(self) -> int:
        return 0

    def encode(self, text: str) -> list[int]:
        """Ids of `normalize_text(text)`; characters (or pieces) outside the set are dropped."""
        text = normalize_text(text)
        if not self.subword:
            return [self._index[c] for c in text if c in self._index]
        if self.spm:
            if self._sp is None:
                import sentencepiece

                self._sp = sentencepiece.SentencePieceProcessor(model_proto=self.spm)
            return [self._index[p] for p in self._sp.encode(text, out_type=str) if p in self._index]
        ids: list[int] = []
        for word in text.split():
            s, i = WORD + word, 0
            while i < len(s):  # longest piece first; a character the set lacks is skipped
                for n in range(min(self._longest, len(s) - i), 0, -1):
                    if s[i:i + n] in self._index:
                        ids.append(self._index[s[i:i + n]])
                        i += n
                        break
                else:
                    i += 1
        return ids

    def decode(self, ids) -> str:
        text = "".join(t for t in (self.tokens[i] for i in ids if i != 0) if not _special(t))
        return " ".join(text.replace(WORD, " ").split()) if self.subword else text.strip()

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
        return tokens_txt(self.tokens)


def tokens_txt(symbols) -> str:
    """sherpa-onnx `tokens.txt` of symbols by id: `<symbol> <id>` per line; a character model's
    space is written as `▁` (subword pieces already carry it)."""
    return "".join(f"{WORD if t == ' ' else t} {i}\n" for i, t in enumerate(symbols))


def canonical_tokens(symbols: list[str] | tuple[str, ...], where: str) -> tuple[tuple[str, ...], list[int]]:
    """Symbols by id as a model has them -> (edgekd's tokens, `order`): the blank (any of `BLANKS`)
    moved to id 0 as `<blk>`, a character model's `▁` read as its space. `order[i]` is the model's
    id of edgekd's token i, so `log_probs[..., order]` reorders a model's columns."""
    blank = next((i for i, t in enumerate(symbols) if t in BLANKS), None)
    if blank is None:
        raise EdgekdError(f"{where}: no blank symbol ({', '.join(BLANKS)}) in its tokens")
    order = [blank] + [i for i in range(len(symbols)) if i != blank]
    syms = [symbols[i] for i in order[1:]]
    chars = all(len(t) == 1 for t in syms)
    return (BLANK, *[" " if (t == WORD and chars) else t for t in syms]), order


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


def spm_symbols(model: bytes, where: str) -> list[str]:
    """The pieces of a sentencepiece model by id (a model trained without a blank gets `<blk>` as
    a new last id, where NeMo puts it)."""
    import sentencepiece

    try:
        sp = sentencepiece.SentencePieceProcessor(model_proto=model)
    except Exception as e:  # sentencepiece raises RuntimeError with a C++ message
        raise EdgekdError(f"{where}: not a sentencepiece model ({str(e).splitlines()[0][:120]})") from None
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    return pieces if any(p in BLANKS for p in pieces) else pieces + [BLANK]


def spm_to_text(model: bytes | None) -> str:
    """Sentencepiece model bytes as text for string-only metadata (safetensors, ONNX, meta.json)."""
    return base64.b64encode(model).decode("ascii") if model else ""


def spm_from_text(text: str | None, tokens: tuple[str, ...], where: str) -> bytes | None:
    """The model `spm_to_text` wrote, checked to spell exactly `tokens`; None for none."""
    if not text:
        return None
    try:
        model = base64.b64decode(text, validate=True)
    except ValueError:
        raise EdgekdError(f"{where}: metadata 'sentencepiece' is not base64") from None
    if canonical_tokens(spm_symbols(model, f"{where}: metadata 'sentencepiece'"), where)[0] != tuple(tokens):
        raise EdgekdError(f"{where}: metadata 'sentencepiece' does not spell its tokens")
    return model


def load_token_set(spec: str | Path) -> tuple[tuple[str, ...], bytes | None]:
    """`""`/`chars` (the 29 characters), a sentencepiece `.model`, or a `tokens.txt` ->
    (tokens with the blank at id 0, sentencepiece model bytes or None)."""
    if str(spec) in ("", "chars"):
        return DEFAULT_TOKENS, None
    path = Path(spec)
    if not path.is_file():
        raise EdgekdError(f"token set {spec}: no such file (a sentencepiece .model, a tokens.txt, or 'chars')")
    if path.suffix == ".model":
        model = path.read_bytes()
        return canonical_tokens(spm_symbols(model, str(path)), str(path))[0], model
    return canonical_tokens(read_tokens_txt(path), str(path))[0], None


def train_sentencepiece(texts: list[str], vocab: int, out: str | Path, model_type: str = "bpe") -> Path:
    """A sentencepiece model of `vocab` pieces over normalised `texts`, its blank `<blk>` at id 0
    (CTC-ready), no BOS/EOS, every letter of `ALPHABET` kept as a piece so any text can be spelt;
    writes `out` (.model) and `tokens.txt` beside it."""
    import io

    import sentencepiece

    if model_type not in ("bpe", "unigram"):
        raise EdgekdError(f"sentencepiece model_type must be 'bpe' or 'unigram', got {model_type!r}")
    lines = [t for t in (normalize_text(x) for x in texts) if t]
    if not lines:
        raise EdgekdError("no text to train a token set on")
    buf = io.BytesIO()
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=buf, vocab_size=vocab, model_type=model_type,
            pad_id=0, pad_piece=BLANK, unk_id=1, bos_id=-1, eos_id=-1, required_chars=ALPHABET,
            normalization_rule_name="identity",  # text is normalised by normalize_text already
            character_coverage=1.0, minloglevel=2)
    except RuntimeError as e:  # e.g. "Vocabulary size too high (300). Please set it to a value <= 180."
        raise EdgekdError(f"sentencepiece: {str(e).splitlines()[-1].split(') ', 1)[-1][:200]}") from None
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(buf.getvalue())
    tokens, _ = load_token_set(out)
    (out.parent / "tokens.txt").write_text(Tokenizer(tokens).tokens_txt(), encoding="utf-8")
    return out


def run_tokens(sources: list[str | Path], vocab: int, out: str | Path, model_type: str = "bpe") -> dict:
    """`edgekd tokens train`: a sentencepiece token set from the transcripts of manifests or .txt
    files (`manifest.read_texts`) -> {model, tokens_txt, vocab, sentences}."""
    from edgekd.manifest import read_texts

    texts = read_texts(sources)
    model = train_sentencepiece(texts, vocab, out, model_type)
    return {"model": str(model), "tokens_txt": str(model.parent / "tokens.txt"), "vocab": vocab, "sentences": len(texts)}
