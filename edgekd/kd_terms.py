"""Distillation terms beyond the soft targets, for `edgekd distil` (`DistilOptions.terms`).

- **feature KD**: student layer i learns teacher layer round(i·L_t/L_s) (`kd_losses.layer_map`)
  through a learned linear projection (student dim -> teacher dim), cosine (DistilBERT) or MSE
  (FitNets), per valid frame, the teacher's frames aligned to the student's rate
  (`align_features`, the mapping the soft targets get);
- **relation KD**: the last student layer's frame-to-frame cosine similarities against the
  teacher's last layer's, row-softmaxed, KL (`relation_kd_loss`; no projection: it compares
  structure, not coordinates);
- **mutual learning** (Zhang et al. 2018, online KD): a second student (seed + 1) trains beside
  the first on the same batches and terms; each also learns KL(peer || self) at T from the
  other's posteriors (the peer's side detached in each term);
- **self-distillation** (mean teacher): an exponential moving average of the student's own
  weights (an ever-earlier checkpoint of it) teaches it by KL at T.

Teacher features are recomputed, not stored. Stored, the teacher's 12 layers of 192 dims would
be 4.6 KB per frame in fp16 (2.3 KB for the 6 layers a 6-layer student maps to) against about
8 bytes per frame for the soft targets: hundreds of times the shards. Recomputed, the teacher
runs without grad on the batch's clean (un-augmented) features; with `cache_teacher` each
utterance's mapped layers stay in RAM (fp16) after its first batch, so the teacher runs once
per utterance per run, not once per epoch. `teacher_ms` in the history is the time it took
(README: measured cost per step). Under torchrun these terms are refused: the wrapper below is
not wrapped in DDP.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from edgekd.errors import EdgekdError
from edgekd.kd_losses import FeatureProjector, align_features, feature_kd_loss, kd_loss, layer_map, relation_kd_loss


@dataclass(frozen=True)
class KDTerms:
    feature_weight: float = 0.0  # feature KD weight (0 = off)
    feature_loss: str = "cosine"  # "cosine" (1 - cos, DistilBERT) or "mse" (FitNets)
    feature_layers: str = "all"  # "all": every student layer i <- teacher round(i·L_t/L_s); "last": last <- last
    relation_weight: float = 0.0  # relation KD weight on the last layer (0 = off)
    relation_temperature: float = 0.1  # softmax temperature of the similarity rows
    teacher: str = ""  # edgekd checkpoint whose hidden states feature/relation KD learn; "" = the soft targets' first teacher
    cache_teacher: bool = True  # keep each utterance's teacher features in RAM after its first batch
    mutual_weight: float = 0.0  # mutual learning: a peer student trains alongside; KL(peer || self) weight (0 = off)
    self_weight: float = 0.0  # self-distillation: KL(EMA of the student || student) weight (0 = off)
    ema_decay: float = 0.99  # EMA decay per step (0.99: the teacher averages ~the last 100 steps)

    def __post_init__(self):
        self._verify()

    def _verify(self):
        for k in ("feature_weight", "relation_weight", "mutual_weight", "self_weight"):
            if getattr(self, k) < 0:
                raise ValueError(f"{k} must be >= 0, got {getattr(self, k)}")
        if self.feature_loss not in ("cosine", "mse"):
            raise ValueError(f"feature_loss must be cosine or mse, got {self.feature_loss!r}")
        if self.feature_layers not in ("all", "last"):
            raise ValueError(f"feature_layers must be all or last, got {self.feature_layers!r}")
        if self.relation_temperature <= 0 or not 0 < self.ema_decay < 1:
            raise ValueError("relation_temperature must be > 0 and ema_decay in (0, 1)")

    @property
    def active(self) -> bool:
        return any((self.feature_weight, self.relation_weight, self.mutual_weight, self.self_weight))

    @property
    def needs_teacher(self) -> bool:
        return bool(self.feature_weight or self.relation_weight)


class Students(torch.nn.Module):
    """What the loop trains when these terms are on: `student` (the one saved), its feature
    `projector`, a mutual-learning `peer` and the self-distillation `ema` (no grad: the optimizer
    skips it). One module, so one optimizer, one clip and one resume file cover them all."""

    def __init__(self, student: torch.nn.Module, terms: KDTerms, teacher_dim: int, n_mapped: int,
                 peer: Optional[torch.nn.Module] = None):
        super().__init__()
        self.student = student
        d = student.dims.d_model
        self.projector = FeatureProjector(d, teacher_dim, n_mapped) if terms.feature_weight else None
        self.peer = peer if terms.mutual_weight else None
        self.ema = None
        if terms.self_weight:
            self.ema = copy.deepcopy(student)
            self.ema.requires_grad_(False)

    @torch.no_grad()
    def update_ema(self, decay: float) -> None:
        for e, s in zip(self.ema.state_dict().values(), self.student.state_dict().values()):
            if e.dtype.is_floating_point:
                e.mul_(decay).add_(s.detach(), alpha=1 - decay)
            else:
                e.copy_(s)


class FeatureTeacher:
    """A frozen edgekd conformer's hidden states at the layers a student maps to, aligned to the
    student's frames. It sees the student's features, so it must share the featurizer."""

    def __init__(self, path: str, featurizer, n_student_layers: int, student_rate: float, which: str, cache: bool):
        from edgekd.models import load_checkpoint

        ck = load_checkpoint(path)  # a file that is not an edgekd checkpoint fails here, naming it
        if ck.featurizer != featurizer:
            raise EdgekdError(f"feature/relation KD teacher {path}: its featurizer differs from the student's; "
                              "it is fed the student's features, so they must match")
        self.model = ck.model.eval().requires_grad_(False)
        full = layer_map(n_student_layers, ck.dims.n_layers)
        self.student_layers = list(range(n_student_layers)) if which == "all" else [n_student_layers - 1]
        self.teacher_layers = [full[i] for i in self.student_layers]
        self.dim = ck.dims.d_model
        self.rate, self.student_rate = featurizer.frame_rate / ck.dims.subsampling, student_rate
        self.cache: Optional[dict[str, list[torch.Tensor]]] = {} if cache else None
        self.last_ms = 0.0

    @torch.no_grad()
    def __call__(self, ids: list[str], x: torch.Tensor, lens: torch.Tensor, olens: torch.Tensor,
                 t_max: int) -> list[torch.Tensor]:
        """Clean features (B, T, F) of utterances `ids` -> per mapped layer (B, t_max, D_t)."""
        t0 = time.perf_counter()
        todo = [j for j, i in enumerate(ids) if self.cache is None or i not in self.cache]
        got: dict[str, list[torch.Tensor]] = {} if self.cache is None else self.cache
        if todo:
            sel = torch.tensor(todo)
            n = int(lens[sel].max())
            hs, tl = self.model.encode_layers(x[sel, :n], lens[sel])
            for k, j in enumerate(todo):
                got[ids[j]] = [hs[li][k, : int(tl[k])].to(torch.float16) for li in self.teacher_layers]
        out = [x.new_zeros(len(ids), t_max, self.dim) for _ in self.teacher_layers]
        for j, i in enumerate(ids):
            for li, h in enumerate(got[i]):
                a = align_features(h.float(), int(olens[j]), self.rate, self.student_rate)
                out[li][j, : a.shape[0]] = a
        self.last_ms = (time.perf_counter() - t0) * 1000
        return out


class ExtraTerms:
    """The step's loss when `KDTerms` are on: base terms (soft targets, CTC) of each student plus
    the terms above. `base(logits, olens) -> (loss, logs)` is distil's own response-KD/CTC loss."""

    def __init__(self, terms: KDTerms, temperature: float, teacher: Optional[FeatureTeacher]):
        self.terms, self.temperature, self.teacher = terms, temperature, teacher

    def __call__(self, m: Students, ids: list[str], x: torch.Tensor, xa: torch.Tensor, lens: torch.Tensor,
                 chunk: Optional[int], base: Callable) -> tuple[torch.Tensor, dict]:
        o, T = self.terms, self.temperature
        hs, olens = m.student.encode_layers(xa, lens, chunk)
        logits = m.student.head(hs[-1])
        total, logs = base(logits, olens)
        if self.teacher is not None:
            tf = self.teacher(ids, x, lens, olens, logits.shape[1])
            logs["teacher_ms"] = self.teacher.last_ms
            if o.feature_weight:
                f = feature_kd_loss([hs[i] for i in self.teacher.student_layers], tf, olens, m.projector, o.feature_loss)
                total = total + o.feature_weight * f
                logs["feature"] = float(f.detach())
            if o.relation_weight:
                r = relation_kd_loss(hs[-1], tf[-1], olens, o.relation_temperature)
                total = total + o.relation_weight * r
                logs["relation"] = float(r.detach())
        if m.peer is not None:
            p_logits, p_lens = m.peer(xa, lens, chunk)
            p_total, _ = base(p_logits, p_lens)
            a = kd_loss(logits, p_logits.detach().log_softmax(-1), olens, T)  # the peer teaches the student ...
            b = kd_loss(p_logits, logits.detach().log_softmax(-1), p_lens, T)  # ... and the student the peer
            total = total + o.mutual_weight * a + p_total + o.mutual_weight * b
            logs.update({"mutual": float(a.detach()), "peer_loss": float((p_total + o.mutual_weight * b).detach())})
        if m.ema is not None:
            m.update_ema(o.ema_decay)  # the previous step's update, averaged in
            m.ema.eval()  # no dropout: the averaged model's clean posteriors
            with torch.no_grad():
                e_logits, _ = m.ema(x, lens, chunk)
            s = kd_loss(logits, e_logits.log_softmax(-1), olens, T)
            total = total + o.self_weight * s
            logs["self"] = float(s.detach())
        return total, logs


def build_terms(terms: KDTerms, student: torch.nn.Module, featurizer, student_rate: float, st_teachers: list,
                temperature: float, seed: int, world: int, warm_start: bool) -> tuple[Students, ExtraTerms]:
    """(the module the loop trains, the step's loss) for `terms` around `student`."""
    if world > 1:
        raise EdgekdError("feature/relation KD, mutual learning and self-distillation run in one process, "
                          "not under torchrun")
    teacher = None
    if terms.needs_teacher:
        path = terms.teacher or next((str(t) for t in st_teachers if not str(t).startswith(("hf:", "onnx:"))), "")
        if not path:
            raise EdgekdError(f"feature/relation KD needs an edgekd conformer teacher; the soft targets' teachers "
                              f"({', '.join(map(str, st_teachers)) or 'none recorded'}) are not: set terms.teacher")
        which = terms.feature_layers if terms.feature_weight else "last"  # relation alone reads the last layer
        teacher = FeatureTeacher(path, featurizer, student.dims.n_layers, student_rate, which, terms.cache_teacher)
    peer = None
    if terms.mutual_weight:
        if warm_start:  # a copy of the warm start: dropout, augmentation order and its own updates set it apart
            peer = copy.deepcopy(student)
        else:  # Zhang et al.: two independently initialised networks
            from edgekd.models.conformer import ConformerCTC

            with torch.random.fork_rng():
                torch.manual_seed(seed + 1)
                peer = ConformerCTC(student.dims)
            peer.set_input_stats(student.input_mean, student.input_std)
    m = Students(student, terms, teacher.dim if teacher else 0, len(teacher.student_layers) if teacher else 0, peer)
    return m.train(), ExtraTerms(terms, temperature, teacher)
