"""Pipeline stages after distillation: prune (+ KD fine-tune), export (+ verify), profile per device."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from edgekd.pipeline.config import PipelineConfig, dump_config
from edgekd.pipeline.engine import Stage, StageContext, StageResult
from edgekd.pipeline.stages import _external, _synth_dep, data_path


def prune_stage(cfg: PipelineConfig) -> Stage:
    from edgekd.export import run_prune

    opts = cfg.section("prune")

    def run(ctx: StageContext) -> StageResult:
        m = json.loads(run_prune(opts, ctx.run_dir / "distil" / "model.safetensors", ctx.dir,
                                 soft_targets=ctx.run_dir / "pseudolabel", dev_manifest=data_path(cfg, ctx, "target_dev"),
                                 progress=False).read_text())
        b, a = m["metrics"]["before"], m["metrics"]["after"]
        return StageResult(outputs={"model": "model.safetensors"},
                           metrics={"params_before": b["params"], "params_after": a["params"],
                                    "weight_macs_ratio": round(a["weight_macs_per_frame"] / b["weight_macs_per_frame"], 3)})
    return Stage("prune", run, dump_config(cfg)["prune"], deps=("distil", "pseudolabel") + _synth_dep(cfg),
                 inputs=_external(cfg, "target_dev"))


def _models(cfg: PipelineConfig, run_dir: Path) -> dict[str, Path]:
    models = {"student": run_dir / "distil" / "model.safetensors"}
    if cfg.section("prune").enabled:
        models["pruned"] = run_dir / "prune" / "model.safetensors"
    return models


def export_stage(cfg: PipelineConfig) -> Stage:
    from edgekd.export import run_export

    opts = cfg.section("export")

    def run(ctx: StageContext) -> StageResult:
        test = data_path(cfg, ctx, "target_test")
        rows, failed, outputs = [], [], {}
        for name, model in _models(cfg, ctx.run_dir).items():
            # the pruned model gets the cheap variants only: its question is speed vs WER, not formats
            o = opts if name == "student" else dataclasses.replace(opts, tflite=(), quantize=("int8-dynamic",),
                                                                   sherpa=False)
            m = json.loads(run_export(o, model, ctx.dir / name, test_manifest=test,
                                      calib_manifest=data_path(cfg, ctx, "target_dev"), progress=False).read_text())
            for r in json.loads((ctx.dir / name / "verify.table.json").read_text())["rows"]:
                if name != "student" and r["format"] == "pytorch":
                    r["artifact"] = "pytorch"
                rows.append({"model": name, **r})
            failed += [f"{name}/{a}" for a in m["metrics"]["failed"]]
            outputs.update({f"{name}/{k}": f"{name}/{v}" for k, v in m["outputs"].items()})
        (ctx.dir / "verify.table.json").write_text(json.dumps(
            {"title": "Every artifact checked against its PyTorch model (target test split)", "rows": rows,
             "note": "max_diff: max |Δ log-prob| on valid frames; agreement: frames with the same best token; "
                     "latency: 10 s of audio, 1 thread, this host (not a device)."}, indent=1))
        outputs["verify"] = "verify.table.json"
        return StageResult(outputs=outputs, metrics={"failed": failed, "artifacts": len(rows)})
    deps = ("distil",) + (("prune",) if cfg.section("prune").enabled else ()) + _synth_dep(cfg)
    return Stage("export", run, dump_config(cfg)["export"], deps=deps, inputs=_external(cfg, "target_test"))


def profile_stage(cfg: PipelineConfig) -> Stage:
    from edgekd.profile import run_profile

    opts = dataclasses.replace(cfg.section("profile"), devices=tuple(cfg.devices))

    def run(ctx: StageContext) -> StageResult:
        exp = ctx.run_dir / "export"
        rows = json.loads((exp / "verify.table.json").read_text())["rows"]
        arts, wer = [], {}
        for r in rows:
            if r["format"] not in ("onnx", "tflite"):
                continue
            art = json.loads((exp / r["model"] / "artifacts.json").read_text())
            path = next(Path(a["path"]) for a in art if a["name"] == r["artifact"])
            # same file names in both model folders: profile copies under unique names
            unique = ctx.dir / "artifacts" / f"{r['model']}-{path.name}"
            unique.parent.mkdir(parents=True, exist_ok=True)
            if not unique.exists():
                unique.write_bytes(path.read_bytes())
                side = Path(str(path) + ".json")  # LiteRT metadata sidecar
                if side.exists():
                    Path(str(unique) + ".json").write_bytes(side.read_bytes())
            arts.append(unique)
            wer[unique.name] = r["wer"]
        m = json.loads(run_profile(opts, arts, ctx.dir, wer=wer).read_text())
        return StageResult(outputs=m["outputs"], metrics=m["metrics"])
    return Stage("profile", run, {**dump_config(cfg)["profile"], "devices": list(cfg.devices)}, deps=("export",))
