"""Pipeline stages after distillation: prune (+ KD fine-tune), export (+ verify), profile per device,
and (when the config has `fit.budgets`) fit: the most accurate student under each device budget.

Export writes one `artifacts.json` of typed `Artifact` records (path, format, precision, runtime,
contract, size, metadata: model, label, WER); profile reads exactly that, nothing else of export's.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from edgekd.pipeline.config import PipelineConfig, dump_config
from edgekd.pipeline.engine import Ref, Stage, StageContext, StageResult
from edgekd.pipeline.stages import data


def prune_stage(cfg: PipelineConfig) -> Stage:
    from edgekd.export import run_prune

    opts = cfg.section("prune")

    def run(ctx: StageContext) -> StageResult:
        m = json.loads(run_prune(opts, ctx.input("model"), ctx.dir, soft_targets=ctx.input("soft_targets"),
                                 dev_manifest=ctx.inputs["dev"], progress=False).read_text())
        b, a = m["metrics"]["before"], m["metrics"]["after"]
        return StageResult(outputs={"model": "model.safetensors"},
                           metrics={"params_before": b["params"], "params_after": a["params"],
                                    "weight_macs_ratio": round(a["weight_macs_per_frame"] / b["weight_macs_per_frame"], 3)})
    return Stage("prune", run, dump_config(cfg)["prune"],
                 inputs={"model": Ref("distil", "model"), "soft_targets": Ref("pseudolabel", "soft_targets"),
                         "dev": data(cfg, "target_dev")})


def export_stage(cfg: PipelineConfig) -> Stage:
    from edgekd.export import run_export
    from edgekd.records import read_artifacts, write_artifacts

    opts = cfg.section("export")
    models = {"student": Ref("distil", "model")}
    if cfg.section("prune").enabled:
        models["pruned"] = Ref("prune", "model")

    # a streaming student beside the offline ones (its file is an input, so its content is fingerprinted)
    streaming = {"streaming": Path(opts.streaming_checkpoint)} if opts.streaming_checkpoint else {}

    def run(ctx: StageContext) -> StageResult:
        rows, failed, outputs, arts = [], [], {}, []
        for name in models:
            # the pruned model gets the cheap variants only: its question is speed vs WER, not formats
            o = opts if name == "student" else dataclasses.replace(opts, tflite=(), quantize=("int8-dynamic",),
                                                                   sherpa=False)
            m = json.loads(run_export(o, ctx.input(name), ctx.dir / name, test_manifest=ctx.input("test"),
                                      calib_manifest=ctx.inputs["calib"], progress=False).read_text())
            for r in json.loads((ctx.dir / name / m["outputs"]["verify"]).read_text())["rows"]:
                if name != "student" and r["format"] == "pytorch":
                    r["artifact"] = "pytorch"
                rows.append({"model": name, **r})
            failed += [f"{name}/{a}" for a in m["metrics"]["failed"]]
            outputs.update({f"{name}/{k}": f"{name}/{v}" for k, v in m["outputs"].items()})
            for a in read_artifacts(ctx.dir / name / m["outputs"]["artifacts"]):
                label = f"{name}/{a.path.rsplit('/', 1)[-1]}"
                arts.append(dataclasses.replace(a, metadata={**a.metadata, "model": name, "label": label}))
        if streaming:
            from edgekd.export.stream_export import run_streaming_export

            m = json.loads(run_streaming_export(ctx.input("streaming"), ctx.dir / "streaming", opts.streaming_chunks_ms,
                                                test_manifest=ctx.input("test"),
                                                verify_utts=opts.verify_utts).read_text())
            # its checks (sherpa-onnx online vs PyTorch streaming) stay in streaming/verify.table.json
            failed += [f"streaming/{a}" for a in m["metrics"]["failed"]]
            outputs.update({f"streaming/{k}": f"streaming/{v}" for k, v in m["outputs"].items()})
            for a in read_artifacts(ctx.dir / "streaming" / m["outputs"]["artifacts"]):
                label = f"streaming/{a.metadata['chunk_ms']}ms/{a.path.rsplit('/', 1)[-1]}"
                arts.append(dataclasses.replace(a, metadata={**a.metadata, "model": "streaming", "label": label}))
        write_artifacts(arts, ctx.dir / "artifacts.json")
        (ctx.dir / "verify.table.json").write_text(json.dumps(
            {"title": "Every artifact checked against its PyTorch model (target test split)", "rows": rows,
             "note": "max_diff: max |Δ log-prob| on valid frames; agreement: frames with the same best token; "
                     "latency: 10 s of audio, 1 thread, this host (not a device)."}, indent=1))
        outputs.update({"verify": "verify.table.json", "artifacts": "artifacts.json"})
        return StageResult(outputs=outputs, metrics={"failed": failed, "artifacts": len(rows)})
    return Stage("export", run, dump_config(cfg)["export"],
                 inputs={**models, **streaming, "test": data(cfg, "target_test"), "calib": data(cfg, "target_dev")})


def profile_stage(cfg: PipelineConfig) -> Stage:
    from edgekd.profile import run_profile
    from edgekd.records import read_artifacts

    opts = dataclasses.replace(cfg.section("profile"), devices=tuple(cfg.devices))

    def run(ctx: StageContext) -> StageResult:
        arts = [a for a in read_artifacts(ctx.input("artifacts")) if a.format in ("onnx", "tflite")]
        m = json.loads(run_profile(opts, arts, ctx.dir).read_text())
        return StageResult(outputs=m["outputs"], metrics=m["metrics"])
    return Stage("profile", run, {**dump_config(cfg)["profile"], "devices": list(cfg.devices)},
                 inputs={"artifacts": Ref("export", "artifacts")})


def fit_stage(cfg: PipelineConfig) -> Stage:
    """`edgekd fit` on the pipeline's soft targets: budgets parsed now, so a bad one stops the run
    before any stage works."""
    from edgekd.fit import load_budget, run_fit

    opts = cfg.section("fit")
    budgets = [load_budget(b) for b in opts.budgets]

    def run(ctx: StageContext) -> StageResult:
        m = json.loads(run_fit(opts, budgets, ctx.input("soft_targets"), ctx.dir, dev_manifest=ctx.inputs["dev"],
                               test_manifest=ctx.input("test"), human_labels=ctx.inputs["human_labels"],
                               log=lambda s: None).read_text())
        return StageResult(outputs=m["outputs"], metrics={d: v["winner"] for d, v in m["metrics"].items()
                                                          if isinstance(v, dict) and "winner" in v})
    return Stage("fit", run, dump_config(cfg)["fit"],
                 inputs={"soft_targets": Ref("pseudolabel", "soft_targets"),
                         "human_labels": Ref("review", "labeled", optional=True),
                         "test": data(cfg, "target_test"), "dev": data(cfg, "target_dev")})
