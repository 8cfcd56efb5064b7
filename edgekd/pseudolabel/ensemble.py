"""The teacher ensemble (posteriors averaged in probability space) and per-utterance confidence.

Weighting (`PseudoLabelOptions.teacher_weighting`):
- `fixed`: every utterance averages the teachers with the given weights (uniform by default);
- `confidence`: per utterance, teacher i's weight is w_i · c_i · a_i, where c_i is its own
  confidence on the utterance (`confidence`: mean best-token posterior over its emitting frames)
  and a_i its agreement, the share of valid frames whose best token equals that of the
  fixed-weight average. A teacher unsure of itself, or alone against the others, counts less
  on that utterance; where every product is 0 the fixed weights stand.
"""

from __future__ import annotations

import numpy as np
import torch

from edgekd.errors import EdgekdError
from edgekd.softtargets import MAX_VOCAB


def confidence(log_probs: np.ndarray) -> float:
    """Mean best-token posterior over non-blank-argmax frames; (T, V) -> [0, 1].

    Blank frames are left out because a CTC model is confidently blank almost everywhere: what
    matters is how sure the teacher is of the characters it emits. No emitted character: 0.
    """
    best = log_probs.argmax(1)
    em = best != 0
    if not em.any():
        return 0.0
    return float(np.exp(log_probs[em, best[em]]).mean())


class Ensemble:
    """Averages the CTC teachers' posteriors in probability space (weights normalised to sum 1); a
    seq2seq teacher (Whisper & co: `kind == "seq2seq"`), if one is given, supplies the transcript
    and its confidence instead of the CTC 1-best (a mixed ensemble).

    The CTC teachers must share tokens and frame rate: their frames are averaged one to one.
    Each teacher hears the audio at its own sample rate: waves come at the highest rate any
    teacher declares and are resampled down per teacher.
    """

    def __init__(self, specs: list[str], weights: list[float] | tuple[float, ...] = (), runtime: str = "torch",
                 weighting: str = "fixed"):
        from edgekd.teachers.runtime import load_runtime_teacher

        loaded = [load_runtime_teacher(str(s), runtime) for s in specs]
        if not loaded:
            raise EdgekdError("pseudolabel needs at least one teacher")
        seq = [i for i, t in enumerate(loaded) if getattr(t, "kind", "ctc") == "seq2seq"]
        if len(seq) > 1:
            raise EdgekdError(f"teachers {specs[seq[0]]} and {specs[seq[1]]} both give transcripts only (seq2seq); "
                              "one of them may supply the hard labels")
        if len(seq) == len(loaded):
            raise EdgekdError(f"teacher {specs[seq[0]]} gives transcripts, not frame posteriors: add a CTC teacher "
                              "for the soft targets (a mixed ensemble); a seq2seq teacher alone is not supported yet")
        self.labeler = loaded[seq[0]] if seq else None
        ctc = [i for i in range(len(loaded)) if i not in seq]
        self.teachers = [loaded[i] for i in ctc]
        t0, s0 = self.teachers[0], specs[ctc[0]]
        if len(t0.tokens) > MAX_VOCAB:  # shards store token ids as uint8, or uint16 above 256 (softtargets.py)
            raise EdgekdError(f"teacher {s0}: {len(t0.tokens)} tokens; soft-target shards hold at most {MAX_VOCAB}")
        for i, t in zip(ctc[1:], self.teachers[1:]):
            if tuple(t.tokens) != tuple(t0.tokens):
                raise EdgekdError(f"teacher {specs[i]}: token set differs from {s0}'s; an ensemble must share tokens")
            if abs(t.frame_rate - t0.frame_rate) > 1e-6:
                raise EdgekdError(f"teacher {specs[i]}: frame rate {t.frame_rate} differs from {s0}'s "
                                  f"{t0.frame_rate}; an ensemble must share the frame rate")
        w = np.asarray(weights if weights else [1.0] * len(specs), dtype=np.float64)
        if len(w) != len(specs) or (w < 0).any() or w[ctc].sum() <= 0:
            raise EdgekdError(f"teacher weights {list(weights)} do not fit {len(specs)} teachers")
        w = w[ctc]  # a seq2seq teacher's weight is unused: its transcript is taken whole
        self.weights = torch.tensor(w / w.sum(), dtype=torch.float32)
        self.weighting = weighting
        self.tokens, self.frame_rate = tuple(t0.tokens), t0.frame_rate
        self.sample_rate = max(int(t.sample_rate) for t in loaded)
        self.names = [getattr(t, "name", s) for s, t in zip(specs, loaded)]
        # how the shared token set splits text (a subword student adopting it needs the same split)
        self.sentencepiece = next((t.sentencepiece for t in self.teachers if getattr(t, "sentencepiece", None)), None)

    def _at(self, teacher, waves: list[np.ndarray]) -> list[np.ndarray]:
        from edgekd.audio import resample

        return [resample(w, self.sample_rate, int(teacher.sample_rate)) for w in waves]

    @torch.no_grad()
    def __call__(self, waves: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Mono float32 waves at `sample_rate` -> averaged log-probs (B, T', V), lengths (B,)."""
        outs = [t(self._at(t, waves)) for t in self.teachers]
        t_min = min(o.logits.shape[1] for o in outs)
        ps = torch.stack([o.logits[:, :t_min].float().softmax(-1) for o in outs])  # (K, B, T, V)
        lens = torch.stack([torch.clamp(o.lengths, max=t_min) for o in outs]).min(0).values
        w = self.weights[:, None].expand(len(outs), ps.shape[1])  # (K, B)
        if self.weighting == "confidence" and len(outs) > 1:
            w = utterance_weights(ps, lens, self.weights)
        probs = (w[:, :, None, None] * ps).sum(0)
        return torch.log(probs.clamp(min=1e-30)), lens

    def hard_labels(self, waves: list[np.ndarray]) -> list[tuple[str, float]] | None:
        """The seq2seq teacher's (transcript, confidence) per wave, or None without one."""
        return self.labeler.transcribe(self._at(self.labeler, waves)) if self.labeler else None


def utterance_weights(ps: torch.Tensor, lens: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """(K, B, T, V) teacher posteriors, (B,) valid frames, (K,) fixed weights -> (K, B) weights
    summing to 1 per utterance: base_i · confidence_i · agreement_i (module docstring)."""
    k, b, t, _ = ps.shape
    valid = torch.arange(t)[None, :] < lens[:, None]  # (B, T)
    avg_best = (base[:, None, None, None] * ps).sum(0).argmax(-1)  # (B, T)
    best = ps.argmax(-1)  # (K, B, T)
    agree = ((best == avg_best) & valid).sum(-1) / valid.sum(-1).clamp(min=1)  # (K, B)
    top = ps.max(-1).values  # (K, B, T)
    emit = (best != 0) & valid
    conf = (top * emit).sum(-1) / emit.sum(-1).clamp(min=1)  # `confidence`, per teacher and utterance
    w = base[:, None] * conf * agree
    total = w.sum(0, keepdim=True)
    return torch.where(total > 0, w / total.clamp(min=1e-12), base[:, None].expand(k, b))


def gate_runtime(specs: list[str], runtime: str, audio: list[str], sample_rate: int, seconds: float) -> dict:
    """Admit a fast teacher runtime: each checkpoint's posteriors on the first `seconds` of `audio`
    under `runtime` against torch fp32 (`teachers.runtime.GATE`); -> {spec: figures}, or raises
    naming what broke the bound. Unreadable files are skipped here (the shards reject them)."""
    from edgekd.audio import AudioError, load_audio, resample
    from edgekd.teachers import load_teacher
    from edgekd.teachers.runtime import gate_failures, load_runtime_teacher, parity

    waves, total = [], 0.0
    for a in audio:
        if total >= seconds:
            break
        try:
            waves.append(load_audio(a, sample_rate))
        except AudioError:
            continue
        total += len(waves[-1]) / sample_rate
    out = {}
    for s in specs:
        if str(s).startswith(("onnx:", "hf:")):
            continue  # run as given: there is no fp32 PyTorch original to compare with
        ref = load_teacher(s)
        fig = parity(ref, load_runtime_teacher(str(s), runtime), [resample(w, sample_rate, ref.sample_rate) for w in waves])
        bad = gate_failures(fig)
        if bad:
            raise EdgekdError(f"teacher {s}: runtime {runtime!r} is off PyTorch fp32 on {fig['utterances']} "
                              f"utterances ({'; '.join(bad)}); use teacher_runtime 'torch'")
        out[str(s)] = {k: round(v, 9) if isinstance(v, float) else v for k, v in fig.items()}
    return out
