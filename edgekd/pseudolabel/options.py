"""Options of `edgekd pseudolabel`, and which of them change what a shard holds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

RUNTIMES = ("torch", "onnx", "onnx-int8", "bf16")


@dataclass(frozen=True)
class PseudoLabelOptions:
    k: int = 8  # max tokens kept per frame
    mass_eps: float = 1e-3  # stop keeping tokens once their mass reaches 1 - mass_eps
    batch_seconds: float = 60.0  # audio seconds per teacher batch
    shard_utts: int = 200  # at most this many utterances per shard (the unit of resume) ...
    min_shards: int = 16  # ... and about as many shards of equal audio as this (workers need several each)
    confidence_threshold: Optional[float] = None  # route conf >= threshold to distil ...
    review_fraction: float = 0.1  # ... or send this lowest-confidence fraction to review
    workers: int = 2  # processes for the local engine; actors for Ray (0 = one per CPU of the cluster)
    threads: int = 0  # torch/BLAS threads per worker (0 = this machine's cores // workers, at least 1)
    engine: str = "local"  # "local" (process pool) or "ray" (Ray actors; extra [ray])
    teacher_runtime: str = "torch"  # edgekd checkpoints run as "torch" fp32, "onnx" (onnxruntime fp32), "onnx-int8" or "bf16"
    parity_seconds: float = 20.0  # onnx/bf16: audio compared with torch fp32 before labeling (0 = skip the gate)
    beam: int = 0  # 1-best by CTC prefix beam search of this width (0 = greedy) ...
    lm: str = ""  # ... scored with this ARPA word LM (`edgekd lm`); soft targets are unaffected
    lm_alpha: float = 0.5
    lm_beta: float = 1.0
    # distil-whisper's filter: where the manifest has a reference text (a labelled subset), drop the
    # utterance if its pseudo-label's WER against it exceeds wer_threshold (distil-whisper: 10 %)
    wer_filter: bool = False
    wer_threshold: float = 0.1
    teacher_weighting: str = "fixed"  # ensemble: "fixed" weights, or per-utterance "confidence" x agreement (ensemble.py)

    def __post_init__(self):
        self._verify()

    def _verify(self):
        if not 1 <= self.k <= 255:
            raise ValueError(f"k must be in 1..255, got {self.k}")
        if self.confidence_threshold is not None and not 0 <= self.confidence_threshold <= 1:
            raise ValueError("confidence_threshold must be in [0, 1]")
        if not 0 <= self.review_fraction < 1:
            raise ValueError("review_fraction must be in [0, 1)")
        if self.engine not in ("local", "ray"):
            raise ValueError(f"engine must be 'local' or 'ray', got {self.engine!r}")
        if self.teacher_runtime not in RUNTIMES:
            raise ValueError(f"teacher_runtime must be one of {', '.join(RUNTIMES)}, got {self.teacher_runtime!r}")
        if self.workers < 0 or (self.workers == 0 and self.engine == "local"):
            raise ValueError("workers must be >= 1 (0, one per cluster CPU, only with engine 'ray')")
        if self.shard_utts < 1 or self.min_shards < 1 or self.threads < 0 or self.parity_seconds < 0:
            raise ValueError("shard_utts and min_shards must be >= 1, threads and parity_seconds >= 0")
        if self.wer_threshold < 0:
            raise ValueError(f"wer_threshold must be >= 0, got {self.wer_threshold}")
        if self.teacher_weighting not in ("fixed", "confidence"):
            raise ValueError(f"teacher_weighting must be fixed or confidence, got {self.teacher_weighting!r}")
        if self.beam < 0 or (self.lm and not self.beam):
            raise ValueError("lm needs beam > 0 (the LM scores beam-search hypotheses)")


# Options that change what a shard holds; the others (routing, workers, threads, engine, the
# parity gate) act after the shards or not on their content, so a resume may change them.
# teacher_runtime is here: bf16 and onnx-int8 (and, in the last bits, onnx) posteriors differ from torch fp32's.
SHARD_OPTIONS = ("k", "mass_eps", "batch_seconds", "shard_utts", "min_shards", "teacher_runtime", "beam", "lm",
                 "lm_alpha", "lm_beta", "teacher_weighting")

# How utterances are cut into shards; part of the resume fingerprint, so a folder made with
# another layout (edgekd <= 0.1: runs of shard_utts of the length-sorted list) is not resumed.
SHARD_LAYOUT = "equal-audio-v2"


def worker_threads(opts: PseudoLabelOptions, workers: int) -> int:
    """Threads each worker may use: `threads`, else this machine's cores shared among `workers`."""
    import os

    if opts.threads:
        return opts.threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(workers, 1))
