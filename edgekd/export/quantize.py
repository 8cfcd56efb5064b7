"""Post-training quantization of an exported ONNX model with ONNX Runtime's own tools.

- `int8-dynamic`: weights int8, activations quantized on the fly; MatMul only by default —
  quantizing the conv front end too (ConvInteger) made the model ~2x *slower* on x86 (DESIGN.md).
- `int8-static`: QDQ, per-channel int8 weights, activation ranges calibrated on real log-mel
  features of utterances from a manifest (never random data: ranges would be wrong).
- `fp16`: weights and compute in float16, inputs/outputs kept float32. Halves the file; on CPUs
  without fp16 arithmetic (Pi 4 / Cortex-A72, x86) ORT computes in fp32, so expect no speed-up.
Every output keeps the source metadata with `quantization` updated.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

from edgekd.errors import EdgekdError
from edgekd.export.onnx import read_metadata, set_metadata

MODES = ("int8-dynamic", "int8-static", "fp16")


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


def quantize(src: str | Path, dst: str | Path, mode: str, *, calibration: list[np.ndarray] | None = None,
             op_types: tuple[str, ...] = ("MatMul",)) -> Path:
    """Quantize ONNX `src` into `dst` with `mode` (one of MODES)."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_dynamic, quantize_static

    if mode not in MODES:
        raise EdgekdError(f"unknown quantization mode {mode!r}; choose from {', '.join(MODES)}")
    src, dst = Path(src), Path(dst)
    meta = read_metadata(src)
    if meta.get("quantization", "fp32") != "fp32":
        raise EdgekdError(f"{src} is already quantized ({meta['quantization']}); quantize the fp32 model")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp.onnx")
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
                quantize_dynamic(str(pre), str(tmp), op_types_to_quantize=list(op_types), weight_type=QuantType.QInt8,
                                 per_channel=False)
            else:
                if not calibration:
                    raise EdgekdError("int8-static needs calibration features (a manifest of real audio)")
                names = tuple(i.name for i in onnx.load(str(pre), load_external_data=False).graph.input)[:2]
                quantize_static(str(pre), str(tmp), FeatureReader(calibration, names), quant_format=QuantFormat.QDQ,
                                per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                                op_types_to_quantize=list(op_types),
                                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
    set_metadata(tmp, {**meta, "quantization": mode})
    tmp.replace(dst)
    return dst
