"""Export/runtime combinations known not to work (or not to help), with the reason — as data.

Checked by `check()` before a stage tries one, and listed in the report. Device-specific
limits live in each devices/*.yaml under `known_broken`.
"""

from __future__ import annotations

KNOWN_BROKEN: tuple[dict, ...] = (
    {"format": "tflite", "feature": "dynamic time axis", "effect": "fails",
     "reason": "litert-torch 0.10 converts fixed input shapes only; edgekd exports a fixed window and "
               "runs longer audio in overlapping chunks (edgekd.export.litert.chunked_log_probs)"},
    {"format": "onnx", "feature": "int8-dynamic on Conv (ConvInteger)", "effect": "slower",
     "reason": "ORT's ConvInteger kernel made a conformer ~2x slower than fp32 on x86 (DESIGN.md); "
               "edgekd quantizes MatMul only by default"},
    {"format": "onnx", "feature": "fp16 on CPUs without fp16 arithmetic", "effect": "no-speedup",
     "reason": "ORT's CPU provider computes fp16 graphs via casts to fp32 on x86 and Armv8.0 (Pi 3/4): "
               "the file halves, latency does not improve"},
    {"format": "onnx", "feature": "torch.onnx.export(dynamo=False)", "effect": "wrong-shapes",
     "reason": "the TorchScript exporter bakes the traced length into attention reshapes; edgekd uses dynamo=True"},
    {"format": "tflite", "feature": "tflite-runtime 2.14 int8 dynamic-range", "effect": "wrong-outputs",
     "reason": "tflite-runtime 2.14 needs numpy<2 and gave wrong int8 dynamic-range outputs; use ai-edge-litert"},
    {"format": "sherpa-onnx", "feature": "subsampling != 4", "effect": "wrong-timestamps",
     "reason": "sherpa-onnx's zipformer2_ctc loader hard-codes subsampling factor 4 (timestamps only; text is fine)"},
    {"format": "tflite", "feature": "estimate", "effect": "fails",
     "reason": "the estimator reads ONNX graphs only; measure LiteRT on host or device"},
    {"format": "any", "feature": "unstructured magnitude pruning", "effect": "no-speedup",
     "reason": "dense runtimes (ORT, XNNPACK) multiply the zeros; only structured pruning shrinks compute"},
)


def check(fmt: str, feature: str) -> dict | None:
    """The known-broken entry for (format, feature), if any."""
    for e in KNOWN_BROKEN:
        if e["format"] in (fmt, "any") and e["feature"] == feature:
            return e
    return None
