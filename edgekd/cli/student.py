"""`edgekd distil | review export | review import`: the student and the humans who check its labels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgekd.cli._common import ManifestArg, options, OutDir, say, Seed, Threads


def distil(
    pseudolabels: Annotated[Path, typer.Option(help="A pseudolabel output folder (soft targets + labels).")],
    out: OutDir,
    preset: Annotated[str, typer.Option(help="Student preset.")] = "student-xs",
    loss: Annotated[str, typer.Option(help="kd, ctc, kd+ctc or annealing.")] = "kd+ctc",
    temperature: Annotated[float, typer.Option(help="KD temperature.")] = 2.0,
    ctc_weight: Annotated[float, typer.Option(help="Weight of CTC on hard labels (kd+ctc).")] = 0.3,
    human_labels: Annotated[Optional[Path], typer.Option(help="Labeled manifest from `edgekd review import`.")] = None,
    dev: Annotated[Optional[Path], typer.Option(help="Labeled target-domain dev manifest.")] = None,
    steps: Annotated[int, typer.Option(help="Optimizer steps.")] = 2000,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 2e-3,
    warmup: Annotated[Optional[int], typer.Option(help="Warm-up steps (default steps/10).")] = None,
    max_frames: Annotated[int, typer.Option(help="Padded feature frames per batch.")] = 12000,
    eval_every: Annotated[Optional[int], typer.Option(help="Steps between dev WER evaluations (default steps/5).")] = None,
    ckpt_every: Annotated[int, typer.Option(help="Steps between resumable checkpoints.")] = 200,
    hours: Annotated[float, typer.Option(help="Stop after this many hours of wall time (0 = no limit).")] = 0.0,
    init: Annotated[Optional[Path], typer.Option(help="Start from this student checkpoint (e.g. the shipped general student).")] = None,
    precision: Annotated[str, typer.Option(help="fp32, or bf16 autocast (AVX-512 BF16 CPUs, GPUs).")] = "fp32",
    streaming: Annotated[bool, typer.Option(help="Train a streaming student (causal conv, dynamic chunk masks, "
                                                 "NeMo-style fbank for sherpa-onnx online).")] = False,
    left_context: Annotated[int, typer.Option(help="Streaming: attention left context, output frames.")] = 48,
    target_delay: Annotated[int, typer.Option(help="Streaming: shift the teacher's targets this many frames later.")] = 0,
    tokens: Annotated[str, typer.Option(help="teacher (adopt the teacher's token set: frame KD needs it), or a "
                                             "sentencepiece .model / tokens.txt (with --loss ctc only).")] = "teacher",
    feature_weight: Annotated[float, typer.Option(help="Feature KD weight: student layer i learns teacher layer "
                                                        "round(i*Lt/Ls) through a learned projection (0 = off).")] = 0.0,
    feature_loss: Annotated[str, typer.Option(help="Feature KD distance: cosine or mse.")] = "cosine",
    feature_layers: Annotated[str, typer.Option(help="Feature KD on all student layers or the last only.")] = "all",
    relation_weight: Annotated[float, typer.Option(help="Relation KD weight: frame-similarity matrices of the last "
                                                         "layers, row-softmaxed, KL (0 = off).")] = 0.0,
    kd_teacher: Annotated[Optional[Path], typer.Option(help="Teacher checkpoint for feature/relation KD "
                                                            "(default: the soft targets' first teacher).")] = None,
    mutual_weight: Annotated[float, typer.Option(help="Mutual learning: a peer student trains alongside; weight of "
                                                       "KL(peer || self), both ways (0 = off).")] = 0.0,
    self_weight: Annotated[float, typer.Option(help="Self-distillation: weight of KL(EMA of the student || student) "
                                                     "(0 = off).")] = 0.0,
    threads: Threads = 0,
    seed: Seed = 0,
):
    """Train a student conformer on a teacher's soft targets (rerun the same command to resume).

    `--streaming` trains a streaming student (dynamic chunks) that `edgekd.export.streaming` exports
    for sherpa-onnx's online recognizer; `--init` may name an offline student to start from.

    `--feature-weight`, `--relation-weight`, `--mutual-weight` and `--self-weight` add feature KD,
    relation KD, mutual learning and self-distillation (edgekd.kd_terms) to `--loss`.

    Usage: edgekd distil --pseudolabels runs/pl --out runs/student --preset student-xs --loss kd+ctc --dev data/corpus/target/dev.jsonl
    """
    from edgekd.distil import DistilOptions, run_distil
    from edgekd.kd_terms import KDTerms
    from edgekd.train.chunks import ChunkTraining
    from edgekd.train.loop import LoopOptions

    opts = options(DistilOptions, preset=preset, loss=loss, temperature=temperature, ctc_weight=ctc_weight,
                   max_frames=max_frames, init=str(init or ""), tokens=tokens,
                   terms=options(KDTerms, feature_weight=feature_weight, feature_loss=feature_loss,
                                 feature_layers=feature_layers, relation_weight=relation_weight,
                                 teacher=str(kd_teacher or ""), mutual_weight=mutual_weight, self_weight=self_weight)
                   if feature_weight or relation_weight or mutual_weight or self_weight else None,
                   streaming=options(ChunkTraining, left_context=left_context, target_delay=target_delay)
                   if streaming else None,
                   loop=options(LoopOptions, max_steps=steps, lr=lr,
                                warmup_steps=max(1, steps // 10) if warmup is None else warmup,
                                eval_every=max(1, steps // 5) if eval_every is None else eval_every,
                                ckpt_every=ckpt_every, time_budget_s=hours * 3600, precision=precision,
                                threads=threads, seed=seed))
    say(str(run_distil(opts, pseudolabels, out, human_labels=human_labels, dev_manifest=dev)))


review_cli = typer.Typer(no_args_is_help=True, help="Human review through Label Studio.")


@review_cli.command("export")
def review_export(
    pseudolabels: Annotated[Path, typer.Option(help="A pseudolabel output folder (review.jsonl, labels.jsonl).")],
    out: OutDir,
    audio_url_prefix: Annotated[str, typer.Option(help="Prefix replacing audio folders in task URLs.")] = "",
):
    """Label Studio import JSON + labeling config for the doubtful audio.

    Usage: edgekd review export --pseudolabels runs/pl --out runs/review
    """
    from edgekd.review import export_tasks

    paths = export_tasks(pseudolabels / "review.jsonl", pseudolabels / "labels.jsonl", out, audio_url_prefix)
    say(f"{paths['tasks']} (import into Label Studio with {paths['config']})")


@review_cli.command("import")
def review_import(
    export_json: Annotated[Path, typer.Argument(help="Label Studio export JSON.")],
    manifest: ManifestArg,
    out: OutDir,
):
    """Majority-vote several annotators' answers into a labeled manifest (+ agreement stats).

    Usage: edgekd review import ls_export.json -m runs/pl/review.jsonl --out runs/review
    """
    from edgekd.review import import_annotations

    s = import_annotations(export_json, manifest, out)
    say(f"{s['imported']}/{s['tasks']} tasks imported, {s['errors']} errors, "
         f"{100 * s['fraction_unanimous']:.0f} % unanimous -> {out / 'labeled.jsonl'}")


def rounds(
    pool: Annotated[Path, typer.Option(help="Unlabeled audio manifest, relabeled every round.")],
    refs: Annotated[Path, typer.Option(help="Hidden references of the pool (the simulated annotators answer from them).")],
    teacher: Annotated[list[str], typer.Option(help="Teacher checkpoint (repeat for an ensemble).")],
    test: Annotated[Path, typer.Option(help="Labeled target test manifest: each round's student is scored on it.")],
    out: OutDir,
    dev: Annotated[Optional[Path], typer.Option(help="Labeled dev manifest (best-checkpoint pick).")] = None,
    n_rounds: Annotated[int, typer.Option("--rounds", help="Labeling rounds.")] = 3,
    review_fraction: Annotated[float, typer.Option(help="Round 0: least-confident share sent to review.")] = 0.2,
    audit_fraction: Annotated[float, typer.Option(help="Share of auto-accepted labels audited each round.")] = 0.2,
    audit_min: Annotated[int, typer.Option(help="...but at least this many audits a round (all, when fewer).")] = 1,
    target_error: Annotated[float, typer.Option(help="Label WER the accepted pool should meet (threshold target).")] = 0.5,
    update: Annotated[str, typer.Option(help="join (the student joins the ensemble) or none.")] = "join",
    init: Annotated[Optional[Path], typer.Option(help="Student checkpoint each round starts from.")] = None,
    preset: Annotated[str, typer.Option(help="Student preset (without --init).")] = "student-xs",
    steps: Annotated[int, typer.Option(help="Distillation steps per round.")] = 300,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 5e-4,
    threads: Threads = 0,
    seed: Seed = 0,
):
    """Iterative labeling: pseudo-label the pool, review the doubtful + audit a share of the accepted,
    distil, let the student join the ensemble, repeat (rerun the same command to resume).

    Usage: edgekd rounds --pool runs/demo/synth/target/train.jsonl --refs runs/demo/synth/target/train.ref.jsonl --teacher models/teacher/teacher.safetensors --test runs/demo/synth/target/test.jsonl --out runs/rounds --rounds 3
    """
    from edgekd.distil import DistilOptions
    from edgekd.pseudolabel import PseudoLabelOptions
    from edgekd.rounds import RoundsOptions, run_rounds
    from edgekd.train.loop import LoopOptions

    loop = options(LoopOptions, max_steps=steps, lr=lr, warmup_steps=max(1, steps // 10), eval_every=max(1, steps // 3),
                   ckpt_every=50, threads=threads, seed=seed)
    opts = options(RoundsOptions, rounds=n_rounds, review_fraction=review_fraction, audit_fraction=audit_fraction,
                   audit_min=audit_min, target_error=target_error, update=update, seed=seed,
                   pseudolabel=options(PseudoLabelOptions, workers=1, threads=threads),
                   distil=options(DistilOptions, preset=preset, init=str(init or ""), loop=loop))
    say(str(run_rounds(opts, pool, refs, teacher, out, test=test, dev=dev)))
