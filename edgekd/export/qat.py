"""Quantization-aware KD: fine-tune a checkpoint so its int8-dynamic export decodes like its fp32 self.

Post-training int8 (per-channel weights, sensitive layers kept fp32) still changes the greedy
transcript of ~1 utterance in 5 on the shipped student (benchmarks/int8_sensitivity.py). Here the
model learns to be robust to exactly the rounding onnxruntime's dynamic quantization applies:

- every `nn.Linear` (what the ONNX export turns into the weight MatMuls ORT quantizes; attention's
  activation x activation MatMuls stay fp32 there, so here too) runs with its weight rounded to
  int8 per output channel, symmetric in [-127, 127] (ORT's QInt8 per-channel weights), and its
  input rounded to uint8 with a per-utterance asymmetric range that includes 0
  (DynamicQuantizeLinear: one range per tensor, and runtimes send one utterance at a time);
- gradients pass straight through the rounding (STE, torch's fake_quantize ops);
- the loss is KL(fp32 model || fake-quant model) per valid frame: the original fp32 model is the
  teacher, because the goal is the fp32 model's transcripts, not new ones.

The result is a plain checkpoint (same dims, same featurizer, `train["qat"]` records the run):
export and quantize it as any other. `run_qat` is the public entry; `edgekd qat` calls it.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from edgekd.errors import EdgekdError
from edgekd.kd_losses import kd_loss  # at T=1: KL(fp32 model || fake-quant model) per valid frame


@dataclass(frozen=True)
class QATOptions:
    steps: int = 300
    lr: float = 1e-5  # Adam steps are ~lr per weight whatever the gradient: 1e-4 doubled the KL it minimises (300 steps, student-xs)
    max_frames: int = 6000  # padded feature frames per batch
    seed: int = 0
    threads: int = 1
    progress: bool = True

    def __post_init__(self):
        self._verify()

    def _verify(self):
        if self.steps < 1 or self.max_frames < 100 or not self.lr > 0 or self.threads < 1:
            raise ValueError("steps >= 1, max_frames >= 100, lr > 0 and threads >= 1 are required")


def _fq_weight(w: torch.Tensor) -> torch.Tensor:
    scale = (w.detach().abs().amax(dim=1) / 127.0).clamp(min=1e-8)
    return torch.fake_quantize_per_channel_affine(w, scale, torch.zeros_like(scale, dtype=torch.int32), 0, -127, 127)


def _fq_activation(x: torch.Tensor) -> torch.Tensor:
    """uint8, asymmetric, range including 0, one range per utterance (dim 0) as DynamicQuantizeLinear per run."""
    flat = x.detach().reshape(x.shape[0], -1)
    lo, hi = flat.amin(1).clamp(max=0.0), flat.amax(1).clamp(min=0.0)
    scale = ((hi - lo) / 255.0).clamp(min=1e-8)
    zp = torch.round(-lo / scale).clamp(0, 255).to(torch.int32)
    return torch.fake_quantize_per_channel_affine(x, scale, zp, 0, 0, 255)


class _FakeQuantLinear(torch.nn.Linear):
    """An nn.Linear whose forward sees int8 rounding; same parameters, so state_dict keys don't change."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(_fq_activation(x), _fq_weight(self.weight), self.bias)


def fake_quantize(model: torch.nn.Module) -> int:
    """Switch every nn.Linear of `model` to fake-quant in place (class swap: parameters untouched); -> count."""
    n = 0
    for m in model.modules():
        if type(m) is torch.nn.Linear:
            m.__class__ = _FakeQuantLinear
            n += 1
    return n


def strip_fake_quant(model: torch.nn.Module) -> None:
    for m in model.modules():
        if type(m) is _FakeQuantLinear:
            m.__class__ = torch.nn.Linear


def run_qat(opts: QATOptions, checkpoint: str | Path, manifest: str | Path, out_path: str | Path,
            cache_dir: str | Path | None = None) -> Path:
    """Fine-tune `checkpoint` with int8 fake-quant against its own fp32 outputs on `manifest`'s audio."""
    from tqdm import tqdm

    from edgekd.manifest import read_manifest
    from edgekd.models import load_checkpoint
    from edgekd.train.data import BucketBatchSampler, cache_features, collate

    torch.set_num_threads(opts.threads)
    torch.manual_seed(opts.seed)
    ck = load_checkpoint(checkpoint)
    utts = read_manifest(manifest)
    if not utts:
        raise EdgekdError(f"{manifest}: no utterances to fine-tune on")
    out_path = Path(out_path)
    cache = Path(cache_dir) if cache_dir else out_path.parent / (out_path.stem + ".features")
    fs = cache_features(utts, ck.featurizer, cache, progress=opts.progress)
    ref = ck.model.eval()
    student = copy.deepcopy(ref)
    n_linear = fake_quantize(student)
    student.eval()  # no dropout: the fp32 model is matched as it decodes
    for p in ref.parameters():
        p.requires_grad_(False)
    optim = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=opts.lr)
    sampler = iter(BucketBatchSampler(fs.lengths, opts.max_frames, seed=opts.seed))
    # a fixed probe (the first utterances, up to max_frames padded): KL before vs after, same audio
    probe = list(range(len(fs)))
    while len(probe) > 1 and len(probe) * int(max(fs.lengths[i] for i in probe)) > opts.max_frames:
        probe.pop()
    px, plens = collate(fs, probe)

    def probe_kl() -> float:
        with torch.no_grad():
            want, out_lens = ref(px, plens)
            return float(kd_loss(student(px, plens)[0], want, out_lens))

    kl_before = probe_kl()
    t0, losses = time.time(), []
    for _ in tqdm(range(opts.steps), desc="qat", disable=not opts.progress):
        _, _, idx = next(sampler)
        x, lens = collate(fs, idx)
        with torch.no_grad():
            want, out_lens = ref(x, lens)
        got, _ = student(x, lens)
        loss = kd_loss(got, want, out_lens)
        if not torch.isfinite(loss):
            raise EdgekdError(f"qat: loss is {float(loss)} at step {len(losses)}; lower --lr")
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        losses.append(float(loss.detach()))
    kl_after = probe_kl()
    strip_fake_quant(student)
    info = {"steps": opts.steps, "lr": opts.lr, "max_frames": opts.max_frames, "seed": opts.seed,
            "linear_layers": n_linear, "manifest": str(manifest), "source": str(checkpoint),
            "probe_utterances": len(probe), "probe_kl_before": round(kl_before, 7),
            "probe_kl_after": round(kl_after, 7), "train_s": round(time.time() - t0, 1)}
    ck.model = student
    ck.train = {**ck.train, "qat": json.loads(json.dumps(info))}
    return ck.save(out_path)
