"""Tiny models that follow the edgekd export convention, built without the export module.

ONNX: `x` (N, T, 80) float32 + `x_lens` (N,) int64 -> `log_probs` (N, T, V) + `log_probs_len`.
LiteRT: a fixed-window `x` (1, T, 80) -> FULLY_CONNECTED -> (1, T, V), written with the
flatbuffer schema that ships in ai-edge-litert (no TensorFlow needed).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def onnx_ctc(path: Path, frames: int | None = None, n_mels: int = 80, vocab: int = 30, hidden: int = 64,
             metadata: dict | None = None, names=("x", "x_lens"), seed: int = 0) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    T = frames if frames else "T"
    w1 = numpy_helper.from_array((rng.standard_normal((n_mels, hidden)) * 0.1).astype(np.float32), "w1")
    w2 = numpy_helper.from_array((rng.standard_normal((hidden, vocab)) * 0.1).astype(np.float32), "w2")
    x, lens = names
    nodes = [helper.make_node("MatMul", [x, "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["logits"]),
             helper.make_node("LogSoftmax", ["logits"], ["log_probs"], axis=-1)]
    inputs = [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", T, n_mels])]
    outputs = [helper.make_tensor_value_info("log_probs", TensorProto.FLOAT, ["N", T, vocab])]
    if lens:
        nodes.append(helper.make_node("Identity", [lens], ["log_probs_len"]))
        inputs.append(helper.make_tensor_value_info(lens, TensorProto.INT64, ["N"]))
        outputs.append(helper.make_tensor_value_info("log_probs_len", TensorProto.INT64, ["N"]))
    g = helper.make_graph(nodes, "tiny_ctc", inputs, outputs, [w1, w2])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    meta = {"model_type": "zipformer2_ctc", "featurizer": json.dumps({"sample_rate": 16000, "hop_length": 160,
                                                                       "n_mels": n_mels}),
            "subsampling_factor": "1", "quantization": "fp32"}
    meta.update(metadata or {})
    helper.set_model_props(m, meta)
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return Path(path)


def tiny_tflite(path: Path, frames: int = 20, n_mels: int = 80, vocab: int = 30, seed: int = 0) -> Path:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((vocab, n_mels)) * 0.1).astype(np.float32)
    b = np.zeros(vocab, np.float32)
    m = s.ModelT()
    m.version = 3
    m.description = "edgekd test"
    bufs = [s.BufferT() for _ in range(4)]
    bufs[2].data = np.frombuffer(w.tobytes(), np.uint8)
    bufs[3].data = np.frombuffer(b.tobytes(), np.uint8)
    m.buffers = bufs

    def tensor(name, shape, buf):
        t = s.TensorT()
        t.name, t.shape, t.shapeSignature, t.type, t.buffer = name, list(shape), list(shape), s.TensorType.FLOAT32, buf
        return t

    sg = s.SubGraphT()
    sg.tensors = [tensor("x", (1, frames, n_mels), 1), tensor("w", (vocab, n_mels), 2), tensor("b", (vocab,), 3),
                  tensor("log_probs", (1, frames, vocab), 0)]
    sg.inputs, sg.outputs = [0], [3]
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1, 2], [3]
    op.builtinOptionsType = s.BuiltinOptions.FullyConnectedOptions
    op.builtinOptions = s.FullyConnectedOptionsT()
    op.builtinOptions.keepNumDims = True
    sg.operators = [op]
    m.subgraphs = [sg]
    oc = s.OperatorCodeT()
    oc.builtinCode = oc.deprecatedBuiltinCode = s.BuiltinOperator.FULLY_CONNECTED
    oc.version = 1
    m.operatorCodes = [oc]
    bld = flatbuffers.Builder(1024)
    bld.Finish(m.Pack(bld), file_identifier=b"TFL3")
    Path(path).write_bytes(bld.Output())
    return Path(path)
