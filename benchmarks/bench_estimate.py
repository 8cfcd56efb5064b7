"""How far the roofline estimator (edgekd/profile/estimate.py) lands from measured latencies.

Usage: nice -n 10 python3 benchmarks/bench_estimate.py [--quick] [--out runs/bench_estimate]
       python3 benchmarks/bench_estimate.py --only streaming --streaming runs/s16/lat/pkg-*/model*.onnx
       python3 benchmarks/bench_estimate.py --only published --dram-all-cores 0.3   # a what-if, labelled

(a) This host: conformer CTC artifacts (edgekd presets, random weights, exported like the export
    stage: x (N,T,80) + x_lens, dynamic T), an int8 (dynamic, MatMul-only) variant, and MobileNet
    v1; measured by the runner in a fresh process (1 thread, 10 s of audio, p50) vs the estimate
    on a host profile calibrated by two micro-benchmarks (hostpin.host_device); also each file's
    process CPU time per run in this process (1 thread), which other work on a shared machine
    disturbs less than wall time. None of these graphs is among the calibration graphs
    (benchmarks/calib_host.py CALIB_DIMS).
(a') With --streaming: cache-aware streaming files (edgekd.export.streaming), per-chunk compute:
    the runner's chunk loop (1 thread, 10 s of audio, p50 over chunks) vs the estimate of one window.
(b) Published on-device figures, for reference architectures rebuilt here with random weights
    (latency depends on shapes, not weight values):
    * MobileNet v1 1.0 224 float, LiteRT benchmark_model, CPU 4 threads, Android 10:
      Pixel 3 23.9 ms, Pixel 4 14.0 ms. Source: tensorflow/tensorflow,
      tensorflow/lite/g3doc/performance/measurement.md ("Android performance benchmarks").
    * Whisper tiny.en (sherpa-onnx, fp32) on a Raspberry Pi 4 Model B, test_wavs/1.wav
      (16.715 s, 54 output tokens): RTF 0.685 / 0.559 / 0.526 / 0.520 with 1 / 2 / 3 / 4 threads.
      Source: k2-fsa/sherpa, docs/source/onnx/pretrained_models/whisper/tiny.en.rst
      ("Real-time factor (RTF) on Raspberry Pi 4 Model B"). Rebuilt as sherpa-onnx exports it:
      an encoder over 30 s of features (3000 frames; Whisper always pads to 30 s) that also
      emits the cross-attention K/V of the 4 decoder layers, and a decoder step (one token,
      self-attention over the tokens so far, logits over the 51864-token vocabulary); decoder
      calls = 3 prompt tokens in one call + one call per output token (54) + end-of-text.
    * The same Whisper tiny.en in int8 (same table): RTF 0.547 / 0.431 / 0.398 / 0.386 at 1-4
      threads. sherpa-onnx makes it with onnxruntime's quantize_dynamic(op_types_to_quantize=
      ["MatMul"], weight_type=QInt8) on encoder and decoder (k2-fsa/sherpa-onnx,
      scripts/whisper/export-onnx.py); rebuilt the same way here.
The estimator's calibration (benchmarks/calibrate_estimator.py) uses none of these figures: its
LiteRT efficiencies come from XNNPACK's own single-thread MobileNet v1/v2 on a Pixel 3a, its serial
fractions from XNNPACK's thread pairs and sherpa-onnx's Pi 4 TTS thread table. So the MobileNet rows
test scaling to other phones (clock, core count, microarchitecture, 4 threads) on the architecture
family it was calibrated on; the Whisper rows are the out-of-family check (another runtime, model,
device); the int8 rows add the int8 kernels' path (the same architecture, not a new family). Nothing here is a test: it prints the error tables (estimate / measured - 1).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgekd.profile.devices import load_device  # noqa: E402
from edgekd.profile.estimate import analyze, estimate_latency  # noqa: E402
from edgekd.profile.hostpin import host_device, run_local  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from calib_host import cpu_seconds_per_run, export_model  # noqa: E402
from refmodels import export_mobilenet  # noqa: E402

torch.set_num_threads(1)


# ------------------------------------------------------------------ artifacts


def export_conformer(preset: str, path: Path) -> Path:
    from edgekd.models import load_preset
    from edgekd.models.conformer import ConformerCTC

    torch.manual_seed(0)
    return export_model(ConformerCTC(load_preset(preset)), path)


def quantize_matmul_int8(src: Path, dst: Path) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8)
    return dst


D, HEADS, FFN, LAYERS, VOCAB, N_CTX = 384, 6, 1536, 4, 51864, 448  # Whisper tiny(.en) dims


def _attn(q, k, v):
    b, tq, _ = q.shape
    split = lambda x: x.view(b, x.shape[1], HEADS, D // HEADS).transpose(1, 2)  # noqa: E731
    w = torch.softmax(split(q) @ split(k).transpose(-1, -2) / (D // HEADS) ** 0.5, -1)
    return (w @ split(v)).transpose(1, 2).reshape(b, tq, D)


class WhisperBlock(torch.nn.Module):
    def __init__(self, cross: bool):
        super().__init__()
        self.ln1, self.q, self.k, self.v, self.o = (torch.nn.LayerNorm(D), torch.nn.Linear(D, D),
                                                     torch.nn.Linear(D, D, bias=False), torch.nn.Linear(D, D),
                                                     torch.nn.Linear(D, D))
        if cross:
            self.ln2, self.cq, self.co = torch.nn.LayerNorm(D), torch.nn.Linear(D, D), torch.nn.Linear(D, D)
            self.ck, self.cv = torch.nn.Linear(D, D, bias=False), torch.nn.Linear(D, D)
        self.ln3, self.fc1, self.fc2 = torch.nn.LayerNorm(D), torch.nn.Linear(D, FFN), torch.nn.Linear(FFN, D)

    def mlp(self, x):
        return x + self.fc2(torch.nn.functional.gelu(self.fc1(self.ln3(x))))


class WhisperEncoder(torch.nn.Module):
    """(1, 80, 3000) log-mel -> cross-attention K, V for every decoder layer (as sherpa-onnx exports it)."""

    def __init__(self, decoder_blocks):
        super().__init__()
        self.c1, self.c2 = torch.nn.Conv1d(80, D, 3, padding=1), torch.nn.Conv1d(D, D, 3, stride=2, padding=1)
        self.pos = torch.nn.Parameter(torch.randn(1500, D) * 0.02)
        self.blocks = torch.nn.ModuleList(WhisperBlock(False) for _ in range(LAYERS))
        self.ln = torch.nn.LayerNorm(D)
        self.dec = decoder_blocks

    def forward(self, mel):
        x = torch.nn.functional.gelu(self.c2(torch.nn.functional.gelu(self.c1(mel)))).transpose(1, 2) + self.pos
        for b in self.blocks:
            h = b.ln1(x)
            x = x + b.o(_attn(b.q(h), b.k(h), b.v(h)))
            x = b.mlp(x)
        x = self.ln(x)
        return torch.stack([d.ck(x) for d in self.dec]), torch.stack([d.cv(x) for d in self.dec])


class WhisperDecoderStep(torch.nn.Module):
    """One token + self K/V of the tokens so far (L) + cross K/V -> logits over the vocabulary."""

    def __init__(self, blocks):
        super().__init__()
        self.emb = torch.nn.Embedding(VOCAB, D)
        self.pos = torch.nn.Parameter(torch.randn(N_CTX, D) * 0.02)
        self.blocks, self.ln = blocks, torch.nn.LayerNorm(D)

    def forward(self, token, self_k, self_v, cross_k, cross_v):
        x = self.emb(token) + self.pos[:1]
        for i, b in enumerate(self.blocks):
            h = b.ln1(x)
            k = torch.cat([self_k[i], b.k(h)], 1)
            v = torch.cat([self_v[i], b.v(h)], 1)
            x = x + b.o(_attn(b.q(h), k, v))
            x = x + b.co(_attn(b.cq(b.ln2(x)), cross_k[i], cross_v[i]))
            x = b.mlp(x)
        return self.ln(x) @ self.emb.weight.T


def export_whisper(out: Path) -> tuple[Path, Path]:
    torch.manual_seed(0)
    blocks = torch.nn.ModuleList(WhisperBlock(True) for _ in range(LAYERS))
    enc, dec = WhisperEncoder(blocks).eval(), WhisperDecoderStep(blocks).eval()
    ep, dp = out / "whisper-tiny-encoder.onnx", out / "whisper-tiny-decoder.onnx"
    torch.onnx.export(enc, (torch.randn(1, 80, 3000),), str(ep), dynamo=True, input_names=["mel"],
                      output_names=["cross_k", "cross_v"], external_data=False)
    L = torch.export.Dim("L", min=1, max=N_CTX - 1)
    sk = torch.randn(LAYERS, 1, 8, D)
    ck = torch.randn(LAYERS, 1, 1500, D)
    torch.onnx.export(dec, (torch.tensor([[7]]), sk, sk.clone(), ck, ck.clone()), str(dp), dynamo=True,
                      input_names=["token", "self_k", "self_v", "cross_k", "cross_v"], output_names=["logits"],
                      dynamic_shapes=(None, {2: L}, {2: L}, None, None), external_data=False)
    return ep, dp


# ------------------------------------------------------------------ the two tables


def p50(recs) -> float:
    return next(r["value"] for r in recs if r["metric"] == "latency_p50")


def host_table(work: Path, quick: bool) -> list[tuple]:
    dev = host_device(1)
    print(f"host profile: {dev.description}")
    presets = ["tiny", "student-xs", "student-s"] + ([] if quick else ["teacher-m"])
    arts = [(p, export_conformer(p, work / f"{p}.onnx"), 1000) for p in presets]
    arts.append(("student-s int8 (MatMul)", quantize_matmul_int8(work / "student-s.onnx", work / "student-s.int8.onnx"),
                 1000))
    arts.append(("mobilenet-v1 fp32", export_mobilenet(work / "mobilenet_v1.onnx"), 224))
    rows = []
    for name, path, frames in arts:
        secs = frames / 100 if frames != 224 else 1.0
        recs = run_local(path, seconds=secs, threads=1, iterations=10 if quick else 20, warmup=2, max_time=30)
        meas = p50(recs)
        cpu = 1e3 * cpu_seconds_per_run(path, frames)
        cost = analyze(path, frames)
        est = estimate_latency(cost, dev, 1, runtime="onnxruntime")["latency_ms"]
        rows.append((name, cost.macs / 1e9, meas, est, est / meas - 1, cpu, est / cpu - 1))
    return rows


def streaming_table(files: list[Path], quick: bool) -> list[tuple]:
    from edgekd.profile.estimate import estimate_records

    dev = host_device(1)
    print(f"host profile: {dev.description}")
    rows = []
    for path in files:
        recs = run_local(path, seconds=10.0, threads=1, iterations=10 if quick else 20, warmup=2, max_time=30)
        meas = next(r["value"] for r in recs if r["metric"] == "chunk_latency_p50")
        est = {r["metric"]: r["value"] for r in estimate_records(path, dev, threads=1)}
        rows.append((f"{path.parent.name}/{path.name}", est["macs"] / 1e9, meas, est["chunk_latency_est"],
                     est["chunk_latency_est"] / meas - 1))
    return rows


def published_table(work: Path) -> list[tuple]:
    rows = []
    mob_path = work / "mobilenet_v1.onnx"
    mob = analyze(export_mobilenet(mob_path), 224)
    for dev, ms in (("pixel3", 23.9), ("pixel4", 14.0)):
        est = estimate_latency(mob, load_device(dev), 4, runtime="litert")["latency_ms"]
        rows.append((f"MobileNet v1 fp32, LiteRT, {dev}, 4 threads", ms, est, est / ms - 1))
    ep, dp = export_whisper(work)
    variants = [("fp32", ep, dp, WHISPER_PI4_RTF["fp32"])]
    eq, dq = work / "whisper-tiny-encoder.int8.onnx", work / "whisper-tiny-decoder.int8.onnx"
    variants.append(("int8", quantize_matmul_int8(ep, eq), quantize_matmul_int8(dp, dq), WHISPER_PI4_RTF["int8"]))
    audio = 16.715
    dev = load_device("rpi4")
    for prec, e_path, d_path, rtfs in variants:
        enc = analyze(e_path, 3000)
        # decoder calls: prompt (3 tokens, modelled as one step over L=1) then one per token (54) + end-of-text
        steps = [analyze(d_path, L) for L in range(1, 3 + 54 + 2)]
        for threads, rtf in enumerate(rtfs, start=1):
            e_ms = estimate_latency(enc, dev, threads, runtime="onnxruntime")["latency_ms"]
            d_ms = sum(estimate_latency(s, dev, threads, runtime="onnxruntime")["latency_ms"] for s in steps)
            est = (e_ms + d_ms) / 1e3
            rows.append((f"Whisper tiny.en {prec}, sherpa-onnx, rpi4, {threads} thread(s) [s]", rtf * audio, est,
                         est / (rtf * audio) - 1))
            print(f"  whisper {prec} rpi4 {threads}t: encoder {e_ms / 1e3:.2f} s ({enc.macs / 1e9:.1f} GMAC), "
                  f"decoder {d_ms / 1e3:.2f} s over {len(steps)} calls ({steps[-1].macs / 1e6:.0f} MMAC/step)")
    return rows


# k2-fsa/sherpa docs/source/onnx/pretrained_models/whisper/tiny.en.rst, Raspberry Pi 4 Model B, 1-4 threads
WHISPER_PI4_RTF = {"fp32": (0.685, 0.559, 0.526, 0.520), "int8": (0.547, 0.431, 0.398, 0.386)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/bench_estimate")
    ap.add_argument("--quick", action="store_true", help="skip teacher-m; fewer iterations")
    ap.add_argument("--only", choices=("host", "published", "streaming"), help="run one of the tables")
    ap.add_argument("--streaming", nargs="+", default=[], type=Path, help="streaming .onnx files: table (a')")
    ap.add_argument("--dram-all-cores", type=float, default=None,
                    help="what-if: all cores together reach this fraction of DRAM peak (estimate.DRAM_EFF_ALL_CORES; "
                         "0.3 = no more than one core), printed as such")
    args = ap.parse_args()
    if args.dram_all_cores is not None:
        import edgekd.profile.estimate as E

        print(f"WHAT-IF: DRAM_EFF_ALL_CORES {E.DRAM_EFF_ALL_CORES} -> {args.dram_all_cores} (not the shipped model)")
        E.DRAM_EFF_ALL_CORES = args.dram_all_cores
    if args.only == "streaming" and not args.streaming:
        ap.error("--only streaming needs --streaming FILE.onnx ...")
    work = Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if args.only in (None, "host"):
        _host(work, args.quick)
    if args.only in (None, "streaming") and args.streaming:
        print("(a') streaming: per-chunk compute, estimate vs measured on this host (1 thread, p50)")
        _print_host(streaming_table(args.streaming, args.quick))
    if args.only in (None, "published"):
        _published(work)
    print(f"({time.time() - t0:.0f} s)")


def _host(work: Path, quick: bool) -> None:
    print("(a) estimate vs measured on this host (1 thread, p50; conformers at 10 s = 1000 frames)")
    _print_host(host_table(work, quick))


def _print_host(rows: list[tuple]) -> None:
    cpu = len(rows[0]) > 5  # host rows also carry in-process CPU time; streaming rows do not
    print(f"{'artifact':<26}{'GMAC':>8}{'wall p50 ms':>13}{'estimate ms':>13}{'error':>9}"
          + (f"{'CPU ms':>9}{'error':>9}" if cpu else ""))
    for r in rows:
        name, g, m, e, err = r[:5]
        print(f"{name:<26}{g:8.3f}{m:13.2f}{e:13.2f}{100 * err:8.0f} %" + (f"{r[5]:9.2f}{100 * r[6]:8.0f} %" if cpu else ""))
    cols = [("vs the runner's wall p50", 4)] + ([("vs process CPU time (shared box: less load noise)", 6)] if cpu else [])
    for label, k in cols:
        errs = np.abs([r[k] for r in rows])
        print(f"{label}: median |error| {100 * np.median(errs):.0f} %, max {100 * errs.max():.0f} %, "
              f"within 30 %: {int((errs <= 0.3).sum())}/{len(errs)}")


def _published(work: Path) -> None:
    print("\n(b) estimate vs published on-device figures (rebuilt architectures, random weights)")
    rows = published_table(work)
    print(f"{'reference':<58}{'family':>8}{'published':>10}{'estimate':>10}{'error':>8}")
    for name, pub, est, err in rows:
        fam = "in" if name.startswith("MobileNet") else "out"  # calibrated on MobileNets (XNNPACK, Pixel 3a)
        print(f"{name:<58}{fam:>8}{pub:10.3f}{est:10.3f}{100 * err:7.0f} %")
    for label, sel in (("all rows", rows), ("out of family", [r for r in rows if not r[0].startswith("MobileNet")])):
        errs = np.abs([r[-1] for r in sel])
        print(f"{label}: median |error| {100 * np.median(errs):.0f} %, max {100 * errs.max():.0f} %, "
              f"within 30 %: {int((errs <= 0.3).sum())}/{len(errs)} (goal: all, median <= 15 %)")


if __name__ == "__main__":
    main()
