"""Chunk-by-chunk inference of a streaming conformer with explicit caches.

The same weights as `ConformerCTC`, run one chunk of `C` output frames at a time:
- the conv front end needs `window_frames(dims, C)` feature frames per chunk and advances by
  `shift_frames(dims, C)` (= subsampling x C): its valid 3x3 convs see a few frames past the chunk,
  and the overlap makes every chunk's output equal to the full pass's frames, with no front-end cache;
- attention cache (`cache_k`, B x layers x left_context x 2*attn): each layer's last
  `left_context` keys (before rotary) and values. Rotary positions are counted from the start of
  the cached window, not the stream: attention scores depend only on the position difference, so
  this equals the full pass and no position grows without bound on a long stream;
- conv cache (`cache_conv`, B x layers x conv channels x kernel-1): the depthwise conv's last
  kernel-1 input frames (zeros at the start, exactly the causal padding of the full pass);
- `cache_len` (B,) int64: how many cached frames are real (masked out until the cache fills).
Layers pruned to different widths share one cache tensor, padded to the widest layer.

`StreamingStep` is the graph exported for sherpa-onnx (`export/streaming.py`);
`stream_log_probs` is the reference loop the equality tests and edgekd's own streaming decode use.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgekd.errors import ConfigError
from edgekd.models.conformer import ConformerCTC, ConformerDims, rotary


def chunk_frames(dims: ConformerDims, chunk_ms: float, frame_rate: float = 100.0) -> int:
    """Output frames in a chunk of `chunk_ms` (40 ms each at a 10 ms hop and subsampling 4)."""
    step = 1000.0 * dims.subsampling / frame_rate
    n = chunk_ms / step
    if n < 1 or abs(n - round(n)) > 1e-6:
        raise ConfigError(f"fit.chunk_ms: {chunk_ms:g} ms is not a whole number of {step:g} ms output frames "
                          f"(e.g. {', '.join(f'{int(step * k)}' for k in (4, 8, 16))})")
    return int(round(n))


def shift_frames(dims: ConformerDims, chunk: int) -> int:
    """Feature frames one chunk of `chunk` output frames advances the stream by."""
    return dims.subsampling * chunk


def window_frames(dims: ConformerDims, chunk: int) -> int:
    """Feature frames the front end reads for one chunk: output frame j reads input frames
    s*j .. s*j + min_frames - 1, so a chunk reads s*(chunk-1) + min_frames (4C+3 at s=4)."""
    return dims.subsampling * (chunk - 1) + dims.min_frames


def cache_shapes(dims: ConformerDims) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(layers, left_context, 2*attn), (layers, conv channels, kernel-1): the caches without batch."""
    if not dims.causal:
        raise ValueError("an offline model (dims.causal false) has no streaming caches; train one with "
                         "`edgekd distil --streaming`")
    widths = [dims.layer(i) for i in range(dims.n_layers)]
    return ((dims.n_layers, dims.left_context, 2 * max(a for _, a, _ in widths)),
            (dims.n_layers, max(c for _, _, c in widths), dims.conv_kernel - 1))


def init_state(dims: ConformerDims, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Zero caches (cache_k, cache_conv, cache_len) for `batch` new streams."""
    k, c = cache_shapes(dims)
    return torch.zeros(batch, *k), torch.zeros(batch, *c), torch.zeros(batch, dtype=torch.int64)


class StreamingStep(nn.Module):
    """(feats (B, W, n_mels), cache_k, cache_conv, cache_len) -> (log_probs (B, C, V), caches').

    W = window_frames(dims, C); the chunk size C is fixed at construction (an exported graph
    serves one chunk size; export once per size).
    """

    def __init__(self, model: ConformerCTC, chunk: int):
        super().__init__()
        cache_shapes(model.dims)  # refuses an offline model with the reason
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1 output frame, got {chunk}")
        self.model, self.chunk = model, chunk

    def forward(self, feats: torch.Tensor, cache_k: torch.Tensor, cache_conv: torch.Tensor,
                cache_len: torch.Tensor):
        m, dims, c = self.model, self.model.dims, self.chunk
        left = dims.left_context
        x = (feats - m.input_mean) / m.input_std
        x = m.subsample.conv(x.unsqueeze(1))  # (B, C', C, F'): valid convs, exactly `chunk` frames
        b, ch, t, f = x.shape
        x = m.subsample.out(x.transpose(1, 2).reshape(b, t, ch * f))
        pos = torch.arange(left + c, device=x.device, dtype=torch.float32)[:, None] * m.rope_inv_freq[None, :]
        cos, sin = torch.cos(pos), torch.sin(pos)
        # cached slot j (of `left`) is real iff j >= left - cache_len; the chunk's own frames always are
        slot = torch.arange(left + c, device=x.device)[None, :]
        key_ok = (slot >= left - cache_len[:, None])[:, None, None, :]  # (B,1,1,L+C)
        new_k, new_conv = [], []
        for i, blk in enumerate(m.blocks):
            x, kv, cv = _block_step(blk, x, cache_k[:, i], cache_conv[:, i], cos, sin, key_ok, c, left)
            new_k.append(F.pad(kv, (0, cache_k.shape[-1] - kv.shape[-1])))
            new_conv.append(F.pad(cv, (0, 0, 0, cache_conv.shape[2] - cv.shape[1])))
        lp = m.head(x).log_softmax(-1)
        return (lp, torch.stack(new_k, 1), torch.stack(new_conv, 1),
                torch.clamp(cache_len + c, max=left))


def _block_step(blk, x, cache_k, cache_conv, cos, sin, key_ok, c: int, left: int):
    """One conformer block on one chunk; mirrors ConformerBlock.forward (eval mode, no padding)."""
    x = x + 0.5 * blk.ff1(x)
    att = blk.attn
    a = blk.attn_norm(x)
    b = a.shape[0]
    qkv = att.qkv(a)  # (B, C, 3A)
    width = qkv.shape[-1] // 3
    kv_new = qkv[..., width:]  # (B, C, 2A): keys (before rotary) | values
    kv = torch.cat([cache_k[..., : 2 * width], kv_new], 1)  # (B, L+C, 2A)
    h = att.n_heads
    q = qkv[..., :width].reshape(b, c, h, -1).transpose(1, 2)
    k = kv[..., :width].reshape(b, left + c, h, -1).transpose(1, 2)
    v = kv[..., width:].reshape(b, left + c, h, -1).transpose(1, 2)
    q, k = rotary(q, cos[left:], sin[left:]), rotary(k, cos, sin)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_ok)
    x = x + att.proj(y.transpose(1, 2).reshape(b, c, -1))
    conv = blk.conv
    width_c = conv.dw.in_channels
    u = F.glu(conv.pw1(conv.norm(x).transpose(1, 2)), dim=1)  # (B, Cc, C)
    u = torch.cat([cache_conv[:, :width_c], u], 2)  # (B, Cc, K-1+C)
    y = conv.dw(u)
    y = F.silu(conv.dw_norm(y.transpose(1, 2))).transpose(1, 2)
    x = x + conv.pw2(y).transpose(1, 2)
    x = blk.out_norm(x + 0.5 * blk.ff2(x))
    return x, kv[:, -left:], u[:, :, -(conv.dw.kernel_size[0] - 1):]


@torch.no_grad()
def stream_log_probs(model: ConformerCTC, feats: torch.Tensor, chunk: int) -> torch.Tensor:
    """(T, n_mels) features -> (n*chunk, V) log-probs, chunk by chunk with caches.

    Chunks are taken the way sherpa-onnx's online CTC recognizer takes them: the next window is
    run only while `processed + window < T` (strictly), so frames at the end that do not fill a
    window are left for tail padding, as a live stream would.
    """
    step = StreamingStep(model.eval(), chunk)
    win, shift = window_frames(model.dims, chunk), shift_frames(model.dims, chunk)
    state = init_state(model.dims, 1)
    out, done = [], 0
    while done + win < feats.shape[0]:
        lp, *state = step(feats[None, done:done + win], *state)
        out.append(lp[0])
        done += shift
    return torch.cat(out) if out else feats.new_zeros(0, model.dims.vocab_size)
