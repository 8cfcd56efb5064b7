"""`edgekd synth`: a reproducible labeled/unlabeled English speech corpus from pip-installable TTS.

Layout under `out_dir`:
    source/{train,dev,test}.jsonl      labeled; espeak (many accents/variants) + clean piper (+ flite);
                                       source/test uses held-out espeak voice variants (and piper)
    source/test_unseen.jsonl           with held_out_voices: test sentences in voices never trained on
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

from edgekd.audio import SAMPLE_RATE  # the engines resample their speech to it (synth/engines.py)
from edgekd.config import to_dict
from edgekd.errors import EdgekdError
from edgekd.manifest import StageManifest, Utterance, write_manifest

SPLITS = {"source": ("train", "dev", "test"), "target": ("train", "dev", "test")}  # + source test_unseen
_BLOCK = 32  # utterances generated per scheduling block


@dataclass(frozen=True)
class SynthOptions:
    seed: int = 0  # same seed -> byte-identical corpus
    hours_source: float = 0.2  # labeled source-domain audio, all splits
    hours_target: float = 0.2  # target-domain audio, all splits
    dev_fraction: float = 0.05  # of each domain's hours
    test_fraction: float = 0.1  # of each domain's hours
    min_split_utts: int = 4  # at least this many utterances in every split
    text: str = "template"  # "template": the demo's sentence templates; "open": open-vocabulary text (opentext.py)
    piper_fraction: float = 0.3  # share of utterances spoken by piper
    flite_fraction: float = 0.0  # share spoken by flite (needs engines to include flite); the rest espeak
    held_out_voices: tuple[str, ...] = ()  # "flite:rms": never in train/dev/test; spoken in source/test_unseen
    hours_unseen: float = 0.0  # source/test_unseen: test sentences in the held-out voices
    drift: float = 1.0  # target acoustic drift strength: 0 none, 1 default, >1 harsher
    source_drift: float = 0.0  # mild drift on part of source train (augmentation); 0 = all clean
    source_drift_fraction: float = 0.5  # share of source train utterances that get source_drift
    speed_perturb: bool = False  # source train: speed x0.9/1.0/1.1
    pitch_perturb: float = 0.0  # share of source train shifted by 1-3 semitones up or down (vocal-tract/pitch)
    codec_fraction: float = 0.0  # share of source train through a codec/bandwidth effect (effects.CODECS)
    engines: tuple[str, ...] = ("espeak", "piper")  # which engines to use
    workers: int = 2  # processes

    def __post_init__(self):
        self._verify()

    def _verify(self):
        if self.hours_source < 0 or self.hours_target < 0 or self.hours_source + self.hours_target <= 0:
            raise ValueError("hours_source and hours_target must be >= 0 and not both 0")
        if not 0 <= self.dev_fraction + self.test_fraction < 1:
            raise ValueError(f"dev_fraction + test_fraction must be in [0, 1), got {self.dev_fraction + self.test_fraction}")
        if self.text not in ("template", "open"):
            raise ValueError(f"text must be 'template' or 'open', got {self.text!r}")
        unknown = set(self.engines) - {"espeak", "piper", "flite"}
        if unknown or not self.engines:
            raise ValueError(f"engines must be a non-empty subset of espeak, piper, flite (got {self.engines})")
        for name, frac in (("piper", self.piper_fraction), ("flite", self.flite_fraction)):
            if name not in self.engines and frac > 0:
                raise ValueError(f"{name}_fraction > 0 and engines without {name} can't be given together")
        if self.piper_fraction + self.flite_fraction > 1 or min(self.piper_fraction, self.flite_fraction) < 0:
            raise ValueError("piper_fraction and flite_fraction must be >= 0 and sum to <= 1")
        if "espeak" not in self.engines and self.piper_fraction + self.flite_fraction < 1:
            raise ValueError("engines without espeak needs piper_fraction + flite_fraction = 1")
        for v in self.held_out_voices:
            if not v.startswith("flite:") or v.split(":", 1)[1] not in engines_mod().FLITE_VOICES:
                raise ValueError(f"held_out_voices: {v!r} is not a flite voice (flite:awb|rms|slt|kal16)")
        if self.hours_unseen > 0 and not self.held_out_voices:
            raise ValueError("hours_unseen > 0 needs held_out_voices")
        if self.drift < 0 or self.source_drift < 0 or self.hours_unseen < 0:
            raise ValueError("drift, source_drift and hours_unseen must be >= 0")
        if not (0 <= self.pitch_perturb <= 1 and 0 <= self.codec_fraction <= 1):
            raise ValueError("pitch_perturb and codec_fraction are shares in [0, 1]")
        if self.workers < 1:
            raise ValueError("workers must be >= 1")


def engines_mod():
    from edgekd.synth import engines

    return engines


def _uid(domain: str, split: str, i: int) -> str:
    return f"{domain}-{split}-{i:06d}"


def _voice(opts: SynthOptions, rng: random.Random, domain: str, split: str):
    """Pick the engine and voice. Template mode draws as edgekd 0.1 did (same corpus for a seed)."""
    engines = engines_mod()
    if split == "test_unseen":
        return engines.sample_flite_voice(rng, tuple(v.split(":", 1)[1] for v in opts.held_out_voices))
    if rng.random() < opts.piper_fraction:
        return engines.sample_piper_voice(rng)
    rest = 1 - opts.piper_fraction
    held_out = domain == "source" and split == "test"
    if opts.flite_fraction > 0 and rng.random() < opts.flite_fraction / rest and not held_out:
        held = {v.split(":", 1)[1] for v in opts.held_out_voices}
        return engines.sample_flite_voice(rng, tuple(v for v in engines.FLITE_VOICES if v not in held))
    return engines.sample_espeak_voice(rng, held_out)


def _make_one(job: tuple) -> dict:
    """Worker: synthesize, perturb and write one utterance; returns its record (+ timing)."""
    from edgekd.synth import effects, opentext, text

    opts, domain, split, i, out_dir = job
    key = f"{opts.seed}/{domain}/{split}/{i}"
    rng = random.Random(key)
    nrng = np.random.default_rng(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little"))
    if opts.text == "open":
        spoken, transcript = opentext.make_transcript(rng, "test" if split == "test_unseen" else split)
    else:
        spoken, transcript = text.make_transcript(rng)
    voice = _voice(opts, rng, domain, split)
    t0 = time.process_time()
    x = engines_mod().synthesize(spoken, voice, seed=rng.getrandbits(32))
    synth_cpu = time.process_time() - t0
    x = x / (np.max(np.abs(x)) + 1e-9) * 0.5
    tags = {"engine": voice.engine, "voice": voice.name, "rate": voice.rate, "pitch": voice.pitch}
    train_aug = domain == "source" and split == "train"
    if train_aug and opts.speed_perturb:
        f = float(rng.choice([0.9, 1.0, 1.1]))
        x, tags["speed"] = effects.speed(x, f), f
    if train_aug and opts.pitch_perturb and rng.random() < opts.pitch_perturb:
        st = round(rng.choice([-1, 1]) * rng.uniform(1.0, 3.0), 2)
        x, tags["pitch_semitones"] = effects.pitch_shift(x, st), st
    if train_aug and opts.codec_fraction and rng.random() < opts.codec_fraction:
        tags["codec"] = rng.choice(effects.CODECS)
        x = effects.codec(x, tags["codec"], nrng)
    augment = split == "train" and rng.random() < opts.source_drift_fraction
    strength = opts.drift if domain == "target" else (opts.source_drift if augment else 0.0)
    params = effects.drift_params(nrng, strength)
    x = effects.apply_drift(x, nrng, params)
    tags.update(params)
    path = Path(out_dir) / domain / "wav" / split / f"{_uid(domain, split, i)}.wav"
    import soundfile as sf

    from edgekd.atomic import atomic_path

    with atomic_path(path) as tmp:  # a full disk leaves no 0-byte WAV that a rerun would trust
        try:
            sf.write(str(tmp), np.clip(x, -1, 1), SAMPLE_RATE, subtype="PCM_16", format="WAV")
        except sf.LibsndfileError:  # libsndfile reports ENOSPC/EROFS as its own "System error"
            from edgekd.atomic import folder_error, write_error

            raise write_error(path, folder_error(path.parent)) from None
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    return {"id": _uid(domain, split, i), "audio": str(path), "duration": len(x) / SAMPLE_RATE, "text": transcript,
            "speaker": voice.speaker, "md5": md5, "tags": tags, "engine": voice.engine, "cpu": synth_cpu}


def _split_hours(opts: SynthOptions, domain: str) -> dict[str, float]:
    total = opts.hours_source if domain == "source" else opts.hours_target
    dev, test = total * opts.dev_fraction, total * opts.test_fraction
    hours = {"train": total - dev - test, "dev": dev, "test": test}
    if domain == "source" and opts.hours_unseen > 0:
        hours["test_unseen"] = opts.hours_unseen
    return hours


def _usable(opts: SynthOptions) -> SynthOptions:
    """Drop engines this machine lacks, with one line each; refuse when nothing is left."""
    missing = {e: why for e, why in engines_mod().available().items() if why and e in opts.engines}
    if not missing:
        return opts
    for e, why in missing.items():
        print(f"synth: skipping engine {e}: {why}", flush=True)
    kept = tuple(e for e in opts.engines if e not in missing)
    piper = 0.0 if "piper" in missing else opts.piper_fraction
    flite = 0.0 if "flite" in missing else opts.flite_fraction
    if "espeak" not in kept and piper + flite < 1:
        raise EdgekdError(f"synth: engines {', '.join(missing)} missing and espeak not chosen to replace them")
    return replace(opts, engines=kept, piper_fraction=piper,
                   flite_fraction=flite,
                   held_out_voices=() if "flite" in missing else opts.held_out_voices,
                   hours_unseen=0.0 if "flite" in missing else opts.hours_unseen)


def run_synth(opts: SynthOptions, out_dir: str | Path, progress: bool = True) -> Path:
    """Make the corpus; returns the path of `out_dir/manifest.json`."""
    from tqdm import tqdm

    from edgekd.atomic import ensure_dir

    out_dir = ensure_dir(out_dir)
    opts = _usable(opts)
    if opts.text == "open":  # read the text once here: forked workers inherit it (~7 s each otherwise)
        from edgekd.synth import opentext

        opentext.sentence_pool()
    t_start = time.time()
    cpu = {"espeak": [0.0, 0.0], "piper": [0.0, 0.0], "flite": [0.0, 0.0]}  # engine -> [cpu s, audio s]
    total_s = 3600 * (opts.hours_source + opts.hours_target + opts.hours_unseen)
    bar = tqdm(total=round(total_s), unit="s audio", desc="synth", disable=not progress)
    outputs, counts = {}, {}
    ctx = mp.get_context("fork")
    try:
        _synthesize(opts, out_dir, ctx, bar, outputs, counts, cpu)
    except BaseException:
        # The pool is terminated on an error (a full disk in one worker): a worker killed in the
        # middle of a WAV leaves its temp file, which no one would ever commit. Its pid is gone now.
        from edgekd.atomic import sweep_stale

        for d in {p.parent for p in Path(out_dir).rglob("*.tmp-*")}:
            sweep_stale(d)
        raise
    if opts.text == "open":  # the text an LM for this corpus may be built from: train sentences only
        opentext.write_split_text("train", out_dir / "text/train.txt")
        outputs["text/train"] = "text/train.txt"
    wall = time.time() - t_start
    speed = {e: {"audio_s": round(a, 1), "cpu_s": round(c, 2), "audio_s_per_cpu_s": round(a / c, 1) if c else None}
             for e, (c, a) in cpu.items() if a}
    audio_total = sum(a for _, a in cpu.values())
    m = StageManifest(stage="synth", config=to_dict(opts), outputs=outputs,
                      metrics={"splits": counts, "engine_speed": speed,
                               "realtime_factor_wall": round(audio_total / wall, 1)},
                      timings={"wall_s": round(wall, 2)})
    return m.save(out_dir)


def _synthesize(opts: SynthOptions, out_dir: Path, ctx, bar, outputs: dict, counts: dict, cpu: dict) -> None:
    """The splits, made by a pool of forked workers; fills `outputs`, `counts` and `cpu`."""
    with bar, ctx.Pool(opts.workers) as pool:  # the bar ends its line before any error is printed
        for domain, splits in SPLITS.items():
            hours = _split_hours(opts, domain)
            if hours["train"] + hours["dev"] + hours["test"] <= 0:
                continue
            for split in hours:
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
                utts = [Utterance(id=r["id"], audio=r["audio"], duration=r["duration"], sample_rate=SAMPLE_RATE,
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
