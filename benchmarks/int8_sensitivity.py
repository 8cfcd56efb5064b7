"""int8 on a real student: how faithful and how fast each recipe is, side by side, and where the time goes.

Usage: python benchmarks/int8_sensitivity.py --model models/student/student-xs.safetensors \
           --test data/teacher2/source/test_unseen.jsonl --calib data/teacher2/source/dev.jsonl --out runs/int8

Recipes (all MatMul-only, ORT's own quantizer through `edgekd.export.quantize`):
  int8-dynamic per-tensor   what edgekd shipped before (weights one scale per tensor);
  int8-dynamic per-channel  one scale per output channel;
  + fp32 fallback           per-channel, the layers the sensitivity analysis flags kept fp32 (the default now);
  int8-static minmax / percentile / entropy  QDQ, per-channel weights, activation ranges calibrated three ways;
  --qat CKPT: the fine-tune of --model by quantization-aware KD (`edgekd qat`), fp32 and default int8.
Scored on the test manifest plus concatenated long utterances (≥ 30 s, as `edgekd verify` does):
identical greedy transcripts vs fp32 ONNX, WER and relative ΔWER, mean KL per frame. Speed: 1 thread,
10 s of audio, rounds that visit every model in turn, medians (this box is noisy: ratios, not absolutes).
Then ORT's profiler on fp32 and the default int8: per-op-type share of the time, which bounds the
int8 speed-up (Amdahl: only the MatMuls get faster).
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
    ap.add_argument("--test", required=True)
    ap.add_argument("--calib", required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--utts", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--qat", action="append", default=[], metavar="CKPT",
                    help="a quantization-aware-KD fine-tune of --model (`edgekd qat`): adds its fp32 and its "
                         "default int8 rows, both compared with --model's fp32 transcripts (repeatable)")
    a = ap.parse_args()

    import jiwer
    import onnxruntime as ort

    from edgekd.audio import featurize
    from edgekd.export.onnx import export_onnx, ort_session, run_onnx
    from edgekd.export.quantize import calibration_features, quantize
    from edgekd.export.runtime import ctc_decode, normalize
    from edgekd.export.sensitivity import divergence
    from edgekd.export.verify import verify_set
    from edgekd.models import load_checkpoint
    from edgekd.tokens import Tokenizer
    from timing import interleaved_medians

    a.out.mkdir(parents=True, exist_ok=True)
    ck = load_checkpoint(a.model)
    fp = export_onnx(ck, a.out / "model.onnx")
    cal = calibration_features(a.calib, ck.featurizer, 32)
    recipes = {
        "int8-dynamic per-tensor": dict(mode="int8-dynamic", fallback=False, per_tensor=True),
        "int8-dynamic per-channel": dict(mode="int8-dynamic", fallback=False),
        "int8-dynamic + fp32 fallback": dict(mode="int8-dynamic", fallback=True),
        "int8-static minmax": dict(mode="int8-static", method="minmax"),
        "int8-static percentile": dict(mode="int8-static", method="percentile"),
        "int8-static entropy": dict(mode="int8-static", method="entropy"),
    }
    paths = {"fp32": fp}
    for name, r in recipes.items():
        p = a.out / (name.replace(" ", "_").replace("+", "").replace("__", "_") + ".onnx")
        t0 = time.time()
        if r.pop("per_tensor", False):  # the old recipe, kept here only as the baseline
            from onnxruntime.quantization import QuantType, quantize_dynamic
            quantize_dynamic(str(fp), str(p), op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8)
        else:
            quantize(fp, p, r.pop("mode"), calibration=cal, **r)
        paths[name] = p
        print(f"{name}: built in {time.time() - t0:.0f} s", flush=True)

    for q in a.qat:  # the fine-tuned weights, exported and quantized by the same default recipe
        tag = Path(q).stem
        paths[f"{tag} fp32"] = export_onnx(load_checkpoint(q), a.out / f"{tag}.onnx")
        paths[f"{tag} int8-dynamic + fp32 fallback"] = quantize(paths[f"{tag} fp32"], a.out / f"{tag}.int8.onnx",
                                                                "int8-dynamic", calibration=cal)

    utts = verify_set(ck, a.test, a.utts)
    feats = [featurize([u.wave], ck.featurizer)[0][0].numpy() for u in utts]
    tok = Tokenizer(ck.tokens)
    rate = ck.frame_rate
    refs = [normalize(u.text) for u in utts]
    out: dict[str, dict] = {}
    base_lp = None
    for name, p in paths.items():
        s = ort_session(p, 2)
        lp = [run_onnx(s, f[None], np.array([len(f)], np.int64))[0][0] for f in feats]
        hyp = [normalize(ctc_decode(x, tok, rate).text) for x in lp]
        if base_lp is None:
            base_lp, base_hyp = lp, hyp
        same = [h == b for h, b in zip(hyp, base_hyp)]
        out[name] = {"wer": jiwer.wer(refs, hyp), "identical": float(np.mean(same)),
                     "identical_long": float(np.mean([s for s, u in zip(same, utts) if u.long] or [np.nan])),
                     **divergence(base_lp, lp)}

    x = np.random.default_rng(0).standard_normal((1, 1000, 80)).astype(np.float32) * 3 - 4
    sess = {n: ort_session(p, 1) for n, p in paths.items()}
    medians = interleaved_medians({n: (lambda s=s: run_onnx(s, x, np.array([1000], np.int64))) for n, s in sess.items()},
                                  a.rounds, warmup=False)
    base_t = medians["fp32"]
    n_long = sum(u.long for u in utts)
    print(f"\n{len(utts)} utterances ({n_long} long, ≥ 30 s), {sum(len(f) for f in feats) / 100:.0f} s of audio; "
          f"speed: 1 thread, 10 s input, median of {a.rounds} rounds\n")
    print("| model | WER % | rel ΔWER % | identical % | identical, long % | KL/frame | agreement % | ms | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n, r in out.items():
        med = medians[n]
        rel = (r["wer"] - out["fp32"]["wer"]) / out["fp32"]["wer"] * 100
        print(f"| {n} | {r['wer'] * 100:.1f} | {rel:+.1f} | {r['identical'] * 100:.0f} | {r['identical_long'] * 100:.0f} "
              f"| {r['kl']:.1e} | {r['agreement'] * 100:.2f} | {med * 1000:.1f} | {base_t / med:.2f}× |")

    print("\nper-op share of the time (ORT profiler, 1 thread, 10 s input):\n")
    default = "int8-dynamic + fp32 fallback"
    shares = {}
    for n in ("fp32", default):
        o = ort.SessionOptions()
        o.intra_op_num_threads = o.inter_op_num_threads = 1
        o.enable_profiling, o.profile_file_prefix = True, str(a.out / "prof")
        s = ort.InferenceSession(str(paths[n]), o, providers=["CPUExecutionProvider"])
        feed = dict(zip([i.name for i in s.get_inputs()], (x, np.array([1000], np.int64))))
        for _ in range(5):
            s.run(None, feed)
        agg: dict[str, float] = {}
        for e in json.loads(Path(s.end_profiling()).read_text()):
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                agg[e["args"]["op_name"]] = agg.get(e["args"]["op_name"], 0) + e["dur"]
        shares[n] = {k: v / sum(agg.values()) for k, v in agg.items()}
    ops = sorted(set(shares["fp32"]) | set(shares[default]), key=lambda k: -max(shares["fp32"].get(k, 0),
                                                                                   shares[default].get(k, 0)))
    print(f"| op type | fp32 % | {default} % |\n|---|---|---|")
    for k in ops[:12]:
        print(f"| {k} | {shares['fp32'].get(k, 0) * 100:.0f} | {shares[default].get(k, 0) * 100:.0f} |")
    mm = shares["fp32"].get("MatMul", 0)
    print(f"\nMatMul is {mm * 100:.0f} % of fp32 time: even infinitely fast int8 MatMuls bound the speed-up at "
          f"{1 / (1 - mm):.2f}× (Amdahl).")


if __name__ == "__main__":
    main()
