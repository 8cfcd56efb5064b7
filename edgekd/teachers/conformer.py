"""An edgekd conformer checkpoint used as a teacher; features come from the checkpoint's featurizer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgekd.teachers.base import TeacherOutput


class ConformerTeacher:
    def __init__(self, path: str | Path, bf16: bool = False):
        from edgekd.models import load_checkpoint

        self.ckpt = load_checkpoint(path)
        self.name = Path(path).stem
        self.tokens, self.sentencepiece = self.ckpt.tokens, self.ckpt.sentencepiece
        self.frame_rate = self.ckpt.frame_rate
        self.featurizer = self.ckpt.featurizer
        self.sample_rate = self.featurizer.sample_rate
        self.model = self.ckpt.model.eval()
        self.bf16 = bf16  # the encoder under bfloat16 autocast (teachers/runtime.py); outputs stay float32

    @torch.no_grad()
    def __call__(self, waves: list[np.ndarray]) -> TeacherOutput:
        from edgekd.audio import featurize

        feats, lens = featurize(waves, self.featurizer)
        lens = torch.clamp(lens, min=self.model.dims.min_frames)  # very short clips still give a frame
        if feats.shape[1] < self.model.dims.min_frames:
            feats = torch.nn.functional.pad(feats, (0, 0, 0, self.model.dims.min_frames - feats.shape[1]))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            enc, out_lens = self.model.encode(feats, lens)
            logits = self.model.head(enc)
        enc, logits = enc.float(), logits.float()
        mask = (torch.arange(enc.shape[1])[None, :] < out_lens[:, None]).float()[..., None]
        emb = (enc * mask).sum(1) / mask.sum(1).clamp(min=1)
        return TeacherOutput(logits, out_lens, emb)
