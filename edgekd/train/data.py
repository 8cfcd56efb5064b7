"""Training data: a log-mel feature cache, length-bucketed batches, SpecAugment.

Features are computed once per (manifest, featurizer) into one fp16 array (frames of every
utterance concatenated) plus an index, so epochs never decode audio again. Bad audio found
while caching is quarantined, and the rest is cached.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgekd.atomic import atomic_path, atomic_write
from edgekd.audio import AudioError, FeaturizerConfig, Quarantine, featurize, load_audio
from edgekd.manifest import Utterance


@dataclass
class FeatureSet:
    """Cached features of a manifest: `get(i)` -> (T, n_mels) float32 array."""

    ids: list[str]
    texts: list[str | None]
    offsets: np.ndarray  # (N,) int64 start frame of each utterance
    lengths: np.ndarray  # (N,) int64 frames
    feats: np.ndarray  # (total_frames, n_mels) float16 (memory-mapped)

    def __len__(self) -> int:
        return len(self.ids)

    def get(self, i: int) -> np.ndarray:
        o, n = int(self.offsets[i]), int(self.lengths[i])
        return np.asarray(self.feats[o : o + n], dtype=np.float32)

    def stats(self, max_frames: int = 200_000) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-band mean/std over (up to) the first `max_frames` frames — the model's input CMVN."""
        x = np.asarray(self.feats[:max_frames], dtype=np.float64)
        return torch.tensor(x.mean(0), dtype=torch.float32), torch.tensor(x.std(0), dtype=torch.float32)


def cache_features(utts: list[Utterance], cfg: FeaturizerConfig, cache_dir: str | Path,
                   quarantine: Quarantine | None = None, batch: int = 16, progress: bool = True) -> FeatureSet:
    """Compute (or reuse) the cache for `utts` with featurizer `cfg` under `cache_dir`.

    Under torchrun only rank 0 computes it; the other ranks wait, then map the finished files
    (two ranks writing the same cache raced on its temp files and killed a DDP run).
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        if dist.get_rank() == 0:
            fs = _build_cache(utts, cfg, cache_dir, quarantine, batch, progress)
            dist.barrier()
            return fs
        dist.barrier()
        return _build_cache(utts, cfg, cache_dir, None, batch, False)  # reuses rank 0's cache
    return _build_cache(utts, cfg, cache_dir, quarantine, batch, progress)


def _build_cache(utts: list[Utterance], cfg: FeaturizerConfig, cache_dir: str | Path,
                 quarantine: Quarantine | None, batch: int, progress: bool) -> FeatureSet:
    from tqdm import tqdm

    key = hashlib.sha256(json.dumps([cfg.to_dict(), [(u.id, u.audio, u.md5) for u in utts]],
                                    sort_keys=True).encode()).hexdigest()[:16]
    cache_dir = Path(cache_dir) / key
    index_path = cache_dir / "index.json"
    if index_path.exists():
        return _open_cache(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    chunks, ids, texts, lengths = [], [], [], []
    for s in tqdm(range(0, len(utts), batch), desc="features", unit="batch", disable=not progress):
        good, waves = [], []
        for u in utts[s : s + batch]:
            try:
                waves.append(load_audio(u.audio, cfg.sample_rate))
                good.append(u)
            except AudioError as e:
                if quarantine is not None:
                    quarantine.add_error(u.id, e)
        if not good:
            continue
        feats, lens = featurize(waves, cfg)
        for u, f, n in zip(good, feats, lens):
            chunks.append(f[: int(n)].numpy().astype(np.float16))
            ids.append(u.id)
            texts.append(u.text)
            lengths.append(int(n))
    allf = np.concatenate(chunks) if chunks else np.zeros((0, cfg.n_mels), np.float16)
    with atomic_path(cache_dir / "feats.npy") as tmp:  # per-process temp names: concurrent jobs can't clash
        np.save(tmp, allf)
    atomic_write(index_path, json.dumps({"ids": ids, "texts": texts, "lengths": lengths}))  # last: the cache is complete
    return _open_cache(cache_dir)


def _open_cache(cache_dir: Path) -> FeatureSet:
    idx = json.loads((cache_dir / "index.json").read_text())
    lengths = np.asarray(idx["lengths"], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if len(lengths) else lengths
    feats = np.load(cache_dir / "feats.npy", mmap_mode="r")
    return FeatureSet(idx["ids"], idx["texts"], offsets, lengths, feats)


class BucketBatchSampler:
    """Batches of similar length, at most `max_frames` padded frames each; reshuffled per epoch.

    Deterministic from (seed, epoch); `rank`/`world` shard the batches for DDP (each rank gets
    the same number of batches). `state()`/`load_state()` resume mid-epoch.
    """

    def __init__(self, lengths: np.ndarray, max_frames: int, seed: int = 0, rank: int = 0, world: int = 1,
                 shuffle: bool = True):
        self.lengths = np.asarray(lengths)
        self.max_frames = max_frames
        self.seed, self.rank, self.world, self.shuffle = seed, rank, world, shuffle
        self.epoch, self.pos = 0, 0

    def _batches(self, epoch: int) -> list[list[int]]:
        rng = random.Random(self.seed * 100003 + epoch)
        order = sorted(range(len(self.lengths)), key=lambda i: (int(self.lengths[i]), rng.random()))
        batches, cur, cur_max = [], [], 0
        for i in order:
            m = max(cur_max, int(self.lengths[i]))
            if cur and m * (len(cur) + 1) > self.max_frames:
                batches.append(cur)
                cur, m = [], int(self.lengths[i])
            cur.append(i)
            cur_max = m
        if cur:
            batches.append(cur)
        if self.shuffle:
            rng.shuffle(batches)
        n = len(batches) // self.world * self.world or len(batches)  # equal count per rank
        return batches[self.rank : n : self.world]

    def __iter__(self):
        """Yield (epoch, position, batch indices) forever, advancing the epoch."""
        while True:
            batches = self._batches(self.epoch)
            while self.pos < len(batches):
                b = batches[self.pos]
                self.pos += 1
                yield self.epoch, self.pos, b
            self.epoch, self.pos = self.epoch + 1, 0

    def batches_per_epoch(self) -> int:
        return len(self._batches(0))

    def state(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state(self, s: dict) -> None:
        self.epoch, self.pos = int(s["epoch"]), int(s["pos"])


def collate(fs: FeatureSet, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices -> padded features (B, T, F) float32 and lengths (B,) int64."""
    lens = torch.tensor([int(fs.lengths[i]) for i in idx], dtype=torch.int64)
    x = torch.zeros(len(idx), int(lens.max()), fs.feats.shape[1])
    for j, i in enumerate(idx):
        x[j, : lens[j]] = torch.from_numpy(fs.get(i))
    return x, lens


def spec_augment(x: torch.Tensor, lens: torch.Tensor, gen: torch.Generator, freq_masks: int = 2,
                 freq_width: int = 15, time_mask_frac: float = 0.05, max_time_masks: int = 10) -> torch.Tensor:
    """SpecAugment (Park et al. 2019, adaptive time masks): masked cells are set to the utterance's
    mean so the masks carry no level information. x: (B, T, F) -> same shape, a new tensor."""
    x = x.clone()
    b, t, f = x.shape
    for i in range(b):
        n = int(lens[i])
        if n == 0:
            continue
        fill = x[i, :n].mean()
        for _ in range(freq_masks):
            w = int(torch.randint(0, freq_width + 1, (1,), generator=gen))
            f0 = int(torch.randint(0, max(1, f - w), (1,), generator=gen))
            x[i, :n, f0 : f0 + w] = fill
        width = max(1, int(n * time_mask_frac))
        for _ in range(min(max_time_masks, max(1, n // 100))):
            w = int(torch.randint(0, width + 1, (1,), generator=gen))
            t0 = int(torch.randint(0, max(1, n - w), (1,), generator=gen))
            x[i, t0 : t0 + w] = fill
    return x


def seconds(fs: FeatureSet, idx: list[int], frame_rate: float) -> float:
    return float(sum(int(fs.lengths[i]) for i in idx)) / frame_rate
