"""`edgekd pseudolabel --plan`: what labeling a manifest will cost, from a measured calibration.

Two calibration runs of the real `run_pseudolabel` (same teachers, options and workers) on
evenly spread samples of the manifest -- one of `sample_minutes` of audio, one of half that --
give wall time as `startup + audio / throughput` (a line through the two points), so the fixed
cost of loading teachers into every worker is not mistaken for slow labeling. The sample has to
be long enough for labeling to outweigh that start-up (seconds): with a fast teacher, minutes. Soft-target bytes per frame come
from the same runs. The projection to the whole manifest, and per 1,000 hours, then assumes the
measured per-node throughput on every node (no scaling loss across nodes: an upper bound, said
in the table). Nothing is labeled for real; calibration outputs go to a temporary folder.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgekd.errors import EdgekdError
from edgekd.manifest import Utterance, read_manifest, write_manifest


@dataclass(frozen=True)
class PlanOptions:
    # Audio in the larger calibration run (the smaller takes half). 20 min was too short for the
    # shipped teacher on 2 workers: each run then labels for ~5-10 s beside ~11 s of start-up, and the
    # two-point line gave 324x per node where 60 min gave 178x (the benchmark's labeling rate: 136x).
    sample_minutes: float = 60.0
    nodes: tuple[int, ...] = (1, 4, 16)  # cluster sizes to project to (each node = this machine)

    def __post_init__(self):
        if self.sample_minutes <= 0 or not self.nodes or min(self.nodes) < 1:
            raise ValueError("sample_minutes must be > 0 and nodes a non-empty list of counts >= 1")


def spread_sample(utts: list[Utterance], n: int) -> list[Utterance]:
    """n utterances evenly spaced over the duration-sorted manifest (short, medium and long alike)."""
    s = sorted(utts, key=lambda u: (u.duration or 0.0, u.id))
    if len(s) <= n:
        return s
    return [s[round(i * (len(s) - 1) / (n - 1))] for i in range(n)]


def _calibrate(opts, sample: list[Utterance], teachers, weights, work: Path, name: str) -> dict:
    from edgekd.pseudolabel import run_pseudolabel

    man = write_manifest(work / f"{name}.jsonl", sample)
    m = json.loads(run_pseudolabel(opts, man, list(teachers), work / name, weights, progress=False).read_text())
    mt = m["metrics"]
    return {"audio_s": mt["audio_s"], "wall_s": m["timings"]["wall_s"], "frames": mt["frames"],
            "bytes_per_frame": mt["bytes_per_frame"]}


def plan_pseudolabel(opts, manifest: str | Path, teachers: list[str], weights=(),
                     plan: PlanOptions = PlanOptions()) -> dict:
    """Calibrate on samples of `manifest`; -> {"calibration": ..., "rows": [projection per scope x nodes]}."""
    utts = read_manifest(manifest)
    if len(utts) < 4:
        raise EdgekdError(f"{manifest}: {len(utts)} utterances; --plan needs at least 4 to calibrate on")
    total_s = sum(u.duration or 0.0 for u in utts)
    if total_s <= 0:
        raise EdgekdError(f"{manifest}: no durations in the manifest (import it with `edgekd import` first)")
    mean_s = total_s / len(utts)
    big = spread_sample(utts, max(4, math.ceil(plan.sample_minutes * 60 / max(mean_s, 1e-3))))
    small = big[::2]
    with tempfile.TemporaryDirectory(prefix="edgekd-plan-") as tmp:
        runs = [_calibrate(opts, s, teachers, weights, Path(tmp), n) for n, s in (("small", small), ("big", big))]
    (a1, w1), (a2, w2) = [(r["audio_s"], r["wall_s"]) for r in runs]
    fitted = a2 - a1 > 0 and w2 > w1
    if not fitted:  # noise swamped the difference: the big run's average rate (start-up included)
        rate, startup = a2 / max(w2, 1e-9), 0.0
    else:
        rate = (a2 - a1) / (w2 - w1)  # steady audio seconds per wall second, all workers of one node
        startup = max(0.0, w2 - a2 / rate)
    # Labeling has to outweigh start-up in the samples, or the fitted rate is noise (measured: the
    # int8 teacher on a 1.9 h manifest, whose whole audio was the sample, projected 409x per node
    # where the benchmark labels at 204x). Said in the result, with what to change.
    labeling_s = a2 / rate
    warnings = []
    if labeling_s < max(30.0, 3 * startup):
        whole = len(big) == len(utts)
        warnings.append(f"calibration too short: {labeling_s:.0f} s of labeling beside {startup:.0f} s of start-up"
                        + ("; the sample is the whole manifest: the projection is rough" if whole else
                           f"; raise --plan-minutes (now {plan.sample_minutes:g})"))
    frames_per_s = runs[1]["frames"] / max(a2, 1e-9)
    bpf = runs[1]["bytes_per_frame"]
    workers = opts.workers
    rows = []
    for scope, seconds in ((f"this manifest ({total_s / 3600:.2f} h)", total_s), ("per 1,000 h", 1000 * 3600.0)):
        for n in plan.nodes:
            wall = startup + seconds / (rate * n)
            # unrounded: the table shows 4 significant digits, and a tiny manifest's hours are tiny
            rows.append({"audio": scope, "nodes": n, "wall_h": wall / 3600, "core_h": seconds / rate * workers / 3600,
                         "soft_targets_GB": seconds * frames_per_s * bpf / 1e9})
    return {"calibration": {"runs": runs, "x_realtime_per_node": round(rate, 1),
                            "x_realtime_per_core": round(rate / workers, 1), "startup_s": round(startup, 1),
                            "workers": workers, "bytes_per_frame": bpf, "fitted": fitted, "frames_per_s": round(frames_per_s, 2),
                            "assumes": "linear scaling across nodes (upper bound); each node = this machine",
                            "labeling_s": round(labeling_s, 1), "warnings": warnings},
            "rows": rows}
