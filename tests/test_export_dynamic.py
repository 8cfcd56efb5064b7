"""`export_onnx` gives a dynamic time (and batch) axis: the one file matches eager at several lengths."""

import numpy as np
import torch

from edgekd.export.onnx import export_onnx, ort_session, read_metadata, run_onnx


def test_onnx_dynamic_time_matches_eager(tmp_path, tiny_model):
    path = export_onnx(tiny_model, tmp_path / "m.onnx")
    assert read_metadata(path)["model_type"]  # the exporter's own file, metadata and all
    sess = ort_session(path)
    model = tiny_model.model.eval()
    for B, T in ((2, 57), (2, 333), (1, 1200), (3, 120)):  # lengths and batch sizes the export never saw
        xs = torch.randn(B, T, 80)
        ls = torch.tensor([T] + [T - 11 * (i + 1) for i in range(B - 1)])
        lp, ol = run_onnx(sess, xs.numpy(), ls.numpy())
        with torch.no_grad():
            want, wl = model.log_probs(xs, ls)
        assert lp.shape == tuple(want.shape) and np.array_equal(ol, wl.numpy())
        for i in range(B):
            n = int(wl[i])
            assert np.abs(lp[i, :n] - want[i, :n].numpy()).max() < 1e-4
