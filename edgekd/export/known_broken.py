"""Export/runtime combinations known not to work (or not to help), with the reason — as data.

Each entry names the stage that would try it, the format, and `when`: the option values that make
the combination. Every stage that makes a choice calls `check(stage, format, **options)` with what
it is about to try *before* trying it: a `fails` entry makes it skip that combination (with the
reason in its notes), any other entry is recorded as a note (manifest, verify.md, the report).
Several entries describe the alternative edgekd does not take (dynamo=False, unstructured pruning):
the stage still asks, so a change of default meets the reason at once. Device-specific limits
live in each devices/*.yaml under `known_broken`.
"""

from __future__ import annotations

from typing import Any

STAGES = ("export", "prune", "profile")

KNOWN_BROKEN: tuple[dict, ...] = (
    {"stage": "export", "format": "tflite", "when": {"time_axis": "dynamic"}, "feature": "dynamic time axis",
     "effect": "fails",
     "reason": "litert-torch 0.10 converts fixed input shapes only; edgekd exports a fixed window and "
               "runs longer audio in overlapping chunks (edgekd.export.litert.chunked_log_probs)"},
    {"stage": "export", "format": "onnx", "when": {"precision": "int8-dynamic", "op_types": "MatMul,Conv"},
     "feature": "int8-dynamic on Conv (ConvInteger)", "effect": "slower",
     "reason": "ORT's ConvInteger kernel made a conformer ~2x slower than fp32 on x86 (DESIGN.md); "
               "edgekd quantizes MatMul only by default"},
    {"stage": "export", "format": "onnx", "when": {"precision": "fp16"}, "feature": "fp16 on CPUs without fp16 arithmetic",
     "effect": "no-speedup",
     "reason": "ORT's CPU provider computes fp16 graphs via casts to fp32 on x86 and Armv8.0 (Pi 3/4): "
               "the file halves, latency does not improve"},
    {"stage": "export", "format": "onnx", "when": {"exporter": "torchscript"}, "feature": "torch.onnx.export(dynamo=False)",
     "effect": "wrong-shapes",
     "reason": "the TorchScript exporter bakes the traced length into attention reshapes; edgekd uses dynamo=True"},
    {"stage": "export", "format": "tflite", "when": {"precision": "int8-static", "op_types": "all"},
     "feature": "full-integer int8 (ai-edge-quantizer static_wi8_ai8 on every op)", "effect": "wrong-outputs",
     "reason": "on student-xs 64 % of frames kept fp32's best token (WER 81 -> 90 %) and a window ran ~3x "
               "slower than fp32: the decomposed LayerNorm, the softmax and the GLU lose their precision in int8. "
               "edgekd's int8-static quantizes FULLY_CONNECTED and CONV only: 97.5 % of frames, WER unchanged "
               "(benchmarks/bench_litert.py)"},
    {"stage": "profile", "format": "tflite", "when": {"runtime": "tflite-runtime"},
     "feature": "tflite-runtime 2.14 int8 dynamic-range", "effect": "wrong-outputs",
     "reason": "tflite-runtime 2.14 needs numpy<2 and gave wrong int8 dynamic-range outputs; use ai-edge-litert"},
    {"stage": "export", "format": "sherpa-onnx", "when": {"subsampling": "not 4"}, "feature": "subsampling != 4",
     "effect": "wrong-timestamps",
     "reason": "sherpa-onnx's zipformer2_ctc loader hard-codes subsampling factor 4 (timestamps only; text is fine)"},
    {"stage": "profile", "format": "tflite", "when": {"mode": "estimate"}, "feature": "estimate", "effect": "fails",
     "reason": "the estimator reads ONNX graphs only; measure LiteRT on host or device"},
    {"stage": "prune", "format": "any", "when": {"method": "unstructured"}, "feature": "unstructured magnitude pruning",
     "effect": "no-speedup",
     "reason": "dense runtimes (ORT, XNNPACK) multiply the zeros; only structured pruning shrinks compute"},
)


def check(stage: str, fmt: str, **options: Any) -> list[dict]:
    """The entries for what `stage` is about to try: format `fmt` (or any) with `options`."""
    return [e for e in KNOWN_BROKEN if e["stage"] == stage and e["format"] in (fmt, "any")
            and all(k in options and str(options[k]) == str(v) for k, v in e["when"].items())]


def note(e: dict) -> str:
    return f"known {e['effect']}: {e['format']} {e['feature']} -- {e['reason']}"
