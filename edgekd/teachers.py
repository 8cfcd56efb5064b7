"""Teachers: anything that turns 16 kHz waveforms into per-frame CTC posteriors.

One interface for the project's own conformer checkpoints and external models (Hugging Face
CTC models via `hf:<hub id or local dir>`), so pseudo-labeling and distillation never care
which family a teacher is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from edgekd.errors import EdgekdError


@dataclass
class TeacherOutput:
    logits: torch.Tensor  # (B, T', V) float32, before log_softmax
    lengths: torch.Tensor  # (B,) int64 valid output frames
    embeddings: torch.Tensor  # (B, D) mean-pooled encoder output over valid frames (for drift)


class Teacher(Protocol):
    name: str
    tokens: tuple[str, ...]  # id -> symbol, id 0 the CTC blank
    frame_rate: float  # output frames per second

    def __call__(self, waves: list[np.ndarray]) -> TeacherOutput:
        """Batch of 16 kHz mono float32 waves -> logits/lengths/embeddings."""
        ...


class ConformerTeacher:
    """An edgekd checkpoint used as a teacher; features come from the checkpoint's featurizer."""

    def __init__(self, path: str | Path):
        from edgekd.models import load_checkpoint

        self.ckpt = load_checkpoint(path)
        self.name = Path(path).stem
        self.tokens = self.ckpt.tokens
        self.frame_rate = self.ckpt.frame_rate
        self.model = self.ckpt.model.eval()

    @torch.no_grad()
    def __call__(self, waves: list[np.ndarray]) -> TeacherOutput:
        from edgekd.audio import featurize

        feats, lens = featurize(waves, self.ckpt.featurizer)
        lens = torch.clamp(lens, min=self.model.dims.min_frames)  # very short clips still give a frame
        if feats.shape[1] < self.model.dims.min_frames:
            feats = torch.nn.functional.pad(feats, (0, 0, 0, self.model.dims.min_frames - feats.shape[1]))
        enc, out_lens = self.model.encode(feats, lens)
        mask = (torch.arange(enc.shape[1])[None, :] < out_lens[:, None]).float()[..., None]
        emb = (enc * mask).sum(1) / mask.sum(1).clamp(min=1)
        return TeacherOutput(self.model.head(enc), out_lens, emb)


def load_teacher(spec: str | Path) -> Teacher:
    """`path/to/model.safetensors` (edgekd checkpoint) or `hf:<hub id or local dir>`."""
    spec = str(spec)
    if spec.startswith("hf:"):
        try:
            from edgekd.models.hf import HFCTCTeacher
        except ImportError as e:
            raise EdgekdError(f"teacher {spec}: the Hugging Face adapter needs `pip install 'edgekd[hf]'` ({e})") from None
        return HFCTCTeacher(spec[3:])
    if not Path(spec).exists():
        raise EdgekdError(f"teacher {spec}: no such checkpoint (use a .safetensors path or hf:<id or dir>)")
    return ConformerTeacher(spec)
