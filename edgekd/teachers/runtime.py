"""Faster runtimes for an edgekd conformer teacher, and the parity gate that admits them.

- `onnx`: the checkpoint exported once to ONNX (fp32, features in, the zipformer2_ctc contract)
  and run on onnxruntime. The export is cached under `$EDGEKD_CACHE` (default ~/.cache/edgekd)
  by the checkpoint's sha256, so a changed checkpoint never reuses a stale graph and workers
  never export twice. Measured on the shipped teacher, 1 thread: 1.2-1.4x PyTorch fp32, KL per
  frame ~1e-11, every 1-best identical (benchmarks/bench_pseudolabel.py prints it).
- `onnx-int8`: that graph with its weight MatMuls in int8 (onnxruntime dynamic quantization,
  per-channel weights; the first and last, which int8 hurts most, kept fp32), cached beside it.
  Measured on the shipped teacher, 1 thread: 1.26x the fp32 graph, KL per frame 6.7e-5 and 99.5 %
  of frames with the same best token on drifted audio -- inside the gate, so it is admitted where
  the gate passes on the user's own audio.
- `bf16`: PyTorch under `torch.autocast("cpu", bfloat16)` (this CPU has AMX/avx512_bf16):
  ~1.7x fp32, KL per frame ~5e-5, but near-tie frames flip, so some 1-bests differ.

`parity(reference, candidate, waves)` measures what the gate checks: mean KL(fp32 || fast) per
frame and the share of frames whose best token agrees; `GATE` holds the bounds. The 1-best
identity is measured and reported, not gated: greedy CTC text flips on a near-tie frame whose
probabilities moved by 1e-4, and a gate on it would refuse bf16 for noise the soft targets
themselves carry 100x over (their own KL is ~1e-2).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from edgekd.errors import EdgekdError

# Bounds a fast runtime must meet against torch fp32 on the same audio. KL: 1/10 of what the
# uint8 soft-target encoding itself costs at T=1 (~1e-2), so the runtime's error is invisible in
# the stored targets; argmax: at most 1 frame in 100 may change its best token.
GATE = {"kl_per_frame": 1e-3, "argmax_agree": 0.99}


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEKD_CACHE") or Path.home() / ".cache" / "edgekd")


def _built_once(path: Path, build) -> Path:
    """`path`, made by `build(path)` unless it exists; under a lock, so workers of one node build once, in turn."""
    import fcntl

    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / "export.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.is_file():
            build(path)
    return path


def onnx_export_cached(checkpoint: str | Path) -> Path:
    """The checkpoint's fp32 ONNX graph, exported on first use into the cache (keyed by sha256)."""
    from edgekd.manifest import sha256_file

    def build(path: Path) -> None:
        from edgekd.export.onnx import export_onnx
        from edgekd.models import load_checkpoint

        export_onnx(load_checkpoint(checkpoint), path, write_tokens=False)  # tokens are in the metadata

    return _built_once(cache_dir() / "teachers" / sha256_file(checkpoint) / "model.onnx", build)


def onnx_int8_cached(checkpoint: str | Path) -> Path:
    """The cached fp32 graph quantized to int8-dynamic (first and last weight MatMuls fp32), cached beside it."""
    from edgekd.export.quantize import quantize

    fp = onnx_export_cached(checkpoint)
    return _built_once(fp.with_name("model.int8.onnx"), lambda path: quantize(fp, path, "int8-dynamic", fp32_ends=True))


def load_runtime_teacher(spec: str, runtime: str):
    """`spec` (an edgekd checkpoint) as a teacher on `runtime` ("torch", "onnx", "onnx-int8" or "bf16")."""
    from edgekd.teachers import load_teacher

    if runtime == "torch" or spec.startswith("onnx:"):  # an ONNX teacher already runs on onnxruntime
        return load_teacher(spec)
    if spec.startswith("hf:") or not Path(spec).is_file():
        raise EdgekdError(f"teacher {spec}: runtime {runtime!r} applies to edgekd checkpoints only; "
                          f"use teacher_runtime 'torch' for it")
    if runtime == "bf16":
        from edgekd.teachers.conformer import ConformerTeacher

        return ConformerTeacher(spec, bf16=True)
    from edgekd.teachers.onnx import OnnxCTCTeacher

    t = OnnxCTCTeacher(onnx_int8_cached(spec) if runtime == "onnx-int8" else onnx_export_cached(spec))
    t.name = Path(spec).stem  # labels name the checkpoint, whichever runtime ran it
    return t


@torch.no_grad()
def parity(reference, candidate, waves: list[np.ndarray]) -> dict:
    """Reference (torch fp32) vs candidate teacher on the same waves -> the gate's figures."""
    from edgekd.decode import greedy
    from edgekd.tokens import Tokenizer

    tok = Tokenizer(reference.tokens)
    kl, agree, frames, same = 0.0, 0, 0, 0
    for w in waves:  # one at a time: no padding difference between the two can hide in a batch
        a, b = reference([w]), candidate([w])
        n = int(min(a.lengths[0], b.lengths[0]))
        p = a.logits[0, :n].double().log_softmax(-1)
        q = b.logits[0, :n].double().log_softmax(-1)
        kl += float((p.exp() * (p - q)).sum())
        agree += int((p.argmax(-1) == q.argmax(-1)).sum())
        frames += n
        n_t = torch.tensor([n])
        same += greedy(p[None].float(), n_t, tok) == greedy(q[None].float(), n_t, tok)
    return {"utterances": len(waves), "frames": frames, "kl_per_frame": kl / max(frames, 1),
            "argmax_agree": agree / max(frames, 1), "same_1best": same / max(len(waves), 1)}


def gate_failures(figures: dict) -> list[str]:
    """What in `parity`'s figures breaks `GATE` (empty: the runtime is admitted)."""
    bad = []
    if not figures["kl_per_frame"] <= GATE["kl_per_frame"]:
        bad.append(f"KL per frame {figures['kl_per_frame']:.2e} > {GATE['kl_per_frame']:g}")
    if not figures["argmax_agree"] >= GATE["argmax_agree"]:
        bad.append(f"best token agrees on {100 * figures['argmax_agree']:.2f} % of frames < "
                   f"{100 * GATE['argmax_agree']:g} %")
    return bad
