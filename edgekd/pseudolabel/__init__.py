"""`edgekd pseudolabel`: teachers turn unlabeled audio into soft targets, 1-best labels and routes.

Output folder:
    shard-NNNNN.npz, index.json, meta.json   soft targets (edgekd.softtargets format)
    labels.jsonl      PseudoLabel rows: {id, audio, duration, text (1-best: greedy, or beam + LM),
                      confidence, frames, route, teachers}
    distil.jsonl      manifest of the confident utterances, text = teacher 1-best (or a seq2seq
                      teacher's transcript in a mixed ensemble); with `wer_filter`, utterances whose
                      reference text (if the manifest has one) the 1-best misses by > `wer_threshold`
                      WER are dropped (route "dropped" in labels.jsonl, counted in the manifest)
    review.jsonl      manifest of the doubtful ones (for Label Studio, `edgekd review export`)
    rejected.jsonl    bad audio with its reason
    resume.json       what the shards were made from (manifest sha256, teachers, shard options):
                      a rerun into the folder resumes only if it matches, else it is refused
    manifest.json     stage manifest (options, counts, bytes/frame, throughput)

Utterances sorted by duration are cut into contiguous shards of about equal audio (`deal_shards`:
similar lengths in a batch pad little; equal audio makes shards cost the same, so workers finish
together; about `min_shards` of them, so a small manifest still feeds every worker). Each
shard is written atomically with its labels, so a killed run skips finished shards and the
final outputs equal an uninterrupted run's. One `ShardLabeler` (labeler.py) labels a shard; the
local engine (local.py) runs it in this process or on a pool of spawned processes, each pinned
to its threads (thread variables set before the child imports torch, then torch itself), and
`engine="ray"` (ray_engine.py) on Ray actors pinned the same way, over as many nodes as the
cluster has. `teacher_runtime` runs edgekd checkpoints on onnxruntime or in bf16 after a parity
gate against torch fp32 on the first `parity_seconds` of audio (teachers/runtime.py).

Modules: options.py (PseudoLabelOptions), ensemble.py (Ensemble, confidence, the gate), labeler.py,
local.py, ray_engine.py, resume.py (resume.json), routing.py (distil/review routes and lists).
"""

from __future__ import annotations

import json
import time
from contextlib import closing
from pathlib import Path

from edgekd.config import to_dict
from edgekd.errors import EdgekdError
from edgekd.manifest import StageManifest, read_manifest
from edgekd.pseudolabel.ensemble import Ensemble, confidence, gate_runtime
from edgekd.pseudolabel.labeler import ShardLabeler, deal_shards
from edgekd.pseudolabel.options import PseudoLabelOptions, worker_threads
from edgekd.pseudolabel.resume import claim, fingerprint
from edgekd.pseudolabel.routing import gather, route_labels, wer_filter, write_routes
from edgekd.softtargets import write_index
from edgekd.tokens import spm_to_text

__all__ = ["Ensemble", "PseudoLabelOptions", "ShardLabeler", "confidence", "route_labels", "run_pseudolabel"]


def run_pseudolabel(opts: PseudoLabelOptions, manifest: str | Path, teachers: list[str], out_dir: str | Path,
                    weights: list[float] | tuple[float, ...] = (), progress: bool = True,
                    fail_after_shards: int | None = None) -> Path:
    """Label `manifest` with the teacher ensemble into `out_dir`; returns the stage manifest path.

    `fail_after_shards` stops the run (raising) after that many new shards of the local engine:
    used by tests to check that a killed run resumes to the same outputs.
    """
    from tqdm import tqdm

    if opts.lm and not Path(opts.lm).is_file():
        raise EdgekdError(f"{opts.lm}: language model not found")
    out = Path(out_dir)
    t_start = time.time()
    utts = sorted(read_manifest(manifest), key=lambda u: (-(u.duration or 0), u.id))
    # loading the teachers here fails fast on a bad one before any work; workers=1 labels with it
    labeler = ShardLabeler.load(list(teachers), list(weights), opts)
    ens = labeler.ensemble
    claim(out, fingerprint(opts, manifest, teachers, weights))
    parity = {}
    if opts.teacher_runtime != "torch" and opts.parity_seconds > 0:  # before any shard: refuse, don't mislabel
        parity = gate_runtime(list(teachers), opts.teacher_runtime, [u.audio for u in utts[len(utts) // 2:] + utts[: len(utts) // 2]],
                              ens.sample_rate, opts.parity_seconds)
    rows = [{"id": u.id, "audio": u.audio, "duration": u.duration} for u in utts]
    shards = deal_shards(rows, opts)
    todo = [(i, sh, str(out)) for i, sh in enumerate(shards) if not (out / f"shard-{i:05d}.npz").exists()]
    bar = tqdm(total=len(shards), initial=len(shards) - len(todo), desc="pseudolabel", unit="shard",
               disable=not progress)
    done: list[dict] = []
    if todo:
        if opts.engine == "ray":
            from edgekd.pseudolabel.ray_engine import run_shards_ray

            for r in run_shards_ray(labeler, todo, opts.workers, opts.threads or 1):
                done.append(r)
                bar.update(1)
        else:
            from edgekd.pseudolabel.local import run_shards_local

            threads = worker_threads(opts, opts.workers)
            with closing(run_shards_local(labeler, todo, opts.workers, threads)) as results:  # closing ends the pool
                for n, r in enumerate(results, 1):
                    done.append(r)
                    bar.update(1)
                    if fail_after_shards is not None and n >= fail_after_shards:
                        raise RuntimeError(f"injected failure after {n} shard(s)")
    bar.close()
    labels, rejected = gather(out, len(shards))
    thr = route_labels(labels, opts)
    filtered = wer_filter(labels, {u.id: u.text for u in utts if u.text}, opts.wer_threshold if opts.wer_filter else None)
    write_routes(out, labels, rejected, utts, ens.names)
    meta = json.loads(write_index(out, {"tokens": list(ens.tokens), "frame_rate": ens.frame_rate, "k": opts.k,
                                        "mass_eps": opts.mass_eps, "temperature": 1.0,
                                        "teachers": list(teachers), "weights": list(weights),
                                        **({"sentencepiece": spm_to_text(ens.sentencepiece)} if ens.sentencepiece else {})
                                        }).read_text())
    audio_s = sum(l["duration"] for l in labels)
    wall = time.time() - t_start
    m = StageManifest(stage="pseudolabel", config={**to_dict(opts), "teachers": list(teachers)},
                      outputs={"soft_targets": ".", "labels": "labels.jsonl", "distil": "distil.jsonl",
                               "review": "review.jsonl", "rejected": "rejected.jsonl"},
                      metrics={"utterances": len(labels), "rejected": len(rejected), "audio_s": round(audio_s, 1),
                               **_throughput(done, t_start), "teacher_runtime": opts.teacher_runtime,
                               "runtime_parity": parity,
                               "distil": sum(l["route"] == "distil" for l in labels),
                               "review": sum(l["route"] == "review" for l in labels),
                               "wer_filter": filtered,  # how many a reference disagreed with, dropped
                               "confidence_threshold": round(thr, 4), "bytes_per_frame": meta["bytes_per_frame"],
                               "frames": meta["frames"], "x_realtime": round(audio_s / max(wall, 1e-9), 1)},
                      timings={"wall_s": round(wall, 2)})
    m.add_inputs(manifest, *[t for t in teachers if Path(t).is_file()])
    return m.save(out)


def _throughput(done: list[dict], t_start: float) -> dict:
    """This run's shards -> labeling speed apart from start-up, and the padding the batches cost.

    `x_realtime` (in the caller) is end to end; `x_realtime_labeling` is audio over the span from
    the first shard's start to the last one's end, i.e. without spawning workers and loading
    teachers, which a long run pays once (what `--plan` separates by fitting two runs)."""
    if not done:
        return {}
    audio = sum(r["audio_s"] for r in done)
    padded = sum(r.get("padded_s", 0.0) for r in done)
    first, last = min(r["t_start"] for r in done), max(r["t_end"] for r in done)
    return {"x_realtime_labeling": round(audio / max(last - first, 1e-9), 1), "startup_s": round(first - t_start, 2),
            "padding_waste": round(padded / max(audio + padded, 1e-9), 4),
            "nodes": sorted({r["node"] for r in done if r.get("node")})}  # Ray: the nodes whose actors labeled
