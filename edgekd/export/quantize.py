"""Post-training quantization of an exported ONNX model with ONNX Runtime's own tools.

- `int8-dynamic`: weights int8 per output channel, activations quantized on the fly; MatMul only by
  default — quantizing the conv front end too (ConvInteger) made the model ~2x *slower* on x86
  (DESIGN.md). Given calibration features, a per-layer sensitivity analysis keeps the layers
  int8 hurts most in fp32 (`edgekd.export.sensitivity`); the report lands beside the model.
- `int8-static`: QDQ, per-channel int8 weights, activation ranges calibrated on real log-mel
  features of utterances from a manifest (never random data: ranges would be wrong).
- `fp16`: weights and compute in float16, inputs/outputs kept float32. Halves the file; on CPUs
  without fp16 arithmetic (Pi 4 / Cortex-A72, x86) ORT computes in fp32, so expect no speed-up.
Every output keeps the source metadata with `quantization` updated.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

from edgekd.atomic import atomic_write
from edgekd.errors import EdgekdError
from edgekd.export.onnx import read_metadata, set_metadata
from edgekd.export.sensitivity import fallback_nodes, layer_sensitivity, weight_matmuls

MODES = ("int8-dynamic", "int8-static", "fp16")
CALIBRATION = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}  # ORT's CalibrationMethod


class FeatureReader:
    """onnxruntime CalibrationDataReader over real (x, x_lens) feature batches (one utterance each)."""

    def __init__(self, feats: Iterable[np.ndarray], input_names: tuple[str, str] = ("x", "x_lens")):
        self._it = iter(list(feats))
        self.names = input_names

    def get_next(self):
        f = next(self._it, None)
        if f is None:
            return None
        return {self.names[0]: f[None].astype(np.float32), self.names[1]: np.array([len(f)], np.int64)}

    def rewind(self):  # pragma: no cover - not needed by MinMax calibration
        pass


def calibration_features(manifest: str | Path, featurizer, n: int = 32, max_seconds: float = 12.0) -> list[np.ndarray]:
    """Log-mel features of up to `n` readable utterances of `manifest` (bad audio is skipped)."""
    from edgekd.audio import AudioError, featurize, load_audio
    from edgekd.manifest import read_manifest

    out = []
    for u in read_manifest(manifest):
        if len(out) >= n:
            break
        try:
            w = load_audio(u.audio, featurizer.sample_rate)[: int(max_seconds * featurizer.sample_rate)]
        except AudioError:
            continue
        f, lens = featurize([w], featurizer)
        out.append(f[0, : int(lens[0])].numpy())
    if not out:
        raise EdgekdError(f"{manifest}: no readable utterance to calibrate int8-static with")
    return out


def equal_lengths(feats: list[np.ndarray], frames: int = 300) -> list[np.ndarray]:
    """Cut utterances into equal `frames`-long pieces (shorter ones kept whole if all are shorter).

    ORT's histogram calibrators (percentile, entropy) stack every batch's activations into one
    array, so utterances of different lengths make it fail; MinMax only keeps running extremes."""
    n = min(frames, min(len(f) for f in feats))
    return [f[i:i + n] for f in feats for i in range(0, len(f) - n + 1, n)]


def quantize(src: str | Path, dst: str | Path, mode: str, *, calibration: list[np.ndarray] | None = None,
             op_types: tuple[str, ...] = ("MatMul",), fallback: bool = True, method: str = "minmax",
             fp32_ends: bool = False) -> Path:
    """Quantize ONNX `src` into `dst` with `mode` (one of MODES).

    int8-dynamic with `calibration` and `fallback`: layers found sensitive stay fp32, listed in the
    metadata (`fp32_fallback`) and, with every layer's score, in `<dst>.sensitivity.json`.
    int8-dynamic with `fp32_ends` and no calibration: the first and last weight MatMuls (the
    projection after subsampling, the output layer) stay fp32 -- the two layers the sensitivity
    analysis flagged, far above the rest, on both the shipped student and teacher.
    int8-static: `method` picks how activation ranges are calibrated (one of CALIBRATION)."""
    import onnx
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType, quant_pre_process,
                                          quantize_dynamic, quantize_static)

    if method not in CALIBRATION:
        raise EdgekdError(f"unknown calibration method {method!r}; choose from {', '.join(CALIBRATION)}")
    if mode not in MODES:
        raise EdgekdError(f"unknown quantization mode {mode!r}; choose from {', '.join(MODES)}")
    src, dst = Path(src), Path(dst)
    meta = read_metadata(src)
    if meta.get("quantization", "fp32") != "fp32":
        raise EdgekdError(f"{src} is already quantized ({meta['quantization']}); quantize the fp32 model")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp.onnx")
    meta_extra: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as td:
        if mode == "fp16":
            from onnxruntime.transformers.float16 import convert_float_to_float16

            m = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True, disable_shape_infer=False)
            onnx.save(m, str(tmp))
        else:
            pre = Path(td) / "pre.onnx"
            # Shape inference + graph cleanup first, as ORT recommends; the dynamo exporter's
            # graphs otherwise leave some MatMuls unquantized for lack of shapes.
            # ORT's symbolic shape inference, when it gives up, dumps sym_shape_infer_temp.onnx plus
            # uuid-named external-data files into the *working directory*: run it inside `td`.
            src_abs = src.resolve()  # before the chdir: `src` may be relative to the caller's directory
            with contextlib.chdir(td):
                try:
                    quant_pre_process(str(src_abs), str(pre), skip_symbolic_shape=False)
                except Exception:
                    quant_pre_process(str(src_abs), str(pre), skip_symbolic_shape=True)
            if mode == "int8-dynamic":
                # Per-channel weight scales: more transcripts identical to fp32 at the same speed
                # (benchmarks/int8_sensitivity.py measures both on a real student).
                keep: list[str] = []
                if calibration and fallback:
                    rows = layer_sensitivity(pre, calibration)
                    keep = fallback_nodes(rows)
                    meta_extra["fp32_fallback"] = ",".join(keep)
                    atomic_write(dst.with_suffix(".sensitivity.json"),
                                 json.dumps({"fp32_fallback": keep, "layers": rows}, indent=1))
                elif fp32_ends:
                    mm = weight_matmuls(pre)
                    keep = [mm[0], mm[-1]] if len(mm) > 2 else []
                    meta_extra["fp32_fallback"] = ",".join(keep)
                quantize_dynamic(str(pre), str(tmp), op_types_to_quantize=list(op_types), weight_type=QuantType.QInt8,
                                 per_channel=True, nodes_to_exclude=keep)
            else:
                if not calibration:
                    raise EdgekdError("int8-static needs calibration features (a manifest of real audio)")
                names = tuple(i.name for i in onnx.load(str(pre), load_external_data=False).graph.input)[:2]
                feats = calibration if method == "minmax" else equal_lengths(calibration)
                quantize_static(str(pre), str(tmp), FeatureReader(feats, names), quant_format=QuantFormat.QDQ,
                                per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                                op_types_to_quantize=list(op_types),
                                calibrate_method=getattr(CalibrationMethod, CALIBRATION[method]),
                                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
    set_metadata(tmp, {**meta, "quantization": mode, **meta_extra})
    tmp.replace(dst)
    return dst
