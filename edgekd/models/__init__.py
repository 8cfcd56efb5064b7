"""Models: presets, building, and self-describing checkpoints.

A checkpoint is one safetensors file: the tensors are the state_dict, and the string metadata
holds JSON for `dims`, `featurizer`, `tokens`, `preset`, `role`, `train` (config and progress)
and `edgekd_version`. Loading reads tensors and JSON only, so it never executes code.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from edgekd import __version__
from edgekd.audio import FeaturizerConfig
from edgekd.errors import EdgekdError
from edgekd.models.conformer import ConformerCTC, ConformerDims
from edgekd.tokens import DEFAULT_TOKENS

PRESET_DIR = Path(__file__).parent / "presets"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name: str, vocab_size: int = len(DEFAULT_TOKENS), n_mels: int = 80) -> ConformerDims:
    """Dims of a preset by name (edgekd/models/presets/<name>.yaml) or a path to a YAML file."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else PRESET_DIR / f"{name}.yaml"
    if not path.exists():
        raise EdgekdError(f"Unknown model preset '{name}'. Known: {', '.join(preset_names())}")
    d = yaml.safe_load(path.read_text()) or {}
    try:
        return ConformerDims.from_dict({"vocab_size": vocab_size, "n_mels": n_mels, **d})
    except (ValueError, TypeError) as e:
        raise EdgekdError(f"preset {path}: {e}") from None


@dataclass
class Checkpoint:
    """Everything needed to rebuild and use a model, with no outside knowledge."""

    model: ConformerCTC
    featurizer: FeaturizerConfig
    tokens: tuple[str, ...]
    preset: str = ""
    role: str = ""  # "teacher" / "student" / ...
    train: dict[str, Any] = field(default_factory=dict)  # training config and progress (step, ...)
    extra: dict[str, Any] = field(default_factory=dict)  # anything stage-specific (pruning, ...)

    @property
    def dims(self) -> ConformerDims:
        return self.model.dims

    @property
    def frame_rate(self) -> float:
        """Output frames per second of the model (featurizer rate / subsampling)."""
        return self.featurizer.frame_rate / self.model.dims.subsampling

    def save(self, path: str | Path, dtype: torch.dtype | None = None) -> Path:
        """Atomic write; `dtype=torch.float16` halves the file (weights are cast back on load)."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        sd = {k: v.detach().contiguous().cpu() for k, v in self.model.state_dict().items()}
        if dtype is not None:
            sd = {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}
        meta = {
            "format": "edgekd-checkpoint-1",
            "edgekd_version": __version__,
            "dims": json.dumps(self.dims.to_dict()),
            "featurizer": json.dumps(self.featurizer.to_dict()),
            "tokens": json.dumps(list(self.tokens)),
            "preset": self.preset,
            "role": self.role,
            "train": json.dumps(self.train),
            "extra": json.dumps(self.extra),
        }
        tmp = path.with_name(path.name + ".tmp")
        save_file(sd, str(tmp), metadata=meta)
        os.replace(tmp, path)
        return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON metadata of a checkpoint, without loading tensors."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise EdgekdError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:
        raise EdgekdError(f"{path}: not an edgekd safetensors checkpoint ({e})") from None
    if meta.get("format") != "edgekd-checkpoint-1":
        raise EdgekdError(f"{path}: not an edgekd checkpoint (metadata 'format' is {meta.get('format')!r})")
    out = {k: v for k, v in meta.items()}
    for k in ("dims", "featurizer", "tokens", "train", "extra"):
        out[k] = json.loads(meta.get(k) or "null")
    return out


def load_checkpoint(path: str | Path, *, featurizer: FeaturizerConfig | None = None,
                    tokens: tuple[str, ...] | list[str] | None = None) -> Checkpoint:
    """Rebuild the model from the file alone; eval mode, float32.

    If `featurizer` or `tokens` are given (what the job at hand uses), a checkpoint made for
    other ones fails with a message naming the difference instead of silently giving garbage.
    """
    from safetensors.torch import load_file

    meta = read_metadata(path)
    dims = ConformerDims.from_dict(meta["dims"])
    feat = FeaturizerConfig.from_dict(meta["featurizer"])
    toks = tuple(meta["tokens"])
    if featurizer is not None and featurizer != feat:
        diff = {k: (v, getattr(featurizer, k)) for k, v in feat.to_dict().items() if getattr(featurizer, k) != v}
        raise EdgekdError(f"{path}: featurizer mismatch (checkpoint vs job): {diff}")
    if tokens is not None and tuple(tokens) != toks:
        raise EdgekdError(f"{path}: token set mismatch: checkpoint has {len(toks)} tokens {toks[:6]}..., "
                          f"job uses {len(tokens)} {tuple(tokens)[:6]}...")
    model = ConformerCTC(dims)
    sd = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise EdgekdError(f"{path}: weights do not fit dims (missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.eval()
    return Checkpoint(model=model, featurizer=feat, tokens=toks, preset=meta.get("preset", ""),
                      role=meta.get("role", ""), train=meta["train"] or {}, extra=meta["extra"] or {})
