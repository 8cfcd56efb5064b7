"""Per-utterance teacher weighting (confidence x agreement) against the uniform average.

Usage: python benchmarks/teacher_weighting.py --pool runs/demo-synth/target/train.jsonl \
           --refs runs/demo-synth/target/train.ref.jsonl --out runs/weighting \
           --teacher models/teacher/teacher.safetensors --teacher runs/rounds/round-0/distil/model.safetensors

Labels the pool with the ensemble twice (`teacher_weighting` fixed = uniform, and confidence) and
prints, for each, the WER of the 1-best labels against the references: on all utterances and on
the 80 % most confident (what routing would accept). Prints one JSON record per weighting.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pool", required=True, type=Path)
    ap.add_argument("--refs", required=True, type=Path)
    ap.add_argument("--teacher", required=True, action="append")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()

    from edgekd.audit import word_errors
    from edgekd.manifest import read_manifest
    from edgekd.pseudolabel import PseudoLabelOptions, run_pseudolabel
    from edgekd.records import read_pseudolabels

    refs = {u.id: u.text or "" for u in read_manifest(a.refs)}
    for w in ("fixed", "confidence"):
        out = a.out / w
        if not (out / "manifest.json").exists():
            run_pseudolabel(PseudoLabelOptions(workers=1, threads=a.threads, review_fraction=0.2, teacher_weighting=w),
                            a.pool, a.teacher, out, progress=False)
        labels = list(read_pseudolabels(out / "labels.jsonl"))

        def wer(ls):
            e = [word_errors(refs[l.id], l.text or "") for l in ls]
            return round(100 * sum(x for x, _ in e) / max(sum(n for _, n in e), 1), 2)

        top = sorted(labels, key=lambda l: -l.confidence)[: int(0.8 * len(labels))]
        print(json.dumps({"weighting": w, "teachers": len(a.teacher), "utterances": len(labels),
                          "label_wer_all_%": wer(labels), "label_wer_top80_%": wer(top)}))


if __name__ == "__main__":
    main()
