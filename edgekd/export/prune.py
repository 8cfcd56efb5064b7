"""Structured pruning with torch-pruning: tensors really shrink (FFN hidden and conv channels).

- FFN hidden channels: torch-pruning's DependencyGraph finds the coupled layers (w1 out ↔ w2 in)
  and `GroupMagnitudeImportance` (L2 over the whole group) ranks the channels.
- Conv-module channels: the GLU couples pw1's output channels c and c+C with the depthwise
  conv, its LayerNorm and pw2's inputs; the dependency graph does not model GLU's split, so the
  group is written out here and cut with torch-pruning's own pruning functions.
- Attention is left whole: rotary embeddings fix the head size, and heads are few (4).
Both FFNs of a layer keep the same width (the dims format stores one per layer). The pruned
model is saved as a normal checkpoint whose dims carry the per-layer widths, so it loads,
exports and quantizes like any other; it needs a short KD fine-tune (`edgekd prune --finetune`).
Unstructured magnitude pruning (`magnitude_sparsity`) only zeroes weights: it saves no time or
memory in onnxruntime, and the report says so.
"""

from __future__ import annotations

import dataclasses

import torch

from edgekd.errors import EdgekdError
from edgekd.models import Checkpoint


def _keep(width: int, ratio: float, multiple: int) -> int:
    k = int(round(width * (1 - ratio) / multiple)) * multiple
    return max(multiple, min(width, k))


def count_macs_per_frame(model) -> int:
    """Multiply-accumulates per output frame of the weight layers (attention scores excluded)."""
    total = 0
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            total += m.in_features * m.out_features
        elif isinstance(m, torch.nn.Conv1d):
            total += m.in_channels // m.groups * m.out_channels * m.kernel_size[0]
    return total


def structured_prune(ck: Checkpoint, ratio: float, *, multiple: int = 8, prune_conv: bool = True) -> Checkpoint:
    """Remove `ratio` of FFN hidden channels (and conv-module channels) in every layer."""
    import torch_pruning as tp

    if not 0 < ratio < 1:
        raise EdgekdError(f"pruning ratio must be in (0, 1), got {ratio}")
    model = ck.model.eval()
    dims = ck.dims
    x = torch.randn(2, 64, dims.n_mels)
    lens = torch.tensor([64, 50])
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=(x, lens))
    imp = tp.importance.GroupMagnitudeImportance(p=2)
    ffn_dims, conv_dims = [], []
    for blk in model.blocks:
        width = blk.ff1.w1.out_features
        keep = _keep(width, ratio, multiple)
        for ff in (blk.ff1, blk.ff2):
            group = dg.get_pruning_group(ff.w1, tp.prune_linear_out_channels, idxs=list(range(width)))
            scores = imp(group)
            drop = torch.argsort(scores)[: width - keep].tolist()
            if drop:
                dg.get_pruning_group(ff.w1, tp.prune_linear_out_channels, idxs=drop).prune()
        ffn_dims.append(keep)
        c = blk.conv
        C = c.dw.out_channels
        ckeep = _keep(C, ratio, multiple) if prune_conv else C
        if ckeep < C:
            w = c.pw1.weight.detach()[:, :, 0]
            score = (w[:C].norm(dim=1) * w[C:].norm(dim=1) * c.dw.weight.detach().flatten(1).norm(dim=1)
                     * c.pw2.weight.detach()[:, :, 0].norm(dim=0))
            drop = torch.argsort(score)[: C - ckeep].tolist()
            tp.prune_conv_out_channels(c.pw1, drop + [i + C for i in drop])  # GLU: value and gate halves
            tp.prune_depthwise_conv_out_channels(c.dw, drop)
            tp.prune_layernorm_out_channels(c.dw_norm, drop)
            tp.prune_conv_in_channels(c.pw2, drop)
        conv_dims.append(ckeep)
    new_dims = dataclasses.replace(dims, ffn_dims=tuple(ffn_dims), conv_dims=tuple(conv_dims))
    # Rebuild from the new dims and load the pruned weights: proves the dims describe the model.
    from edgekd.models.conformer import ConformerCTC

    fresh = ConformerCTC(new_dims)
    fresh.load_state_dict(model.state_dict())
    fresh.eval()
    extra = {**ck.extra, "pruning": {"method": "structured (torch-pruning)", "ratio": ratio,
                                     "params_before": ck.model.num_params() if ck.model is not model else None,
                                     "ffn_dims": ffn_dims, "conv_dims": conv_dims}}
    # The dims no longer match any preset: saying "student-xs" would make a reader rebuild the
    # wrong model. The checkpoint (and every artifact exported from it) records the real dims.
    return Checkpoint(fresh, ck.featurizer, ck.tokens, pruned_preset(ck.preset), ck.role, ck.train, extra, ck.sentencepiece)


def pruned_preset(preset: str) -> str:
    """The preset label of a model pruned from `preset`: provenance, never a buildable preset name."""
    if not preset or preset.startswith("pruned-from:"):
        return preset
    return f"pruned-from:{preset}"


def magnitude_sparsity(ck: Checkpoint, amount: float) -> tuple[Checkpoint, float]:
    """Zero the `amount` smallest-magnitude weights of every Linear/Conv (unstructured).

    Returns the checkpoint and the achieved sparsity. Dense runtimes (onnxruntime, LiteRT
    XNNPACK) still multiply the zeros: no speed-up, and the file only shrinks after compression.
    """
    import copy

    model = copy.deepcopy(ck.model)
    zeros = total = 0
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)):
                w = m.weight
                k = int(w.numel() * amount)
                if k:
                    thr = w.abs().flatten().kthvalue(k).values
                    w[w.abs() <= thr] = 0
                zeros += int((w == 0).sum())
                total += w.numel()
    extra = {**ck.extra, "pruning": {"method": "unstructured magnitude", "sparsity": zeros / max(total, 1)}}
    return Checkpoint(model, ck.featurizer, ck.tokens, ck.preset, ck.role, ck.train, extra, ck.sentencepiece), zeros / max(total, 1)
