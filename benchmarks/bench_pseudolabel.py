"""Pseudo-labeling throughput: naive per-file loop vs edgekd's batched shards, 1 and 2 processes.

Usage: python benchmarks/bench_pseudolabel.py --teacher models/teacher/teacher.safetensors \
           --manifest data/corpus/target/train.jsonl --utts 120

Prints audio seconds per wall second for: (a) a naive loop (one file at a time, batch 1, one
torch thread), (b) `run_pseudolabel` with 1 process, (c) with 2 processes; the ratios b/a and
c/a, per-core throughput, and the soft-target bytes per frame. All on the same utterances in
one run. Without --teacher, a randomly initialised teacher-m (same compute) is used and said.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def naive(teacher_path: str, utts) -> float:
    from edgekd.audio import load_audio
    from edgekd.pseudolabel import confidence
    from edgekd.softtargets import encode_topk
    from edgekd.teachers import load_teacher

    torch.set_num_threads(1)
    t = load_teacher(teacher_path)
    t0 = time.time()
    audio = 0.0
    for u in utts:
        w = load_audio(u.audio)
        out = t([w])
        lp = out.logits.log_softmax(-1)[0, : int(out.lengths[0])].numpy()
        encode_topk(lp)
        confidence(lp)
        audio += len(w) / 16000
    return audio / (time.time() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default=None)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--utts", type=int, default=120)
    a = ap.parse_args()
    from edgekd.manifest import read_manifest, write_manifest
    from edgekd.pseudolabel import PseudoLabelOptions, run_pseudolabel

    tmp = Path(tempfile.mkdtemp())
    teacher = a.teacher
    if teacher is None:
        from edgekd.audio import FeaturizerConfig
        from edgekd.models import Checkpoint, load_preset
        from edgekd.models.conformer import ConformerCTC
        from edgekd.tokens import DEFAULT_TOKENS

        teacher = str(Checkpoint(ConformerCTC(load_preset("teacher-m")).eval(), FeaturizerConfig(), DEFAULT_TOKENS,
                                 "teacher-m").save(tmp / "random-teacher-m.safetensors"))
        print("teacher: randomly initialised teacher-m (same compute as the shipped one)")
    else:
        print(f"teacher: {teacher}")
    utts = read_manifest(a.manifest)[: a.utts]
    write_manifest(tmp / "subset.jsonl", utts)
    audio_s = sum(u.duration or 0 for u in utts)
    print(f"utterances: {len(utts)}, audio: {audio_s:.0f} s")
    rows = {"naive per-file loop (1 thread)": naive(teacher, utts)}
    for workers in (1, 2):
        torch.set_num_threads(1)
        t0 = time.time()
        p = run_pseudolabel(PseudoLabelOptions(workers=workers, shard_utts=max(1, len(utts) // 4)),
                            tmp / "subset.jsonl", [teacher], tmp / f"pl{workers}", progress=False)
        rows[f"edgekd batched, {workers} process(es)"] = audio_s / (time.time() - t0)
        m = json.loads(Path(p).read_text())["metrics"]
    base = rows["naive per-file loop (1 thread)"]
    print(f"{'method':40s} {'x real time':>12s} {'per core':>9s} {'vs naive':>9s}")
    for name, x in rows.items():
        cores = 2 if "2 process" in name else 1
        print(f"{name:40s} {x:12.1f} {x / cores:9.1f} {x / base:9.2f}")
    print(f"soft-target bytes per frame (k=8): {m['bytes_per_frame']}")
    print(f"routing: {m['distil']} distil / {m['review']} review, threshold {m['confidence_threshold']}")


if __name__ == "__main__":
    main()
