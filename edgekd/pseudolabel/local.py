"""Local engine: shards labeled in this process (workers=1) or on a pool of spawned processes."""

from __future__ import annotations

import multiprocessing as mp
from typing import Iterator

from edgekd.pseudolabel.labeler import Job, ShardLabeler

# Inside a pool worker process only: the labeler its initializer received (one per process, so
# the teachers load once per worker, not once per shard). Never set in the parent process.
_WORKER: dict[str, ShardLabeler] = {}


def _start_worker(labeler: ShardLabeler) -> None:
    import torch

    torch.set_num_threads(1)  # `workers` processes share the cores
    _WORKER["labeler"] = labeler  # unpickling it loaded the teachers


def _label_in_worker(job: Job) -> dict:
    return _WORKER["labeler"].label(job)


def run_shards_local(labeler: ShardLabeler, todo: list[Job], workers: int) -> Iterator[dict]:
    """Label the shards in `todo`; yields one summary per finished shard, in finishing order.

    Close the iterator to stop early: the pool is terminated with it.
    """
    if workers == 1:
        for job in todo:
            yield labeler.label(job)
        return
    ctx = mp.get_context("spawn")  # fresh interpreters: torch thread pools don't survive fork
    with ctx.Pool(min(workers, len(todo)), _start_worker, (labeler,)) as pool:
        yield from pool.imap_unordered(_label_in_worker, todo)
