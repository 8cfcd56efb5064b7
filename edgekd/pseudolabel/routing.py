"""After the shards: gather their labels, route each utterance to distil or review, write the lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.manifest import Utterance, iter_jsonl, write_jsonl, write_manifest
from edgekd.pseudolabel.options import PseudoLabelOptions
from edgekd.records import PseudoLabel


def gather(out: Path, n_shards: int) -> tuple[list[dict], list[dict]]:
    """The shards' label files, in shard order -> (labels, rejected)."""
    labels, rejected = [], []
    for i in range(n_shards):
        for _, d in iter_jsonl(out / f"shard-{i:05d}.labels.jsonl"):
            (rejected.append(d["_rejected"]) if "_rejected" in d else labels.append(d))
    return labels, rejected


def route_labels(labels: list[dict], opts: PseudoLabelOptions) -> float:
    """Set each label's route; return the confidence threshold used."""
    conf = np.array([l["confidence"] for l in labels]) if labels else np.zeros(0)
    if opts.confidence_threshold is not None:
        thr = opts.confidence_threshold
    elif len(conf) and opts.review_fraction > 0:
        thr = float(np.quantile(conf, opts.review_fraction, method="higher"))
    else:
        thr = 0.0
    for l in labels:
        l["route"] = "distil" if l["confidence"] >= thr and l["text"] else "review"
    return thr


def wer_filter(labels: list[dict], refs: dict[str, str], threshold: float | None) -> dict:
    """distil-whisper's filter: a label whose utterance has a reference (a labelled subset) is
    routed "dropped" when its WER against the (normalised) reference exceeds `threshold`.
    -> {threshold, checked, dropped}; the dropped ones go to neither list and distil skips them."""
    import jiwer

    from edgekd.tokens import normalize_text

    checked = dropped = 0
    for l in labels:
        ref = normalize_text(refs.get(l["id"]) or "")
        if threshold is None or not ref:
            continue
        checked += 1
        if (jiwer.wer(ref, l["text"]) if l["text"] else 1.0) > threshold:
            l["route"] = "dropped"
            dropped += 1
    return {"threshold": threshold, "checked": checked, "dropped": dropped}


def write_routes(out: Path, labels: list[dict], rejected: list[dict], utts: list[Utterance],
                 teacher_names: list[str]) -> None:
    """labels.jsonl (validated PseudoLabels), rejected.jsonl, and the distil/review manifests."""
    for l in labels:
        l["teachers"] = teacher_names
    write_jsonl(out / "labels.jsonl", [PseudoLabel.from_dict(l).to_dict() for l in labels])  # validated
    write_jsonl(out / "rejected.jsonl", rejected)
    by_id = {u.id: u for u in utts}
    for route in ("distil", "review"):
        write_manifest(out / f"{route}.jsonl", [Utterance(id=l["id"], audio=l["audio"], duration=l["duration"],
                                                          text=l["text"] if route == "distil" else None,
                                                          domain=by_id[l["id"]].domain,
                                                          tags={"confidence": l["confidence"]})
                                                for l in labels if l["route"] == route])
