"""`edgekd lm`: a word n-gram language model (ARPA) from the training transcripts.

Greedy character CTC turns nearly every character error into a word error; a beam search that
scores words with an n-gram LM (flashlight-text's decoder with KenLM, `edgekd eval --beam 32 --lm lm.arpa`) fixes
many of them. KenLM's own estimator (`lmplz`) is a C++ binary that needs Boost and is not on
PyPI, so the ARPA file is estimated here: interpolated absolute discounting (Ney et al. 1994,
D = n1 / (n1 + 2 n2) per order) written in the standard backoff form that KenLM reads.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path

from edgekd.errors import EdgekdError

BOS, EOS, UNK = "<s>", "</s>", "<unk>"


def _discount(counts: Counter) -> float:
    n1 = sum(1 for c in counts.values() if c == 1)
    n2 = sum(1 for c in counts.values() if c == 2)
    return n1 / (n1 + 2 * n2) if n1 and n2 else 0.5


def build_arpa(texts: list[str], out: str | Path, order: int = 3, unk_prob: float = 1e-6,
               prune_from: int = 0) -> Path:
    """Estimate an `order`-gram word LM from `texts` and write it as ARPA to `out`.

    `prune_from` = n > 1 drops n-grams of order >= n seen once (after the discount is estimated
    on all of them, as KenLM's --prune does): their mass goes to the backoff. An open-vocabulary
    text of 170k sentences gives a 3-gram ARPA of ~100 MB unpruned and a few MB pruned."""
    if order < 1:
        raise EdgekdError(f"LM order must be >= 1, not {order}")
    sents = [t.split() for t in texts if t and t.strip()]
    if not sents:
        raise EdgekdError("no text to build a language model from")
    counts: list[Counter] = [Counter() for _ in range(order + 1)]  # counts[n][ngram tuple]
    for words in sents:
        seq = [BOS] + words + [EOS]
        for i in range(1, len(seq)):  # every predicted word (never <s>), with its 0..order-1 words of history
            for n in range(1, min(order, i + 1) + 1):
                counts[n][tuple(seq[i - n + 1 : i + 1])] += 1
    # unigrams: maximum likelihood, with a little mass for unseen words (<unk>)
    total = sum(counts[1].values())
    probs: list[dict[tuple, float]] = [{} for _ in range(order + 1)]
    probs[1] = {g: (1 - unk_prob) * c / total for g, c in counts[1].items()}
    probs[1][(UNK,)] = unk_prob
    probs[1][(BOS,)] = 0.0  # never predicted; ARPA convention gives it log10 prob -99
    backoff: list[dict[tuple, float]] = [{} for _ in range(order + 1)]
    for n in range(2, order + 1):
        d = _discount(counts[n])
        if prune_from > 1 and n >= prune_from:
            counts[n] = Counter({g: c for g, c in counts[n].items() if c > 1})
        ctx_total: dict[tuple, int] = defaultdict(int)
        ctx_types: dict[tuple, int] = defaultdict(int)
        for g, c in counts[n].items():
            ctx_total[g[:-1]] += c
            ctx_types[g[:-1]] += 1
        for g, c in counts[n].items():
            h = g[:-1]
            gamma = d * ctx_types[h] / ctx_total[h]
            probs[n][g] = max(c - d, 0) / ctx_total[h] + gamma * _lower(probs, backoff, g[1:])
        # backoff weight of each context: the mass left for unseen words, renormalised over the
        # lower order's mass on those same words
        seen: dict[tuple, list[tuple]] = defaultdict(list)
        for g in counts[n]:
            seen[g[:-1]].append(g)
        for h, gs in seen.items():
            num = 1.0 - sum(probs[n][g] for g in gs)
            den = 1.0 - sum(_lower(probs, backoff, g[1:]) for g in gs)
            backoff[n - 1][h] = max(num, 1e-12) / max(den, 1e-12)
    return _write(out, probs, backoff, order)


def _lower(probs, backoff, g: tuple) -> float:
    """p(g[-1] | g[:-1]) from the orders estimated so far (backing off as an ARPA reader would)."""
    n = len(g)
    if g in probs[n]:
        return probs[n][g]
    if n == 1:
        return probs[1][(UNK,)]
    return backoff[n - 1].get(g[:-1], 1.0) * _lower(probs, backoff, g[1:])


def _write(out: str | Path, probs, backoff, order: int) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = ["", "\\data\\"] + [f"ngram {n}={len(probs[n])}" for n in range(1, order + 1)]
    for n in range(1, order + 1):
        lines += ["", f"\\{n}-grams:"]
        for g in sorted(probs[n]):
            p = probs[n][g]
            lp = math.log10(p) if p > 0 else -99.0
            row = f"{lp:.6f}\t{' '.join(g)}"
            if n < order and g in backoff[n]:
                row += f"\t{math.log10(backoff[n][g]):.6f}"
            lines.append(row)
    lines += ["", "\\end\\", ""]
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(out)
    return out


def run_lm(manifests: list[str | Path], out: str | Path, order: int = 3, prune_from: int = 0) -> dict:
    """Build `out` (ARPA) from the transcripts of labeled manifests, or of plain `.txt` files (one
    normalised sentence per line, e.g. the `text/train.txt` that `edgekd synth --text open` writes)."""
    from edgekd.manifest import read_texts

    texts = read_texts(manifests)
    path = build_arpa(texts, out, order=order, prune_from=prune_from)
    vocab = {w for t in texts for w in t.split()}
    return {"arpa": str(path), "order": order, "sentences": len(texts), "vocab": len(vocab),
            "bytes": path.stat().st_size}
