"""`edgekd synth`: a reproducible labeled/unlabeled English speech corpus from pip-installable TTS.

Layout under `out_dir`:
    source/{train,dev,test}.jsonl      labeled; espeak (many accents/variants) + clean piper;
                                       source/test uses held-out espeak voice variants
    target/train.jsonl                 UNLABELED drifted audio (what pseudo-labeling sees)
    target/train.ref.jsonl             its hidden transcripts (to simulate annotators, score labels)
    target/{dev,test}.jsonl            labeled drifted audio
    <domain>/wav/<split>/<id>.wav      16 kHz mono PCM16
    manifest.json                      stage manifest: options, outputs, measured speed per engine

Every utterance is made from (seed, domain, split, index) alone, so the same seed gives
byte-identical WAVs whatever the number of workers.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgekd.config import to_dict
from edgekd.manifest import StageManifest, Utterance, write_manifest

SPLITS = {"source": ("train", "dev", "test"), "target": ("train", "dev", "test")}
_BLOCK = 32  # utterances generated per scheduling block


@dataclass(frozen=True)
class SynthOptions:
    seed: int = 0  # same seed -> byte-identical corpus
    hours_source: float = 0.2  # labeled source-domain audio, all splits
    hours_target: float = 0.2  # target-domain audio, all splits
    dev_fraction: float = 0.05  # of each domain's hours
    test_fraction: float = 0.1  # of each domain's hours
    min_split_utts: int = 4  # at least this many utterances in every split
    piper_fraction: float = 0.3  # share of utterances spoken by piper (the rest espeak)
    drift: float = 1.0  # target acoustic drift strength: 0 none, 1 default, >1 harsher
    source_drift: float = 0.0  # mild drift on part of source train (augmentation); 0 = all clean
    source_drift_fraction: float = 0.5  # share of source train utterances that get source_drift
    speed_perturb: bool = False  # source train: speed x0.9/1.0/1.1
    engines: tuple[str, ...] = ("espeak", "piper")  # which engines to use
    workers: int = 2  # processes

    def __post_init__(self):
        self._verify()

    def _verify(self):
        if self.hours_source < 0 or self.hours_target < 0 or self.hours_source + self.hours_target <= 0:
            raise ValueError("hours_source and hours_target must be >= 0 and not both 0")
        if not 0 <= self.dev_fraction + self.test_fraction < 1:
            raise ValueError(f"dev_fraction + test_fraction must be in [0, 1), got {self.dev_fraction + self.test_fraction}")
        unknown = set(self.engines) - {"espeak", "piper"}
        if unknown or not self.engines:
            raise ValueError(f"engines must be a non-empty subset of espeak, piper (got {self.engines})")
        if "piper" not in self.engines and self.piper_fraction > 0:
            raise ValueError("piper_fraction > 0 and engines without piper can't be given together")
        if "espeak" not in self.engines and self.piper_fraction < 1:
            raise ValueError("engines without espeak needs piper_fraction = 1")
        if self.drift < 0 or self.source_drift < 0:
            raise ValueError("drift and source_drift must be >= 0")
        if self.workers < 1:
            raise ValueError("workers must be >= 1")


def _uid(domain: str, split: str, i: int) -> str:
    return f"{domain}-{split}-{i:06d}"


def _make_one(job: tuple) -> dict:
    """Worker: synthesize, perturb and write one utterance; returns its record (+ timing)."""
    from edgekd.synth import effects, engines, text

    opts, domain, split, i, out_dir = job
    key = f"{opts.seed}/{domain}/{split}/{i}"
    rng = random.Random(key)
    nrng = np.random.default_rng(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little"))
    spoken, transcript = text.make_transcript(rng)
    use_piper = rng.random() < opts.piper_fraction
    held_out = domain == "source" and split == "test"
    voice = engines.sample_piper_voice(rng) if use_piper else engines.sample_espeak_voice(rng, held_out)
    t0 = time.process_time()
    x = engines.synthesize(spoken, voice, seed=rng.getrandbits(32))
    synth_cpu = time.process_time() - t0
    x = x / (np.max(np.abs(x)) + 1e-9) * 0.5
    tags = {"engine": voice.engine, "voice": voice.name, "rate": voice.rate, "pitch": voice.pitch}
    if domain == "source" and split == "train" and opts.speed_perturb:
        f = float(rng.choice([0.9, 1.0, 1.1]))
        x, tags["speed"] = effects.speed(x, f), f
    augment = split == "train" and rng.random() < opts.source_drift_fraction
    strength = opts.drift if domain == "target" else (opts.source_drift if augment else 0.0)
    params = effects.drift_params(nrng, strength)
    x = effects.apply_drift(x, nrng, params)
    tags.update(params)
    path = Path(out_dir) / domain / "wav" / split / f"{_uid(domain, split, i)}.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    import soundfile as sf

    sf.write(str(path), np.clip(x, -1, 1), 16000, subtype="PCM_16", format="WAV")
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    return {"id": _uid(domain, split, i), "audio": str(path), "duration": len(x) / 16000, "text": transcript,
            "speaker": voice.speaker, "md5": md5, "tags": tags, "engine": voice.engine, "cpu": synth_cpu}


def _split_hours(opts: SynthOptions, domain: str) -> dict[str, float]:
    total = opts.hours_source if domain == "source" else opts.hours_target
    dev, test = total * opts.dev_fraction, total * opts.test_fraction
    return {"train": total - dev - test, "dev": dev, "test": test}


def run_synth(opts: SynthOptions, out_dir: str | Path, progress: bool = True) -> Path:
    """Make the corpus; returns the path of `out_dir/manifest.json`."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    cpu = {"espeak": [0.0, 0.0], "piper": [0.0, 0.0]}  # engine -> [cpu s, audio s]
    total_s = 3600 * (opts.hours_source + opts.hours_target)
    bar = tqdm(total=round(total_s), unit="s audio", desc="synth", disable=not progress)
    outputs, counts = {}, {}
    ctx = mp.get_context("fork")
    with ctx.Pool(opts.workers) as pool:
        for domain, splits in SPLITS.items():
            hours = _split_hours(opts, domain)
            if hours["train"] + hours["dev"] + hours["test"] <= 0:
                continue
            for split in splits:
                goal, got, recs, i = 3600 * hours[split], 0.0, [], 0
                while got < goal or len(recs) < opts.min_split_utts:
                    # ~3 s per utterance: size the block to what is left, so little is made and thrown away
                    need = max(opts.min_split_utts - len(recs), int((goal - got) / 3.0) + 1)
                    block = max(2 * opts.workers, min(_BLOCK, need))
                    jobs = [(opts, domain, split, j, str(out_dir)) for j in range(i, i + block)]
                    i += block
                    for r in pool.imap(_make_one, jobs):  # in index order: the cut point is deterministic
                        if got >= goal and len(recs) >= opts.min_split_utts:
                            Path(r["audio"]).unlink()  # made in parallel past the cut
                            continue
                        recs.append(r)
                        got += r["duration"]
                        cpu[r["engine"]][0] += r["cpu"]
                        cpu[r["engine"]][1] += r["duration"]
                        bar.update(round(r["duration"]))
                utts = [Utterance(id=r["id"], audio=r["audio"], duration=r["duration"], sample_rate=16000,
                                  channels=1, text=r["text"], speaker=r["speaker"], domain=domain, md5=r["md5"],
                                  tags=r["tags"]) for r in recs]
                name = f"{domain}/{split}.jsonl"
                if domain == "target" and split == "train":
                    write_manifest(out_dir / "target/train.ref.jsonl", utts)
                    outputs["target/train.ref"] = "target/train.ref.jsonl"
                    utts = [replace(u, text=None) for u in utts]
                write_manifest(out_dir / name, utts)
                outputs[f"{domain}/{split}"] = name
                counts[f"{domain}/{split}"] = {"utterances": len(utts), "hours": round(got / 3600, 4)}
    bar.close()
    wall = time.time() - t_start
    speed = {e: {"audio_s": round(a, 1), "cpu_s": round(c, 2), "audio_s_per_cpu_s": round(a / c, 1) if c else None}
             for e, (c, a) in cpu.items() if a}
    audio_total = sum(a for _, a in cpu.values())
    m = StageManifest(stage="synth", config=to_dict(opts), outputs=outputs,
                      metrics={"splits": counts, "engine_speed": speed,
                               "realtime_factor_wall": round(audio_total / wall, 1)},
                      timings={"wall_s": round(wall, 2)})
    return m.save(out_dir)
