"""Compression benchmark on a real student: size, 1-thread latency and WER of every artifact vs fp32 ONNX.

Usage: python benchmarks/bench_export.py --model runs/kd/e/model.safetensors --pseudolabels runs/kd/pseudolabels \
           --test data/corpus/target/test.jsonl --dev data/corpus/target/dev.jsonl --out runs/bench_export

1. `run_export` on the student (ONNX fp32 / int8-dynamic / int8-static / fp16, LiteRT fp32 / int8, sherpa);
2. `run_prune` (structured, ratio --ratio) + KD fine-tune (--finetune-steps), then export fp32 + int8-dynamic;
3. latency of every ONNX artifact measured *side by side*: rounds that visit the artifacts in turn,
   1 thread, 10 s of audio, median per artifact (this box is noisy: ratios from one run, not absolutes);
4. whole-graph MACs from the static ONNX analysis (edgekd.profile.estimate).
Prints one table with ratios vs fp32 ONNX and the goals: int8 ≤ +3 % relative WER and ≥ 1.3× faster;
pruned + fine-tuned ≤ +5 % relative WER at ≥ 30 % fewer MACs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--pseudolabels", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--dev", default=None)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--finetune-steps", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=15)
    a = ap.parse_args()

    from edgekd.export import ExportOptions, PruneOptions, run_export, run_prune
    from edgekd.export.onnx import ort_session
    from edgekd.profile.estimate import analyze
    from timing import interleaved_medians

    t0 = time.time()
    if not (a.out / "student/manifest.json").exists():
        run_export(ExportOptions(), a.model, a.out / "student", test_manifest=a.test, calib_manifest=a.dev)
    if not (a.out / "prune/manifest.json").exists():
        run_prune(PruneOptions(ratio=a.ratio, finetune_steps=a.finetune_steps), a.model, a.out / "prune",
                  soft_targets=a.pseudolabels, dev_manifest=a.dev)
    if not (a.out / "pruned/manifest.json").exists():
        run_export(ExportOptions(quantize=("int8-dynamic",), tflite=(), sherpa=False), a.out / "prune/model.safetensors",
                   a.out / "pruned", test_manifest=a.test)
    rows = []
    for name in ("student", "pruned"):
        for r in json.loads((a.out / name / "verify.table.json").read_text())["rows"]:
            if r["format"] != "sherpa-onnx" and not (name == "pruned" and r["format"] == "pytorch"):
                rows.append({"model": name, **r})
    onnx_rows = [r for r in rows if r["format"] == "onnx"]
    paths = {id(r): a.out / r["model"] / ("model.onnx" if r["precision"] == "fp32" else f"model.{r['precision']}.onnx")
             for r in onnx_rows}
    sessions = {k: ort_session(p, 1) for k, p in paths.items()}
    x = np.random.default_rng(0).standard_normal((1, 1000, 80)).astype(np.float32) * 3 - 4
    feeds = {"x": x, "x_lens": np.array([1000], np.int64)}
    ms = {k: v * 1000 for k, v in interleaved_medians({k: (lambda s=s: s.run(None, feeds))
                                                       for k, s in sessions.items()}, a.rounds).items()}
    base = next(r for r in onnx_rows if r["model"] == "student" and r["precision"] == "fp32")
    base_ms = ms[id(base)]
    base_macs = analyze(paths[id(base)], 1000).macs
    for r in rows:
        if id(r) in sessions:
            r["p50_ms_1thr"] = round(ms[id(r)], 2)
            r["speedup_vs_fp32"] = round(base_ms / r["p50_ms_1thr"], 2)
            r["macs_ratio"] = round(analyze(paths[id(r)], 1000).macs / base_macs, 3)
        r["size_ratio"] = round(r["size_mb"] / base["size_mb"], 3) if r.get("size_mb") else None
        r["rel_wer_%"] = round(100 * (r["wer"] - base["wer"]) / base["wer"], 1) if base["wer"] else None
    cols = ["model", "artifact", "precision", "size_mb", "size_ratio", "p50_ms_1thr", "speedup_vs_fp32", "macs_ratio",
            "wer", "rel_wer_%", "max_diff", "agreement", "ok"]
    from edgekd.tables import table_text

    print(table_text(rows, cols, markdown=True), end="")
    (a.out / "bench_export.json").write_text(json.dumps(rows, indent=1))
    print(f"\n({a.rounds} interleaved rounds, 10 s of audio, 1 thread; total {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
