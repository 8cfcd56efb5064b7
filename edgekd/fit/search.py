"""`run_fit`: cost, prune the over-budget, proxy-train, rank, train the best fully, pick per device.

Every step writes its result under the fit folder and is skipped when it is already there, so
a killed fit resumes where it stopped (training itself resumes through `edgekd.train.loop`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import yaml

from edgekd.atomic import atomic_write
from edgekd.errors import EdgekdError
from edgekd.fit.budget import Budget
from edgekd.fit.report import write_results
from edgekd.fit.space import (
    CHUNKS_MS,
    DEPTHS,
    PRECISIONS,
    PRESETS,
    PRUNE_RATIOS,
    STREAMING_PRECISIONS,
    WIDTHS,
    Arch,
    architectures,
    cost_variants,
    variants,
)
from edgekd.manifest import StageManifest
from edgekd.models.streaming import chunk_frames


@dataclass(frozen=True)
class FitOptions:
    presets: tuple[str, ...] = PRESETS  # student presets searched besides the width x depth grid
    widths: tuple[int, ...] = WIDTHS
    depths: tuple[int, ...] = DEPTHS
    precisions: tuple[str, ...] = PRECISIONS
    prune_ratios: tuple[float, ...] = PRUNE_RATIOS
    chunks_ms: tuple[int, ...] = CHUNKS_MS  # streaming budgets without chunk_ms search these
    proxy_steps: int = 150  # short KD run per architecture
    full_steps: int = 1000  # full KD run of the best `top_k`
    top_k: int = 3  # architectures trained fully per device
    workers: int = 2  # proxy runs at once (one thread each)
    lr: float = 2e-3
    max_frames: int = 6000
    precision: str = "fp32"  # training autocast: "bf16" on AVX-512 BF16 CPUs (1.5-1.8x the step rate here)
    measure: bool = True  # host-pinned runs of winners and near-budget candidates
    seconds: float = 10.0  # audio per costed/measured inference
    verify_utts: int = 50  # test utterances the winner's export is verified on (plus >= 30 s of long audio)
    # Pipeline only (`edgekd run`): budget blocks as in edgekd.fit.budget; none = no fit stage.
    budgets: tuple[dict, ...] = ()

    def __post_init__(self):
        self._verify()

    def _verify(self):
        if self.proxy_steps < 1 or self.full_steps < self.proxy_steps or self.top_k < 1 or self.workers < 1:
            raise ValueError("need proxy_steps >= 1, full_steps >= proxy_steps, top_k >= 1, workers >= 1")
        if not self.widths or not self.depths or not self.precisions or not self.chunks_ms:
            raise ValueError("widths, depths, precisions and chunks_ms must not be empty")


def _distil(job: tuple) -> dict:
    """One KD run in a worker process (one torch thread): returns the run's best dev scores."""
    preset, steps, soft_targets, out, dev, human, lr, max_frames, threads, precision, streaming = job
    from edgekd.distil import DistilOptions, run_distil
    from edgekd.train.chunks import ChunkTraining
    from edgekd.train.loop import LoopOptions

    if not (Path(out) / "manifest.json").exists():
        loop = LoopOptions(max_steps=steps, lr=lr, warmup_steps=max(1, steps // 10), eval_every=steps,
                           ckpt_every=max(1, steps // 2), threads=threads, precision=precision, progress=False)
        # streaming: dynamic chunks, dev CER scored chunk-wise (ChunkTraining.eval_chunk)
        run_distil(DistilOptions(preset=preset, max_frames=max_frames, loop=loop,
                                 streaming=ChunkTraining() if streaming else None), soft_targets, out,
                   human_labels=human, dev_manifest=dev)
    return StageManifest.load(out).metrics["best"] or {}


def run_fit(opts: FitOptions, budgets: list[Budget], soft_targets: str | Path, out_dir: str | Path, *,
            dev_manifest: str | Path, test_manifest: str | Path, human_labels: str | Path | None = None,
            targets: dict | None = None, log=print) -> Path:
    """`targets`: device name -> `edgekd.profile.remote.SshTarget` for devices reachable over ssh:
    their winner and near-budget candidates are also measured on the device, and that figure
    decides whether a candidate meets its RTF budget."""
    from edgekd.audio import FeaturizerConfig
    from edgekd.profile.devices import load_device
    from edgekd.softtargets import SoftTargets

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    st = SoftTargets(soft_targets)
    featurizer = FeaturizerConfig.from_dict(st.meta["featurizer"]) if "featurizer" in st.meta else FeaturizerConfig()
    devices = {b.device: load_device(b.device) for b in budgets}
    from edgekd.train.chunks import ChunkTraining

    # offline architectures for offline budgets, their streaming twins for streaming ones
    grid = (len(st.tokens), featurizer.n_mels, opts.widths, opts.depths, opts.presets)
    archs = ((architectures(*grid) if any(not b.streaming for b in budgets) else []) +
             (architectures(*grid, streaming=ChunkTraining()) if any(b.streaming for b in budgets) else []))
    chunks = sorted({c for b in budgets if b.streaming for c in ((b.chunk_ms,) if b.chunk_ms else opts.chunks_ms)})
    for c in chunks:  # a chunk that is not whole output frames: one line before any work
        chunk_frames(archs[-1].dims, c, featurizer.frame_rate)
    precisions = {False: opts.precisions, True: tuple(p for p in opts.precisions if p in STREAMING_PRECISIONS)}

    def variants_of(a: Arch, b: Budget | None = None):
        vs = variants(a, precisions[a.streaming], opts.prune_ratios, chunks)
        return [v for v in vs if b is None or not b.chunk_ms or v.chunk_ms == b.chunk_ms]

    def serves(a: Arch, b: Budget) -> bool:
        return a.streaming == b.streaming

    presets = out / "presets"
    presets.mkdir(exist_ok=True)
    for a in archs:  # each architecture is a preset file: distil and checkpoints name it
        atomic_write(presets / f"{a.name}.yaml", yaml.safe_dump({k: v for k, v in dataclasses.asdict(a.dims).items()
                                                               if k not in ("vocab_size", "n_mels") and v != ()}))

    # 1. cost model: every variant of every architecture, per device, before any training
    def key(a: Arch, b: Budget) -> str:
        return f"{a.name}@{b.device}-t{b.threads or devices[b.device].threads}"

    costs: dict[str, dict] = {}
    for i, a in enumerate(archs):
        mine = [b for b in budgets if serves(a, b)]
        todo = [b for b in mine if not (out / "cost" / f"{key(a, b)}.json").exists()]
        if todo:  # one export per architecture (and chunk), estimated for every device still missing
            got = cost_variants(a, variants_of(a), [(devices[b.device], b.threads) for b in todo],
                                featurizer=featurizer, tokens=st.tokens, seconds=opts.seconds)
            for b, c in zip(todo, got):
                atomic_write(out / "cost" / f"{key(a, b)}.json", json.dumps(c, indent=1))
        for b in mine:
            costs[key(a, b)] = json.loads((out / "cost" / f"{key(a, b)}.json").read_text())
        log(f"fit: costed {i + 1}/{len(archs)} architectures")
    rows = []
    for a in archs:
        for b in (b for b in budgets if serves(a, b)):
            c = costs[key(a, b)]
            for v in variants_of(a, b):
                rows.append({"device": b.device, "arch": a.name, "variant": v.name, "prune": v.prune,
                             "precision": v.precision, "chunk_ms": v.chunk_ms, **c[v.name],
                             "fits": b.fits(c[v.name])})
    for b in budgets:
        if not any(r["fits"] for r in rows if r["device"] == b.device):
            small = min((r for r in rows if r["device"] == b.device), key=lambda r: r["rtf"])
            raise EdgekdError(f"fit: nothing in the search space meets the {b.device} budget {b.limits()}; the "
                              f"cheapest candidate {small['variant']} needs rtf {small['rtf']:.3g}, "
                              f"memory {small['memory_mb']:.3g} MB, size {small['size_mb']:.3g} MB")
    trainable = [a for a in archs if any(r["fits"] for r in rows if r["arch"] == a.name)]
    log(f"fit: {len(trainable)}/{len(archs)} architectures have a variant under budget; "
        f"{len(archs) - len(trainable)} pruned without training")

    # 2. proxy runs, several at once, one thread each
    def job(a: Arch, steps: int, kind: str):
        return (str(presets / f"{a.name}.yaml"), steps, str(soft_targets), str(out / "train" / f"{a.name}-{kind}"),
                str(dev_manifest), str(human_labels) if human_labels else None, opts.lr, opts.max_frames, 1,
                opts.precision, a.streaming)

    # one pool for the proxy and the full runs: each spawned worker imports torch once
    with ProcessPoolExecutor(opts.workers, mp_context=get_context("spawn")) as ex:
        proxy = dict(zip([a.name for a in trainable], ex.map(_distil, [job(a, opts.proxy_steps, "proxy")
                                                                       for a in trainable])))
        log("fit: proxy dev CER " + ", ".join(f"{k} {v.get('cer', 1):.3f}" for k, v in proxy.items()))

        # 3. the best top_k per device (among those with a variant under that device's budget) train fully
        chosen: list[str] = []
        for b in budgets:
            ok = [a.name for a in trainable
                  if any(r["fits"] for r in rows if r["arch"] == a.name and r["device"] == b.device)]
            for name in sorted(ok, key=lambda n: proxy[n].get("cer", 1.0))[: opts.top_k]:
                if name not in chosen:
                    chosen.append(name)
        by_name = {a.name: a for a in archs}
        full = dict(zip(chosen, ex.map(_distil, [job(by_name[n], opts.full_steps, "full") for n in chosen])))
    log(f"fit: trained fully: {', '.join(chosen)}")

    # 4. build and score each variant under budget of the fully trained
    from edgekd.fit.build import build_variant, measure_host

    scores: dict[str, dict] = {}
    for n in chosen:
        for v in variants_of(by_name[n]):
            if any(r["fits"] for r in rows if r["variant"] == v.name):
                scores[v.name] = build_variant(v, out / "train" / f"{n}-full" / "model.safetensors", out / "variants",
                                            soft_targets=soft_targets, dev=dev_manifest, test=test_manifest,
                                            finetune_steps=opts.proxy_steps)
    for r in rows:
        r["wer"] = scores.get(r["variant"], {}).get("wer")
        r["cer"] = scores.get(r["variant"], {}).get("cer")

    def measure(device, onnx, threads, seconds):
        return measure_host(device, onnx, threads, seconds, target=(targets or {}).get(device.name),
                            out_dir=out / "on-device")

    return write_results(out, opts, budgets, rows, proxy, full, chosen, measure if opts.measure else None,
                         devices, soft_targets, test_manifest, t0, log)


