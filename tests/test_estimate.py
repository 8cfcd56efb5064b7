"""Static graph cost and the latency estimate: hand-computed MACs and liveness peak, monotonicity."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from benchmodels import onnx_ctc
from edgekd.profile.devices import load_device
from edgekd.profile.estimate import OpCost, analyze, estimate_latency, estimate_records, op_time


def _model(nodes, inputs, outputs, inits):
    g = helper.make_graph(nodes, "g", inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    return m


def _w(name, shape):
    return numpy_helper.from_array(np.zeros(shape, np.float32), name)


def test_liveness_peak_on_a_hand_built_graph():
    # x(1,1000) -Relu-> a -MatMul W1(1000,2000)-> b -Relu-> c ; d = c + b ; e = d @ W2(2000,10)
    # float32 sizes: x 4000 B, a 4000, b 8000, c 8000, d 8000, e 40.
    # live per node: n0 {x,a}=8000  n1 {a,b}=12000  n2 {b,c}=16000  n3 {b,c,d}=24000  n4 {d,e}=8040
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="n0"),
             helper.make_node("MatMul", ["a", "W1"], ["b"], name="n1"),
             helper.make_node("Relu", ["b"], ["c"], name="n2"),
             helper.make_node("Add", ["c", "b"], ["d"], name="n3"),
             helper.make_node("MatMul", ["d", "W2"], ["e"], name="n4")]
    m = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1000])],
               [helper.make_tensor_value_info("e", TensorProto.FLOAT, [1, 10])],
               [_w("W1", (1000, 2000)), _w("W2", (2000, 10))])
    cost = analyze(m, frames=1)
    assert cost.peak_activation_bytes == 24000 and cost.peak_at == "n3"
    assert cost.params == 1000 * 2000 + 2000 * 10 and cost.weight_bytes == 4 * cost.params
    assert cost.macs == 1000 * 2000 + 2000 * 10  # the two MatMuls; Relu/Add have none
    assert cost.per_type["MatMul"]["count"] == 2


def test_macs_of_conv_depthwise_and_gemm_match_hand_counts():
    # x (1, 8, 100) -Conv(16 out, k=3, pad 1)-> (1,16,100): 16*100*8*3 MACs
    # -> depthwise Conv (group 16, k=5, pad 2): 16*100*5 MACs -> Gemm on (1, 1600) x (1600, 4)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1], name="conv"),
             helper.make_node("Conv", ["c1", "w2"], ["c2"], pads=[2, 2], group=16, name="dw"),
             helper.make_node("Flatten", ["c2"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "w3"], ["y"], name="fc")]
    m = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 100])],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
               [_w("w1", (16, 8, 3)), _w("w2", (16, 1, 5)), _w("w3", (1600, 4))])
    cost = analyze(m, frames=100)
    by = {o.name: o for o in cost.ops}
    assert by["conv"].macs == 16 * 100 * 8 * 3 and by["conv"].op_class == "conv"
    assert by["dw"].macs == 16 * 100 * 5 and by["dw"].op_class == "dwconv"
    assert by["fc"].macs == 1600 * 4 and by["fc"].op_class == "gemm"
    assert by["flat"].op_class == "shape" and by["flat"].bytes == 0


def test_dynamic_time_axis_scales_cost(tmp_path):
    p = onnx_ctc(tmp_path / "m.onnx", hidden=64, vocab=30)
    c1, c2 = analyze(p, 100), analyze(p, 400)
    assert c1.macs == 100 * (80 * 64 + 64 * 30) and c2.macs == 4 * c1.macs
    assert c2.peak_activation_bytes > c1.peak_activation_bytes and c1.params == c2.params


def test_torch_exported_graph_resolves(tmp_path):
    import torch  # a declared dependency

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(80, 32, 3, stride=2, padding=1)
            self.lin = torch.nn.Linear(32, 20)

        def forward(self, x, x_lens):
            h = self.conv(x.transpose(1, 2)).transpose(1, 2)
            return torch.log_softmax(self.lin(torch.relu(h)), -1), (x_lens + 1) // 2

    path = tmp_path / "t.onnx"
    t = torch.export.Dim("T", min=8, max=20000)
    torch.onnx.export(M().eval(), (torch.randn(2, 64, 80), torch.tensor([64, 50])), str(path), dynamo=True,
                      input_names=["x", "x_lens"], output_names=["log_probs", "log_probs_len"],
                      dynamic_shapes=({1: t}, None))
    cost = analyze(path, 200)
    # batch stays at the exported 2 (only T was declared dynamic)
    assert cost.macs == pytest.approx(2 * (100 * 32 * 80 * 3 + 100 * 32 * 20))


def test_estimate_is_monotone_in_macs():
    dev = load_device("rpi4")
    times = []
    # square GEMMs of growing n (MACs n^3, three n x n fp32 tensors): more work never takes less time.
    # (Not MACs alone at fixed bytes: a node's thread count follows its MACs, so a 1e4-MAC node that
    # moved 1 MB would stay on one core's bandwidth while a 1e6-MAC one gets four.)
    for n in (16, 64, 128, 256, 1024, 2048):
        op = OpCost("x", "MatMul", "gemm", "fp32", float(n) ** 3, bytes=12.0 * n * n, weight_bytes=4.0 * n * n)
        c, m, o = op_time(op, dev, threads=4)
        times.append(max(c, m) + o)
    assert times == sorted(times) and times[-1] > times[0]


def test_estimate_grows_with_model_size_and_shrinks_with_faster_devices(tmp_path):
    small = analyze(onnx_ctc(tmp_path / "s.onnx", hidden=32), 1000)
    big = analyze(onnx_ctc(tmp_path / "b.onnx", hidden=512), 1000)
    assert big.macs > small.macs
    for name in ("rpi3", "rpi4", "rpi5", "pixel7"):
        dev = load_device(name)
        assert estimate_latency(big, dev)["latency_ms"] > estimate_latency(small, dev)["latency_ms"]
    lat = [estimate_latency(big, load_device(n), 1)["latency_ms"] for n in ("rpi3", "rpi4", "rpi5")]
    assert lat[0] > lat[1] > lat[2]  # A53 > A72 > A76 single-thread time


def test_estimate_records_are_labelled_estimated(tmp_path):
    recs = estimate_records(onnx_ctc(tmp_path / "m.onnx"), load_device("rpi5"), seconds=4.0)
    assert recs and all(r["source"] == "estimated" and r["device"] == "rpi5" for r in recs)
    m = {r["metric"]: r for r in recs}
    assert m["rtf"]["value"] == pytest.approx(m["latency_est"]["value"] / 1e3 / 4.0)
    assert m["memory_est"]["value"] >= m["peak_activation"]["value"] and m["macs"]["value"] > 0


def test_thread_scaling_follows_amdahl_with_the_runtime_serial_fraction():
    # a compute-bound GEMM on rpi4's four equal cores: t(n) = t(1) x (s + (1 - s) / n)
    from edgekd.profile.estimate import runtime_constants

    dev = load_device("rpi4")
    op = OpCost("x", "MatMul", "gemm", "fp32", 1e9, bytes=1e3, weight_bytes=0)
    for runtime in ("onnxruntime", "litert"):
        rt = runtime_constants(runtime)
        s = rt["serial_fraction"]
        assert 0 <= s < 1
        t1 = op_time(op, dev, 1, rt=rt)[0]
        for n in (2, 3, 4):
            assert op_time(op, dev, n, rt=rt)[0] == pytest.approx(t1 * (s + (1 - s) / n))
    # a tiny op does not split: same time on 1 and 4 threads
    tiny = OpCost("y", "MatMul", "gemm", "fp32", 1e3, bytes=1e3, weight_bytes=0)
    assert op_time(tiny, dev, 4)[0] == op_time(tiny, dev, 1)[0]


def test_runtime_constants_read_the_calibration_file_over_the_documented_defaults(tmp_path, monkeypatch):
    import json

    from edgekd.profile import estimate as E

    monkeypatch.setattr(E, "CALIBRATION_FILE", tmp_path / "none.json")
    rt = E.runtime_constants("litert")
    assert rt["efficiency"] == E.EFFICIENCY and rt["serial_fraction"] == E.SERIAL_FRACTION
    assert rt["dispatch_cycles"] == E.DISPATCH_CYCLES
    cal = tmp_path / "cal.json"
    cal.write_text(json.dumps({"dispatch_cycles": {"value": 1234},
                               "runtimes": {"litert": {"serial_fraction": 0.2, "efficiency": {"gemm": {"fp32": 0.9}}}}}))
    monkeypatch.setattr(E, "CALIBRATION_FILE", cal)
    rt = E.runtime_constants("litert")
    assert rt["serial_fraction"] == 0.2 and rt["dispatch_cycles"] == 1234
    assert rt["efficiency"]["gemm"] == {**E.EFFICIENCY["gemm"], "fp32": 0.9}
    assert E.runtime_constants("onnxruntime")["serial_fraction"] == E.SERIAL_FRACTION  # not in the file: default
    # the faster litert GEMM shows up in the estimate
    dev = load_device("pixel3")
    op = OpCost("x", "MatMul", "gemm", "fp32", 1e9, bytes=1e3, weight_bytes=0)
    assert op_time(op, dev, 1, runtime="litert")[0] < op_time(op, dev, 1, runtime="onnxruntime")[0]


def test_a_qdq_matmul_is_costed_as_int8(tmp_path):
    # x -Q-> xq -DQ-> xd ; W(int8) -DQ-> Wd ; y = xd @ Wd : the fused kernel is int8, reading int8 operands
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
             helper.make_node("DequantizeLinear", ["Wq", "s", "z"], ["Wd"]),
             helper.make_node("MatMul", ["xd", "Wd"], ["y"], name="mm")]
    inits = [numpy_helper.from_array(np.zeros((64, 32), np.int8), "Wq"),
             numpy_helper.from_array(np.array(0.1, np.float32), "s"), numpy_helper.from_array(np.array(0, np.int8), "z")]
    m = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10, 64])],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10, 32])], inits)
    mm = next(o for o in analyze(m, 10).ops if o.name == "mm")
    assert mm.precision == "int8" and mm.macs == 10 * 64 * 32
    assert mm.bytes == 10 * 64 + 64 * 32 + 4 * 10 * 32  # int8 operands, fp32 output


def _graph(ops, weight_bytes=0):
    from edgekd.profile.graphcost import GraphCost

    return GraphCost(path="<ops>", frames=1, ops=ops, params=0, weight_bytes=weight_bytes, peak_activation_bytes=0,
                     peak_at="", input_bytes=0)


def test_a_graph_of_many_tiny_nodes_is_overhead_bound_and_linear_in_nodes():
    # 64-byte element-wise nodes: no compute, nanoseconds of traffic -- their time is the dispatch
    dev = load_device("rpi4")
    tiny = [OpCost(f"n{i}", "Add", "other", "fp32", 0.0, bytes=64, weight_bytes=0) for i in range(400)]
    est = estimate_latency(_graph(tiny), dev, 1, runtime="onnxruntime")
    assert est["overhead_ms"] > 0.9 * est["latency_ms"]
    twice = estimate_latency(_graph(tiny + tiny), dev, 1, runtime="onnxruntime")
    assert twice["latency_ms"] == pytest.approx(2 * est["latency_ms"])
    # and more threads do not help it: nothing in it is worth a second thread
    assert estimate_latency(_graph(tiny), dev, 4, runtime="onnxruntime")["latency_ms"] == pytest.approx(est["latency_ms"])


def test_threads_per_node_follow_the_runtime_rule():
    from edgekd.profile.estimate import EIGEN_CYCLES_PER_BYTE, MLAS_MACS_PER_THREAD, node_threads

    gemm = lambda macs: OpCost("g", "MatMul", "gemm", "fp32", macs, bytes=1e3, weight_bytes=0)  # noqa: E731
    assert node_threads(gemm(MLAS_MACS_PER_THREAD - 1), 4, "onnxruntime") == 1  # MLAS: multiplies / 64 Ki + 1
    assert node_threads(gemm(2 * MLAS_MACS_PER_THREAD), 4, "onnxruntime") == 3
    assert node_threads(gemm(1e9), 4, "onnxruntime") == 4
    ew = lambda b: OpCost("e", "Add", "other", "fp32", 0.0, bytes=b, weight_bytes=0)  # noqa: E731
    assert node_threads(ew(1e5), 4, "onnxruntime") == 1  # Eigen: under 200 k cycles of traffic stays on one
    assert node_threads(ew(320e3 / EIGEN_CYCLES_PER_BYTE), 4, "onnxruntime") == 3
    assert node_threads(OpCost("s", "Reshape", "shape", "fp32", 0, 0, 0), 4, "onnxruntime") == 1


def test_a_node_with_little_work_does_not_speed_up_with_threads_and_a_big_one_does():
    dev = load_device("rpi4")

    def t(op, n):
        c, m, o = op_time(op, dev, n, runtime="onnxruntime")
        return max(c, m) + o

    # a decoder-step-sized matrix-vector product (1 x 192 x 192) and a small element-wise node
    for small in (OpCost("gemv", "MatMul", "gemm", "fp32", 192 * 192, bytes=4 * 192 * 194, weight_bytes=4 * 192 * 192),
                  OpCost("add", "Add", "other", "fp32", 0.0, bytes=3 * 4 * 192, weight_bytes=0)):
        assert t(small, 4) == pytest.approx(t(small, 1))
    # a TTS-sized convolution: 2 GMAC, cache-friendly
    big = OpCost("conv", "Conv", "conv", "fp32", 2e9, bytes=4e6, weight_bytes=1e6)
    assert t(big, 4) < 0.45 * t(big, 1)


def test_real_graph_overhead_grows_with_the_bytes_an_elementwise_node_moves():
    from edgekd.profile.estimate import runtime_constants

    dev = load_device("rpi4")
    rt = dict(runtime_constants("onnxruntime"), node_cycles_per_byte=0.05)
    small, big = (OpCost("a", "Add", "other", "fp32", 0.0, bytes=b, weight_bytes=0) for b in (1e3, 1e5))
    o_small, o_big = op_time(small, dev, 1, rt=rt)[2], op_time(big, dev, 1, rt=rt)[2]
    clock = dev.core_list()[0].max_ghz * 1e9
    assert o_big - o_small == pytest.approx(0.05 * (1e5 - 1e3) / clock)
    # a GEMM pays only the dispatch: its traffic is in its roofline
    g = OpCost("g", "MatMul", "gemm", "fp32", 1e3, bytes=1e5, weight_bytes=0)
    assert op_time(g, dev, 1, rt=rt)[2] == pytest.approx(rt["dispatch_cycles"] / clock)


def test_weights_beyond_the_last_level_cache_stream_from_dram():
    dev = load_device("rpi4")  # 1 MiB L2
    op = OpCost("gemv", "MatMul", "gemm", "fp32", 256 * 256, bytes=4 * 256 * 258, weight_bytes=4 * 256 * 256)
    fits = estimate_latency(_graph([op] * 3, weight_bytes=3 * op.weight_bytes), dev, 1)["memory_ms"]
    spills = estimate_latency(_graph([op] * 30, weight_bytes=30 * op.weight_bytes), dev, 1)["memory_ms"]
    assert spills / 30 > 2 * fits / 3  # DRAM per byte is well below cache streaming
