"""`edgekd pseudolabel`: teachers turn unlabeled audio into soft targets, 1-best labels and routes.

Output folder:
    shard-NNNNN.npz, index.json, meta.json   soft targets (edgekd.softtargets format)
    labels.jsonl      {id, audio, duration, text (1-best: greedy, or beam + LM), confidence, route, teachers}
    distil.jsonl      manifest of the confident utterances, text = teacher 1-best
    review.jsonl      manifest of the doubtful ones (for Label Studio, `edgekd review export`)
    rejected.jsonl    bad audio with its reason
    resume.json       what the shards were made from (manifest sha256, teachers, shard options):
                      a rerun into the folder resumes only if it matches, else it is refused
    manifest.json     stage manifest (options, counts, bytes/frame, throughput)

Work is split into shards of utterances sorted by duration (long first, so batches pad little);
each shard is written atomically with its labels, so a killed run skips finished shards and the
final outputs equal an uninterrupted run's. The local engine runs shards on a process pool
(one torch thread per worker); `engine="ray"` runs the same shard function on a Ray Data actor
pool (edgekd/pseudolabel_ray.py) for users who outgrow one machine.

Confidence (per utterance): the mean, over frames whose best token is not blank, of the best
token's posterior — how sure the teacher is of the characters it emits; blank frames are left
out because a CTC model is confidently blank almost everywhere. No emitted character: 0.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from edgekd.atomic import fault_point
from edgekd.config import to_dict
from edgekd.errors import EdgekdError
from edgekd.manifest import StageManifest, Utterance, iter_jsonl, read_manifest, write_jsonl, write_manifest
from edgekd.records import PseudoLabel
from edgekd.softtargets import encode_topk, write_index, write_shard


@dataclass(frozen=True)
class PseudoLabelOptions:
    k: int = 8  # max tokens kept per frame
    mass_eps: float = 1e-3  # stop keeping tokens once their mass reaches 1 - mass_eps
    batch_seconds: float = 60.0  # audio seconds per teacher batch
    shard_utts: int = 200  # utterances per shard (the unit of resume)
    confidence_threshold: Optional[float] = None  # route conf >= threshold to distil ...
    review_fraction: float = 0.1  # ... or send this lowest-confidence fraction to review
    workers: int = 2  # processes for the local engine
    engine: str = "local"  # "local" (process pool) or "ray" (Ray Data actor pool; extra [ray])
    beam: int = 0  # 1-best by CTC prefix beam search of this width (0 = greedy) ...
    lm: str = ""  # ... scored with this ARPA word LM (`edgekd lm`); soft targets are unaffected
    lm_alpha: float = 0.5
    lm_beta: float = 1.0

    def __post_init__(self):
        if not 1 <= self.k <= 255:
            raise ValueError(f"k must be in 1..255, got {self.k}")
        if self.confidence_threshold is not None and not 0 <= self.confidence_threshold <= 1:
            raise ValueError("confidence_threshold must be in [0, 1]")
        if not 0 <= self.review_fraction < 1:
            raise ValueError("review_fraction must be in [0, 1)")
        if self.engine not in ("local", "ray"):
            raise ValueError(f"engine must be 'local' or 'ray', got {self.engine!r}")
        if self.workers < 1 or self.shard_utts < 1:
            raise ValueError("workers and shard_utts must be >= 1")
        if self.beam < 0 or (self.lm and not self.beam):
            raise ValueError("lm needs beam > 0 (the LM scores beam-search hypotheses)")


def confidence(log_probs: np.ndarray) -> float:
    """Mean best-token posterior over non-blank-argmax frames (see module doc); (T, V) -> [0, 1]."""
    best = log_probs.argmax(1)
    em = best != 0
    if not em.any():
        return 0.0
    return float(np.exp(log_probs[em, best[em]]).mean())


class Ensemble:
    """Averages teachers' posteriors in probability space (weights normalised to sum 1)."""

    def __init__(self, specs: list[str], weights: list[float] | tuple[float, ...] = ()):
        from edgekd.teachers import load_teacher

        self.teachers = [load_teacher(s) for s in specs]
        if not self.teachers:
            raise EdgekdError("pseudolabel needs at least one teacher")
        t0 = self.teachers[0]
        for s, t in zip(specs[1:], self.teachers[1:]):
            if tuple(t.tokens) != tuple(t0.tokens):
                raise EdgekdError(f"teacher {s}: token set differs from {specs[0]}'s; an ensemble must share tokens")
            if abs(t.frame_rate - t0.frame_rate) > 1e-6:
                raise EdgekdError(f"teacher {s}: frame rate {t.frame_rate} differs from {specs[0]}'s "
                                  f"{t0.frame_rate}; an ensemble must share the frame rate")
        w = np.asarray(weights if weights else [1.0] * len(specs), dtype=np.float64)
        if len(w) != len(specs) or (w < 0).any() or w.sum() <= 0:
            raise EdgekdError(f"teacher weights {list(weights)} do not fit {len(specs)} teachers")
        self.weights = torch.tensor(w / w.sum(), dtype=torch.float32)
        self.tokens, self.frame_rate = tuple(t0.tokens), t0.frame_rate
        self.names = [getattr(t, "name", s) for s, t in zip(specs, self.teachers)]

    @torch.no_grad()
    def __call__(self, waves: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """-> averaged log-probs (B, T', V), lengths (B,)."""
        outs = [t(waves) for t in self.teachers]
        t_min = min(o.logits.shape[1] for o in outs)
        probs = sum(w * o.logits[:, :t_min].float().softmax(-1) for w, o in zip(self.weights, outs))
        lens = torch.stack([torch.clamp(o.lengths, max=t_min) for o in outs]).min(0).values
        return torch.log(probs.clamp(min=1e-30)), lens


_ENSEMBLE: Ensemble | None = None


def _init_worker(specs, weights):
    global _ENSEMBLE
    torch.set_num_threads(1)
    _ENSEMBLE = Ensemble(list(specs), list(weights))


_DECODERS: dict = {}


def _beam_decoder(tokens, opts: PseudoLabelOptions):
    key = (tuple(tokens), opts.beam, opts.lm, opts.lm_alpha, opts.lm_beta)
    if key not in _DECODERS:  # one per worker process: loading the LM takes a moment
        from edgekd.decode import BeamDecoder

        _DECODERS[key] = BeamDecoder(tokens, lm_path=opts.lm or None, beam_width=opts.beam, alpha=opts.lm_alpha,
                                     beta=opts.lm_beta)
    return _DECODERS[key]


def label_shard(job: tuple) -> dict:
    """Worker: decode one shard's audio, run the ensemble, write shard + its labels file."""
    from edgekd.audio import AudioError, load_audio
    from edgekd.decode import greedy
    from edgekd.tokens import Tokenizer

    shard, utts, opts, out_dir = job
    ens = _ENSEMBLE
    tok = Tokenizer(ens.tokens)
    items, labels, rejected = [], [], []
    t0 = time.time()
    audio_s = 0.0
    i = 0
    while i < len(utts):
        batch, waves, total = [], [], 0.0
        while i < len(utts) and (not batch or total + (utts[i]["duration"] or 0) <= opts.batch_seconds):
            u = utts[i]
            i += 1
            try:
                waves.append(load_audio(u["audio"]))
            except AudioError as e:
                rejected.append({"id": u["id"], "audio": e.path, "reason": e.reason, "detail": e.detail,
                                 "stage": "pseudolabel"})
                continue
            batch.append(u)
            total += len(waves[-1]) / 16000
        if not batch:
            continue
        lp, lens = ens(waves)
        texts = greedy(lp, lens, tok) if not opts.beam else _beam_decoder(ens.tokens, opts)(lp, lens)
        for u, w, row, n, text in zip(batch, waves, lp, lens, texts):
            row = row[: int(n)].numpy()
            items.append((u["id"], encode_topk(row, opts.k, opts.mass_eps)))
            labels.append(PseudoLabel(id=u["id"], audio=u["audio"], duration=len(w) / 16000, text=text,
                                      confidence=round(confidence(row), 6), frames=int(n)).to_dict())
            audio_s += len(w) / 16000
    out = Path(out_dir)
    write_jsonl(out / f"shard-{shard:05d}.labels.jsonl", labels + [{"_rejected": r} for r in rejected])
    fault_point("pseudolabel-between-shard-files")
    write_shard(out, shard, items)  # written last: its presence marks the shard done
    return {"shard": shard, "audio_s": audio_s, "seconds": time.time() - t0}


def _route(labels: list[dict], opts: PseudoLabelOptions) -> float:
    """Set each label's route; return the confidence threshold used."""
    conf = np.array([l["confidence"] for l in labels]) if labels else np.zeros(0)
    if opts.confidence_threshold is not None:
        thr = opts.confidence_threshold
    elif len(conf) and opts.review_fraction > 0:
        thr = float(np.quantile(conf, opts.review_fraction, method="higher"))
    else:
        thr = 0.0
    for l in labels:
        l["route"] = "distil" if l["confidence"] >= thr and l["text"] else "review"
    return thr


# Options that change what a shard holds; the others (routing, workers, engine) act after the
# shards or not on their content, so a resume may change them.
_SHARD_OPTIONS = ("k", "mass_eps", "batch_seconds", "shard_utts", "beam", "lm", "lm_alpha", "lm_beta")


def _fingerprint(opts: PseudoLabelOptions, manifest, teachers, weights) -> dict:
    """What the shards in a folder were made from: a resume must match it exactly."""
    from edgekd.manifest import sha256_file

    def digest(p):
        return sha256_file(p) if Path(p).is_file() else str(p)  # a hub/teacher name stands for itself

    return {"manifest_sha256": sha256_file(manifest), "teachers": [digest(t) for t in teachers],
            "weights": [float(w) for w in weights],
            "options": {k: getattr(opts, k) for k in _SHARD_OPTIONS},
            "lm_sha256": sha256_file(opts.lm) if opts.lm else ""}


def _differences(old, new: dict) -> str:
    if not isinstance(old, dict) or not isinstance(old.get("options"), dict):
        return "its resume.json is unreadable"
    diff = [k.replace("_sha256", "") for k in new if k != "options" and old.get(k) != new[k]]
    diff += [f"{o} {old['options'].get(o)!r} -> {v!r}" for o, v in new["options"].items() if old["options"].get(o) != v]
    return "different " + ", ".join(diff)


def _claim(out: Path, fp: dict) -> None:
    """Write `resume.json` into a fresh folder, or check that an existing one is this run's.

    Resuming another run's shards would mix two label sets (utterances missing, shards of
    another k), so anything else is refused with one line saying what differs. A folder with no
    shard yet holds no work to lose and is simply claimed again.
    """
    from edgekd.atomic import atomic_write

    path = out / "resume.json"
    started = out.is_dir() and any(out.glob("shard-*"))
    if path.exists() and started:
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        if old == fp:
            return
        raise EdgekdError(f"{out}: holds pseudolabels of another run ({_differences(old, fp)}); "
                          f"use a new --out, or delete the folder to start over")
    if started:
        raise EdgekdError(f"{out}: holds shards without a resume.json (an older edgekd or another run); "
                          f"use a new --out, or delete the folder to start over")
    atomic_write(path, json.dumps(fp, indent=1, sort_keys=True) + "\n")


def run_pseudolabel(opts: PseudoLabelOptions, manifest: str | Path, teachers: list[str], out_dir: str | Path,
                    weights: list[float] | tuple[float, ...] = (), progress: bool = True,
                    fail_after_shards: int | None = None) -> Path:
    """Label `manifest` with the teacher ensemble into `out_dir`; returns the stage manifest path.

    `fail_after_shards` stops the run (raising) after that many new shards: used by tests to
    check that a killed run resumes to the same outputs.
    """
    from tqdm import tqdm

    if opts.lm and not Path(opts.lm).is_file():
        raise EdgekdError(f"{opts.lm}: language model not found")
    out = Path(out_dir)
    t_start = time.time()
    utts = sorted(read_manifest(manifest), key=lambda u: (-(u.duration or 0), u.id))
    probe = Ensemble(list(teachers), list(weights))  # fail fast on bad teachers before any work
    _claim(out, _fingerprint(opts, manifest, teachers, weights))
    rows = [{"id": u.id, "audio": u.audio, "duration": u.duration} for u in utts]
    shards = [rows[s : s + opts.shard_utts] for s in range(0, len(rows), opts.shard_utts)]
    todo = [(i, sh, opts, str(out)) for i, sh in enumerate(shards) if not (out / f"shard-{i:05d}.npz").exists()]
    bar = tqdm(total=len(shards), initial=len(shards) - len(todo), desc="pseudolabel", unit="shard",
               disable=not progress)
    done_new = 0
    if todo:
        if opts.engine == "ray":
            from edgekd.pseudolabel_ray import run_shards_ray

            for _ in run_shards_ray(todo, list(teachers), list(weights), opts.workers):
                bar.update(1)
        elif opts.workers == 1:
            global _ENSEMBLE
            _ENSEMBLE = probe
            for job in todo:
                label_shard(job)
                bar.update(1)
                done_new += 1
                if fail_after_shards is not None and done_new >= fail_after_shards:
                    raise RuntimeError(f"injected failure after {done_new} shard(s)")
        else:
            ctx = mp.get_context("spawn")  # fresh interpreters: torch thread pools don't survive fork
            with ctx.Pool(min(opts.workers, len(todo)), _init_worker, (list(teachers), list(weights))) as pool:
                for _ in pool.imap_unordered(label_shard, todo):
                    bar.update(1)
                    done_new += 1
                    if fail_after_shards is not None and done_new >= fail_after_shards:
                        pool.terminate()
                        raise RuntimeError(f"injected failure after {done_new} shard(s)")
    bar.close()
    labels, rejected = [], []
    for i in range(len(shards)):
        for _, d in iter_jsonl(out / f"shard-{i:05d}.labels.jsonl"):
            (rejected.append(d["_rejected"]) if "_rejected" in d else labels.append(d))
    thr = _route(labels, opts)
    for l in labels:
        l["teachers"] = probe.names
    write_jsonl(out / "labels.jsonl", [PseudoLabel.from_dict(l).to_dict() for l in labels])  # validated
    write_jsonl(out / "rejected.jsonl", rejected)
    by_id = {u.id: u for u in utts}
    for route in ("distil", "review"):
        write_manifest(out / f"{route}.jsonl", [Utterance(id=l["id"], audio=l["audio"], duration=l["duration"],
                                                          text=l["text"] if route == "distil" else None,
                                                          domain=by_id[l["id"]].domain,
                                                          tags={"confidence": l["confidence"]})
                                                for l in labels if l["route"] == route])
    meta = json.loads(write_index(out, {"tokens": list(probe.tokens), "frame_rate": probe.frame_rate, "k": opts.k,
                                        "mass_eps": opts.mass_eps, "temperature": 1.0,
                                        "teachers": list(teachers), "weights": list(weights)}).read_text())
    audio_s = sum(l["duration"] for l in labels)
    wall = time.time() - t_start
    m = StageManifest(stage="pseudolabel", config={**to_dict(opts), "teachers": list(teachers)},
                      outputs={"soft_targets": ".", "labels": "labels.jsonl", "distil": "distil.jsonl",
                               "review": "review.jsonl", "rejected": "rejected.jsonl"},
                      metrics={"utterances": len(labels), "rejected": len(rejected), "audio_s": round(audio_s, 1),
                               "distil": sum(l["route"] == "distil" for l in labels),
                               "review": sum(l["route"] == "review" for l in labels),
                               "confidence_threshold": round(thr, 4), "bytes_per_frame": meta["bytes_per_frame"],
                               "frames": meta["frames"], "x_realtime": round(audio_s / max(wall, 1e-9), 1)},
                      timings={"wall_s": round(wall, 2)})
    m.add_inputs(manifest, *[t for t in teachers if Path(t).is_file()])
    return m.save(out)
