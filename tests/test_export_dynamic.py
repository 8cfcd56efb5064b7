"""The conformer exports with a dynamic time axis and matches eager at two lengths."""

import numpy as np
import torch


def test_onnx_dynamic_time_matches_eager(tmp_path, tiny_model):
    import onnxruntime as ort

    model = tiny_model.model.eval()

    class LogProbs(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x, x_lens):
            return self.m.log_probs(x, x_lens)

    x = torch.randn(2, 120, 80)
    lens = torch.tensor([120, 90])
    t = torch.export.Dim("T", min=model.dims.min_frames, max=6000)
    path = tmp_path / "m.onnx"
    torch.onnx.export(LogProbs(model), (x, lens), str(path), dynamo=True, input_names=["x", "x_lens"],
                      output_names=["log_probs", "log_probs_len"], dynamic_shapes=({1: t}, None), opset_version=18)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for T in (57, 333):
        xs = torch.randn(2, T, 80)
        ls = torch.tensor([T, T - 11])
        lp, ol = sess.run(None, {"x": xs.numpy(), "x_lens": ls.numpy()})
        want, wl = model.log_probs(xs, ls)
        assert lp.shape == tuple(want.shape) and np.array_equal(ol, wl.numpy())
        for i in range(2):
            n = int(wl[i])
            assert np.abs(lp[i, :n] - want[i, :n].detach().numpy()).max() < 1e-4
