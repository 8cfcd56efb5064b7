"""Decoding CTC outputs to text, and scoring with jiwer.

Greedy search is the default (what sherpa-onnx's greedy CTC does on device, so the numbers match
deployment). Beam search with a word n-gram LM is an option (extra `[lm]`: flashlight-text).
"""

from __future__ import annotations

import numpy as np
import torch

from edgekd.tokens import Tokenizer


def greedy(logits: torch.Tensor | np.ndarray, lengths, tokenizer: Tokenizer) -> list[str]:
    """(B, T, V) logits or log-probs + (B,) lengths -> B transcripts (repeats merged, blanks dropped)."""
    ids = logits.argmax(-1) if isinstance(logits, torch.Tensor) else torch.from_numpy(np.asarray(logits).argmax(-1))
    return [tokenizer.ctc_collapse(ids[i, : int(lengths[i])].tolist()) for i in range(ids.shape[0])]


def wer_cer(refs: list[str], hyps: list[str]) -> dict[str, float]:
    """Corpus WER and CER (jiwer) over pairs; empty references are skipped (WER undefined)."""
    import jiwer

    pairs = [(r, h) for r, h in zip(refs, hyps) if r and r.strip()]
    if not pairs:
        return {"wer": float("nan"), "cer": float("nan"), "n": 0}
    r, h = [p[0] for p in pairs], [p[1] for p in pairs]
    return {"wer": float(jiwer.wer(r, h)), "cer": float(jiwer.cer(r, h)), "n": len(pairs)}


class BeamDecoder:
    """CTC beam search (flashlight-text, the decoder torchaudio wraps), optionally with a word
    n-gram LM through its built-in KenLM: then decoding is lexicon-constrained to the LM's words
    (spelled with edgekd's characters, a space closing each word), which is what lets the LM fix
    spelling errors; without an LM it is a lexicon-free beam search over characters.

    `alpha` weighs the LM score, `beta` is a per-word bonus. Subword token sets (words start with
    `▁`) get the lexicon-free search; the word LM spells words in characters and so refuses them.
    """

    def __init__(self, tokens: tuple[str, ...], lm_path: str | None = None, beam_width: int = 32,
                 alpha: float = 0.5, beta: float = 1.0):
        try:
            from flashlight.lib.text import decoder as fl
            from flashlight.lib.text.dictionary import Dictionary
        except ImportError as e:
            from edgekd.errors import EdgekdError

            raise EdgekdError(f"beam search needs the [lm] extra: pip install flashlight-text ({e})") from None
        from edgekd.tokens import WORD, is_subword

        self.tokens = tuple(tokens)
        subword = is_subword(self.tokens)
        if subword and lm_path:
            from edgekd.errors import EdgekdError

            raise EdgekdError("the word LM (--lm) spells words in characters; a subword token set decodes "
                              "with beam search without an LM (drop --lm) or greedy")
        # the lexicon-free search only needs a word-boundary id for LM scoring, which ZeroLM ignores
        self.blank = 0
        self.space = self.tokens.index(" ") if not subword else (self.tokens.index(WORD) if WORD in self.tokens else 0)
        if lm_path:
            words = _arpa_words(lm_path)
            wdict = Dictionary(words + ["<unk>"])
            from flashlight.lib.text.decoder.kenlm import KenLM

            lm = KenLM(str(lm_path), wdict)
            trie = fl.Trie(len(self.tokens), self.space)
            start = lm.start(False)
            index = {t: i for i, t in enumerate(self.tokens)}
            for w in words:
                if all(c in index for c in w):
                    _, score = lm.score(start, wdict.get_index(w))
                    trie.insert([index[c] for c in w] + [self.space], wdict.get_index(w), score)
            trie.smear(fl.SmearingMode.MAX)
            opts = fl.LexiconDecoderOptions(beam_size=beam_width, beam_size_token=len(self.tokens), beam_threshold=25.0,
                                            lm_weight=alpha, word_score=beta, unk_score=float("-inf"), sil_score=0.0,
                                            log_add=False, criterion_type=fl.CriterionType.CTC)
            self.decoder = fl.LexiconDecoder(opts, trie, lm, self.space, self.blank, wdict.get_index("<unk>"), [], False)
            self.words = wdict
        else:
            self.words = None
            opts = fl.LexiconFreeDecoderOptions(beam_size=beam_width, beam_size_token=len(self.tokens),
                                                beam_threshold=25.0, lm_weight=0.0, sil_score=0.0, log_add=False,
                                                criterion_type=fl.CriterionType.CTC)
            self.decoder = fl.LexiconFreeDecoder(opts, fl.ZeroLM(), self.space, self.blank, [])

    def __call__(self, log_probs: torch.Tensor, lengths) -> list[str]:
        lp = log_probs.detach().float().contiguous()
        out = []
        for i in range(lp.shape[0]):
            n = int(lengths[i])
            if n == 0:
                out.append("")
                continue
            em = lp[i, :n].contiguous()
            best = self.decoder.decode(em.data_ptr(), n, em.shape[1])[0]
            if self.words is not None:  # the lexicon decoder's words are exact; its token path is a CTC path
                out.append(" ".join(self.words.get_entry(w) for w in best.words if w >= 0))
            else:
                out.append(" ".join(Tokenizer(self.tokens).ctc_collapse([t for t in best.tokens if t >= 0]).split()))
        return out


def _arpa_words(path) -> list[str]:
    """The unigram vocabulary of an ARPA file (without <s>, </s>, <unk>)."""
    words, on = [], False
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("\\1-grams"):
                on = True
                continue
            if on and (line.startswith("\\") or not line):
                if words:
                    break
                continue
            if on:
                w = line.split("\t")[1]
                if w not in ("<s>", "</s>", "<unk>"):
                    words.append(w)
    return words
