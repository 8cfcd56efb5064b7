"""The pipeline config: one YAML describing data, teachers, every stage's options and devices.

Top-level keys are fixed (`PipelineConfig`); each stage section is validated by the stage's own
options dataclass (`SECTIONS`), so a typo anywhere stops the run naming the dotted key before any
work starts.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from edgekd.config import apply_overrides, from_dict, load_yaml, to_dict
from edgekd.errors import ConfigError

# section -> (module, options class): the stage module owns its options' schema and defaults.
# Sections are added here as their stages join the pipeline (pseudolabel, distil, compress, profile).
SECTIONS: dict[str, tuple[str, str]] = {
    "synth": ("edgekd.synth", "SynthOptions"),
    "pseudolabel": ("edgekd.pseudolabel", "PseudoLabelOptions"),
    "drift": ("edgekd.drift", "DriftOptions"),
    "distil": ("edgekd.distil", "DistilOptions"),
    "prune": ("edgekd.export", "PruneOptions"),
    "export": ("edgekd.export", "ExportOptions"),
    "profile": ("edgekd.profile", "ProfileOptions"),
    "fit": ("edgekd.fit", "FitOptions"),
}


@dataclass(frozen=True)
class DataConfig:
    synth: bool = False  # make the data with `edgekd synth` (options in the `synth` section)
    source: Optional[str] = None  # labeled source-domain data (what the teacher knows): drift reference
    target: Optional[str] = None  # unlabeled target-domain audio: manifest, folder, Kaldi dir or CSV
    target_test: Optional[str] = None  # labeled target-domain test set (WER of every model)
    target_dev: Optional[str] = None  # labeled target-domain dev set (distillation dev WER)
    target_ref: Optional[str] = None  # hidden references of `target` (only to simulate annotators)

    def __post_init__(self):
        if not self.synth and not (self.target and self.target_test):
            raise ValueError("data: give synth: true, or both target and target_test")


@dataclass(frozen=True)
class ReviewConfig:
    import_path: Optional[str] = None  # a Label Studio export JSON with the annotators' answers
    simulate_annotators: int = 0  # >0: answer review tasks from data.target_ref with N noisy annotators
    annotator_error_rate: float = 0.05  # per-word error of each simulated annotator


@dataclass(frozen=True)
class PipelineConfig:
    run_dir: str = "runs/edgekd"  # every stage writes under run_dir/<stage>/
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    teachers: tuple[str, ...] = ("models/teacher/teacher.safetensors",)  # checkpoint paths or hf:<id|dir>
    teacher_weights: tuple[float, ...] = ()  # ensemble weights (empty = equal)
    review: ReviewConfig = field(default_factory=ReviewConfig)
    devices: tuple[str, ...] = ("rpi4", "rpi5")  # device profile names (devices/*.yaml)
    sections: dict[str, Any] = field(default_factory=dict)  # resolved stage options, by section

    def __post_init__(self):
        if not self.teachers:
            raise ValueError("teachers: at least one teacher is needed")
        if self.teacher_weights and len(self.teacher_weights) != len(self.teachers):
            raise ValueError(f"teacher_weights has {len(self.teacher_weights)} entries for {len(self.teachers)} teachers")

    def section(self, name: str):
        return self.sections[name]


def stage_options(name: str, data: dict[str, Any] | None):
    """Build a stage's options from its section; ConfigError names `name.key` on any problem."""
    mod, cls = SECTIONS[name]
    try:
        klass = getattr(importlib.import_module(mod), cls)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"section '{name}': stage module {mod}.{cls} is not available ({e})") from None
    return from_dict(klass, data or {}, prefix=name)


def load_pipeline_config(path: str | Path | None, overrides: list[str] = (), base: dict | None = None) -> PipelineConfig:
    """YAML (or `base` dict) + `--set` overrides -> PipelineConfig with every section validated."""
    data = dict(base or {})
    if path is not None:
        data.update(load_yaml(path))
    data = apply_overrides(data, list(overrides))
    sections = {k: data.pop(k) for k in list(data) if k in SECTIONS}
    if "sections" in data:
        raise ConfigError("unknown config key 'sections' (write stage sections at top level)")
    cfg = from_dict(PipelineConfig, data)
    resolved = {name: stage_options(name, sections.get(name)) for name in SECTIONS
                if name != "synth" or cfg.data.synth}
    return PipelineConfig(**{**{k: getattr(cfg, k) for k in ("run_dir", "seed", "data", "teachers",
                                                                "teacher_weights", "review", "devices")},
                             "sections": resolved})


def dump_config(cfg: PipelineConfig) -> dict[str, Any]:
    """Plain-data view of the fully resolved config (what each stage manifest records)."""
    d = to_dict(cfg)
    d.update({k: to_dict(v) for k, v in d.pop("sections").items()})
    return d
