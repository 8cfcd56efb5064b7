"""Store a checkpoint compactly for shipping: fp16 weights, same self-describing metadata.

Usage: python -m edgekd.models.ship runs/teacher/model.safetensors models/teacher/teacher.safetensors
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from edgekd.models import load_checkpoint


def ship(src: str | Path, dst: str | Path) -> Path:
    ck = load_checkpoint(src)
    ck.extra = {**ck.extra, "stored_dtype": "float16", "shipped_from": Path(src).name}
    return ck.save(dst, dtype=torch.float16)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    print(ship(sys.argv[1], sys.argv[2]))
