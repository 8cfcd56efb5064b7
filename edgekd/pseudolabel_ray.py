"""Ray engine for pseudo-labeling: the same shard function, run by a Ray Data actor pool.

Each actor loads the teacher ensemble once and labels whole shards, writing the same files as
the local engine (so resume and outputs do not depend on the engine). On a cluster, `out_dir`
and the audio must be on a filesystem every node sees; set RAY_ADDRESS to join a running
cluster, otherwise a local Ray instance with `workers` CPUs is started.
"""

from __future__ import annotations

import os
import pickle
from typing import Iterator

import numpy as np


class _ShardLabeler:
    def __init__(self, teachers: list[str], weights: list[float]):
        from edgekd import pseudolabel

        pseudolabel._init_worker(teachers, weights)

    def __call__(self, batch: dict) -> dict:
        from edgekd.pseudolabel import label_shard

        res = [label_shard(pickle.loads(b)) for b in batch["job"]]
        return {"shard": np.array([r["shard"] for r in res]), "audio_s": np.array([r["audio_s"] for r in res])}


def run_shards_ray(todo: list[tuple], teachers: list[str], weights: list[float], workers: int) -> Iterator[dict]:
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
        ds = ds.map_batches(_ShardLabeler, fn_constructor_args=(teachers, weights), batch_size=1,
                            concurrency=workers, num_cpus=1)
        for row in ds.iter_rows():
            yield {"shard": int(row["shard"]), "audio_s": float(row["audio_s"])}
    finally:
        if started:
            ray.shutdown()
