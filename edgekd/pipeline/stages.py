"""Pipeline stages for pseudo-labeling, drift and human review (each a thin wrapper over run_<stage>)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from edgekd.manifest import read_manifest
from edgekd.pipeline.config import PipelineConfig, dump_config
from edgekd.pipeline.engine import Stage, StageContext, StageResult


def data_path(cfg: PipelineConfig, ctx: StageContext, name: str) -> Path | None:
    """A data split, from the synth stage or the config's data section."""
    if cfg.data.synth:
        key = {"source": "source/test", "target": "target/train", "target_test": "target/test",
               "target_dev": "target/dev", "target_ref": "target/train.ref"}[name]
        return ctx.upstream_path("synth", key)
    v = getattr(cfg.data, name)
    return Path(v) if v else None


def _synth_dep(cfg: PipelineConfig) -> tuple[str, ...]:
    return ("synth",) if cfg.data.synth else ()


def _external(cfg: PipelineConfig, *names: str) -> tuple[Path, ...]:
    if cfg.data.synth:
        return ()
    return tuple(Path(getattr(cfg.data, n)) for n in names if getattr(cfg.data, n))


def teacher_inputs(cfg: PipelineConfig) -> tuple[Path, ...]:
    return tuple(Path(t) for t in cfg.teachers if not t.startswith("hf:"))


def pseudolabel_stage(cfg: PipelineConfig) -> Stage:
    from edgekd.pseudolabel import run_pseudolabel

    opts = cfg.section("pseudolabel")

    def run(ctx: StageContext) -> StageResult:
        m = json.loads(run_pseudolabel(opts, data_path(cfg, ctx, "target"), list(cfg.teachers), ctx.dir,
                                       cfg.teacher_weights, progress=True).read_text())
        labels = [json.loads(l) for l in (ctx.dir / "labels.jsonl").read_text().splitlines() if l.strip()]
        _confidence_plot(ctx.dir / "confidence.png", labels, m["metrics"]["confidence_threshold"])
        keep = ("utterances", "rejected", "distil", "review", "confidence_threshold", "bytes_per_frame", "x_realtime")
        return StageResult(outputs={**m["outputs"], "confidence_plot": "confidence.png"},
                           metrics={k: m["metrics"][k] for k in keep})
    cfg_d = {**dump_config(cfg)["pseudolabel"], "teachers": list(cfg.teachers), "weights": list(cfg.teacher_weights)}
    lm = (Path(opts.lm),) if opts.lm else ()
    return Stage("pseudolabel", run, cfg_d, deps=_synth_dep(cfg),
                 inputs=teacher_inputs(cfg) + lm + _external(cfg, "target"))


def _confidence_plot(path: Path, labels: list[dict], thr: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist([l["confidence"] for l in labels], bins=30, range=(0, 1), color="#4477aa")
    ax.axvline(thr, color="r", ls="--", label=f"routing threshold {thr:.3f}")
    n_r = sum(l["route"] == "review" for l in labels)
    ax.set(title=f"teacher confidence: {len(labels) - n_r} to distillation, {n_r} to review", xlabel="confidence")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def drift_stage(cfg: PipelineConfig) -> Stage:
    from edgekd.drift import run_drift

    opts = cfg.section("drift")

    def run(ctx: StageContext) -> StageResult:
        ref, cur = data_path(cfg, ctx, "source"), data_path(cfg, ctx, "target")
        r = run_drift(opts, ref, cur, ctx.dir, cfg.teachers[0])
        row = {"verdict": r["verdict"], "mmd_p": r["mmd"]["p_value"], "bands_differing_%": 100 * r["ks"]["fraction_significant"],
               "band_shift_db": r["band_mean_shift_db"]}
        if r["confidence"]:
            row.update({"conf_source": r["confidence"]["reference_mean"], "conf_target": r["confidence"]["current_mean"]})
        return StageResult(outputs={"report": "drift.json", "plot": "drift.png"}, metrics=row)
    return Stage("drift", run, {**dump_config(cfg)["drift"], "teacher": cfg.teachers[0]}, deps=_synth_dep(cfg),
                 inputs=teacher_inputs(cfg)[:1] + _external(cfg, "source", "target"))


def review_stage(cfg: PipelineConfig) -> Stage:
    """Export Label Studio tasks for the review set; import answers (a real export, or simulated)."""
    from edgekd.review import export_tasks, import_annotations

    rc = cfg.review

    def run(ctx: StageContext) -> StageResult:
        pl = ctx.run_dir / "pseudolabel"
        paths = export_tasks(pl / "review.jsonl", pl / "labels.jsonl", ctx.dir)
        outputs = {"tasks": "tasks.json", "config": "label_config.xml"}
        metrics: dict = {"tasks": len(json.loads(paths["tasks"].read_text()))}
        export = Path(rc.import_path) if rc.import_path else None
        if export is None and rc.simulate_annotators:
            export = _simulate(paths["tasks"], data_path(cfg, ctx, "target_ref"), rc, cfg.seed, ctx.dir)
            outputs["simulated_export"] = export.name
        if export is not None:
            stats = import_annotations(export, pl / "review.jsonl", ctx.dir)
            outputs["labeled"] = "labeled.jsonl"
            metrics.update({k: stats[k] for k in ("imported", "errors", "fraction_unanimous", "mean_pairwise_wer")})
        return StageResult(outputs=outputs, metrics=metrics)
    ins = (Path(rc.import_path),) if rc.import_path else ()
    return Stage("review", run, json.loads(json.dumps(dump_config(cfg)["review"])), deps=("pseudolabel",) + _synth_dep(cfg),
                 inputs=ins)


def _simulate(tasks_json: Path, ref_manifest: Path | None, rc, seed: int, out: Path) -> Path:
    """A Label Studio export in which N simulated annotators transcribe each task from the hidden
    reference with word substitutions/deletions at `annotator_error_rate` (demo and tests only)."""
    from edgekd.errors import EdgekdError

    if ref_manifest is None:
        raise EdgekdError("review.simulate_annotators needs data.target_ref (hidden transcripts)")
    refs = {u.id: u.text or "" for u in read_manifest(ref_manifest)}
    rng = random.Random(seed)
    vocab = sorted({w for t in refs.values() for w in t.split()}) or ["a"]
    tasks = json.loads(tasks_json.read_text())
    for i, t in enumerate(tasks):
        t["id"] = i + 1
        words = refs.get(t["data"]["utt_id"], "").split()
        anns = []
        for a in range(rc.simulate_annotators):
            out_w = []
            for w in words:
                r = rng.random()
                if r < rc.annotator_error_rate / 2:
                    continue  # deletion
                out_w.append(rng.choice(vocab) if r < rc.annotator_error_rate else w)
            anns.append({"id": a + 1, "created_at": f"2026-01-01T00:00:0{a}", "was_cancelled": False,
                         "result": [{"from_name": "transcription", "to_name": "audio", "type": "textarea",
                                     "value": {"text": [" ".join(out_w)]}}]})
        t["annotations"] = anns
    path = out / "simulated_export.json"
    path.write_text(json.dumps(tasks, indent=1))
    return path


def distil_stage(cfg: PipelineConfig) -> Stage:
    """Train the student on the soft targets (+ human labels from review), then score it and the
    teacher on the target test split side by side."""
    from edgekd.distil import run_distil
    from edgekd.evaluate import run_eval

    opts = cfg.section("distil")

    def run(ctx: StageContext) -> StageResult:
        human = ctx.run_dir / "review" / "labeled.jsonl"
        m = json.loads(run_distil(opts, ctx.run_dir / "pseudolabel", ctx.dir,
                                  human_labels=human if human.exists() else None,
                                  dev_manifest=data_path(cfg, ctx, "target_dev")).read_text())
        test = data_path(cfg, ctx, "target_test")
        rows = []
        for name, model in (("teacher", cfg.teachers[0]), ("student", str(ctx.dir / "model.safetensors"))):
            e = run_eval(model, test, ctx.dir / f"eval-{name}", progress=False)
            from edgekd.models import load_checkpoint

            ck = load_checkpoint(model) if not model.startswith("hf:") else None
            rows.append({"model": name, "params": ck.model.num_params() if ck else None,
                         "target_test_wer_%": round(100 * e["wer"], 2), "target_test_cer_%": round(100 * e["cer"], 2),
                         "torch_ms_10s_1thread": round(_torch_latency_ms(ck.model), 1) if ck else None})
        (ctx.dir / "compare.table.json").write_text(json.dumps({"title": "Teacher vs student on the target test split",
                                                                 "rows": rows}))
        hist = [json.loads(l) for l in (ctx.dir / "history.jsonl").read_text().splitlines() if l.strip()]
        _curve(ctx.dir / "curve.png", hist)
        return StageResult(outputs={"model": "model.safetensors", "history": "history.jsonl",
                                    "compare": "compare.table.json", "curve": "curve.png"},
                           metrics={"steps": m["metrics"]["steps"], "student_params": rows[1]["params"],
                                    "teacher_params": rows[0]["params"],
                                    "latency_ratio": (round(rows[1]["torch_ms_10s_1thread"] / rows[0]["torch_ms_10s_1thread"], 3)
                                                      if rows[0]["torch_ms_10s_1thread"] else None),
                                    "teacher_wer_%": rows[0]["target_test_wer_%"],
                                    "student_wer_%": rows[1]["target_test_wer_%"]})
    return Stage("distil", run, {**dump_config(cfg)["distil"], "teacher": cfg.teachers[0]},
                 deps=("pseudolabel", "review") + _synth_dep(cfg), inputs=_external(cfg, "target_test", "target_dev"))


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


def _curve(path: Path, hist: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 3))
    tr = [h for h in hist if "loss" in h]
    ax[0].plot([h["step"] for h in tr], [h["loss"] for h in tr], label="total")
    for k in ("kd", "ctc"):
        pts = [(h["step"], h[k]) for h in tr if k in h]
        if pts:
            ax[0].plot(*zip(*pts), label=k, alpha=0.7)
    ax[0].set(title="student training loss", xlabel="step")
    ax[0].legend()
    dev = [h for h in hist if "dev_wer" in h]
    if dev:
        ax[1].plot([h["step"] for h in dev], [100 * h["dev_wer"] for h in dev], "o-", label="WER")
        ax[1].plot([h["step"] for h in dev], [100 * h["dev_cer"] for h in dev], "o-", label="CER")
        ax[1].set(title="target dev (%)", xlabel="step")
        ax[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
