"""Options of `edgekd pseudolabel`, and which of them change what a shard holds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class PseudoLabelOptions:
    k: int = 8  # max tokens kept per frame
    mass_eps: float = 1e-3  # stop keeping tokens once their mass reaches 1 - mass_eps
    batch_seconds: float = 60.0  # audio seconds per teacher batch
    shard_utts: int = 200  # utterances per shard (the unit of resume)
    confidence_threshold: Optional[float] = None  # route conf >= threshold to distil ...
    review_fraction: float = 0.1  # ... or send this lowest-confidence fraction to review
    workers: int = 2  # processes for the local engine
    engine: str = "local"  # "local" (process pool) or "ray" (Ray Data actor pool; extra [ray])
    beam: int = 0  # 1-best by CTC prefix beam search of this width (0 = greedy) ...
    lm: str = ""  # ... scored with this ARPA word LM (`edgekd lm`); soft targets are unaffected
    lm_alpha: float = 0.5
    lm_beta: float = 1.0

    def __post_init__(self):
        if not 1 <= self.k <= 255:
            raise ValueError(f"k must be in 1..255, got {self.k}")
        if self.confidence_threshold is not None and not 0 <= self.confidence_threshold <= 1:
            raise ValueError("confidence_threshold must be in [0, 1]")
        if not 0 <= self.review_fraction < 1:
            raise ValueError("review_fraction must be in [0, 1)")
        if self.engine not in ("local", "ray"):
            raise ValueError(f"engine must be 'local' or 'ray', got {self.engine!r}")
        if self.workers < 1 or self.shard_utts < 1:
            raise ValueError("workers and shard_utts must be >= 1")
        if self.beam < 0 or (self.lm and not self.beam):
            raise ValueError("lm needs beam > 0 (the LM scores beam-search hypotheses)")


# Options that change what a shard holds; the others (routing, workers, engine) act after the
# shards or not on their content, so a resume may change them.
SHARD_OPTIONS = ("k", "mass_eps", "batch_seconds", "shard_utts", "beam", "lm", "lm_alpha", "lm_beta")
