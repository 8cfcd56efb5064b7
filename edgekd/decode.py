"""Decoding CTC outputs to text, and scoring with jiwer.

Greedy search is the default (what sherpa-onnx's greedy CTC does on device, so the numbers match
deployment). Beam search with a word n-gram LM is an option when `pyctcdecode` is installed.
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
    """CTC prefix beam search with an optional KenLM/arpa word LM via pyctcdecode."""

    def __init__(self, tokens: tuple[str, ...], lm_path: str | None = None, beam_width: int = 32,
                 alpha: float = 0.5, beta: float = 1.0):
        try:
            from pyctcdecode import build_ctcdecoder
        except ImportError as e:
            from edgekd.errors import EdgekdError

            raise EdgekdError(f"beam search needs `pip install pyctcdecode` ({e})") from None
        labels = ["" if i == 0 else t for i, t in enumerate(tokens)]
        self.decoder = build_ctcdecoder(labels, kenlm_model_path=lm_path, alpha=alpha, beta=beta)
        self.beam_width = beam_width

    def __call__(self, log_probs: torch.Tensor, lengths) -> list[str]:
        lp = log_probs.detach().float().numpy()
        return [" ".join(self.decoder.decode(lp[i, : int(lengths[i])], beam_width=self.beam_width).split())
                for i in range(lp.shape[0])]
