"""Conformer CTC acoustic model in plain PyTorch, written to export.

Design choices, all for export and edge runtimes:
- lengths and padding masks are built from tensors (no `.item()`, no Python ints from data), so
  `torch.onnx.export(dynamo=True)` keeps a dynamic time axis;
- rotary position embeddings (computed from `arange(T)`) instead of learned absolute
  positions: no maximum length, and they generalise to utterances longer than any in training;
- LayerNorm (not BatchNorm) in the convolution module: a padded batch gives the same outputs
  per utterance as running each alone, in training and eval;
- per-layer FFN widths and head counts are explicit dims, so a structurally pruned model
  (torch-pruning shrinks them) rebuilds from its checkpoint;
- a streaming model (`causal=True`) has a causal depthwise conv and is run with a chunk mask of
  `left_context` frames (`encode(..., chunk=C)`); `edgekd.models.streaming` runs the same weights
  chunk by chunk with explicit caches, and `chunk=None` keeps full-context (offline) decoding.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ConformerDims:
    n_mels: int = 80  # input feature size
    vocab_size: int = 29  # output tokens incl. blank (id 0)
    d_model: int = 144  # model width
    n_layers: int = 8  # conformer blocks
    n_heads: int = 4  # attention heads (d_model % n_heads == 0)
    ffn_dim: int = 576  # macaron FFN hidden width (default for every layer)
    conv_kernel: int = 15  # depthwise conv kernel (odd)
    subsampling: int = 4  # time reduction of the conv front end: 2, 4 or 8
    subsampling_channels: int = 144  # channels of the conv2d front end
    dropout: float = 0.1
    # Per-layer overrides written by structured pruning; empty = use ffn_dim / d_model everywhere.
    ffn_dims: tuple[int, ...] = ()  # two FFNs per layer share one width per layer
    attn_dims: tuple[int, ...] = ()  # q/k/v projection width per layer (heads * head_dim)
    conv_dims: tuple[int, ...] = ()  # conv module inner channels per layer
    # Streaming: a causal depthwise conv (sees only past frames, so a chunk needs no future input
    # beyond the subsampling's own) and attention over at most `left_context` earlier output
    # frames (the size of the attention cache a streaming export carries). 0 = offline model.
    causal: bool = False
    left_context: int = 0

    def __post_init__(self):
        self._verify()

    def _verify(self):
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.subsampling not in (2, 4, 8):
            raise ValueError(f"subsampling must be 2, 4 or 8, got {self.subsampling}")
        if self.conv_kernel % 2 == 0:
            raise ValueError(f"conv_kernel must be odd, got {self.conv_kernel}")
        for name in ("ffn_dims", "attn_dims", "conv_dims"):
            v = getattr(self, name)
            if v and len(v) != self.n_layers:
                raise ValueError(f"{name} has {len(v)} entries but n_layers is {self.n_layers}")
        for a in self.attn_dims:
            if a % self.n_heads:
                raise ValueError(f"attn_dims entry {a} is not divisible by n_heads ({self.n_heads})")
        if self.causal != (self.left_context > 0):
            raise ValueError(f"causal={self.causal} needs left_context > 0 (and an offline model 0), "
                             f"got left_context={self.left_context}")
        if self.causal and self.conv_kernel < 3:
            raise ValueError(f"a causal model needs conv_kernel >= 3 (its conv cache holds kernel-1 frames), "
                             f"got {self.conv_kernel}")

    @property
    def min_frames(self) -> int:
        """Shortest input (feature frames) that yields one output frame: 3, 7 or 15."""
        return 2 ** ({2: 1, 4: 2, 8: 3}[self.subsampling] + 1) - 1

    def layer(self, i: int) -> tuple[int, int, int]:
        """(ffn width, attention width, conv width) of layer i."""
        return (self.ffn_dims[i] if self.ffn_dims else self.ffn_dim,
                self.attn_dims[i] if self.attn_dims else self.d_model,
                self.conv_dims[i] if self.conv_dims else self.d_model)

    def to_dict(self) -> dict[str, Any]:
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
        if not self.causal:  # offline models keep the dims (and metadata) they had before streaming
            del d["causal"], d["left_context"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ConformerDims":
        from edgekd.config import known_fields

        d = known_fields(cls, d, "model dim(s)")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def chunk_mask(t: int, chunk: int, left: int, device=None) -> torch.Tensor:
    """(T, T) bool: query i sees keys of its own chunk (i // chunk) and the `left` frames before it."""
    i = torch.arange(t, device=device)
    end = (i // chunk + 1) * chunk  # first frame after the query's chunk
    return (i[None, :] < end[:, None]) & (i[None, :] >= end[:, None] - chunk - left)


def make_pad_mask(lengths: torch.Tensor, max_len: torch.Tensor | int) -> torch.Tensor:
    """(B, T) bool, True at valid frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class Subsampling(nn.Module):
    """Conv2d front end: (B, T, F) -> (B, T', d_model); T' = T // s roughly (valid convs, k=3, s=2)."""

    def __init__(self, n_mels: int, d_model: int, channels: int, factor: int):
        super().__init__()
        n = {2: 1, 4: 2, 8: 3}[factor]
        layers, f = [], n_mels
        for i in range(n):
            layers += [nn.Conv2d(1 if i == 0 else channels, channels, 3, stride=2), nn.SiLU()]
            f = (f - 1) // 2
        self.conv = nn.Sequential(*layers)
        self.n = n
        self.out = nn.Linear(channels * f, d_model)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        for _ in range(self.n):
            lengths = torch.clamp((lengths - 1) // 2, min=0)
        return lengths

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        x = self.conv(x.unsqueeze(1))  # (B, C, T', F')
        b, c, t, f = x.shape
        x = self.out(x.transpose(1, 2).reshape(b, t, c * f))
        return x, self.output_lengths(lengths)


def rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Apply rotary embedding to (B, H, T, D) with cos/sin (T, D/2)."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


class MHSA(nn.Module):
    def __init__(self, d_model: int, attn_dim: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * attn_dim)
        self.proj = nn.Linear(attn_dim, d_model)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                chunk_mask: torch.Tensor | None = None):
        b, t, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.n_heads, -1).permute(2, 0, 3, 1, 4)  # 3 x (B,H,T,D)
        q, k = rotary(q, cos, sin), rotary(k, cos, sin)
        attn_mask = mask[:, None, None, :]  # (B,1,1,T): keys that exist
        if chunk_mask is not None:  # (T,T) query -> visible keys; the diagonal keeps padded rows finite
            eye = torch.eye(t, dtype=torch.bool, device=x.device)
            attn_mask = (attn_mask & chunk_mask[None, None]) | eye[None, None]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(b, t, -1))


class FeedForward(nn.Module):
    def __init__(self, d_model: int, hidden: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.w1 = nn.Linear(d_model, hidden)
        self.w2 = nn.Linear(hidden, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.w2(self.drop(F.silu(self.w1(self.norm(x)))))


class ConvModule(nn.Module):
    def __init__(self, d_model: int, channels: int, kernel: int, dropout: float, causal: bool = False):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.pw1 = nn.Conv1d(d_model, 2 * channels, 1)
        # causal: all kernel-1 frames of padding on the left, so frame t sees t-k+1..t only; the
        # weights have the same shape either way (an offline student can initialise a causal one)
        self.causal = causal
        self.dw = nn.Conv1d(channels, channels, kernel, padding=0 if causal else kernel // 2, groups=channels)
        self.dw_norm = nn.LayerNorm(channels)
        self.pw2 = nn.Conv1d(channels, d_model, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, mask):
        x = self.norm(x) * mask[..., None]  # zero padding so the depthwise conv can't see it
        x = F.glu(self.pw1(x.transpose(1, 2)), dim=1) * mask[:, None, :]
        if self.causal:
            x = F.pad(x, (self.dw.kernel_size[0] - 1, 0))
        x = self.dw(x)
        x = F.silu(self.dw_norm(x.transpose(1, 2))).transpose(1, 2)
        return self.drop(self.pw2(x).transpose(1, 2))


class ConformerBlock(nn.Module):
    def __init__(self, dims: ConformerDims, i: int):
        super().__init__()
        ffn, att, conv = dims.layer(i)
        d = dims.d_model
        self.ff1 = FeedForward(d, ffn, dims.dropout)
        self.attn_norm = nn.LayerNorm(d)
        self.attn = MHSA(d, att, dims.n_heads, dims.dropout)
        self.conv = ConvModule(d, conv, dims.conv_kernel, dims.dropout, dims.causal)
        self.ff2 = FeedForward(d, ffn, dims.dropout)
        self.out_norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(dims.dropout)

    def forward(self, x, mask, cos, sin, chunk_mask=None):
        x = x + 0.5 * self.drop(self.ff1(x))
        x = x + self.drop(self.attn(self.attn_norm(x), mask, cos, sin, chunk_mask))
        x = x + self.conv(x, mask)
        x = x + 0.5 * self.drop(self.ff2(x))
        return self.out_norm(x)


class ConformerCTC(nn.Module):
    """Log-mel (B, T, n_mels) + lengths (B,) -> CTC logits (B, T', V) + lengths (B,).

    Returns *logits* (before log_softmax) because distillation needs them (temperature, MSE on
    logits); `log_probs()` and the exported graphs apply log_softmax.
    Input normalisation (global mean/std per mel band) lives in buffers of the model, set from
    training data by `set_input_stats`, so it travels with the weights.
    """

    def __init__(self, dims: ConformerDims):
        super().__init__()
        self.dims = dims
        self.register_buffer("input_mean", torch.zeros(dims.n_mels))
        self.register_buffer("input_std", torch.ones(dims.n_mels))
        self.subsample = Subsampling(dims.n_mels, dims.d_model, dims.subsampling_channels, dims.subsampling)
        self.blocks = nn.ModuleList(ConformerBlock(dims, i) for i in range(dims.n_layers))
        self.head = nn.Linear(dims.d_model, dims.vocab_size)
        head_dim = dims.layer(0)[1] // dims.n_heads
        inv = 1.0 / (10000 ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("rope_inv_freq", inv, persistent=False)

    @torch.no_grad()
    def set_input_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.input_mean.copy_(mean)
        self.input_std.copy_(torch.clamp(std, min=1e-3))

    def output_lengths(self, feat_lens: torch.Tensor) -> torch.Tensor:
        return self.subsample.output_lengths(feat_lens)

    def encode(self, feats: torch.Tensor, feat_lens: torch.Tensor, chunk: int | None = None):
        """(B, T, n_mels), (B,) -> encoder output (B, T', d_model), lengths (B,).

        `chunk`: output frames per chunk for a streaming model: each frame attends to its own
        chunk and `dims.left_context` frames before it, exactly what the chunk-by-chunk run with
        caches sees. None = full context (offline decoding, also of a streaming model).
        """
        hidden, lens = self.encode_layers(feats, feat_lens, chunk)
        return hidden[-1], lens

    def encode_layers(self, feats: torch.Tensor, feat_lens: torch.Tensor, chunk: int | None = None):
        """Like `encode`, but every block's output: [(B, T', d_model)] * n_layers, lengths (B,).
        Feature and relation KD read the intermediate ones; the traced graph of `encode` is the
        same (a Python list adds no operator), so exports do not change."""
        in_mask = make_pad_mask(feat_lens, feats.shape[1])
        x = (feats - self.input_mean) / self.input_std * in_mask[..., None]
        x, lens = self.subsample(x, feat_lens)
        t = x.shape[1]
        mask = make_pad_mask(lens, t)
        ang = torch.arange(t, device=x.device, dtype=torch.float32)[:, None] * self.rope_inv_freq[None, :]
        cos, sin = torch.cos(ang), torch.sin(ang)
        x = x * mask[..., None]
        cm = None
        if chunk is not None:
            if not self.dims.causal:
                raise ValueError("chunked attention needs a streaming model (dims.causal); this one is offline")
            cm = chunk_mask(t, chunk, self.dims.left_context, x.device)
        hidden = []
        for blk in self.blocks:
            x = blk(x, mask, cos, sin, cm) * mask[..., None]
            hidden.append(x)
        return hidden, lens

    def forward(self, feats: torch.Tensor, feat_lens: torch.Tensor, chunk: int | None = None):
        x, lens = self.encode(feats, feat_lens, chunk)
        return self.head(x), lens

    def log_probs(self, feats: torch.Tensor, feat_lens: torch.Tensor, chunk: int | None = None):
        logits, lens = self(feats, feat_lens, chunk)
        return logits.log_softmax(-1), lens

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
