"""LiteRT precisions on a real student: fp32, fp16, int8-dynamic and int8-static (full integer).

Usage: python benchmarks/bench_litert.py --model models/student/student-xs.safetensors \
           --test /work/data/teacher2/target/test.jsonl --calib /work/data/teacher2/target/dev.jsonl --out runs/bench_litert

1. one litert-torch conversion (window --window frames, --context each side), then ai-edge-quantizer
   makes the others from that fp32 file (`quantize_tflite`; int8-static calibrated on --calib-utts
   utterances of --calib, up to 4 windows each): fp16, int8-dynamic, int8-static (weight ops) and,
   for the record, int8 full integer (every op; known broken, not shipped);
2. every file decodes the test set through `edgekd transcribe`'s LiteRT runtime (chunked by the
   sidecar's contract): identical transcripts vs LiteRT fp32 and vs PyTorch, WER vs the references,
   and the share of frames whose best token is fp32's (each utterance's first window);
3. latency of one full window, 1 thread, in rounds that visit the files in turn (median per file;
   this box is noisy: compare the ratios of one run, not absolutes across runs); file size.
Prints one table; writes <out>/litert.table.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--calib", required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--window", type=int, default=600)
    ap.add_argument("--context", type=int, default=48)
    ap.add_argument("--calib-utts", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=15)
    a = ap.parse_args()

    import jiwer

    from edgekd.audio import load_audio
    from edgekd.export.litert import TfliteModel, export_tflite, quantize_tflite
    from edgekd.export.quantize import calibration_features
    from edgekd.export.runtime import TorchRuntime, normalize, open_model
    from edgekd.manifest import read_manifest
    from edgekd.models import load_checkpoint
    from edgekd.tables import table_text
    from timing import interleaved_medians

    a.out.mkdir(parents=True, exist_ok=True)
    ck = load_checkpoint(a.model)
    fp32 = a.out / "model.fp32.tflite"
    if not fp32.exists():
        export_tflite(ck, fp32, window_frames=a.window, context_frames=a.context)
    calib = calibration_features(a.calib, ck.featurizer, a.calib_utts)
    files = {"fp32": fp32}
    for mode in ("fp16", "int8-dynamic", "int8-static", "int8-full-integer"):
        files[mode] = a.out / f"model.{mode}.tflite"
        if not files[mode].exists():
            static = mode.startswith("int8-") and mode != "int8-dynamic"
            quantize_tflite(fp32, files[mode], "int8-static" if static else mode, calibration=calib if static else None,
                            full_integer=mode == "int8-full-integer")

    utts = [u for u in read_manifest(a.test) if u.text]
    waves = {u.id: load_audio(u.audio, ck.featurizer.sample_rate) for u in utts}
    torch_rt = TorchRuntime(ck)
    ref = {k: normalize(torch_rt.decode(w).text) for k, w in waves.items()}
    texts = {}
    for mode, p in files.items():
        rt = open_model(p)
        texts[mode] = {k: normalize(rt.decode(w).text) for k, w in waves.items()}
        print(f"{mode}: decoded {len(utts)} utterances", flush=True)

    models = {mode: TfliteModel(p, threads=1) for mode, p in files.items()}
    agree: dict[str, list[float]] = {m: [] for m in models}  # best token per valid frame, first window, vs fp32
    for w in waves.values():
        f = torch_rt.features(w)[: a.window]
        xw = np.zeros((1, a.window, ck.dims.n_mels), np.float32)
        xw[0, : len(f)] = f
        k = int(ck.model.output_lengths(torch.tensor([len(f)]))[0])
        best = models["fp32"](xw, len(f))[0, :k].argmax(-1)
        for mode, m in models.items():
            agree[mode].append(float((m(xw, len(f))[0, :k].argmax(-1) == best).mean()))
    x = np.zeros((1, a.window, ck.dims.n_mels), np.float32)
    feats = calib[0]
    for start in range(0, a.window, len(feats)):  # a full window of real features
        x[0, start:start + len(feats)] = feats[: a.window - start]
    med = {mode: s * 1000 for mode, s in interleaved_medians(
        {mode: (lambda m=m: m(x, a.window)) for mode, m in models.items()}, a.rounds).items()}

    refs = [u.text for u in utts]
    rows = []
    for mode, p in files.items():
        hyp = [texts[mode][u.id] for u in utts]
        rows.append({"artifact": f"tflite-{mode}", "size_kb": round(p.stat().st_size / 1024, 1),
                     "size_vs_fp32": round(p.stat().st_size / fp32.stat().st_size, 3),
                     "wer_%": round(100 * jiwer.wer(refs, hyp), 2),
                     "identical_vs_tflite_fp32_%": round(100 * np.mean([texts[mode][u.id] == texts["fp32"][u.id]
                                                                         for u in utts]), 1),
                     "identical_vs_pytorch_%": round(100 * np.mean([texts[mode][u.id] == ref[u.id] for u in utts]), 1),
                     "frame_agreement_vs_fp32_%": round(100 * float(np.mean(agree[mode])), 2),
                     "window_ms_1thread": round(med[mode], 2), "speedup_vs_fp32": round(med["fp32"] / med[mode], 3)})
    torch_wer = round(100 * jiwer.wer(refs, [ref[u.id] for u in utts]), 2)
    title = (f"LiteRT precisions: {Path(a.model).name}, {len(utts)} utterances of {a.test}, window {a.window} "
             f"(context {a.context}); PyTorch WER {torch_wer} %")
    (a.out / "litert.table.json").write_text(json.dumps({"title": title, "rows": rows}, indent=1))
    print(title)
    print(table_text(rows, markdown=True), end="")


if __name__ == "__main__":
    main()
