"""`edgekd run`: the stage graph built from a pipeline config, run with skip/resume/force."""

from __future__ import annotations

import json
from pathlib import Path

from edgekd.pipeline.config import PipelineConfig, dump_config, load_pipeline_config
from edgekd.pipeline.engine import Stage, run_stages

DEMO_CONFIG = Path(__file__).parent / "demo.yaml"
STAGE_ORDER = ["synth", "data", "teacher_eval", "drift", "pseudolabel", "review", "distil", "prune", "export", "profile",
               "fit"]


def build_stages(cfg: PipelineConfig) -> list[Stage]:
    """The stage graph for `cfg`, in run order (each stage's deps come from its declared inputs)."""
    from edgekd.pipeline.stages import (data_stage, distil_stage, drift_stage, pseudolabel_stage, review_stage,
                                        synth_stage, teacher_eval_stage)
    from edgekd.pipeline.stages_deploy import export_stage, fit_stage, profile_stage, prune_stage

    stages = [synth_stage(cfg)] if cfg.data.synth else [s for s in [data_stage(cfg)] if s]
    stages += [teacher_eval_stage(cfg), drift_stage(cfg), pseudolabel_stage(cfg), review_stage(cfg), distil_stage(cfg)]
    if cfg.section("prune").enabled:
        stages.append(prune_stage(cfg))
    stages += [export_stage(cfg), profile_stage(cfg)]
    if cfg.section("fit").budgets:
        stages.append(fit_stage(cfg))
    return stages


def run_pipeline(config: str | Path | None, overrides: list[str] = (), force: tuple[str, ...] = (),
                 log=print) -> dict:
    """Load the config, run every stage (skipping unchanged ones), write the report."""
    from edgekd.report import run_report

    cfg = load_pipeline_config(config, overrides)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.resolved.json").write_text(json.dumps(dump_config(cfg), indent=2) + "\n")
    status = run_stages(build_stages(cfg), run_dir, force=force, log=log)
    report = run_report(run_dir, stage_order=STAGE_ORDER)
    return {"status": status, "report": report, "run_dir": run_dir}


def summary_lines(run_dir: str | Path) -> list[str]:
    """The demo's closing summary: teacher vs student WER, size, latency ratio, per-device RTF."""
    from edgekd.manifest import StageManifest

    run_dir = Path(run_dir)
    lines = []

    def load(stage):
        p = run_dir / stage / "manifest.json"
        return StageManifest.load(p) if p.exists() else None

    d = load("distil")
    if d:
        m = d.metrics
        before = f" (before adaptation {m['student_before_wer_%']:.1f} %)" if "student_before_wer_%" in m else ""
        lines.append(f"target-test WER: teacher {m['teacher_wer_%']:.1f} %, student {m['student_wer_%']:.1f} %{before}")
        lines.append(f"size: teacher {m['teacher_params'] / 1e6:.2f}M params, student {m['student_params'] / 1e6:.2f}M "
                     f"(1/{m['teacher_params'] / m['student_params']:.1f})")
        lines.append(f"latency student/teacher (PyTorch, 1 host thread): {m.get('latency_ratio') or float('nan'):.2f}x")
    e = load("export")
    if e and "verify" in e.outputs:  # every output is read through its stage's manifest
        rows = json.loads((run_dir / "export" / e.outputs["verify"]).read_text())["rows"]
        art = [r for r in rows if r["format"] == "onnx"]
        best = min(art, key=lambda r: r["size_mb"]) if art else None
        if best:
            lines.append(f"smallest ONNX: {best['model']}/{best['artifact']} {best['size_mb']:.2f} MB, WER "
                         f"{100 * best['wer']:.1f} %, {best['latency_ms_10s_1thread']:.0f} ms per 10 s on 1 host thread; "
                         f"checks failed: {sum(not r['ok'] for r in rows)}")
    if e and "streaming/verify" in e.outputs:  # the streaming student's sherpa-onnx online packages
        rows = json.loads((run_dir / "export" / e.outputs["streaming/verify"]).read_text())["rows"]
        fp32 = [r for r in rows if r.get("runtime") == "sherpa-onnx-online" and r["precision"] == "fp32"]
        if fp32:
            chunks = ", ".join(r["artifact"].split("/")[0] for r in fp32)
            wers = ", ".join(f"{100 * r['wer']:.1f} %" for r in fp32)
            same = min(r["identical"] for r in fp32)
            lines.append(f"streaming (sherpa-onnx online, {chunks}): WER {wers}; fp32 gives PyTorch's streaming "
                         f"transcript on {100 * same:.0f} %; checks failed: {sum(not r['ok'] for r in rows)}")
    p = load("profile")
    if p:
        parts = []
        for name, f in p.outputs.items():
            if not name.startswith("table_"):
                continue
            rows = json.loads((run_dir / "profile" / f).read_text())["rows"]
            for src in ("measured-on-host", "estimated"):
                rtf = [r["rtf"] for r in rows if r["source"] == src and r.get("rtf") is not None]
                if rtf:
                    parts.append(f"{name[6:]} {min(rtf):.3f} ({src.replace('measured-', '')})")
        if parts:
            lines.append("best RTF per device: " + ", ".join(parts))
    return lines
