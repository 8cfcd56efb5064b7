"""Streaming student: WER offline vs streaming per chunk size, sherpa-onnx online == edgekd, latency.

Usage: python3 benchmarks/bench_streaming.py --model runs/s16/stream-d0/model.safetensors \
  --offline models/student/student-xs.safetensors --manifest data/teacher2/source/test.jsonl --out runs/s16/bench

For each chunk size (output frames; 4/8/16 = 160/320/640 ms) it exports the sherpa-onnx streaming
package (fp32 + int8), then on `--max-utts` held-out utterances plus long ones (verify's long-audio
set and concatenations of 20-60 s):
- WER of the offline student (its own features, full pass), of the streaming student in full-context
  mode and chunk by chunk (PyTorch, tail-padded as sherpa-onnx is fed);
- identical-transcript % of `sherpa_onnx.OnlineRecognizer` on the raw audio vs edgekd's streaming
  transcript, and max |Δ log-prob| of onnxruntime vs PyTorch;
- latency, measured on this host at 1 thread with onnxruntime: per-chunk compute p50/p95/p99, RTF,
  first-partial latency (audio start -> first non-empty text) and end-of-speech -> final text, in a
  replay where audio arrives in real time and each chunk runs once its window is complete (after
  the previous one); at end of speech the tail padding is sent at once.
Prints tables and writes results.jsonl (one full record per figure). Not run by CI.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def long_set(utts, seconds=(20, 30, 45, 60), sr=16000):
    """Concatenations of consecutive held-out utterances of about these lengths (verify's builder)."""
    from edgekd.export.verify import concatenate

    short, out, i = [u for u in utts if not u.long], [], 0
    for s in seconds:
        u, i = concatenate(short, s, sr, i)
        out.append(u)
    return out


def sherpa_text(rec, wave, sr):
    from edgekd.export.runtime import normalize
    from edgekd.export.streaming import with_tail

    s = rec.create_stream()
    w = with_tail(wave, sr)
    for i in range(0, len(w), sr // 10):  # 100 ms pieces, as a microphone delivers them
        s.accept_waveform(sr, w[i:i + sr // 10])
        while rec.is_ready(s):
            rec.decode_stream(s)
    s.input_finished()
    while rec.is_ready(s):
        rec.decode_stream(s)
    return normalize(rec.get_result(s))


def replay(stream, feats, n_speech, sample_rate, tok):
    """Per-chunk compute (s) and, in a real-time replay, first-partial and end-of-speech->final (s):
    `stream` is the runner's CacheStream, and the definitions are the runner's (edgekd/bench/stream.py)."""
    from edgekd.bench.stream import Framing
    from edgekd.bench.stream import replay as realtime

    stream.reset()
    return realtime(stream.timed, feats, stream.window, stream.shift, Framing(stream.model.metadata),
                    n_speech / sample_rate, has_text=lambda ids: bool(tok.ctc_collapse(ids)))


def pct(xs, q):
    return float(np.percentile(np.asarray(xs), q)) if len(xs) else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="streaming student checkpoint")
    ap.add_argument("--offline", required=True, help="offline student checkpoint (the baseline)")
    ap.add_argument("--manifest", required=True, help="held-out labelled manifest")
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-utts", type=int, default=100)
    ap.add_argument("--chunks", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--latency-utts", type=int, default=30, help="utterances replayed for latency (long ones included)")
    a = ap.parse_args()
    torch.set_num_threads(1)

    import sherpa_onnx

    from edgekd.audio import featurize
    from edgekd.bench.runner import OnnxModel
    from edgekd.bench.stream import CacheStream
    from edgekd.decode import wer_cer
    from edgekd.export.streaming import (
        OnnxStream,
        stream_text,
        with_tail,
        write_streaming_package,
    )
    from edgekd.export.verify import verify_set
    from edgekd.models import load_checkpoint
    from edgekd.models.streaming import stream_log_probs
    from edgekd.tokens import Tokenizer

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    ck, off = load_checkpoint(a.model), load_checkpoint(a.offline)
    tok = Tokenizer(ck.tokens)
    sr = ck.featurizer.sample_rate
    utts = verify_set(ck, a.manifest, a.max_utts)
    utts += long_set(utts, sr=sr)
    short = [u for u in utts if not u.long]
    lng = [u for u in utts if u.long]
    print(f"{len(short)} held-out utterances ({sum(len(u.wave) for u in short) / sr / 60:.1f} min), "
          f"{len(lng)} long: {', '.join(f'{len(u.wave) / sr:.0f} s' for u in lng)}")
    recs = []

    def rec(metric, value, unit, **kw):
        recs.append({"model": {"name": Path(a.model).stem, **kw.pop("model", {})}, "metric": metric, "value": value,
                     "unit": unit, "device": "host", "threads": 1, "source": "measured-on-host", **kw})

    def wer(hyps, subset):
        return wer_cer([u.text for u in subset], hyps)["wer"]

    def full(c, u, chunk=None):
        f, n = featurize([u.wave], c.featurizer)
        with torch.no_grad():
            lp, ln = c.model.log_probs(f, n, chunk)
        return tok.ctc_collapse(lp[0, : int(ln[0])].argmax(-1).tolist())

    rows = []
    for name, c, ch in (("offline student", off, None), ("streaming student, full context", ck, None)):
        hyps = [full(c, u, ch) for u in utts]
        rows.append((name, wer(hyps[: len(short)], short), wer(hyps[len(short):], lng)))
        rec("wer", rows[-1][1], "fraction", config=name, split="held-out")
    lat = []
    for chunk in a.chunks:
        ms = int(1000 * chunk * ck.dims.subsampling / ck.featurizer.frame_rate)
        t0 = time.time()
        ours = [stream_text(ck, u.wave, chunk) for u in utts]
        rows.append((f"streaming {ms} ms (PyTorch)", wer(ours[: len(short)], short), wer(ours[len(short):], lng)))
        rec("wer", rows[-1][1], "fraction", config=f"streaming-{ms}ms", split="held-out")
        pkg = write_streaming_package(ck, out / f"pkg-{ms}ms", chunk)
        for model in ("model.onnx", "model.int8.onnx"):
            q = "int8-dynamic" if "int8" in model else "fp32"
            r = sherpa_onnx.OnlineRecognizer.from_nemo_ctc(model=str(pkg / model), tokens=str(pkg / "tokens.txt"),
                                                           num_threads=1)
            got = [sherpa_text(r, u.wave, sr) for u in utts]
            same = float(np.mean([g == o for g, o in zip(got, ours)]))
            same_long = float(np.mean([g == o for g, o in zip(got[len(short):], ours[len(short):])]))
            rows.append((f"  sherpa-onnx {ms} ms {q}: identical {100 * same:.1f} % (long {100 * same_long:.0f} %)",
                         wer(got[: len(short)], short), wer(got[len(short):], lng)))
            rec("identical_transcripts", same, "fraction", model={"format": "onnx", "quantization": q},
                chunk_ms=ms, runtime="sherpa-onnx", utterances=len(utts))
            stream = OnnxStream(pkg / model)
            dmax = 0.0
            if q == "fp32":
                for u in utts[:5] + lng[:1]:
                    f, n = featurize([with_tail(u.wave, sr)], ck.featurizer)
                    fe = f[0, : int(n[0])]
                    dmax = max(dmax, float(np.abs(stream.log_probs(fe.numpy()) - stream_log_probs(ck.model, fe, chunk).numpy()).max()))
                rec("max_abs_diff_logprob", dmax, "nats", model={"format": "onnx", "quantization": q}, chunk_ms=ms)
                rows[-1] = (rows[-1][0] + f", ORT vs torch max|Δ| {dmax:.1e}", *rows[-1][1:])
            comp, firsts, finals = [], [], []
            runner_stream = CacheStream(OnnxModel(pkg / model, 1))  # the runner's loop (caches fed back)
            for u in (short[: a.latency_utts] + lng):
                f, n = featurize([with_tail(u.wave, sr)], ck.featurizer)
                cs, first, eos_final = replay(runner_stream, f[0, : int(n[0])].numpy(), len(u.wave), sr, tok)
                comp += cs
                if first is not None:
                    firsts.append(first)
                finals.append(eos_final)
            audio_s = len(comp) * chunk * ck.dims.subsampling / ck.featurizer.frame_rate
            row = {"chunk_ms": ms, "quantization": q, "p50_ms": 1e3 * pct(comp, 50), "p95_ms": 1e3 * pct(comp, 95),
                   "p99_ms": 1e3 * pct(comp, 99), "rtf": sum(comp) / audio_s,
                   "first_partial_s_p50": pct(firsts, 50), "eos_to_final_ms_p50": 1e3 * pct(finals, 50),
                   "eos_to_final_ms_p95": 1e3 * pct(finals, 95), "chunks": len(comp)}
            lat.append(row)
            for k, v in row.items():
                if k not in ("chunk_ms", "quantization", "chunks"):
                    rec(k, v, "ms" if k.endswith("ms") or "_ms_" in k else ("s" if k.endswith("_s_p50") else "ratio"),
                        model={"format": "onnx", "quantization": q}, chunk_ms=ms, runtime="onnxruntime",
                        iterations=len(comp))
        print(f"chunk {ms} ms done in {time.time() - t0:.0f} s", flush=True)

    print("\nWER (greedy CTC, no LM)                                        held-out   long")
    for name, w1, w2 in rows:
        print(f"{name:<62} {100 * w1:6.2f} %  {100 * w2:6.2f} %")
    print("\nLatency, measured on host (onnxruntime, 1 thread)")
    print("chunk  quant          p50 ms  p95 ms  p99 ms   RTF    first partial p50 s  EOS->final p50/p95 ms")
    for r in lat:
        print(f"{r['chunk_ms']:4d}  {r['quantization']:<13} {r['p50_ms']:7.2f} {r['p95_ms']:7.2f} {r['p99_ms']:7.2f} "
              f"{r['rtf']:6.4f}  {r['first_partial_s_p50']:8.2f}             {r['eos_to_final_ms_p50']:6.1f} / "
              f"{r['eos_to_final_ms_p95']:.1f}")
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    print(f"\n{out / 'results.jsonl'}")


if __name__ == "__main__":
    main()
