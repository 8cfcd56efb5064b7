"""Concrete tensor shapes of an ONNX graph for one input length (used by estimate.analyze).

ONNX shape inference with data propagation resolves most tensors once the dynamic input axes are
fixed; whatever it cannot (some exporters' graphs defeat it) is read off one onnxruntime run on
zeros at that length.
"""

from __future__ import annotations

import numpy as np


def dtype_size(elem_type: int) -> int:
    import onnx

    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).itemsize
    except (KeyError, TypeError, ValueError):
        return 4


def fix_inputs(model, frames: int, batch: int) -> dict[str, tuple[list[int], int]]:
    """Concrete (shape, elem_type) per graph input: features get `frames` on their dynamic axis."""
    inits = {t.name for t in model.graph.initializer}
    fixed = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        shape = []
        for ax, d in enumerate(dims):
            if d is not None:
                shape.append(d)
            elif ax == 0:
                shape.append(batch)
            elif len(dims) >= 2 and tt.elem_type in (1, 10, 16):  # float input: the time axis
                shape.append(frames)
            else:
                shape.append(1)
        if len(dims) == 3 and dims[1] is None and dims[2] is None:
            shape[2] = 80  # (N, T, F) with unknown F: the usual 80 mel bands
        fixed[vi.name] = (shape, tt.elem_type)
    return fixed


def resolve_shapes(model, fixed: dict, frames: int) -> dict[str, tuple[list[int], int]]:
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    for vi in m.graph.input:
        if vi.name in fixed:
            del vi.type.tensor_type.shape.dim[:]
            for d in fixed[vi.name][0]:
                vi.type.tensor_type.shape.dim.add().dim_value = d
    shapes: dict[str, tuple[list[int], int]] = dict(fixed)
    try:
        inf = onnx.shape_inference.infer_shapes(m, data_prop=True)
        for vi in list(inf.graph.value_info) + list(inf.graph.output):
            tt = vi.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
            if tt.HasField("shape") and all(d is not None for d in dims):
                shapes[vi.name] = (dims, tt.elem_type)
    except Exception:  # noqa: BLE001 -- inference gives up on some exporters' graphs: fall back below
        pass
    for t in m.graph.initializer:
        shapes[t.name] = (list(t.dims), t.data_type)
    missing = [o for n in m.graph.node for o in n.output if o and o not in shapes]
    if missing:
        shapes.update(shapes_by_running(m, fixed, missing, frames))
    return shapes


def shapes_by_running(model, fixed: dict, names: list[str], frames: int) -> dict[str, tuple[list[int], int]]:
    """Shapes of `names` from one onnxruntime run on zeros; 1-D integer inputs (lengths) get the time
    length `frames` (a streaming graph's window too: its feature axis is not the second)."""
    import onnx
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    m.graph.output.extend([onnx.ValueInfoProto(name=n) for n in names if n not in have])
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feeds = {}
    for name, (shape, et) in fixed.items():
        dt = onnx.helper.tensor_dtype_to_np_dtype(et)
        feeds[name] = (np.full(shape, frames, dtype=dt) if np.dtype(dt).kind in "iu" and len(shape) == 1
                       else np.zeros(shape, dtype=dt))
    outs = sess.run(names, feeds)
    tmap = {np.dtype(onnx.helper.tensor_dtype_to_np_dtype(e)): e for e in (1, 6, 7, 9, 10, 11, 3, 2)}
    return {n: (list(a.shape), tmap.get(a.dtype, 1)) for n, a in zip(names, outs)}
