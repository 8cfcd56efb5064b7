"""Models: presets, building, and self-describing checkpoints.

A checkpoint is one safetensors file: the tensors are the state_dict, and the string metadata
holds JSON for `dims`, `featurizer`, `tokens`, `preset`, `role`, `train` (config and progress)
and `edgekd_version`, plus `sentencepiece` (the subword model, base64) for a subword token set.
Loading reads tensors, JSON and that protobuf only, so it never executes code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from edgekd import __version__
from edgekd.audio import FeaturizerConfig
from edgekd.errors import EdgekdError
from edgekd.models.conformer import ConformerCTC, ConformerDims
from edgekd.tokens import DEFAULT_TOKENS, Tokenizer, spm_from_text, spm_to_text

PRESET_DIR = Path(__file__).parent / "presets"
# The general student shipped beside the teacher (scripts/train_student.sh): the demo adapts it.
SHIPPED_STUDENT = Path(__file__).resolve().parents[2] / "models" / "student" / "student-xs.safetensors"
SHIPPED_STREAMING_STUDENT = SHIPPED_STUDENT.with_name("student-xs-stream.safetensors")  # sherpa-onnx online


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name: str, vocab_size: int = len(DEFAULT_TOKENS), n_mels: int = 80) -> ConformerDims:
    """Dims of a preset by name (edgekd/models/presets/<name>.yaml) or a path to a YAML file."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else PRESET_DIR / f"{name}.yaml"
    if not path.exists():
        raise EdgekdError(f"Unknown model preset '{name}'. Known: {', '.join(preset_names())}")
    try:  # safe_load: a YAML tag cannot construct Python objects or run code
        d = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as e:
        why = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise EdgekdError(f"preset {path}: not a readable YAML file ({why})") from None
    if not isinstance(d, dict):
        raise EdgekdError(f"preset {path}: expected a mapping of model dims, got {type(d).__name__}")
    return _dims({"vocab_size": vocab_size, "n_mels": n_mels, **d}, f"preset {path}")


def _dims(d: dict, where: str) -> ConformerDims:
    """ConformerDims from untrusted data: every value of the type and sign the model needs, so
    a bad file stops here with its name instead of deep inside the model's constructor."""
    if not isinstance(d, dict):
        raise EdgekdError(f"{where}: model dims must be a mapping, got {type(d).__name__}")
    defaults = ConformerDims()
    for k, v in d.items():
        ref = getattr(defaults, k, None)
        if isinstance(ref, bool):
            ok = isinstance(v, bool)
        elif k == "left_context":  # 0 = an offline model
            ok = isinstance(v, int) and not isinstance(v, bool) and v >= 0
        elif isinstance(ref, tuple):
            ok = isinstance(v, (list, tuple)) and all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in v)
        elif isinstance(ref, float):
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1
        else:
            ok = ref is None or (isinstance(v, int) and not isinstance(v, bool) and v > 0)
        if not ok:
            raise EdgekdError(f"{where}: model dim {k}={v!r} is not a valid {type(ref).__name__}")
    try:
        return ConformerDims.from_dict(d)
    except (ValueError, TypeError) as e:
        raise EdgekdError(f"{where}: {e}") from None


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
    sentencepiece: bytes | None = None  # the model that splits text into `tokens` (subword sets)

    @property
    def tokenizer(self) -> Tokenizer:
        return Tokenizer(self.tokens, self.sentencepiece)

    @property
    def dims(self) -> ConformerDims:
        return self.model.dims

    @property
    def frame_rate(self) -> float:
        """Output frames per second of the model (featurizer rate / subsampling)."""
        return self.featurizer.frame_rate / self.model.dims.subsampling

    def save(self, path: str | Path, dtype: torch.dtype | None = None) -> Path:
        """Atomic write; `dtype=torch.float16` halves the file (weights are cast back on load)."""
        path = Path(path)
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
        if self.sentencepiece:
            meta["sentencepiece"] = spm_to_text(self.sentencepiece)
        from safetensors.torch import save

        from edgekd.atomic import atomic_write

        atomic_write(path, _canonical(save(sd, metadata=meta)))
        return path


def _canonical(data: bytes) -> bytes:
    """The same safetensors file with its metadata keys sorted: safetensors writes them in hash-map
    order, which differs from process to process, so identical checkpoints had different bytes
    (and sha256, which the ONNX teacher cache keys on). Tensor entries and data are untouched; the
    header is re-padded to 8 bytes as the format asks."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + data[8 + n :]


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON metadata of a checkpoint, without loading tensors."""
    return _read(path)[0]


def _read(path: str | Path) -> tuple[dict[str, Any], dict[str, tuple[str, tuple[int, ...]]]]:
    """(metadata with JSON fields parsed, {tensor name: (dtype, shape)}) from the header alone.

    Every way a file can be malformed (truncated, a header that is not JSON or claims gigabytes,
    metadata fields that are not JSON) is one EdgekdError naming the file.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise EdgekdError(f"checkpoint {path} does not exist" if not path.exists() else f"checkpoint {path} is not a file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            shapes = {}
            for k in f.keys():
                sl = f.get_slice(k)
                shapes[k] = (str(sl.get_dtype()), tuple(int(n) for n in sl.get_shape()))
    except Exception as e:  # safetensors raises its own error types (and OSError, ValueError)
        raise EdgekdError(f"{path}: not an edgekd safetensors checkpoint ({_short(e)}); re-export or re-download it") from None
    if meta.get("format") != "edgekd-checkpoint-1":
        raise EdgekdError(f"{path}: not an edgekd checkpoint (metadata 'format' is {meta.get('format')!r})")
    out: dict[str, Any] = dict(meta)
    for k, kind in (("dims", dict), ("featurizer", dict), ("tokens", list), ("train", dict), ("extra", dict)):
        try:
            v = json.loads(meta.get(k) or "null")
        except (json.JSONDecodeError, RecursionError):
            raise EdgekdError(f"{path}: metadata '{k}' is not valid JSON") from None
        if v is not None and not isinstance(v, kind) or (v is None and k in ("dims", "featurizer", "tokens")):
            raise EdgekdError(f"{path}: metadata '{k}' must be a JSON {kind.__name__}, got {type(v).__name__}")
        out[k] = v
    return out, shapes


def _short(e: Exception) -> str:
    msg = str(e).strip().splitlines()
    return msg[-1][:200] if msg else type(e).__name__


_FLOAT_DTYPES = {"F32", "F16", "BF16", "F64", "float32", "float16", "bfloat16", "float64"}


def _check_tensors(path: Path, dims: ConformerDims, shapes: dict[str, tuple[str, tuple[int, ...]]]) -> None:
    """Refuse a file whose tensors do not match its dims BEFORE the model is built: the dims could
    say 2000 layers of width 10^6 (a memory bomb) while the file holds a few tensors."""
    n_blocks = len({k.split(".")[1] for k in shapes if k.startswith("blocks.") and k.count(".") >= 2})
    if n_blocks != dims.n_layers:
        raise EdgekdError(f"{path}: metadata says {dims.n_layers} layers but the weights hold {n_blocks}; "
                          f"the file is damaged or was edited")
    head = shapes.get("head.weight")
    if head is None or head[1] != (dims.vocab_size, dims.d_model):
        raise EdgekdError(f"{path}: head.weight is {head[1] if head else 'missing'}, dims say "
                          f"({dims.vocab_size}, {dims.d_model}); the file is damaged or was edited")
    # the claimed sizes are now bounded by what the file holds: a meta-device model (no memory)
    # gives the exact expected shapes
    with torch.device("meta"):
        want = {k: tuple(v.shape) for k, v in ConformerCTC(dims).state_dict().items()}
    for k, shape in want.items():
        if k not in shapes:
            raise EdgekdError(f"{path}: weights do not fit dims (missing {k})")
        dtype, got = shapes[k]
        if got != shape or dtype not in _FLOAT_DTYPES:
            raise EdgekdError(f"{path}: tensor {k} is {dtype} {got}, dims need a float {shape}")
    extra = sorted(set(shapes) - set(want))
    if extra:
        raise EdgekdError(f"{path}: weights do not fit dims (unexpected {extra[:3]})")


def load_checkpoint(path: str | Path, *, featurizer: FeaturizerConfig | None = None,
                    tokens: tuple[str, ...] | list[str] | None = None) -> Checkpoint:
    """Rebuild the model from the file alone; eval mode, float32.

    If `featurizer` or `tokens` are given (what the job at hand uses), a checkpoint made for
    other ones fails with a message naming the difference instead of silently giving garbage.
    The metadata is checked against the tensors' shapes (read from the header) before any model
    is built, and nothing in the file is executed.
    """
    from safetensors.torch import load_file

    meta, shapes = _read(path)
    dims = _dims(meta["dims"], str(path))
    try:
        feat = FeaturizerConfig.from_dict(meta["featurizer"])
        toks = tuple(str(t) for t in meta["tokens"])
    except (ValueError, TypeError) as e:
        raise EdgekdError(f"{path}: bad metadata ({e})") from None
    if featurizer is not None and featurizer != feat:
        diff = {k: (v, getattr(featurizer, k)) for k, v in feat.to_dict().items() if getattr(featurizer, k) != v}
        raise EdgekdError(f"{path}: featurizer mismatch (checkpoint vs job): {diff}")
    if tokens is not None and tuple(tokens) != toks:
        raise EdgekdError(f"{path}: token set mismatch: checkpoint has {len(toks)} tokens {toks[:6]}..., "
                          f"job uses {len(tokens)} {tuple(tokens)[:6]}...")
    if len(toks) != dims.vocab_size:
        raise EdgekdError(f"{path}: {len(toks)} tokens but dims.vocab_size is {dims.vocab_size}")
    spm = spm_from_text(meta.get("sentencepiece"), toks, str(path))
    _check_tensors(Path(path), dims, shapes)
    try:
        sd = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    except Exception as e:
        raise EdgekdError(f"{path}: cannot read the weights ({_short(e)}); re-export or re-download it") from None
    model = ConformerCTC(dims)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise EdgekdError(f"{path}: weights do not fit dims (missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.eval()
    return Checkpoint(model=model, featurizer=feat, tokens=toks, preset=meta.get("preset", ""),
                      role=meta.get("role", ""), train=meta["train"] or {}, extra=meta["extra"] or {}, sentencepiece=spm)

