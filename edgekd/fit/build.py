"""Turn a fully trained architecture into one variant (pruned? precision?) and score it where it runs.

Pruning uses the prune stage (`run_prune`: torch-pruning + a KD fine-tune); precision uses the
export code (`export_onnx` + `quantize`); the WER is onnxruntime's greedy transcript of the test
set through `run_eval("onnx:...")`, i.e. the file that would ship, not the PyTorch model.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgekd.atomic import atomic_write
from edgekd.fit.space import Variant


def _base(v: Variant, checkpoint: Path, root: Path, soft_targets, dev, finetune_steps: int) -> Path:
    """The fp32 ONNX of the (pruned) architecture, built once per (architecture, ratio)."""
    from edgekd.export import PruneOptions, run_prune
    from edgekd.export.onnx import export_onnx
    from edgekd.models import load_checkpoint

    d = root / v.stem
    onnx = d / "model.onnx"
    if onnx.exists():
        return onnx
    ckpt = checkpoint
    if v.prune:
        if not (d / "prune" / "manifest.json").exists():
            run_prune(PruneOptions(ratio=v.prune, finetune_steps=finetune_steps), checkpoint, d / "prune",
                      soft_targets=soft_targets, dev_manifest=dev, progress=False)
        ckpt = d / "prune" / "model.safetensors"
    d.mkdir(parents=True, exist_ok=True)
    (d / "checkpoint").write_text(str(ckpt))  # which weights this ONNX holds
    return export_onnx(load_checkpoint(ckpt), onnx)


def variant_onnx(v: Variant, root: Path) -> Path:
    return root / v.stem / ("model.onnx" if v.precision == "fp32" else f"model.{v.precision}.onnx")


def variant_checkpoint(v: Variant, root: Path) -> Path:
    """The checkpoint `v`'s ONNX files were exported from (recorded when the fp32 one was built)."""
    return Path((root / v.stem / "checkpoint").read_text())


def build_variant(v: Variant, checkpoint: Path, root: Path, *, soft_targets, dev, test, finetune_steps: int) -> dict:
    """Build `v` from the fully trained `checkpoint` under `root`; returns its test {wer, cer} (cached)."""
    from edgekd.evaluate import run_eval
    from edgekd.export.quantize import calibration_features, quantize
    from edgekd.models import load_checkpoint

    res = root / f"{v.name}.wer.json"
    if res.exists():
        return json.loads(res.read_text())
    fp32 = _base(v, checkpoint, root, soft_targets, dev, finetune_steps)
    path = variant_onnx(v, root)
    if not path.exists():
        cal = None
        if v.precision.startswith("int8"):
            ck = load_checkpoint(variant_checkpoint(v, root))
            cal = calibration_features(dev, ck.featurizer, 16)
        quantize(fp32, path, v.precision, calibration=cal)
    m = run_eval(f"onnx:{path}", test, root / f"{v.name}.eval", progress=False)
    atomic_write(res, json.dumps({"wer": m["wer"], "cer": m.get("cer"), "onnx": str(path)}))
    return json.loads(res.read_text())


def measure_host(device, onnx: Path, threads: int | None, seconds: float) -> dict[str, float]:
    """The runner on this host, pinned to the device's thread count: rtf and peak RSS."""
    from edgekd.profile.hostpin import run_host_pinned

    recs = {r["metric"]: r for r in run_host_pinned(device, onnx, threads=threads, seconds=seconds,
                                                    warmup=1, iterations=5)}
    return {"rtf": recs["rtf"]["value"], "peak_rss_mb": recs["peak_rss"]["value"],
            "host_threads": recs["rtf"]["pinned"]["host_threads"]}
