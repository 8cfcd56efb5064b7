"""The pipeline's own plots (matplotlib, Agg): routing confidence and the student's training curve."""

from __future__ import annotations

from pathlib import Path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confidence_plot(path: Path, labels, thr: float) -> None:
    """Histogram of teacher confidence (PseudoLabel records) with the routing threshold."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist([l.confidence for l in labels], bins=30, range=(0, 1), color="#4477aa")
    ax.axvline(thr, color="r", ls="--", label=f"routing threshold {thr:.3f}")
    n_r = sum(l.route == "review" for l in labels)
    ax.set(title=f"teacher confidence: {len(labels) - n_r} to distillation, {n_r} to review", xlabel="confidence")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def training_curve(path: Path, hist: list[dict]) -> None:
    """Loss (total, kd, ctc) and dev WER/CER over steps, from a `history.jsonl`."""
    plt = _plt()
    fig, ax = plt.subplots(1, 2, figsize=(10, 3))
    tr = [h for h in hist if "loss" in h]
    ax[0].plot([h["step"] for h in tr], [h["loss"] for h in tr], label="total")
    for k in ("kd", "ctc"):
        pts = [(h["step"], h[k]) for h in tr if k in h]
        if pts:
            ax[0].plot(*zip(*pts), label=k, alpha=0.7)
    ax[0].set(title="student training loss", xlabel="step")
    ax[0].legend()
    dev = [h for h in hist if "dev_wer" in h]
    if dev:
        ax[1].plot([h["step"] for h in dev], [100 * h["dev_wer"] for h in dev], "o-", label="WER")
        ax[1].plot([h["step"] for h in dev], [100 * h["dev_cer"] for h in dev], "o-", label="CER")
        ax[1].set(title="target dev (%)", xlabel="step")
        ax[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def rounds_plot(path: Path, rows: list[dict]) -> None:
    """Per labeling round (`edgekd rounds`): student WER, the accepted labels' WER (audit estimate
    with its interval, and the true one), and the review volume (doubtful + audits)."""
    plt = _plt()
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.2))
    r = [x["round"] for x in rows]
    ax[0].plot(r, [x["student_wer_%"] for x in rows], "o-", label="student, target test")
    est = [(x["round"], x["audit_wer_%"], *x["audit_ci_%"]) for x in rows if x["audit_wer_%"] is not None]
    if est:
        rr, w, lo, hi = zip(*est)
        ax[0].errorbar(rr, w, yerr=[[a - b for a, b in zip(w, lo)], [b - a for a, b in zip(w, hi)]], fmt="s",
                       capsize=4, label="accepted labels, audit (95 % CI)")
    ax[0].plot(r, [x["accepted_true_wer_%"] for x in rows], "x--", label="accepted labels, true")
    ax[0].set(title="WER per round", xlabel="round", ylabel="WER %", xticks=r)
    ax[0].legend(fontsize=7)
    ax[1].bar([x - 0.2 for x in r], [x["review"] for x in rows], 0.4, label="doubtful -> review")
    ax[1].bar([x + 0.2 for x in r], [x["audit"] for x in rows], 0.4, label="audits of accepted")
    ax[1].set(title="human review volume", xlabel="round", ylabel="utterances", xticks=r)
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
