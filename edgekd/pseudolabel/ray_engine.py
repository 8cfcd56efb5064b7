"""Ray engine for pseudo-labeling: the same shard labeler, run by Ray actors on one or many nodes.

Each actor receives the `ShardLabeler` (which loads its teachers once, on arrival), is pinned to
its threads like a local worker (thread variables in its runtime env, before torch is imported,
and `num_cpus` = threads so Ray never packs more actors than cores), and labels whole shards,
writing the same files as the local engine: resume and outputs do not depend on the engine.
Actors are spread over the nodes. One killed mid-shard is restarted by Ray and its shard sent
again (shards are written atomically, so a half-done shard left nothing behind); an actor that
cannot come back hands its shard to the others.

On a cluster, `out_dir`, the audio and the teachers must be on a filesystem every node sees.
RAY_ADDRESS joins a running cluster (`ray start --head` on one box, `ray start --address` on the
others); without it a local Ray instance with workers x threads CPUs is started.
"""

from __future__ import annotations

import os
from typing import Iterator

from edgekd.pseudolabel.labeler import Job, ShardLabeler
from edgekd.pseudolabel.local import pin_threads, thread_env


class _ShardActor:
    def __init__(self, labeler: ShardLabeler, threads: int):
        pin_threads(threads)
        self.labeler = labeler

    def label(self, job: Job) -> dict:
        import ray

        return {**self.labeler.label(job), "node": ray.get_runtime_context().get_node_id()}


def _runtime_env(threads: int) -> dict:
    # the test hooks (edgekd.atomic.fault_point) reach actors only through their runtime env
    hooks = {k: v for k, v in os.environ.items() if k.startswith("EDGEKD_FAULT")}
    return {"env_vars": {**thread_env(threads), **hooks}}


def run_shards_ray(labeler: ShardLabeler, todo: list[Job], workers: int, threads: int) -> Iterator[dict]:
    """Label the shards in `todo` on Ray; yields one summary per finished shard, in finishing order.

    `workers` actors of `threads` CPUs each (0: as many as the cluster's CPUs hold)."""
    try:
        import ray
        from ray.exceptions import RayActorError
    except ImportError as e:
        from edgekd.errors import EdgekdError

        raise EdgekdError(f"engine 'ray' needs `pip install 'edgekd[ray]'` ({e})") from None
    started = False
    if not ray.is_initialized():
        if os.environ.get("RAY_ADDRESS"):
            ray.init(log_to_driver=False, configure_logging=False)
        else:
            ray.init(num_cpus=max(workers, 1) * threads, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        started = True
    try:
        n = workers or max(1, int(ray.cluster_resources().get("CPU", 1) // threads))
        actor_cls = ray.remote(_ShardActor).options(
            num_cpus=threads, max_restarts=-1, max_task_retries=-1,  # killed: restart, send the shard again
            scheduling_strategy="SPREAD", runtime_env=_runtime_env(threads))
        idle = [actor_cls.remote(labeler, threads) for _ in range(min(n, len(todo)))]
        queue, running = list(todo), {}
        while queue or running:
            while queue and idle:
                actor, job = idle.pop(), queue.pop(0)
                running[actor.label.remote(job)] = (actor, job)
            ready, _ = ray.wait(list(running), num_returns=1)
            actor, job = running.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except RayActorError:  # gone for good (its node left): the others take its shard
                queue.append(job)
                if not idle and not running:
                    raise
                continue
            idle.append(actor)
            yield result
    finally:
        if started:
            ray.shutdown()
