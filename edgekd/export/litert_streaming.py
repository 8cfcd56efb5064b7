"""LiteRT (.tflite) streaming model: one chunk per call, the caches as explicit inputs/outputs.

The same `StreamingStep` as the sherpa-onnx export, at batch 1 with every shape fixed (what
litert-torch converts): inputs `feats` (1, window, n_mels) float32, `cache_k`, `cache_conv`
(float32, shapes in the sidecar) and `cache_len` (1,) int32; outputs log-probs (1, chunk, V) and
the three next caches. Unlike the fixed-window offline .tflite (`export/litert.py`), nothing is cut
into windows: the caches carry the past, so long audio decodes exactly as the PyTorch chunk loop.
The sidecar `<file>.json` holds the metadata the ONNX export carries inside (window, shift, cache
shapes, featurizer, tokens). Needs the optional extra: pip install 'edgekd[tflite]'.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from edgekd.errors import EdgekdError
from edgekd.export.litert import have_litert_torch, sidecar
from edgekd.export.streaming import streaming_metadata
from edgekd.models import Checkpoint
from edgekd.models.streaming import StreamingStep, cache_shapes, window_frames


class _Step32(torch.nn.Module):
    """StreamingStep with an int32 cache length (LiteRT's integer type of choice)."""

    def __init__(self, step: StreamingStep):
        super().__init__()
        self.step = step

    def forward(self, feats, cache_k, cache_conv, cache_len):
        lp, k, c, n = self.step(feats, cache_k, cache_conv, cache_len.to(torch.int64))
        return lp, k, c, n.to(torch.int32)


def export_streaming_tflite(ck: Checkpoint, path: str | Path, chunk: int) -> Path:
    """Convert `ck` (a streaming model) to a chunk-of-`chunk`-frames .tflite with explicit caches."""
    if not have_litert_torch():
        raise EdgekdError("LiteRT export needs litert-torch: pip install 'edgekd[tflite]'")
    import litert_torch

    meta = streaming_metadata(ck, chunk)  # refuses an offline model or other features, as for sherpa
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    k, c = cache_shapes(ck.dims)
    args = (torch.zeros(1, window_frames(ck.dims, chunk), ck.dims.n_mels), torch.zeros(1, *k), torch.zeros(1, *c),
            torch.zeros(1, dtype=torch.int32))
    with torch.no_grad():
        try:
            edge = litert_torch.convert(_Step32(StreamingStep(ck.model.eval(), chunk)).eval(), args)
        except Exception as e:
            raise EdgekdError(f"LiteRT streaming conversion failed: {str(e).splitlines()[0]}") from e
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td) / "m.tflite"
        edge.export(str(tmp))
        out_tmp = path.with_name(path.name + ".tmp")
        out_tmp.write_bytes(tmp.read_bytes())
        out_tmp.replace(path)
    meta.update({"model_type": "edgekd_ctc_streaming", "input": "features-streaming-litert",
                 "io": "inputs feats (1, window_size, n_mels), cache_k, cache_conv, cache_len (1,) int32; "
                       "outputs log-probs (1, chunk_frames, V), cache_k', cache_conv', cache_len'"})
    sidecar(path).write_text(json.dumps(meta, indent=1))
    return path


class TfliteStream:
    """The streaming .tflite driven chunk by chunk (windows taken as sherpa-onnx takes them)."""

    def __init__(self, path: str | Path, threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        self.meta = json.loads(sidecar(path).read_text())
        self.window, self.shift = int(self.meta["window_size"]), int(self.meta["chunk_shift"])
        self.interp = Interpreter(model_path=str(path), num_threads=threads)
        self.interp.allocate_tensors()
        # match tensors by shape: converters rename inputs and may reorder outputs
        self.ins = {tuple(d["shape"]): d for d in self.interp.get_input_details()}
        self.outs = {tuple(d["shape"]): d for d in self.interp.get_output_details()}
        self.k_shape = (1, *(int(self.meta[f"cache_last_channel_dim{i}"]) for i in (1, 2, 3)))
        self.c_shape = (1, *(int(self.meta[f"cache_last_time_dim{i}"]) for i in (1, 2, 3)))
        if len(self.ins) != 4 or len(self.outs) != 4:
            raise EdgekdError(f"{path}: inputs/outputs are not told apart by shape; re-export it")

    def log_probs(self, feats: np.ndarray) -> np.ndarray:
        """(T, n_mels) -> (n*chunk, V)."""
        n_mels = feats.shape[1]
        state = {self.k_shape: np.zeros(self.k_shape, np.float32), self.c_shape: np.zeros(self.c_shape, np.float32),
                 (1,): np.zeros(1, np.int32)}
        out, done = [], 0
        lp_shape = next(s for s in self.outs if s not in state)
        while done + self.window < len(feats):
            self.interp.set_tensor(self.ins[(1, self.window, n_mels)]["index"],
                                   feats[None, done:done + self.window].astype(np.float32))
            for s, v in state.items():
                self.interp.set_tensor(self.ins[s]["index"], v)
            self.interp.invoke()
            state = {s: self.interp.get_tensor(self.outs[s]["index"]) for s in state}
            out.append(self.interp.get_tensor(self.outs[lp_shape]["index"])[0])
            done += self.shift
        return np.concatenate(out) if out else np.zeros((0, len(json.loads(self.meta["tokens"]))), np.float32)
