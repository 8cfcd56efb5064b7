"""Random audits of auto-accepted labels: which to audit, what they say, where the threshold goes.

Each labeling round sends a random share of the labels it *accepted* (confidence at or above
the threshold) to human review beside the doubtful ones. The audit is drawn after routing is
final, from accepted labels no human has seen (never a doubtful one of this round, never one
reviewed in an earlier round), so it cannot change the round it measures; only the next
round's threshold moves.

- `sample_audit`: the audited ids, seeded by (seed, round);
- `estimate_error`: word error rate of the accepted labels against the auditors' answers
  (errors summed over audited utterances / their reference words, as WER is pooled), with a
  percentile bootstrap interval over utterances;
- `next_threshold`: the routing threshold for the next round, toward a target label error rate:
  over the target, the lowest threshold at which the audited labels above it meet the target
  (no such one: the highest audited confidence); at or under the target, one `step` lower, to
  accept more next time (an audit cannot see below the threshold it was drawn above).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np


def sample_audit(accepted: list[str], reviewed: set[str] | frozenset[str], fraction: float, seed: int,
                 round_no: int, minimum: int = 1) -> list[str]:
    """A random `fraction` of the `accepted` ids not in `reviewed`, sorted; at least `minimum` (all
    of them when fewer): a rising threshold shrinks the accepted pool, and an audit of 4 labels
    gives an interval of +-17 WER points, too wide to steer by."""
    if not 0 <= fraction <= 1 or minimum < 0:
        raise ValueError(f"audit fraction must be in [0, 1] and its minimum >= 0, got {fraction}, {minimum}")
    pool = sorted(set(accepted) - set(reviewed))
    if not pool or fraction == 0:
        return []
    n = min(len(pool), max(minimum, 1, round(fraction * len(pool))))
    return sorted(random.Random(f"audit:{seed}:{round_no}").sample(pool, n))


def word_errors(ref: str, hyp: str) -> tuple[int, int]:
    """(word edits turning `ref` into `hyp`, words in `ref`)."""
    import jiwer

    r, h = ref.split(), hyp.split()
    if not r:
        return len(h), 0
    o = jiwer.process_words(" ".join(r), " ".join(h) if h else "")
    return o.substitutions + o.deletions + o.insertions, len(r)


@dataclass(frozen=True)
class ErrorEstimate:
    wer: float  # pooled word error rate of the audited labels (nan when nothing was audited)
    low: float  # bootstrap interval
    high: float
    utterances: int
    words: int


def estimate_error(counts: list[tuple[int, int]], seed: int = 0, level: float = 0.95,
                   n_boot: int = 2000) -> ErrorEstimate:
    """(errors, reference words) per audited utterance -> pooled WER with a percentile bootstrap
    interval at `level` (utterances resampled with replacement)."""
    if not counts:
        return ErrorEstimate(math.nan, math.nan, math.nan, 0, 0)
    e = np.array([c[0] for c in counts], dtype=np.float64)
    n = np.array([c[1] for c in counts], dtype=np.float64)
    point = float(e.sum() / max(n.sum(), 1))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(counts), size=(n_boot, len(counts)))
    boot = e[idx].sum(1) / np.maximum(n[idx].sum(1), 1)
    a = (1 - level) / 2
    return ErrorEstimate(point, float(np.quantile(boot, a)), float(np.quantile(boot, 1 - a)), len(counts),
                         int(n.sum()))


def next_threshold(audited: list[tuple[float, int, int]], threshold: float, target: float, step: float) -> float:
    """(confidence, errors, words) of each audited label, the threshold they were accepted at ->
    the next round's threshold (module docstring). No audit: unchanged."""
    if not audited:
        return threshold
    e = sum(a[1] for a in audited)
    n = sum(a[2] for a in audited)
    if e / max(n, 1) <= target:
        return max(0.0, threshold - step)
    for cut in sorted({a[0] for a in audited}):  # raise: the lowest cut whose audited labels meet the target
        above = [a for a in audited if a[0] >= cut]
        if cut > threshold and sum(a[1] for a in above) / max(sum(a[2] for a in above), 1) <= target:
            return cut
    return min(1.0, max(max(a[0] for a in audited), threshold + step))  # none meets it: as high as the audit saw
