"""Where a checkpoint's int8-dynamic error comes from: weights or activations, which layers, and
whether SmoothQuant-style rescaling (exact in fp32) would shrink it.

Usage: python3 benchmarks/int8_error_split.py --model models/student/student-xs.safetensors \
           --audio data/teacher2/target/train.jsonl --cache runs/qat/feats-target-train

Uses `edgekd.export.qat`'s fake-quant, which mirrors onnxruntime's dynamic int8 (tested against
it): int8 per-channel symmetric weights, uint8 per-utterance activations. Reports the mean KL per
frame to the fp32 model (and best-token agreement) on 64 utterances for: weights only,
activations only, both; with the first and last Linear (what the default recipe keeps fp32)
rounded or not; the ten layers that cost most alone; then SmoothQuant's per-channel scales
s = max|X|^a / max|W|^(1-a), folded into the LayerNorm before each FFN input and qkv (exact), and
into V before the attention output projection (exact: attention is linear in V), for a in 0.3, 0.5, 0.7.
"""

from __future__ import annotations

import argparse
import copy

import torch
import torch.nn.functional as F


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--audio", required=True)
    ap.add_argument("--cache", required=True, help="feature cache folder (made on first use)")
    a = ap.parse_args()
    from edgekd.export import qat as Q
    from edgekd.manifest import read_manifest
    from edgekd.models import load_checkpoint
    from edgekd.train.data import cache_features, collate

    torch.set_num_threads(1)
    ck = load_checkpoint(a.model)
    ref = ck.model.eval()
    fs = cache_features(read_manifest(a.audio), ck.featurizer, a.cache, progress=False)
    probe = [collate(fs, list(range(i, i + 8))) for i in range(0, 64, 8)]
    calib = [collate(fs, list(range(i, i + 8))) for i in range(200, 264, 8)]  # apart from the probe
    ends = ("subsample.out", "head")

    class WeightOnly(torch.nn.Linear):
        def forward(self, x):
            return F.linear(x, Q._fq_weight(self.weight), self.bias)

    class ActOnly(torch.nn.Linear):
        def forward(self, x):
            return F.linear(Q._fq_activation(x), self.weight, self.bias)

    @torch.no_grad()
    def kl(model) -> tuple[float, float]:
        tot, n, agree = 0.0, 0, 0
        for x, lens in probe:
            want, ol = ref(x, lens)
            got, _ = model(x, lens)
            p, q = want.log_softmax(-1), got.log_softmax(-1)
            k = (p.exp() * (p - q)).sum(-1)
            m = torch.arange(k.shape[1])[None] < ol[:, None]
            tot, n = tot + float((k * m).sum()), n + int(m.sum())
            agree += int(((p.argmax(-1) == q.argmax(-1)) & m).sum())
        return tot / n, agree / n

    def rounded(model, cls, only=None, skip=()):
        m = copy.deepcopy(model)
        for name, mod in m.named_modules():
            if type(mod) is torch.nn.Linear and name not in skip and (only is None or name == only):
                mod.__class__ = cls
        return m

    print("| rounded | ends too | KL/frame | best token agrees % |\n|---|---|---|---|")
    for label, cls in (("weights", WeightOnly), ("activations", ActOnly), ("both", Q._FakeQuantLinear)):
        for skip in ((), ends):
            k, ag = kl(rounded(ref, cls, skip=skip))
            print(f"| {label} | {'yes' if not skip else 'no (default)'} | {k:.2e} | {100 * ag:.2f} |")
    linears = [n for n, m in ref.named_modules() if type(m) is torch.nn.Linear]
    alone = sorted(((kl(rounded(ref, Q._FakeQuantLinear, only=n))[0], n) for n in linears), reverse=True)
    print("\nlayers that cost most alone (both rounded): " + ", ".join(f"{n} {k:.1e}" for k, n in alone[:10]))

    @torch.no_grad()
    def smoothed(alpha: float):
        m = copy.deepcopy(ref)
        pairs = []  # (input amax via hook target, linear, fold function)
        for b in m.blocks:
            for ln, lin in ((b.ff1.norm, b.ff1.w1), (b.ff2.norm, b.ff2.w1), (b.attn_norm, b.attn.qkv)):
                pairs.append((lin, lambda s, ln=ln: (ln.weight.div_(s), ln.bias.div_(s))))
            d = b.attn.proj.weight.shape[1]
            pairs.append((b.attn.proj, lambda s, qkv=b.attn.qkv, d=d: (qkv.weight[2 * d:].div_(s[:, None]),
                                                                      qkv.bias[2 * d:].div_(s))))
        amax, hooks = {}, []
        for lin, _ in pairs:
            def hook(mod, inp):
                v = inp[0].detach().abs().reshape(-1, inp[0].shape[-1]).amax(0)
                amax[mod] = torch.maximum(amax.get(mod, v), v)
            hooks.append(lin.register_forward_pre_hook(hook))
        for x, lens in calib:
            m(x, lens)
        for h in hooks:
            h.remove()
        for lin, fold in pairs:
            s = (amax[lin].clamp(min=1e-5) ** alpha / lin.weight.abs().amax(0).clamp(min=1e-5) ** (1 - alpha))
            s = s.clamp(1e-2, 1e2)
            fold(s)
            lin.weight.mul_(s[None, :])
        return m

    base = kl(rounded(ref, Q._FakeQuantLinear, skip=ends))[0]
    print(f"\nSmoothQuant (ends fp32, both rounded); without it KL/frame {base:.2e}:")
    for alpha in (0.3, 0.5, 0.7):
        m = smoothed(alpha)
        exact = kl(m)[0]  # fp32: the fold must not change the model
        k, ag = kl(rounded(m, Q._FakeQuantLinear, skip=ends))
        print(f"  a={alpha}: fp32 KL {exact:.1e} (exact fold), int8 KL/frame {k:.2e} ({k / base - 1:+.0%}), "
              f"agree {100 * ag:.2f} %")


if __name__ == "__main__":
    main()
