"""Ray engine for pseudo-labeling: the same shard labeler, run by a Ray Data actor pool.

Each actor receives the `ShardLabeler` (which loads its teachers once, on arrival) and labels
whole shards, writing the same files as the local engine, so resume and outputs do not depend on
the engine. On a cluster, `out_dir` and the audio must be on a filesystem every node sees; set
RAY_ADDRESS to join a running cluster, otherwise a local Ray instance with `workers` CPUs is
started.
"""

from __future__ import annotations

import os
import pickle
from typing import Iterator

import numpy as np

from edgekd.pseudolabel.labeler import Job, ShardLabeler


class _LabelerActor:
    def __init__(self, labeler: ShardLabeler):
        import torch

        torch.set_num_threads(1)  # one CPU per actor
        self.labeler = labeler

    def __call__(self, batch: dict) -> dict:
        res = [self.labeler.label(pickle.loads(b)) for b in batch["job"]]
        return {"shard": np.array([r["shard"] for r in res]), "audio_s": np.array([r["audio_s"] for r in res])}


def run_shards_ray(labeler: ShardLabeler, todo: list[Job], workers: int) -> Iterator[dict]:
    """Label the shards in `todo` on Ray; yields one summary per finished shard."""
    try:
        import ray
    except ImportError as e:
        from edgekd.errors import EdgekdError

        raise EdgekdError(f"engine 'ray' needs `pip install 'edgekd[ray]'` ({e})") from None
    started = False
    if not ray.is_initialized():
        if os.environ.get("RAY_ADDRESS"):
            ray.init()
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
        started = True
    try:
        ds = ray.data.from_items([{"job": pickle.dumps(j)} for j in todo])
        ds = ds.map_batches(_LabelerActor, fn_constructor_args=(labeler,), batch_size=1,
                            concurrency=workers, num_cpus=1)
        for row in ds.iter_rows():
            yield {"shard": int(row["shard"]), "audio_s": float(row["audio_s"])}
    finally:
        if started:
            ray.shutdown()
