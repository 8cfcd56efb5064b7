"""Reference image models rebuilt with random weights, for checking the latency estimator against
published figures (latency depends on shapes, not weight values). Batch norm is folded away, as
LiteRT and onnxruntime do when they load a trained model."""

from __future__ import annotations

from pathlib import Path

import torch


class MobileNetV1(torch.nn.Module):
    """MobileNet v1 1.0 224 (Howard et al. 2017): 569 MMAC, 4.2 M parameters."""

    def __init__(self):
        super().__init__()
        cfg = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
        layers, c = [torch.nn.Conv2d(3, 32, 3, 2, 1), torch.nn.ReLU6()], 32
        for out, s in cfg:
            layers += [torch.nn.Conv2d(c, c, 3, s, 1, groups=c), torch.nn.ReLU6(), torch.nn.Conv2d(c, out, 1),
                       torch.nn.ReLU6()]
            c = out
        self.features = torch.nn.Sequential(*layers)
        self.fc = torch.nn.Linear(1024, 1000)

    def forward(self, x):
        return torch.softmax(self.fc(self.features(x).mean((2, 3))), -1)


class MobileNetV2(torch.nn.Module):
    """MobileNet v2 1.0 224 (Sandler et al. 2018), inverted residuals: 301 MMAC, 3.5 M parameters."""

    CFG = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, 2, 1), torch.nn.ReLU6())
        blocks, self.residual, c = [], [], 32
        for t, out, n, s in self.CFG:  # expansion, channels, repeats, first stride
            for i in range(n):
                h = c * t
                expand = [torch.nn.Conv2d(c, h, 1), torch.nn.ReLU6()] if t != 1 else []
                blocks.append(torch.nn.Sequential(*expand, torch.nn.Conv2d(h, h, 3, s if i == 0 else 1, 1, groups=h),
                                                  torch.nn.ReLU6(), torch.nn.Conv2d(h, out, 1)))
                self.residual.append(i > 0)
                c = out
        self.blocks = torch.nn.ModuleList(blocks)
        self.head = torch.nn.Sequential(torch.nn.Conv2d(c, 1280, 1), torch.nn.ReLU6())
        self.fc = torch.nn.Linear(1280, 1000)

    def forward(self, x):
        x = self.stem(x)
        for block, res in zip(self.blocks, self.residual):
            x = x + block(x) if res else block(x)
        return torch.softmax(self.fc(self.head(x).mean((2, 3))), -1)


MOBILENETS = {"v1": MobileNetV1, "v2": MobileNetV2}


def export_mobilenet(path: Path, version: str = "v1") -> Path:
    """ONNX export of MobileNet `version` (1x3x224x224 input), once: an existing file is reused."""
    if not path.exists():
        torch.manual_seed(0)
        torch.onnx.export(MOBILENETS[version]().eval(), (torch.randn(1, 3, 224, 224),), str(path), dynamo=True,
                          input_names=["image"], output_names=["probs"], external_data=False)
    return path
