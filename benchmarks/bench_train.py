"""Training throughput, fp32 against bf16 autocast, side by side on real cached features.

Usage: python3 benchmarks/bench_train.py --manifest data/teacher2/source/train.jsonl --preset teacher-m --steps 12 --threads 2

Both precisions train the same model from the same initial weights on the same batches
(alternating rounds, so box noise hits both alike) and report the median seconds of audio per
second of wall time. The loss after the last step is printed as a sanity check that bf16
follows fp32; accuracy at equal steps is judged on a real run's dev WER, not here.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch

from edgekd.audio import FeaturizerConfig
from edgekd.manifest import read_manifest
from edgekd.models import load_preset
from edgekd.models.conformer import ConformerCTC
from edgekd.tokens import DEFAULT_TOKENS, Tokenizer
from edgekd.train import ctc_loss
from edgekd.train.data import BucketBatchSampler, cache_features, collate, seconds, spec_augment
from edgekd.train.loop import LoopOptions, autocast


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--preset", default="teacher-m")
    ap.add_argument("--steps", type=int, default=12, help="timed steps per precision per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-frames", type=int, default=6000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", default="runs/.feature_cache")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    fc, tok = FeaturizerConfig(), Tokenizer(DEFAULT_TOKENS)
    fs = cache_features([u for u in read_manifest(a.manifest) if u.text], fc, Path(a.cache), progress=True)
    torch.manual_seed(0)
    base = ConformerCTC(load_preset(a.preset, vocab_size=len(tok), n_mels=fc.n_mels))
    base.set_input_stats(*fs.stats())
    sampler = BucketBatchSampler(fs.lengths, a.max_frames, seed=0)
    it = iter(sampler)
    batches = [next(it)[2] for _ in range(a.steps + 2)]
    models = {p: copy.deepcopy(base) for p in ("fp32", "bf16")}
    optims = {p: torch.optim.AdamW(m.parameters(), lr=3e-4) for p, m in models.items()}
    rates: dict[str, list[float]] = {p: [] for p in models}
    losses: dict[str, float] = {}
    for r in range(a.rounds):
        for p, model in models.items():
            opts = LoopOptions(precision=p)
            gen = torch.Generator().manual_seed(r)
            audio, t0 = 0.0, None
            for i, idx in enumerate(batches):
                if i == 2:  # two warm-up steps per round, untimed
                    t0, audio = time.perf_counter(), 0.0
                x, lens = collate(fs, idx)
                x = spec_augment(x, lens, gen)
                tg = torch.tensor([t for j in idx for t in tok.encode(fs.texts[j] or "")], dtype=torch.int64)
                tl = torch.tensor([len(tok.encode(fs.texts[j] or "")) for j in idx], dtype=torch.int64)
                with autocast(opts):
                    loss = ctc_loss(model, x, lens, tg, tl)
                optims[p].zero_grad()
                loss.float().backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
                optims[p].step()
                audio += seconds(fs, idx, fc.frame_rate)
                losses[p] = float(loss.detach())
            rates[p].append(audio / (time.perf_counter() - t0))
            print(f"round {r} {p}: {rates[p][-1]:.1f} s of audio per s")
    med = {p: statistics.median(v) for p, v in rates.items()}
    print(f"\npreset {a.preset}, {a.threads} threads, batches of <= {a.max_frames} frames, {a.rounds} rounds x {a.steps} steps")
    for p in med:
        print(f"  {p}: median {med[p]:.1f} s of audio per s (rounds: {', '.join(f'{v:.1f}' for v in rates[p])}); "
              f"last loss {losses[p]:.3f}")
    print(f"  bf16 / fp32 = {med['bf16'] / med['fp32']:.2f}x")


if __name__ == "__main__":
    main()
