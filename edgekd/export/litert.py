"""LiteRT (.tflite) export at a fixed window, dynamic-range int8, and chunked inference.

litert-torch converts only a fixed input length (a dynamic time axis fails, see
`known_broken.py`), so the model is exported for a window of `window_frames` feature frames
(default 600 = 6 s) with a length input, and longer audio runs in overlapping windows:
`chunked_log_probs` slides the window by `window - 2*context` frames and keeps each window's
centre, so every kept output frame saw at least `context` frames of left and right context
(except at the ends of the utterance). Its WER cost against whole-utterance inference is
measured by `edgekd verify` (row `*.chunked`).

The metadata that ONNX files carry inside is written beside the .tflite as `<file>.json`.
The conversion needs the optional extra: pip install 'edgekd[tflite]'.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from edgekd.bench.labelled import out_len as _out_len, window_log_probs
from edgekd.atomic import atomic_path, atomic_write
from edgekd.errors import EdgekdError
from edgekd.export.graphcache import built, content_digest
from edgekd.export.onnx import LogProbsGraph, metadata_for
from edgekd.models import Checkpoint

TFLITE_MODES = ("fp32", "fp16", "int8-dynamic", "int8-static")
# ai-edge-quantizer recipes: fp16 = weights stored fp16 (FLOAT_CASTING, dequantized to fp32 for
# compute on CPU; half the file); int8-dynamic = int8 weights, activations quantized per call;
# int8-static = int8 weights and activations with ranges from calibration windows, on the weight
# ops only (STATIC_OPS; the rest stays fp32). Full integer (every op int8) is known broken for a
# conformer: see known_broken.py and the full-integer row of benchmarks/bench_litert.py.
STATIC_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")


def have_litert_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("litert_torch") is not None


class _WindowGraph(torch.nn.Module):
    """Fixed window: x (1, W, F) + x_lens (1,) int32 -> log_probs (1, W', V)."""

    def __init__(self, model):
        super().__init__()
        self.g = LogProbsGraph(model)

    def forward(self, x, x_lens):
        lp, _ = self.g(x, x_lens.to(torch.int64))
        return lp


def export_tflite(ck: Checkpoint, path: str | Path, *, window_frames: int = 600, context_frames: int = 48,
                  mode: str = "fp32", calibration: list[np.ndarray] | None = None) -> Path:
    """Convert `ck` to LiteRT with a fixed (1, window_frames, n_mels) input; `mode` one of TFLITE_MODES.

    `context_frames` is the overlap `chunked_log_probs` uses for longer audio; it is written to
    the sidecar so a runner decodes the file the way it was verified. int8-static needs
    `calibration`: log-mel features (T, F) of real audio, cut into windows here.
    """
    if mode not in TFLITE_MODES:
        raise EdgekdError(f"unknown LiteRT mode {mode!r}; choose from {', '.join(TFLITE_MODES)}")
    if mode == "int8-static" and not calibration:
        raise EdgekdError("LiteRT int8-static needs calibration audio (its activation ranges come from it)")
    if not have_litert_torch():
        raise EdgekdError("LiteRT export needs litert-torch: pip install 'edgekd[tflite]'")
    import litert_torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if window_frames < ck.dims.min_frames:
        raise EdgekdError(f"window_frames must be >= {ck.dims.min_frames}")
    _check_chunking(window_frames, context_frames, ck.dims.subsampling)
    graph = _WindowGraph(ck.model.eval()).eval()
    args = (torch.zeros(1, window_frames, ck.dims.n_mels), torch.tensor([window_frames], dtype=torch.int32))

    def convert(tmp: Path) -> None:
        litert_torch.convert(graph, args).export(str(tmp))

    with tempfile.TemporaryDirectory() as td:
        fp32 = Path(td) / "fp32.tflite"
        # once per content: `edgekd export` asks for fp32 and int8 of the same weights and window
        fp32.write_bytes(built(content_digest(graph, [ck.dims.to_dict(), window_frames]), convert,
                               Path(td) / "convert.tflite", "LiteRT conversion failed", _check_tflite, ".tflite"))
        if mode != "fp32":
            _quantize(fp32, Path(td) / "q.tflite", mode, calibration, window_frames)
            fp32 = Path(td) / "q.tflite"
        atomic_write(path, fp32.read_bytes())
    meta: dict = metadata_for(ck, quantization=mode, window_frames=str(window_frames),
                              context_frames=str(context_frames))
    meta["model_type"] = "edgekd_ctc_window"  # not a sherpa-onnx model
    meta["contract"] = io_contract(ck, window_frames, context_frames)
    atomic_write(sidecar(path), json.dumps(meta, indent=1))
    return path


def quantize_tflite(src: str | Path, dst: str | Path, mode: str, calibration: list[np.ndarray] | None = None,
                    *, full_integer: bool = False) -> Path:
    """An fp32 window .tflite (with its sidecar) -> `mode` (fp16, int8-dynamic, int8-static), sidecar
    copied with its `quantization` updated; no second torch conversion. `full_integer` (int8-static
    on every op) exists to measure why edgekd does not ship it."""
    src, dst = Path(src), Path(dst)
    meta = read_sidecar(src)
    if meta.get("quantization") != "fp32" or mode not in TFLITE_MODES[1:]:
        raise EdgekdError(f"{src}: LiteRT quantization takes an fp32 window model to one of "
                          f"{', '.join(TFLITE_MODES[1:])} (got {meta.get('quantization')} -> {mode})")
    if mode == "int8-static" and not calibration:
        raise EdgekdError("LiteRT int8-static needs calibration audio (its activation ranges come from it)")
    with atomic_path(dst) as tmp:
        _quantize(src, tmp, mode, calibration, int(meta["window_frames"]), full_integer)
    atomic_write(sidecar(dst), json.dumps({**meta, "quantization": mode + ("-full-integer" if full_integer else "")},
                                          indent=1))
    return dst


def _quantize(src: Path, dst: Path, mode: str, calibration: list[np.ndarray] | None, window: int,
              full_integer: bool = False) -> None:
    from ai_edge_quantizer import quantizer, recipe

    qt = quantizer.Quantizer(str(src))
    if mode == "int8-dynamic":
        qt.load_quantization_recipe(recipe.dynamic_wi8_afp32())
        result = qt.quantize()
    elif mode == "fp16":
        from ai_edge_quantizer.algorithm_manager import AlgorithmName
        from ai_edge_quantizer.qtyping import TFLOperationName
        from ai_edge_quantizer.recipe_manager import RecipeManager

        rm = RecipeManager()
        rm.add_weight_only_config(regex=".*", operation_name=TFLOperationName.ALL_SUPPORTED, num_bits=16,
                                  algorithm_key=AlgorithmName.FLOAT_CASTING)
        qt.load_quantization_recipe(rm.get_quantization_recipe())
        result = qt.quantize()
    else:  # int8-static (full_integer: every op, the known-broken recipe, for the benchmark)
        from ai_edge_litert.interpreter import Interpreter
        from ai_edge_quantizer.qtyping import TFLOperationName
        from ai_edge_quantizer.recipe_manager import RecipeManager

        if full_integer:
            qt.load_quantization_recipe(recipe.static_wi8_ai8())
        else:
            rm = RecipeManager()
            for op in STATIC_OPS:
                rm.add_static_config(regex=".*", operation_name=TFLOperationName[op], activation_num_bits=8,
                                     weight_num_bits=8)
            qt.load_quantization_recipe(rm.get_quantization_recipe())
        sigs = Interpreter(model_path=str(src)).get_signature_list()
        (sig, io), = sigs.items()
        x_name, n_name = io["inputs"]  # args_0: features, args_1: valid frames (the _WindowGraph order)
        samples = [{x_name: x, n_name: np.array([n], dtype=np.int32)}
                   for x, n in calibration_windows(calibration, window)]
        result = qt.quantize(qt.calibrate({sig: samples}, num_threads=1))
    result.export_model(str(dst), overwrite=True)


def calibration_windows(feats: list[np.ndarray], window: int, per_utt: int = 4):
    """(x (1, window, F) zero-padded, n valid frames) for up to `per_utt` windows of each utterance:
    what the model sees when it runs chunked, padding included."""
    for f in feats:
        for start in range(0, max(len(f), 1), window)[:per_utt]:
            piece = f[start:start + window]
            x = np.zeros((1, window, f.shape[1]), dtype=np.float32)
            x[0, : len(piece)] = piece
            yield x, len(piece)


def _check_tflite(data: bytes) -> None:
    from ai_edge_litert.interpreter import Interpreter

    Interpreter(model_content=data)


def sidecar(path: str | Path) -> Path:
    return Path(str(path) + ".json")


def read_sidecar(path: str | Path) -> dict:
    """The .tflite's sidecar (featurizer, tokens, window contract), or one line saying it is missing."""
    sc = sidecar(path)
    if not sc.is_file():
        raise EdgekdError(f"{path}: its sidecar {sc.name} (featurizer, tokens, window contract) is missing; "
                          "re-export with `edgekd export`")
    return json.loads(sc.read_text())


def io_contract(ck: Checkpoint, window: int, context: int) -> dict:
    """Everything a runner needs to feed the window model and read it back, with no edgekd code.

    The .tflite file itself holds only tensors; this is what the ONNX graph's dynamic axes and
    `log_probs_len` output say implicitly.
    """
    s = ck.dims.subsampling
    return {
        "input": {"shape": [1, window, ck.dims.n_mels], "dtype": "float32",
                  "what": "log-mel features from `featurizer` (edgekd.audio.Featurizer), zero-padded past n"},
        "length_input": {"shape": [1], "dtype": "int32", "what": "n, the valid frames in the window (<= window)"},
        "output": {"shape": [1, _out_len(window, s), len(ck.tokens)], "dtype": "float32",
                   "what": "CTC log-probs over `tokens` (blank id 0); only the first output_length(n) frames are valid"},
        "output_length": {"rule": "repeat log2(subsampling) times: n = max((n - 1) // 2, 0)",
                          "subsampling": s, "halvings": {2: 1, 4: 2, 8: 3}[s]},
        "window_frames": window,
        "context_frames": context,
        "stride_frames": _stride(window, context, s),
        "chunking": ("audio longer than the window runs in windows starting every stride_frames; each keeps the "
                     "output frames of its centre (context_frames of input on each side; all of the first window's "
                     "left part and the last window's right part): edgekd.export.litert.chunked_log_probs"),
        "exact_over": window,  # frames: longer audio is an approximation (attention sees one window)
        "frame_rate": ck.frame_rate,
        "decoding": "greedy CTC: argmax per frame, merge repeats, drop blanks",
    }


def _stride(window: int, context: int, subsampling: int) -> int:
    return (window - 2 * context) // subsampling * subsampling


def _check_chunking(window: int, context: int, subsampling: int) -> None:
    if context < 2 * subsampling or window <= 2 * context:
        # the front end's valid convolutions lose ~2 output frames at each window edge
        raise EdgekdError(f"chunking needs 2*subsampling ({2 * subsampling}) <= context ({context}) < window/2 "
                          f"(window {window})")


class TfliteModel:
    """A fixed-window .tflite model run with ai-edge-litert's interpreter."""

    def __init__(self, path: str | Path, threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        self.interp = Interpreter(model_path=str(path), num_threads=threads)
        self.interp.allocate_tensors()
        ins = self.interp.get_input_details()
        self.x_in = next(d for d in ins if len(d["shape"]) == 3)
        self.len_in = next((d for d in ins if len(d["shape"]) == 1), None)
        self.out = self.interp.get_output_details()[0]
        self.window = int(self.x_in["shape"][1])

    def __call__(self, x: np.ndarray, n: int) -> np.ndarray:
        """x (1, window, F) zero-padded past `n` valid frames -> log_probs (1, W', V), float32."""
        self.interp.set_tensor(self.x_in["index"], _to_input(x, self.x_in))
        if self.len_in is not None:
            self.interp.set_tensor(self.len_in["index"], np.array([n], dtype=self.len_in["dtype"]))
        self.interp.invoke()
        return _from_output(self.interp.get_tensor(self.out["index"]), self.out)


def _to_input(x: np.ndarray, detail: dict) -> np.ndarray:
    """Float features as the input tensor wants them: a full-integer model takes int8 with the scale
    and zero point its calibration chose (the tensor's `quantization`)."""
    if np.issubdtype(detail["dtype"], np.floating):
        return x.astype(detail["dtype"])
    scale, zero = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(detail["dtype"])


def _from_output(y: np.ndarray, detail: dict) -> np.ndarray:
    if np.issubdtype(y.dtype, np.floating):
        return y.astype(np.float32)
    scale, zero = detail["quantization"]
    return ((y.astype(np.float32) - zero) * scale).astype(np.float32)


def chunked_log_probs(run_window: Callable[[np.ndarray, int], np.ndarray], feats: np.ndarray, window: int,
                      context: int, subsampling: int = 4) -> np.ndarray:
    """Log-probs (T', V) for features (T, F) of any length through a fixed-`window` model (the
    chunking lives in the torch-free bench/labelled.py, so host and device cut audio alike)."""
    _check_chunking(window, context, subsampling)
    return window_log_probs(run_window, feats, window, context, subsampling)


