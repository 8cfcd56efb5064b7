"""An edgekd conformer checkpoint used as a teacher; features come from the checkpoint's featurizer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgekd.teachers.base import TeacherOutput


class ConformerTeacher:
    def __init__(self, path: str | Path):
        from edgekd.models import load_checkpoint

        self.ckpt = load_checkpoint(path)
        self.name = Path(path).stem
        self.tokens = self.ckpt.tokens
        self.frame_rate = self.ckpt.frame_rate
        self.featurizer = self.ckpt.featurizer
        self.sample_rate = self.featurizer.sample_rate
        self.model = self.ckpt.model.eval()

    @torch.no_grad()
    def __call__(self, waves: list[np.ndarray]) -> TeacherOutput:
        from edgekd.audio import featurize

        feats, lens = featurize(waves, self.featurizer)
        lens = torch.clamp(lens, min=self.model.dims.min_frames)  # very short clips still give a frame
        if feats.shape[1] < self.model.dims.min_frames:
            feats = torch.nn.functional.pad(feats, (0, 0, 0, self.model.dims.min_frames - feats.shape[1]))
        enc, out_lens = self.model.encode(feats, lens)
        mask = (torch.arange(enc.shape[1])[None, :] < out_lens[:, None]).float()[..., None]
        emb = (enc * mask).sum(1) / mask.sum(1).clamp(min=1)
        return TeacherOutput(self.model.head(enc), out_lens, emb)
