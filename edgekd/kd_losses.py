"""Knowledge-distillation losses for CTC students, and teacher/student frame alignment.

- `kd_loss`: frame-level KL(p_teacher^T || p_student^T) × T² (Hinton), averaged over the
  student's valid frames. The T² keeps its gradient scale comparable across temperatures.
- `annealing_mse`: Annealing-KD phase 1 (Jafari et al. 2021): MSE between the student's logits and
  the teacher's logits × T/τmax. Stored soft targets keep log-probs, which are logits minus a
  per-frame constant, so both sides are centred per frame (mean over tokens) before comparing:
  the comparison is then exact up to the dropped top-k tail.
- `align_frames`: teacher frames to the student's frame rate — average probabilities over
  groups when the teacher is finer, repeat when it is coarser, nearest frame otherwise;
  `align_features` maps hidden states the same way (averaging vectors).
- `layer_map`, `FeatureProjector`, `feature_kd_loss`: feature-based KD (FitNets; DistilBERT's
  cosine on hidden states): student layer i learns teacher layer round(i·L_t/L_s) through a
  learned linear projection (student dim -> teacher dim), per valid frame.
- `relation_kd_loss`: relation-based KD: per utterance, the frame-to-frame cosine similarity
  matrices of teacher and student, row-softmaxed at a temperature, compared by KL. It compares
  structure, not coordinates, so it needs no projection and ignores any rotation or scale of
  either side's features.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def length_mask(lengths: torch.Tensor, t: int) -> torch.Tensor:
    return torch.arange(t, device=lengths.device)[None, :] < lengths[:, None]


def kd_loss(student_logits: torch.Tensor, teacher_logp: torch.Tensor, lengths: torch.Tensor,
            temperature: float = 1.0) -> torch.Tensor:
    """(B, T, V) student logits, (B, T, V) teacher log-probs at T=1, (B,) valid frames -> scalar.

    KL(p_t || p_s) at `temperature`, × temperature², mean over valid frames.
    """
    t = temperature
    lp_s = F.log_softmax(student_logits / t, dim=-1)
    lp_t = F.log_softmax(teacher_logp / t, dim=-1)
    kl = (lp_t.exp() * (lp_t - lp_s)).sum(-1)  # (B, T)
    mask = length_mask(lengths, kl.shape[1]).float()
    return (kl * mask).sum() / mask.sum().clamp(min=1) * t * t


def annealing_mse(student_logits: torch.Tensor, teacher_logp: torch.Tensor, lengths: torch.Tensor,
                  temperature: float, tau_max: float) -> torch.Tensor:
    """Annealing-KD phase-1 loss: MSE(student logits, teacher logits × T/τmax), per-frame centred."""
    zs = student_logits - student_logits.mean(-1, keepdim=True)
    zt = (teacher_logp - teacher_logp.mean(-1, keepdim=True)) * (temperature / tau_max)
    se = ((zs - zt) ** 2).mean(-1)
    mask = length_mask(lengths, se.shape[1]).float()
    return (se * mask).sum() / mask.sum().clamp(min=1)


def annealing_temperature(step: int, phase1_steps: int, tau_max: int) -> int | None:
    """T for Annealing-KD phase 1 at `step` (stepping 1, 2, ..., τmax in equal stretches);
    None once phase 1 is over (phase 2: hard labels only)."""
    if step >= phase1_steps:
        return None
    return 1 + min(tau_max - 1, step * tau_max // max(phase1_steps, 1))


def align_frames(teacher_logp: torch.Tensor, n_student: int, teacher_rate: float, student_rate: float) -> torch.Tensor:
    """(T_t, V) teacher log-probs -> (n_student, V) at the student's frame rate."""
    return _align(teacher_logp, n_student, teacher_rate / student_rate, probs=True)


def align_features(teacher_feats: torch.Tensor, n_student: int, teacher_rate: float, student_rate: float) -> torch.Tensor:
    """(T_t, D) teacher hidden states -> (n_student, D): the frames `align_frames` maps, with groups
    of finer teacher frames averaged as vectors (not as probabilities)."""
    return _align(teacher_feats, n_student, teacher_rate / student_rate, probs=False)


def _align(x: torch.Tensor, n_student: int, ratio: float, probs: bool) -> torch.Tensor:
    v = x.shape[-1]
    empty = (lambda n: torch.full((n, v), -math.log(v))) if probs else (lambda n: x.new_zeros(n, v))
    if abs(ratio - round(ratio)) < 1e-6 and round(ratio) >= 1:
        m = int(round(ratio))
        if m > 1:  # teacher finer: average (probabilities, or feature vectors) over m frames
            need = n_student * m
            p = x.exp() if probs else x
            if p.shape[0] < need:
                p = torch.cat([p, p[-1:].expand(need - p.shape[0], v)]) if p.shape[0] else (
                    torch.full((need, v), 1 / v) if probs else x.new_zeros(need, v))
            p = p[:need].reshape(n_student, m, v).mean(1)
            return torch.log(p.clamp(min=1e-30)) if probs else p
        out = x
    elif abs(1 / ratio - round(1 / ratio)) < 1e-6:  # teacher coarser: repeat
        out = x.repeat_interleave(int(round(1 / ratio)), dim=0)
    else:  # nearest teacher frame to each student frame centre
        idx = torch.clamp(((torch.arange(n_student) + 0.5) * ratio).floor().long(), max=x.shape[0] - 1)
        out = x[idx]
    if out.shape[0] >= n_student:
        return out[:n_student]
    pad = out[-1:].expand(n_student - out.shape[0], v) if out.shape[0] else empty(n_student - out.shape[0])
    return torch.cat([out, pad])


def layer_map(n_student: int, n_teacher: int) -> list[int]:
    """0-based teacher layer for each student layer: student i (1-based) <- teacher round(i·L_t/L_s)."""
    if n_student < 1 or n_teacher < 1:
        raise ValueError("layer counts must be >= 1")
    # half up, not Python's half-to-even: 2.5 -> 3, so the map is monotone and evenly spread
    return [max(1, math.floor((i + 1) * n_teacher / n_student + 0.5)) - 1 for i in range(n_student)]


class FeatureProjector(torch.nn.Module):
    """One linear map (student dim -> teacher dim) per distilled student layer."""

    def __init__(self, d_student: int, d_teacher: int, n_layers: int):
        super().__init__()
        self.proj = torch.nn.ModuleList(torch.nn.Linear(d_student, d_teacher) for _ in range(n_layers))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(feats) != len(self.proj):
            raise ValueError(f"{len(feats)} student layers for {len(self.proj)} projections")
        return [p(f) for p, f in zip(self.proj, feats)]


def feature_kd_loss(student_feats: list[torch.Tensor], teacher_feats: list[torch.Tensor], lengths: torch.Tensor,
                    projector: FeatureProjector, kind: str = "cosine") -> torch.Tensor:
    """Mean over mapped layers and valid frames of 1 - cos (or MSE) between projected student and teacher."""
    if kind not in ("cosine", "mse"):
        raise ValueError(f"kind must be cosine or mse, got {kind!r}")
    total = student_feats[0].new_zeros(())
    for s, t in zip(projector(student_feats), teacher_feats):
        d = (1 - F.cosine_similarity(s, t, dim=-1)) if kind == "cosine" else ((s - t) ** 2).mean(-1)
        mask = length_mask(lengths, d.shape[1]).float()
        total = total + (d * mask).sum() / mask.sum().clamp(min=1)
    return total / len(teacher_feats)


def relation_kd_loss(student: torch.Tensor, teacher: torch.Tensor, lengths: torch.Tensor,
                     temperature: float = 0.1) -> torch.Tensor:
    """(B, T, Ds), (B, T, Dt), (B,) -> KL between row-softmaxed frame-similarity matrices, mean over
    valid rows. Padded frames are masked out of both the rows and the softmax."""
    s, t = F.normalize(student.float(), dim=-1), F.normalize(teacher.float(), dim=-1)
    valid = length_mask(lengths, s.shape[1])
    pair = valid[:, :, None] & valid[:, None, :]
    neg = torch.finfo(torch.float32).min
    ls = torch.log_softmax((s @ s.transpose(1, 2) / temperature).masked_fill(~pair, neg), -1)
    lt = torch.log_softmax((t @ t.transpose(1, 2) / temperature).masked_fill(~pair, neg), -1)
    kl = (lt.exp() * (lt - ls)).masked_fill(~pair, 0).sum(-1)  # (B, T)
    return (kl * valid).sum() / valid.sum().clamp(min=1)
