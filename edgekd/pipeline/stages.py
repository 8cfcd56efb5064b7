"""Pipeline stages up to the student: data, teacher_eval, drift, pseudolabel, review, distil.

Each `<name>_stage(cfg) -> Stage` declares every input by name -- an upstream output (`Ref`) or
an external file -- and its `run(ctx)` reads only `ctx.inputs`, then calls the stage's library
function (`run_<stage>`). Nothing here knows another stage's folder.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgekd.errors import EdgekdError
from edgekd.manifest import read_manifest
from edgekd.pipeline.config import PipelineConfig, dump_config
from edgekd.pipeline.engine import Input, Ref, Stage, StageContext, StageResult

# data split -> the synth stage's output that holds it (when data.synth is on)
SYNTH_SPLITS = {"source": "source/test", "target": "target/train", "target_test": "target/test",
                "target_dev": "target/dev", "target_ref": "target/train.ref"}


DATA_SPLITS = tuple(SYNTH_SPLITS)


def _needs_import(v: str | None) -> bool:
    """An audio folder, Kaldi dir or CSV/TSV (anything but a manifest) goes through the data stage."""
    return bool(v) and not str(v).lower().endswith((".jsonl", ".jsonl.gz"))


def data(cfg: PipelineConfig, name: str) -> Input:
    """A data split: the synth stage's output, the data stage's import of it, or the manifest named."""
    if cfg.data.synth:
        return Ref("synth", SYNTH_SPLITS[name])
    v = getattr(cfg.data, name)
    if _needs_import(v):
        return Ref("data", name)
    return Path(v) if v else None


def data_stage(cfg: PipelineConfig) -> Stage | None:
    """The data splits given as an audio folder, Kaldi dir or CSV/TSV, imported into manifests
    (edgekd/importers.py, as `edgekd import` does: bad audio to rejected.jsonl); None if none is."""
    splits = {n: Path(getattr(cfg.data, n)) for n in DATA_SPLITS
              if not cfg.data.synth and _needs_import(getattr(cfg.data, n))}
    if not splits:
        return None

    def run(ctx: StageContext) -> StageResult:
        from edgekd.audio import Quarantine, check_manifest
        from edgekd.importers import import_any
        from edgekd.manifest import write_manifest

        q = Quarantine(ctx.dir / "rejected.jsonl", stage="data")
        metrics = {}
        for name in splits:
            utts, n_bad = check_manifest(import_any(ctx.input(name)), q)
            write_manifest(ctx.dir / f"{name}.jsonl", utts)
            metrics.update({name: len(utts), f"{name}_rejected": n_bad})
        rejected = {"rejected": "rejected.jsonl"} if (ctx.dir / "rejected.jsonl").exists() else {}
        return StageResult(outputs={**{n: f"{n}.jsonl" for n in splits}, **rejected}, metrics=metrics)
    return Stage("data", run, {"splits": {n: str(p) for n, p in splits.items()}}, inputs=dict(splits))


def teacher_files(cfg: PipelineConfig, first_only: bool = False) -> dict[str, Path]:
    """`teacher<i>` -> checkpoint or ONNX model, for the teachers that are files (hf:<id> ones are config)."""
    out = {}
    for i, t in enumerate(cfg.teachers[:1] if first_only else cfg.teachers):
        if t.startswith("hf:"):
            continue
        if t.startswith("onnx:"):
            from edgekd.teachers.onnx import find_model

            out[f"teacher{i}"] = find_model(t[5:])  # the graph is what can change a result
            continue
        if not Path(t).exists():
            raise EdgekdError(f"teacher {t} does not exist (train one with scripts/train_teacher.sh)")
        out[f"teacher{i}"] = Path(t)
    return out


def teacher_specs(cfg: PipelineConfig, ctx: StageContext, first_only: bool = False) -> list[str]:
    """The teachers as `load_teacher` takes them: declared checkpoint inputs, or hf:<id>."""
    ts = cfg.teachers[:1] if first_only else cfg.teachers
    return [t if t.startswith("hf:") else ("onnx:" if t.startswith("onnx:") else "") + str(ctx.input(f"teacher{i}"))
            for i, t in enumerate(ts)]


def synth_stage(cfg: PipelineConfig) -> Stage:
    from edgekd.synth import run_synth

    opts = cfg.section("synth")

    def run(ctx: StageContext) -> StageResult:
        m = json.loads(run_synth(opts, ctx.dir).read_text())
        return StageResult(outputs=m["outputs"], metrics={k: v["utterances"] for k, v in m["metrics"]["splits"].items()})
    return Stage("synth", run, dump_config(cfg)["synth"])


def teacher_eval_stage(cfg: PipelineConfig) -> Stage:
    """Greedy-CTC WER of every teacher on the labeled source and target test splits."""
    from edgekd.evaluate import run_eval

    splits = {"source_test": data(cfg, "source"), "target_test": data(cfg, "target_test")}

    def run(ctx: StageContext) -> StageResult:
        rows = []
        for i, (t, spec) in enumerate(zip(cfg.teachers, teacher_specs(cfg, ctx))):
            for split in splits:
                path = ctx.inputs[split]
                if path is None or not any(u.text for u in read_manifest(path)):
                    continue
                m = run_eval(spec, path, ctx.dir / f"{Path(t).stem}-{split}", progress=False)
                rows.append({"model": Path(t).name, "teacher": i, "split": split, "utterances": m["n"],
                             "wer_%": round(100 * m["wer"], 2), "cer_%": round(100 * m["cer"], 2)})
        (ctx.dir / "teachers.table.json").write_text(json.dumps({"title": "Teacher WER (greedy CTC)", "rows": rows}))
        return StageResult(outputs={"table": "teachers.table.json"},
                           metrics={f"{r['split']}_wer_%": r["wer_%"] for r in rows})
    return Stage("teacher_eval", run, {"teachers": list(cfg.teachers), "decoder": "greedy"},
                 inputs={**splits, **teacher_files(cfg)})


def pseudolabel_stage(cfg: PipelineConfig) -> Stage:
    from edgekd.pipeline.plots import confidence_plot
    from edgekd.pseudolabel import run_pseudolabel
    from edgekd.records import read_pseudolabels

    opts = cfg.section("pseudolabel")

    def run(ctx: StageContext) -> StageResult:
        m = json.loads(run_pseudolabel(opts, ctx.input("target"), teacher_specs(cfg, ctx), ctx.dir,
                                       cfg.teacher_weights, progress=True).read_text())
        labels = read_pseudolabels(ctx.dir / m["outputs"]["labels"])
        confidence_plot(ctx.dir / "confidence.png", labels, m["metrics"]["confidence_threshold"])
        keep = ("utterances", "rejected", "distil", "review", "confidence_threshold", "bytes_per_frame", "x_realtime")
        return StageResult(outputs={**m["outputs"], "confidence_plot": "confidence.png"},
                           metrics={k: m["metrics"][k] for k in keep})
    pl_cfg = dump_config(cfg)["pseudolabel"]
    if pl_cfg.get("teacher_weighting") == "fixed":  # the default: runs from before the option keep their fingerprint
        del pl_cfg["teacher_weighting"]
    cfg_d = {**pl_cfg, "teachers": list(cfg.teachers), "weights": list(cfg.teacher_weights)}
    lm = {"lm": Path(opts.lm)} if opts.lm else {}
    return Stage("pseudolabel", run, cfg_d, inputs={"target": data(cfg, "target"), **teacher_files(cfg), **lm})


def drift_stage(cfg: PipelineConfig) -> Stage:
    from edgekd.drift import run_drift

    opts = cfg.section("drift")

    def run(ctx: StageContext) -> StageResult:
        r = run_drift(opts, ctx.input("reference"), ctx.input("current"), ctx.dir, teacher_specs(cfg, ctx, True)[0])
        row = {"verdict": r["verdict"], "mmd_p": r["mmd"]["p_value"], "bands_differing_%": 100 * r["ks"]["fraction_significant"],
               "band_shift_db": r["band_mean_shift_db"]}
        if r["confidence"]:
            row.update({"conf_source": r["confidence"]["reference_mean"], "conf_target": r["confidence"]["current_mean"]})
        return StageResult(outputs={"report": "drift.json", "plot": "drift.png"}, metrics=row)
    return Stage("drift", run, {**dump_config(cfg)["drift"], "teacher": cfg.teachers[0]},
                 inputs={"reference": data(cfg, "source"), "current": data(cfg, "target"),
                         **teacher_files(cfg, first_only=True)})


def review_stage(cfg: PipelineConfig) -> Stage:
    """Export Label Studio tasks for the review set; import answers (a real export, or simulated)."""
    from edgekd.pipeline.simulate import simulate_annotators
    from edgekd.review import export_tasks, import_annotations

    rc = cfg.review

    def run(ctx: StageContext) -> StageResult:
        paths = export_tasks(ctx.input("review"), ctx.input("labels"), ctx.dir)
        outputs = {"tasks": "tasks.json", "config": "label_config.xml"}
        metrics: dict = {"tasks": len(json.loads(paths["tasks"].read_text()))}
        export = ctx.inputs.get("answers")
        if export is None and rc.simulate_annotators:
            export = simulate_annotators(paths["tasks"], ctx.inputs["target_ref"], rc.simulate_annotators,
                                         rc.annotator_error_rate, cfg.seed, ctx.dir)
            outputs["simulated_export"] = export.name
        if export is not None:
            stats = import_annotations(export, ctx.input("review"), ctx.dir)
            outputs["labeled"] = "labeled.jsonl"
            metrics.update({k: stats[k] for k in ("imported", "errors", "fraction_unanimous", "mean_pairwise_wer")})
        return StageResult(outputs=outputs, metrics=metrics)
    inputs: dict[str, Input] = {"review": Ref("pseudolabel", "review"), "labels": Ref("pseudolabel", "labels")}
    if rc.import_path:
        inputs["answers"] = Path(rc.import_path)
    elif rc.simulate_annotators:
        inputs["target_ref"] = data(cfg, "target_ref")
    config = {**dump_config(cfg)["review"], **({"seed": cfg.seed} if rc.simulate_annotators else {})}
    return Stage("review", run, config, inputs=inputs)


def distil_stage(cfg: PipelineConfig) -> Stage:
    """Train the student on the soft targets (+ human labels from review), then score it on the
    target test split beside the teacher's score from teacher_eval (not re-scored here). With
    `distil.init` (e.g. the shipped general student) the student adapts that checkpoint, and the
    checkpoint as it was is scored too: the report shows before adaptation, after, and teacher."""
    from edgekd.distil import run_distil
    from edgekd.evaluate import run_eval
    from edgekd.pipeline.plots import training_curve

    opts = cfg.section("distil")

    def run(ctx: StageContext) -> StageResult:
        from edgekd.models import load_checkpoint

        m = json.loads(run_distil(opts, ctx.input("soft_targets"), ctx.dir, human_labels=ctx.inputs["human_labels"],
                                  dev_manifest=ctx.inputs["dev"]).read_text())
        t_rows = json.loads(ctx.input("teacher_eval").read_text())["rows"]
        te = next((r for r in t_rows if r.get("teacher") == 0 and r["split"] == "target_test"), None)
        if te is None:
            raise EdgekdError("stage distil: teacher_eval has no target_test row for the first teacher")
        scored = {"teacher": (ctx.inputs.get("teacher0"), (te["wer_%"], te["cer_%"]))}
        models = {"student": ("student", ctx.dir / "model.safetensors")}
        if "init" in ctx.inputs:  # the starting checkpoint, scored before adaptation
            models = {"student (before adaptation)": ("init", ctx.input("init")),
                      "student (adapted)": models["student"]}
        for name, (folder, path) in models.items():
            e = run_eval(str(path), ctx.input("test"), ctx.dir / f"eval-{folder}", progress=False)
            scored[name] = (path, (round(100 * e["wer"], 2), round(100 * e["cer"], 2)))
        rows = []
        for name, (model, (wer, cer)) in scored.items():
            ck = load_checkpoint(model) if model is not None else None  # an hf: teacher has no edgekd checkpoint
            rows.append({"model": name, "params": ck.model.num_params() if ck else None,
                         "target_test_wer_%": wer, "target_test_cer_%": cer,
                         "torch_ms_10s_1thread": round(_torch_latency_ms(ck.model), 1) if ck else None})
        (ctx.dir / "compare.table.json").write_text(json.dumps({"title": "Teacher vs student on the target test split",
                                                                 "rows": rows}))
        hist = [json.loads(l) for l in (ctx.dir / "history.jsonl").read_text().splitlines() if l.strip()]
        training_curve(ctx.dir / "curve.png", hist)
        t_ms, s_ms = rows[0]["torch_ms_10s_1thread"], rows[-1]["torch_ms_10s_1thread"]
        metrics = {"steps": m["metrics"]["steps"], "student_params": rows[-1]["params"],
                   "teacher_params": rows[0]["params"], "latency_ratio": round(s_ms / t_ms, 3) if t_ms else None,
                   "teacher_wer_%": rows[0]["target_test_wer_%"], "student_wer_%": rows[-1]["target_test_wer_%"]}
        if len(rows) == 3:
            metrics["student_before_wer_%"] = rows[1]["target_test_wer_%"]
        return StageResult(outputs={"model": "model.safetensors", "history": "history.jsonl",
                                    "compare": "compare.table.json", "curve": "curve.png"}, metrics=metrics)
    # without `terms` when None: a run without the extra terms keeps its fingerprint (and is not redone)
    d_cfg = {k: v for k, v in dump_config(cfg)["distil"].items() if not (k == "terms" and v is None)}
    return Stage("distil", run, {**d_cfg, "teacher": cfg.teachers[0]},
                 inputs={"soft_targets": Ref("pseudolabel", "soft_targets"),
                         "human_labels": Ref("review", "labeled", optional=True),
                         "teacher_eval": Ref("teacher_eval", "table"), "test": data(cfg, "target_test"),
                         "dev": data(cfg, "target_dev"), **teacher_files(cfg, first_only=True),
                         **({"init": Path(opts.init)} if opts.init else {})})


def _torch_latency_ms(model, frames: int = 1000, repeats: int = 3) -> float:
    """Median 1-thread forward time for 10 s of features (teacher and student alike)."""
    import statistics
    import time

    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    x, lens = torch.randn(1, frames, model.dims.n_mels), torch.tensor([frames])
    ts = []
    with torch.no_grad():
        model(x, lens)
        for _ in range(repeats):
            t = time.perf_counter()
            model(x, lens)
            ts.append((time.perf_counter() - t) * 1000)
    torch.set_num_threads(n)
    return statistics.median(ts)
