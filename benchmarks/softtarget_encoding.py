"""Bytes per frame against fidelity for soft-target encodings, on a real teacher's posteriors.

Usage: python3 benchmarks/softtarget_encoding.py --teacher models/teacher/teacher.safetensors --teacher /work/runs/teacher2/init-v1.safetensors --manifest /work/data/teacher2/source/train.jsonl --manifest /work/data/teacher2/target/test.jsonl --utts 80

For each teacher x manifest (teacher v2 on its own training audio: as confident as it gets;
on drifted audio, and teacher v1: less so; the script prints each one's mean max-prob) the teacher's
full (T, V) log-probs are computed once, then every encoding below is applied and decoded:
bytes per frame after compression (what a shard costs on disk, per frame, ids and all) and the
mean per-frame KL(teacher || rebuilt) at T=1 and at the KD temperature T=2 (what the student
is trained against), plus the share of frames whose argmax survives, and the time to compress.
Every row keeps the top tokens until their mass reaches 1 - eps (eps 1e-3, k <= 8 unless named),
uint8 ids, log-probs quantised in 1/16 nat, the left-over mass stored per frame. Variants:
  delta      log-probs within a frame stored as differences (sorted, so small): lossless
  bzip2/lzma another zip method instead of deflate (np.load reads them all)
  tail/N     tokens after the first two rounded to a coarser grid (N/16 nat): lossy
  eps, k     fewer kept tokens: lossy
"""

from __future__ import annotations

import argparse
import io
import time
import zipfile

import numpy as np
import torch

from edgekd.audio import load_audio
from edgekd.manifest import read_manifest
from edgekd.softtargets import decode_topk, encode_topk, pack_shard_arrays, softmax_at_temperature, unpack_q
from edgekd.teachers import load_teacher


def teacher_log_probs(teacher_path: str, manifest: str, n: int) -> list[np.ndarray]:
    t = load_teacher(teacher_path)
    out = []
    for u in list(read_manifest(manifest))[:n]:
        with torch.no_grad():
            o = t([load_audio(u.audio)])
        out.append(o.logits[0, : int(o.lengths[0])].float().log_softmax(-1).numpy())
    return out


def zip_bytes(arrays: dict[str, np.ndarray], method: int) -> int:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as z:
        for k, a in arrays.items():
            with z.open(f"{k}.npy", "w") as f:
                np.lib.format.write_array(f, a)
    return len(buf.getvalue())


def requantise_tail(enc: dict[str, np.ndarray], step_mult: int) -> dict[str, np.ndarray]:
    """Tokens at rank >= 2 in their frame rounded to a coarser grid (multiples of step_mult steps)."""
    counts = enc["counts"].astype(np.int64)
    rank = np.arange(len(enc["q"])) - np.repeat(np.cumsum(counts) - counts, counts)
    q = enc["q"].astype(np.int64)
    coarse = np.clip(np.round(q / step_mult) * step_mult, 0, 255)
    return {**enc, "q": np.where(rank >= 2, coarse, q).astype(np.uint8)}


def kl(p_lp: np.ndarray, q_lp: np.ndarray, temperature: float) -> float:
    p = softmax_at_temperature(p_lp, temperature).astype(np.float64)
    q = softmax_at_temperature(q_lp, temperature).astype(np.float64)
    return float((np.exp(p) * (p - q)).sum(-1).mean())


D, B, L = zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA
VARIANTS = {  # name -> (k, eps, tail step multiple, delta, zip method; or "v3": write_shard's format 3)
    "before (absolute q, deflate)": (8, 1e-3, 1, False, D),
    "bzip2": (8, 1e-3, 1, False, B),
    "lzma": (8, 1e-3, 1, False, L),
    "delta (format 2)": (8, 1e-3, 1, True, D),
    "delta +bzip2": (8, 1e-3, 1, True, B),
    "delta +lzma": (8, 1e-3, 1, True, L),
    "delta +tail/8": (8, 1e-3, 2, True, D),
    "delta +tail/4": (8, 1e-3, 4, True, D),
    "delta eps 3e-3": (8, 3e-3, 1, True, D),
    "delta k<=6": (6, 1e-3, 1, True, D),
    "delta +lzma k<=6": (6, 1e-3, 1, True, L),
    "format 3 (edgekd now: zstd, prior tail)": "v3",
}


def format3_row(name: str, lps: list[np.ndarray], frames: int) -> str:
    """The real writer and reader (one shard of all utterances): bytes on disk, KL, argmax, time."""
    import json
    import tempfile
    from pathlib import Path

    from edgekd.softtargets import SoftTargets, write_index, write_shard

    with tempfile.TemporaryDirectory() as d:
        items = [(f"utt-{i:05d}", encode_topk(x, 8, 1e-3, with_tail=True)) for i, x in enumerate(lps)]
        t0 = time.perf_counter()
        write_shard(d, 0, items)
        dt = time.perf_counter() - t0
        tokens = ["<blk>"] + [f"t{i}" for i in range(lps[0].shape[1] - 1)]
        size = json.loads(write_index(d, {"tokens": tokens, "frame_rate": 25.0, "k": 8}).read_text())["bytes_per_frame"]
        st = SoftTargets(Path(d))
        kl1 = kl2 = agree = 0.0
        for (uid, _), x in zip(items, lps):
            r = st.get(uid)
            kl1 += kl(x, r, 1.0) * len(x)
            kl2 += kl(x, r, 2.0) * len(x)
            agree += float((x.argmax(-1) == r.argmax(-1)).sum())
    return (f"{name:32s} {size:8.2f} {kl1 / frames:9.5f} {kl2 / frames:9.5f} {100 * agree / frames:9.2f} {dt:8.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", action="append", required=True)
    ap.add_argument("--manifest", action="append", required=True)
    ap.add_argument("--utts", type=int, default=80)
    a = ap.parse_args()
    torch.set_num_threads(1)
    for teacher, man in [(t, m) for t in a.teacher for m in a.manifest]:
        lps = teacher_log_probs(teacher, man, a.utts)
        frames = sum(len(x) for x in lps)
        conf = float(np.mean([np.exp(x.max(-1)).mean() for x in lps]))
        print(f"\n{teacher} on {man}: {len(lps)} utterances, {frames} frames, mean max-prob {conf:.3f}")
        print(f"{'encoding':32s} {'B/frame':>8s} {'KL T=1':>9s} {'KL T=2':>9s} {'argmax %':>9s} {'write s':>8s}")
        for name, spec in VARIANTS.items():
            if spec == "v3":
                print(format3_row(name, lps, frames))
                continue
            k, eps, tail, delta, method = spec
            encs = [encode_topk(x, k, eps) for x in lps]
            if tail > 1:
                encs = [requantise_tail(e, tail) for e in encs]
            t0 = time.perf_counter()
            arrays = pack_shard_arrays([(str(i), e) for i, e in enumerate(encs)], delta=delta)
            size = zip_bytes(arrays, method)
            dt = time.perf_counter() - t0
            kl1 = kl2 = agree = 0.0
            for x, e in zip(lps, encs):
                q = unpack_q(e["counts"], pack_shard_arrays([("u", e)], delta=delta)["dq" if delta else "q"], delta)
                r = decode_topk(e["counts"], e["ids"], q, e["rest"], x.shape[1])
                kl1 += kl(x, r, 1.0) * len(x)
                kl2 += kl(x, r, 2.0) * len(x)
                agree += float((x.argmax(-1) == r.argmax(-1)).sum())
            print(f"{name:32s} {size / frames:8.2f} {kl1 / frames:9.5f} {kl2 / frames:9.5f} "
                  f"{100 * agree / frames:9.2f} {dt:8.2f}")


if __name__ == "__main__":
    main()
