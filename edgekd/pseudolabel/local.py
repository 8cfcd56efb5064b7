"""Local engine: shards labeled in this process (workers=1) or on a pool of spawned processes."""

from __future__ import annotations

import multiprocessing as mp
import os
from contextlib import contextmanager
from typing import Iterator

from edgekd.pseudolabel.labeler import Job, ShardLabeler

# Inside a pool worker process only: the labeler its initializer received (one per process, so
# the teachers load once per worker, not once per shard). Never set in the parent process.
_WORKER: dict[str, ShardLabeler] = {}

# Every thread pool a worker may start: torch's OpenMP/MKL, numpy's BLAS, onnxruntime (OMP).
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def thread_env(threads: int) -> dict[str, str]:
    return {v: str(threads) for v in THREAD_VARS}


@contextmanager
def _env(values: dict[str, str]):
    """Set environment variables while spawning: a spawned child reads them before importing torch
    (pool sizes are fixed at import, so torch.set_num_threads in the child alone comes too late
    for numpy's BLAS and OpenMP's own pool)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def pin_threads(threads: int) -> None:
    """Pin this process's torch pools to `threads` (intra-op) and 1 (inter-op: shards are the parallelism)."""
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or parallel work already ran: the intra-op pin still holds
        pass


def _start_worker(labeler: ShardLabeler, threads: int) -> None:
    pin_threads(threads)
    _WORKER["labeler"] = labeler  # unpickling it loaded the teachers


def _label_in_worker(job: Job) -> dict:
    return _WORKER["labeler"].label(job)


def run_shards_local(labeler: ShardLabeler, todo: list[Job], workers: int, threads: int) -> Iterator[dict]:
    """Label the shards in `todo`; yields one summary per finished shard, in finishing order.

    Each of the `workers` processes is pinned to `threads` threads (env before import + torch),
    so `workers x threads` never exceeds the cores it was sized for. Close the iterator to stop
    early: the pool is terminated with it.
    """
    if workers == 1:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(threads)  # this process: restored after, it is the caller's
        try:
            for job in todo:
                yield labeler.label(job)
        finally:
            torch.set_num_threads(before)
        return
    ctx = mp.get_context("spawn")  # fresh interpreters: torch thread pools don't survive fork
    with _env(thread_env(threads)):
        pool = ctx.Pool(min(workers, len(todo)), _start_worker, (labeler, threads))
    with pool:
        # chunksize 1: shards hold about equal audio, so the pool stays busy to the end
        yield from pool.imap_unordered(_label_in_worker, todo, chunksize=1)
