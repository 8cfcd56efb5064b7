"""Host calibrations of the estimator's onnxruntime terms on real graphs (used by calibrate_estimator.py).

* Per-node overhead: conformer CTC graphs of widths and depths that are *not* in bench_estimate.py's
  host validation set (tiny, student-xs, student-s, teacher-m, MobileNet v1), random weights,
  exported like the export stage, run by onnxruntime with the runner's session options at one
  thread, at 0.32 s and 10 s of input. Each graph's process CPU time per run (CPU time, not wall
  time: the box is shared, and at one intra-op thread onnxruntime computes in the calling thread)
  minus the estimator's roofline for it (every node's max(compute, memory), no overhead) is what
  the roofline leaves unexplained: at 0.32 s it is a cost per node, at 10 s what remains is a
  cost per byte moved by element-wise / data-movement nodes (`fit_node_overhead`).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

# (d_model, n_layers, n_heads, ffn_dim, subsampling_channels): calibration graphs, none a preset
CALIB_DIMS = [(48, 2, 2, 96, 16), (64, 6, 4, 128, 16), (80, 4, 4, 320, 32), (160, 3, 4, 640, 64)]
SHORT_FRAMES, LONG_FRAMES = 32, 1000  # 0.32 s (overhead-bound) and 10 s of features
CALIB_FRAMES = (SHORT_FRAMES, LONG_FRAMES)


def export_model(model, path: Path) -> Path:
    """An offline conformer CTC exported like the export stage (log-probs from x (N, T, 80) + x_lens,
    dynamic T), random weights as given; bench_estimate.py exports its presets with it too."""
    import torch

    class LogProbs(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x, x_lens):
            return self.m.log_probs(x, x_lens)

    t = torch.export.Dim("T", min=model.dims.min_frames, max=6000)
    torch.onnx.export(LogProbs(model.eval()).eval(), (torch.randn(2, 120, 80), torch.tensor([120, 90])), str(path),
                      dynamo=True, input_names=["x", "x_lens"], output_names=["log_probs", "log_probs_len"],
                      dynamic_shapes=({1: t}, None), opset_version=18, external_data=False)
    return path


def export_dims(path: Path, d: int, layers: int, heads: int, ffn: int, sub: int) -> Path:
    """An offline conformer CTC of these dims (vocab and features as the presets), seed 0, exported."""
    import torch

    from edgekd.models import load_preset
    from edgekd.models.conformer import ConformerCTC

    if path.exists():
        return path
    dims = load_preset("tiny").__class__(**{**load_preset("tiny").__dict__, "d_model": d, "n_layers": layers,
                                            "n_heads": heads, "ffn_dim": ffn, "subsampling_channels": sub,
                                            "conv_kernel": 15})
    torch.manual_seed(0)
    return export_model(ConformerCTC(dims), path)


def cpu_seconds_per_run(path: Path, frames: int, budget_s: float = 1.5) -> float:
    """Median process CPU seconds of one run at one thread (runner's session options); inputs:
    random features, dynamic axes at `frames`, int64 inputs (lengths) = `frames`."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    feed = {}
    for i in sess.get_inputs():  # fixed dims as exported (a dynamo export fixes the batch), dynamic ones = frames
        shape = [d if isinstance(d, int) else frames for d in i.shape]
        feed[i.name] = (np.full(shape, frames, np.int64) if "int64" in i.type else
                        np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    t = time.process_time()
    sess.run(None, feed)
    one = max(time.process_time() - t, 1e-4)
    reps = max(3, min(200, int(budget_s / 5 / one)))
    blocks = []
    for _ in range(5):
        t = time.process_time()
        for _ in range(reps):
            sess.run(None, feed)
        blocks.append((time.process_time() - t) / reps)
    return statistics.median(blocks)


def node_weight(op) -> float:
    """How many 'nodes' of dispatch the estimator charges this op (estimate.op_time's rule)."""
    if op.op_class == "shape":
        return 0.0 if op.bytes == 0 else 0.25
    return 1.0


def fit_node_overhead(work: Path, device, constants: dict) -> tuple[float, float, list[tuple]]:
    """(dispatch cycles per node, cycles per element-wise byte, rows), cycles of this host's clock.

    Two steps, so that the noisy part (the roofline, whose peak rates are measured on a shared
    machine) weighs least where it is least known: at SHORT_FRAMES the roofline is a small part of
    a run, and (CPU time - roofline) / nodes is the per-node cost (median over graphs); at
    LONG_FRAMES what is still unexplained, divided by the bytes the element-wise nodes move, is the
    per-byte cost (median, floored at 0). rows: (graph, frames, nodes, CPU ms, roofline ms, fitted ms)."""
    from edgekd.profile import estimate as E

    rt = dict(constants, dispatch_cycles=0.0, node_cycles_per_byte=0.0)
    hz = device.clusters[0].max_ghz * 1e9
    pts = []
    for dims in CALIB_DIMS:
        name = "calib-d{}-l{}-h{}-f{}-s{}".format(*dims)
        path = export_dims(work / f"{name}.onnx", *dims)
        for frames in (SHORT_FRAMES, LONG_FRAMES):
            cost = E.analyze(path, frames)
            roof = E.estimate_latency(cost, device, 1, runtime="onnxruntime", constants=rt)["latency_ms"] / 1e3
            meas = cpu_seconds_per_run(path, frames)
            nodes = sum(node_weight(o) for o in cost.ops)
            other = sum(o.bytes for o in cost.ops if o.op_class == "other")
            pts.append((name, frames, nodes, other, meas, roof))
    per_node = statistics.median((m - r) / n for _, f, n, _, m, r in pts if f == SHORT_FRAMES)
    per_byte = max(0.0, statistics.median((m - r - n * per_node) / b for _, f, n, b, m, r in pts if f == LONG_FRAMES))
    rows = [(name, f, n, 1e3 * m, 1e3 * r, 1e3 * (r + n * per_node + b * per_byte)) for name, f, n, b, m, r in pts]
    return per_node * hz, per_byte * hz, rows
