"""`edgekd drift`: how far new (current) audio is from what the teacher knows (reference).

Three views, one verdict:
- per mel band, the distribution of utterance-level band means, reference vs current: a two-sample
  Kolmogorov-Smirnov test per band, Bonferroni-corrected over bands (utterances, not frames, are
  the samples: frames of one utterance are not independent, and frame-level tests call
  everything significant);
- MMD between utterance embeddings (the teacher's mean-pooled encoder output; log-mel mean/std
  when no teacher is given), RBF kernel with the median heuristic, permutation test;
- the teacher's confidence (edgekd.pseudolabel.confidence) on both sides.
Verdict: "drift" when the MMD test rejects at `alpha` and at least `min_band_fraction` of the
bands reject after correction; otherwise "no drift". Requiring both keeps the false alarm
rate on same-domain splits at or below `alpha`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from edgekd.audio import AudioError, FeaturizerConfig, Quarantine, featurize, kaldi_features, load_audio
from edgekd.config import to_dict
from edgekd.manifest import StageManifest, read_manifest


@dataclass(frozen=True)
class DriftOptions:
    max_utts: int = 300  # per side (a seeded random subset beyond this)
    alpha: float = 0.01  # significance level of each test
    min_band_fraction: float = 0.1  # share of mel bands that must differ (after correction)
    permutations: int = 500  # MMD permutation test size
    seed: int = 0

    def __post_init__(self):
        if not 0 < self.alpha < 1 or not 0 < self.min_band_fraction <= 1:
            raise ValueError("alpha must be in (0, 1) and min_band_fraction in (0, 1]")
        if self.permutations < 20 or self.max_utts < 5:
            raise ValueError("permutations must be >= 20 and max_utts >= 5")


def _describe(utts, teacher, cfg: FeaturizerConfig, q: Quarantine, batch: int = 16):
    """-> band means (N, F), embeddings (N, D), confidences (N,) for the readable utterances."""
    from edgekd.pseudolabel import confidence

    means, embs, confs = [], [], []
    for s in range(0, len(utts), batch):
        waves = []
        for u in utts[s : s + batch]:
            try:
                waves.append(load_audio(u.audio, cfg.sample_rate))
            except AudioError as e:
                q.add_error(u.id, e)
        if not waves:
            continue
        feats, lens = featurize(waves, cfg)
        for f, n in zip(feats, lens):
            f = f[: int(n)].numpy()
            means.append(f.mean(0))
            if teacher is None:
                embs.append(np.concatenate([f.mean(0), f.std(0)]))
        if teacher is not None:
            out = teacher(waves)
            embs += list(out.embeddings.numpy())
            lp = out.logits.log_softmax(-1).numpy()
            confs += [confidence(lp[i, : int(out.lengths[i])]) for i in range(len(waves))]
    return np.array(means), np.array(embs), np.array(confs)


def mmd_permutation(x: np.ndarray, y: np.ndarray, permutations: int, rng: np.random.Generator) -> tuple[float, float]:
    """Unbiased MMD² with an RBF kernel (median heuristic) and its permutation p-value."""
    z = np.concatenate([x, y]).astype(np.float64)
    z = (z - z.mean(0)) / (z.std(0) + 1e-8)
    d2 = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    med = np.median(d2[np.triu_indices(len(z), 1)])
    k = np.exp(-d2 / max(med, 1e-12))
    n = len(x)

    def stat(idx):
        a, b = idx[:n], idx[n:]
        kxx, kyy, kxy = k[np.ix_(a, a)], k[np.ix_(b, b)], k[np.ix_(a, b)]
        m, mm = len(a), len(b)
        return ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (mm * (mm - 1))
                - 2 * kxy.mean())

    idx = np.arange(len(z))
    observed = stat(idx)
    null = np.array([stat(rng.permutation(idx)) for _ in range(permutations)])
    return float(observed), float((1 + (null >= observed).sum()) / (1 + permutations))


def run_drift(opts: DriftOptions, reference: str | Path, current: str | Path, out_dir: str | Path,
              teacher: Optional[str] = None) -> dict:
    """Write `drift.json` and `drift.png` to `out_dir`; returns the report dict."""
    from scipy.stats import ks_2samp

    from edgekd.teachers import load_teacher

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(opts.seed)
    q = Quarantine(out / "rejected.jsonl", stage="drift")
    t = load_teacher(teacher) if teacher else None
    if t is not None and getattr(t, "kind", "ctc") == "seq2seq":
        from edgekd.errors import EdgekdError

        raise EdgekdError(f"drift --teacher {teacher}: a seq2seq teacher gives no encoder embedding; use a CTC teacher")
    # band statistics use the teacher's own featurizer where it has one (an HF model featurizes raw
    # audio itself: then the default log-mel at the teacher's sample rate)
    cfg = (t.featurizer if t is not None and t.featurizer is not None
           else kaldi_features(t.sample_rate) if t is not None else FeaturizerConfig())

    def pick(path):
        utts = read_manifest(path)
        if len(utts) > opts.max_utts:
            utts = [utts[i] for i in sorted(rng.choice(len(utts), opts.max_utts, replace=False))]
        return utts

    ref, cur = _describe(pick(reference), t, cfg, q), _describe(pick(current), t, cfg, q)
    if len(ref[0]) < 5 or len(cur[0]) < 5:
        from edgekd.errors import EdgekdError

        raise EdgekdError(f"drift needs >= 5 readable utterances per side (got {len(ref[0])} and {len(cur[0])})")
    n_bands = ref[0].shape[1]
    pvals = np.array([ks_2samp(ref[0][:, b], cur[0][:, b]).pvalue for b in range(n_bands)])
    corrected = np.minimum(pvals * n_bands, 1.0)  # Bonferroni
    band_frac = float((corrected < opts.alpha).mean())
    mmd2, mmd_p = mmd_permutation(ref[1], cur[1], opts.permutations, rng)
    drift = mmd_p < opts.alpha and band_frac >= opts.min_band_fraction
    report = {
        "verdict": "drift" if drift else "no drift",
        "reference": str(reference), "current": str(current), "teacher": teacher,
        "utterances": {"reference": len(ref[0]), "current": len(cur[0]), "rejected": q.count},
        "ks": {"bands": n_bands, "fraction_significant": round(band_frac, 4),
               "min_corrected_p": float(corrected.min()), "correction": "bonferroni"},
        "mmd": {"mmd2": mmd2, "p_value": mmd_p, "permutations": opts.permutations,
                "features": "teacher embeddings" if t is not None else "log-mel mean+std"},
        "band_mean_shift_db": round(float(np.abs(cur[0].mean(0) - ref[0].mean(0)).mean() * 10 / np.log(10)), 3),
        "confidence": ({"reference_mean": round(float(ref[2].mean()), 4), "current_mean": round(float(cur[2].mean()), 4)}
                       if t is not None else None),
        "options": to_dict(opts),
    }
    (out / "drift.json").write_text(json.dumps(report, indent=2) + "\n")
    _plot(out / "drift.png", ref, cur, corrected, report)
    StageManifest(stage="drift", config={**to_dict(opts), "teacher": teacher},
                  outputs={"report": "drift.json", "plot": "drift.png"},
                  metrics={"verdict": report["verdict"], "mmd_p": mmd_p, "ks_fraction": band_frac}).save(out)
    return report


def _plot(path: Path, ref, cur, corrected, report) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    b = np.arange(ref[0].shape[1])
    for (m, name) in ((ref[0], "reference"), (cur[0], "current")):
        ax[0].plot(b, m.mean(0), label=name)
        ax[0].fill_between(b, m.mean(0) - m.std(0), m.mean(0) + m.std(0), alpha=0.2)
    ax[0].set(title="log-mel band means (±1 sd over utterances)", xlabel="mel band")
    ax[0].legend()
    ax[1].bar(b, -np.log10(np.maximum(corrected, 1e-300)))
    ax[1].axhline(-np.log10(report["options"]["alpha"]), color="r", ls="--", label="alpha")
    ax[1].set(title="KS per band, -log10 p (Bonferroni)", xlabel="mel band")
    ax[1].legend()
    if len(ref[2]) and len(cur[2]):
        ax[2].hist([ref[2], cur[2]], bins=20, range=(0, 1), label=["reference", "current"])
        ax[2].set(title="teacher confidence per utterance", xlabel="confidence")
        ax[2].legend()
    else:
        ax[2].axis("off")
    fig.suptitle(f"verdict: {report['verdict']}  (MMD p={report['mmd']['p_value']:.3g})")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
