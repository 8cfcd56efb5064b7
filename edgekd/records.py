"""Typed records for what crosses a file boundary between stages (besides `manifest.Utterance`).

| record        | file                                  | written by              | read by                   |
|---------------|---------------------------------------|-------------------------|---------------------------|
| PseudoLabel   | pseudolabel/labels.jsonl              | pseudolabel             | distil, review, pipeline  |
| ReviewTask    | review/tasks.json (Label Studio)      | review export           | Label Studio              |
| ReviewAnswer  | a Label Studio export's annotations   | Label Studio            | review import             |
| Artifact      | export/artifacts.json                 | export                  | verify, profile, bench    |
| ProfileRecord | profile/results.jsonl                 | bench runner, estimator | profile tables, report    |

Each has `to_dict` / `from_dict` (unknown or missing fields raise ManifestError naming the record
id) and `validate()`, whose message names the record id and the broken invariant (lhotse style:
`f"Recording {r.id}: duration has to be greater than 0"`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from edgekd.errors import ManifestError


class _Record:
    """to_dict/from_dict for a flat frozen dataclass; subclasses add validate()."""

    KIND: ClassVar[str] = "record"
    ID_FIELD: ClassVar[str] = "id"

    def rid(self) -> str:
        return f"{self.KIND} {getattr(self, self.ID_FIELD)!r}"

    def to_dict(self) -> dict[str, Any]:
        d = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            d[f.name] = list(v) if isinstance(v, tuple) else v
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str = ""):
        if not isinstance(d, dict):
            raise ManifestError(f"{cls.KIND} {where or '?'}: record is not a JSON object")
        rid = f"{cls.KIND} {d.get(cls.ID_FIELD, where or '?')!r}"
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ManifestError(f"{rid}: unknown field(s) {', '.join(unknown)}")
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [k for k in required if k not in d]
        if missing:
            raise ManifestError(f"{rid}: missing field(s) {', '.join(missing)}")
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        rec = cls(**kw)
        rec.validate()
        return rec

    def validate(self) -> None:  # pragma: no cover - every record overrides it
        raise NotImplementedError


def _need(ok: bool, rid: str, msg: str) -> None:
    if not ok:
        raise ManifestError(f"{rid}: {msg}")


# ------------------------------------------------------------------ pseudo-labels

ROUTES = ("distil", "review", "dropped")  # dropped: the WER filter (a reference disagrees)


@dataclass(frozen=True)
class PseudoLabel(_Record):
    """One utterance labeled by the teacher ensemble (a row of `labels.jsonl`)."""

    KIND: ClassVar[str] = "PseudoLabel"

    id: str
    audio: str
    duration: float  # seconds of audio the teacher heard
    text: str  # the ensemble's 1-best transcript (may be empty)
    confidence: float  # mean per-frame max posterior, in [0, 1]
    frames: int  # soft-target frames stored for this utterance
    route: str | None = None  # distil | review (None only inside a shard, before routing)
    teachers: tuple[str, ...] = ()  # names of the teachers that produced it

    def validate(self, frame_rate: float | None = None) -> None:
        """Field ranges; with `frame_rate` (soft-target frames per second) also frames ≈ duration × rate."""
        rid = self.rid()
        _need(isinstance(self.id, str) and bool(self.id), rid, "id must be a non-empty string")
        _need(isinstance(self.duration, (int, float)) and self.duration > 0, rid,
              f"duration has to be > 0 (is {self.duration})")
        _need(isinstance(self.text, str), rid, "text must be a string")
        _need(isinstance(self.confidence, (int, float)) and 0 <= self.confidence <= 1, rid,
              f"confidence has to be in [0, 1] (is {self.confidence})")
        _need(isinstance(self.frames, int) and self.frames > 0, rid, f"frames has to be > 0 (is {self.frames})")
        _need(self.route in (None, *ROUTES), rid, f"route has to be one of {', '.join(ROUTES)} (is {self.route!r})")
        if frame_rate:
            want = self.duration * frame_rate
            # conv subsampling rounds each stage, and very short clips are padded to a minimum
            _need(abs(self.frames - want) <= 2 + 0.05 * want, rid,
                  f"{self.frames} soft-target frames for {self.duration:.2f} s at {frame_rate:g} frames/s "
                  f"(expected about {want:.0f})")


def read_pseudolabels(path: str | Path, frame_rate: float | None = None) -> list[PseudoLabel]:
    """`labels.jsonl` -> records, each validated (frames against `frame_rate` when given)."""
    from edgekd.manifest import iter_jsonl

    out = []
    for n, d in iter_jsonl(path):
        rec = PseudoLabel.from_dict(d, where=f"{Path(path).name}:{n}")
        rec.validate(frame_rate)
        out.append(rec)
    return out


# ------------------------------------------------------------------ human review (Label Studio)


@dataclass(frozen=True)
class ReviewTask(_Record):
    """One Label Studio task: an utterance to transcribe, with the teacher's guess as a prediction."""

    KIND: ClassVar[str] = "ReviewTask"
    ID_FIELD: ClassVar[str] = "utt_id"

    utt_id: str
    audio: str  # path or URL the Label Studio server can serve
    prediction: str | None = None  # the teacher's transcript, shown pre-filled
    score: float = 0.0  # the teacher's confidence
    # a random audit of an auto-accepted label (edgekd.audit), not a doubtful one: Label Studio
    # shows it in `data.audit`, and its answer measures the accepted pool's error rate
    audit: bool = False

    def validate(self) -> None:
        rid = self.rid()
        _need(isinstance(self.utt_id, str) and bool(self.utt_id), rid, "utt_id must be a non-empty string")
        _need(isinstance(self.audit, bool), rid, "audit must be true or false")
        _need(isinstance(self.audio, str) and bool(self.audio), rid, "audio must be a non-empty string")
        _need(self.prediction is None or isinstance(self.prediction, str), rid, "prediction must be a string")
        _need(isinstance(self.score, (int, float)) and 0 <= self.score <= 1, rid,
              f"score has to be in [0, 1] (is {self.score})")


@dataclass(frozen=True)
class ReviewAnswer(_Record):
    """One annotator's answer to one task (a non-cancelled textarea annotation)."""

    KIND: ClassVar[str] = "ReviewAnswer"
    ID_FIELD: ClassVar[str] = "utt_id"

    utt_id: str
    annotator: str  # Label Studio annotation id (or completed_by)
    text: str  # what they typed, normalised to the token set
    created_at: str = ""

    def validate(self) -> None:
        rid = self.rid()
        _need(isinstance(self.utt_id, str) and bool(self.utt_id), rid, "utt_id must be a non-empty string")
        _need(isinstance(self.text, str), rid, f"text must be a string (is {type(self.text).__name__})")
        _need(isinstance(self.annotator, str), rid, "annotator must be a string")


# ------------------------------------------------------------------ exported artifacts

FORMATS = ("onnx", "tflite", "sherpa-onnx", "pytorch")
RUNTIME_OF = {"onnx": "onnxruntime", "tflite": "litert", "sherpa-onnx": "sherpa-onnx", "pytorch": "torch"}
# the input/output contract each format is exported to (what a runner must feed and read)
CONTRACT_OF = {"onnx": "zipformer2_ctc: x (N,T,F) float32 + x_lens (N,) int64 -> log_probs (N,T',V) + log_probs_len",
               "tflite": "fixed window: x (1,W,F) float32 -> log_probs (1,W',V); chunked with context",
               "sherpa-onnx": "sherpa-onnx OfflineRecognizer.from_zipformer_ctc(model.onnx, tokens.txt)",
               "pytorch": "edgekd checkpoint (.safetensors)"}


@dataclass(frozen=True)
class Artifact(_Record):
    """One exported model file (or package folder) and how to run it (a row of `artifacts.json`)."""

    KIND: ClassVar[str] = "Artifact"
    ID_FIELD: ClassVar[str] = "name"

    name: str  # onnx-fp32, onnx-int8-dynamic, tflite-fp32.chunked, sherpa-onnx, ...
    path: str  # absolute in memory; relative to artifacts.json's folder on disk when under it
    format: str  # onnx | tflite | sherpa-onnx | pytorch
    precision: str  # fp32 | fp16 | int8-dynamic | int8-static
    window: int = 0  # tflite: fixed window, feature frames
    context: int = 0  # tflite: chunk context frames
    runtime: str = ""  # onnxruntime | litert | sherpa-onnx | torch (default: from format)
    contract: str = ""  # the I/O contract (default: from format)
    size_bytes: int = 0  # file (or package's model + tokens) size
    metadata: dict[str, Any] = field(default_factory=dict)  # model: student/pruned, label, wer, sha256...

    def __post_init__(self):
        if not self.runtime and self.format in RUNTIME_OF:
            object.__setattr__(self, "runtime", RUNTIME_OF[self.format])
        if not self.contract and self.format in CONTRACT_OF:
            object.__setattr__(self, "contract", CONTRACT_OF[self.format])

    @property
    def label(self) -> str:
        """How tables name it: metadata `label`, else the file name."""
        return self.metadata.get("label") or Path(self.path).name

    def validate(self) -> None:
        rid = self.rid()
        _need(isinstance(self.name, str) and bool(self.name), rid, "name must be a non-empty string")
        _need(self.format in FORMATS, rid, f"format has to be one of {', '.join(FORMATS)} (is {self.format!r})")
        _need(self.format == "pytorch" or bool(self.path), rid, "path is empty")
        _need(self.format != "tflite" or self.window > 0, rid, "a LiteRT artifact needs its fixed window (> 0 frames)")
        _need(self.size_bytes >= 0, rid, f"size_bytes has to be >= 0 (is {self.size_bytes})")


def write_artifacts(arts: list[Artifact], path: str | Path) -> Path:
    """`artifacts.json`: paths under its folder are stored relative, so the folder can be moved."""
    path = Path(path)
    rows = []
    for a in arts:
        a.validate()
        d = a.to_dict()
        if a.path:  # relative to the working directory or absolute: stored relative when under the folder
            p, root = Path(a.path).resolve(), path.parent.resolve()
            d["path"] = str(p.relative_to(root)) if p.is_relative_to(root) else str(p)
        rows.append(d)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(rows, indent=1) + "\n")
    tmp.replace(path)
    return path


def read_artifacts(path: str | Path) -> list[Artifact]:
    """`artifacts.json` -> records with absolute paths, each validated."""
    path = Path(path)
    try:
        rows = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ManifestError(f"{path}: cannot read artifacts ({e})") from None
    if not isinstance(rows, list):
        raise ManifestError(f"{path}: expected a list of artifacts")
    out = []
    for i, d in enumerate(rows):
        a = Artifact.from_dict(d, where=f"{path.name}[{i}]")
        if a.path and not Path(a.path).is_absolute():
            a = dataclasses.replace(a, path=str(path.parent.resolve() / a.path))
        out.append(a)
    return out


# ------------------------------------------------------------------ benchmark results

SOURCES = ("measured-on-device", "measured-on-host", "estimated")


@dataclass(frozen=True)
class ProfileRecord(_Record):
    """One metric of one artifact on one device (a row of `results.jsonl`, schema edgekd-bench-1).

    The fields every consumer relies on are typed; everything else the producer adds (cpu, runtime,
    audio_seconds, mode, extra, ...) rides along in `details` and is written back flat.
    """

    KIND: ClassVar[str] = "ProfileRecord"
    ID_FIELD: ClassVar[str] = "metric"

    model: dict[str, Any]  # name, format, quantization, sha256, size_bytes (+ artifact label)
    metric: str  # latency_p50, rtf, peak_rss, latency_est, ...
    value: float
    unit: str  # ms | ratio | MiB | ...
    device: str
    source: str  # measured-on-device | measured-on-host | estimated
    threads: int | None = None
    iterations: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def rid(self) -> str:
        name = self.model.get("artifact") or self.model.get("name") if isinstance(self.model, dict) else "?"
        return f"ProfileRecord {name}/{self.device}/{self.metric}"

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "details"}
        return {**self.details, **d}

    @classmethod
    def from_dict(cls, d: Any, where: str = "") -> "ProfileRecord":
        if not isinstance(d, dict):
            raise ManifestError(f"ProfileRecord {where or '?'}: record is not a JSON object")
        typed = {f.name for f in dataclasses.fields(cls)} - {"details"}
        missing = sorted(k for k in ("model", "metric", "value", "unit", "device", "source") if k not in d)
        if missing:
            raise ManifestError(f"ProfileRecord {d.get('metric', where or '?')}: missing field(s) {', '.join(missing)}")
        rec = cls(**{k: d[k] for k in typed if k in d}, details={k: v for k, v in d.items() if k not in typed})
        rec.validate()
        return rec

    def validate(self) -> None:
        rid = self.rid()
        _need(isinstance(self.model, dict) and bool(self.model.get("name")), rid, "model needs a name")
        _need(self.source in SOURCES, rid, f"source has to be one of {', '.join(SOURCES)} (is {self.source!r})")
        _need(isinstance(self.value, (int, float)) and not isinstance(self.value, bool) and math.isfinite(self.value),
              rid, f"value has to be a finite number (is {self.value!r})")
        _need(self.value >= 0, rid, f"value has to be >= 0 (is {self.value})")
        _need(self.threads is None or (isinstance(self.threads, int) and self.threads >= 1), rid,
              f"threads has to be >= 1 (is {self.threads})")
        _need(self.iterations is None or self.iterations >= 0, rid, f"iterations has to be >= 0 (is {self.iterations})")
