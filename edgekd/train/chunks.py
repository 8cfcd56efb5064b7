"""Dynamic chunk training (WeNet U2 / icefall style) for a streaming student.

Each batch draws its chunk size: full context with probability `full_context_prob` (so the same
weights still decode offline), else a chunk of `min_chunk..max_chunk` output frames, uniformly.
Every chunk size in that range is seen in training, so one model serves all of them (160, 320 and
640 ms are 4, 8 and 16 frames at 40 ms per frame). The left context is fixed: it is the size of
the attention cache the export carries.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from edgekd.models.conformer import ConformerCTC, ConformerDims


@dataclass(frozen=True)
class ChunkTraining:
    left_context: int = 48  # attention left context in output frames (48 x 40 ms = 1.92 s)
    min_chunk: int = 2  # smallest training chunk, output frames
    max_chunk: int = 16  # largest training chunk, output frames
    full_context_prob: float = 0.25  # share of batches trained without a chunk mask (offline mode)
    # Teacher targets shifted this many student frames later: a chunked student sees less future
    # than the full-context teacher, so its CTC spikes tend to come later (measured, not assumed)
    target_delay: int = 0
    eval_chunk: int = 8  # chunk of the dev WER during training (8 frames = 320 ms)

    def __post_init__(self):
        self._verify()

    def _verify(self):
        if self.left_context < 1:
            raise ValueError(f"left_context must be >= 1 frame, got {self.left_context}")
        if not 1 <= self.min_chunk <= self.max_chunk:
            raise ValueError(f"need 1 <= min_chunk <= max_chunk, got min_chunk={self.min_chunk} "
                             f"max_chunk={self.max_chunk}")
        if not 0 <= self.full_context_prob < 1:
            raise ValueError(f"full_context_prob must be in [0, 1), got {self.full_context_prob}")
        if self.target_delay < 0 or self.eval_chunk < 1:
            raise ValueError(f"target_delay must be >= 0 and eval_chunk >= 1, got {self.target_delay}, "
                             f"{self.eval_chunk}")

    def sample(self, gen: torch.Generator) -> int | None:
        """This batch's chunk size (None = full context), from the loop's own generator (resumable)."""
        if float(torch.rand((), generator=gen)) < self.full_context_prob:
            return None
        return int(torch.randint(self.min_chunk, self.max_chunk + 1, (), generator=gen))

    def streaming_dims(self, dims: ConformerDims) -> ConformerDims:
        return dataclasses.replace(dims, causal=True, left_context=self.left_context)


def to_streaming(model: ConformerCTC, opts: ChunkTraining) -> ConformerCTC:
    """A streaming model with `model`'s weights (same shapes; the conv becomes causal, the chunk
    mask applies). An offline student is a better start than random weights: fine-tuning moves the
    conv kernel and attention to what they can still see."""
    dims = opts.streaming_dims(model.dims)
    if dims == model.dims:
        return model
    out = ConformerCTC(dims)
    out.load_state_dict(model.state_dict())
    return out


def delay_targets(t: torch.Tensor, delay: int) -> torch.Tensor:
    """(B, T, V) teacher log-probs -> frame t holds frame t-delay's; the first frames repeat frame 0
    (a teacher's first frames are blank-dominated, as the student's delayed start should be)."""
    if delay <= 0:
        return t
    return torch.cat([t[:, :1].expand(-1, min(delay, t.shape[1]), -1), t[:, : max(0, t.shape[1] - delay)]], 1)
