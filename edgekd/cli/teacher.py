"""`edgekd train | eval | pseudolabel | drift`: train and score models, label target audio with a teacher."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgekd.cli._common import ManifestArg, options, OutDir, say, Seed, Threads


def train(
    train_manifest: Annotated[Path, typer.Option("--train", help="Labeled training manifest.")],
    out: OutDir,
    dev: Annotated[Optional[Path], typer.Option(help="Labeled dev manifest (dev WER, best checkpoint).")] = None,
    preset: Annotated[str, typer.Option(help="Model preset (edgekd/models/presets) or YAML path.")] = "teacher-m",
    role: Annotated[str, typer.Option(help="Recorded in the checkpoint: teacher or student.")] = "teacher",
    steps: Annotated[int, typer.Option(help="Optimizer steps in total (a resumed run continues to it).")] = 20000,
    lr: Annotated[float, typer.Option(help="Peak learning rate (2e-3 stalled CTC from scratch here).")] = 5e-4,
    warmup: Annotated[int, typer.Option(help="Warm-up steps.")] = 1000,
    max_frames: Annotated[int, typer.Option(help="Padded feature frames per batch.")] = 24000,
    eval_every: Annotated[int, typer.Option(help="Steps between dev WER evaluations.")] = 1000,
    ckpt_every: Annotated[int, typer.Option(help="Steps between resumable checkpoints.")] = 200,
    hours: Annotated[float, typer.Option(help="Stop after this many hours of wall time (0 = no limit).")] = 0.0,
    init: Annotated[Optional[Path], typer.Option(help="Warm start from this checkpoint's weights.")] = None,
    init_new_head: Annotated[bool, typer.Option(
        help="With --init of another token set: take every weight but the output layer, which starts fresh.")] = False,
    tokens: Annotated[str, typer.Option(help="Token set: chars (29 characters), a sentencepiece .model "
                                             "(`edgekd tokens train`) or a tokens.txt.")] = "chars",
    precision: Annotated[str, typer.Option(help="fp32, or bf16 autocast (AVX-512 BF16 CPUs, GPUs).")] = "fp32",
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    threads: Threads = 0,
    seed: Seed = 0,
):
    """Train a conformer CTC model; rerun the same command to resume after a kill.

    Usage: edgekd train --role teacher --preset teacher-m --train data/corpus/source/train.jsonl --dev data/corpus/source/dev.jsonl --out runs/teacher
    """
    from edgekd.train import TrainOptions, run_train
    from edgekd.train.loop import LoopOptions

    opts = options(TrainOptions, preset=preset, role=role, max_frames=max_frames, init=str(init or ""), tokens=tokens,
                   init_new_head=init_new_head, loop=options(LoopOptions, max_steps=steps, lr=lr, warmup_steps=warmup, eval_every=eval_every,
                                             ckpt_every=ckpt_every, seed=seed, threads=threads,
                                             time_budget_s=hours * 3600, precision=precision, device=device))
    say(str(run_train(opts, train_manifest, dev, out)))


def eval_cmd(
    model: Annotated[str, typer.Option(help="Checkpoint (.safetensors), hf:<hub id or local dir> or onnx:<dir or .onnx>.")],
    manifest: ManifestArg,
    out: OutDir,
    beam: Annotated[int, typer.Option(help="CTC prefix beam search of this width (0 = greedy).")] = 0,
    lm: Annotated[Optional[Path], typer.Option(help="ARPA word LM for the beam search (see `edgekd lm`).")] = None,
    alpha: Annotated[float, typer.Option(help="LM weight.")] = 0.5,
    beta: Annotated[float, typer.Option(help="Word insertion bonus.")] = 1.0,
):
    """Score a model: WER/CER (jiwer; greedy CTC, or beam search + LM) and per-utterance hypotheses.

    Usage: edgekd eval --model models/teacher/teacher.safetensors --manifest data/corpus/source/test.jsonl --out runs/eval
    """
    from edgekd.evaluate import run_eval

    m = run_eval(model, manifest, out, beam=beam, lm=lm, alpha=alpha, beta=beta)
    say(f"WER {100 * m['wer']:.2f} %  CER {100 * m['cer']:.2f} %  ({m['n']} utterances, {m['rejected']} rejected, "
         f"{m['decoder']}) -> {out}")


def pseudolabel(
    manifest: ManifestArg,
    teacher: Annotated[list[str], typer.Option(help="Teacher checkpoint, hf:<id|dir> or onnx:<dir|file>; repeat for an ensemble.")],
    out: OutDir,
    weight: Annotated[Optional[list[float]], typer.Option(help="Ensemble weight per teacher (default equal).")] = None,
    teacher_weighting: Annotated[str, typer.Option(help="Ensemble: fixed weights, or per-utterance 'confidence' "
                                                        "(weight x confidence x agreement).")] = "fixed",
    k: Annotated[int, typer.Option(help="Max tokens kept per frame.")] = 8,
    review_fraction: Annotated[float, typer.Option(help="Lowest-confidence share routed to human review.")] = 0.1,
    threshold: Annotated[Optional[float], typer.Option(help="Route by confidence value instead of fraction.")] = None,
    workers: Annotated[int, typer.Option(help="Processes (local) or actors (ray; 0 = one per cluster CPU).")] = 2,
    threads: Annotated[int, typer.Option(help="Threads per worker (0 = cores // workers).")] = 0,
    engine: Annotated[str, typer.Option(help="local (process pool) or ray (RAY_ADDRESS joins a cluster).")] = "local",
    teacher_runtime: Annotated[str, typer.Option(help="torch (fp32), onnx (onnxruntime fp32), onnx-int8 or bf16; "
                                                      "all but torch must pass a parity gate against torch first.")] = "torch",
    beam: Annotated[int, typer.Option(help="1-best by beam search of this width (0 = greedy).")] = 0,
    lm: Annotated[Optional[Path], typer.Option(help="ARPA word LM for the beam search (`edgekd lm`).")] = None,
    wer_filter: Annotated[bool, typer.Option(help="Drop utterances whose 1-best misses the manifest's reference "
                                                  "text (where it has one) by more than --wer-threshold.")] = False,
    wer_threshold: Annotated[float, typer.Option(help="--wer-filter: the WER above which a label is dropped.")] = 0.1,
    plan: Annotated[bool, typer.Option(help="Print the expected cost (wall and core hours, disk) from a "
                                            "calibration on a sample; label nothing.")] = False,
    plan_nodes: Annotated[str, typer.Option(help="--plan: cluster sizes to project to.")] = "1,4,16",
    plan_minutes: Annotated[float, typer.Option(help="--plan: minutes of audio in the calibration sample.")] = 60.0,
):
    """Soft targets (top-k posteriors), 1-best labels, confidence and routing for unlabeled audio.

    A seq2seq teacher (`hf:` Whisper) beside CTC teachers supplies the 1-best and its confidence
    (a mixed ensemble); `--wer-filter` drops labels a reference in the manifest disagrees with.

    Usage: edgekd pseudolabel -m data/corpus/target/train.jsonl --teacher models/teacher/teacher.safetensors --out runs/pl
    """
    from edgekd.pseudolabel import PseudoLabelOptions, run_pseudolabel

    opts = options(PseudoLabelOptions, k=k, review_fraction=review_fraction, confidence_threshold=threshold,
                                  workers=workers, threads=threads, engine=engine, teacher_runtime=teacher_runtime,
                                  teacher_weighting=teacher_weighting,
                                  beam=beam, lm=str(lm or ""), wer_filter=wer_filter, wer_threshold=wer_threshold)
    if plan:
        import json

        from edgekd.pseudolabel.plan import PlanOptions, plan_pseudolabel
        from edgekd.tables import table_text

        try:
            nodes = tuple(int(n) for n in plan_nodes.split(","))
        except ValueError:
            raise typer.BadParameter(f"--plan-nodes {plan_nodes!r}: expected comma-separated integers") from None
        p = plan_pseudolabel(opts, manifest, teacher, weight or (),
                             options(PlanOptions, sample_minutes=plan_minutes, nodes=nodes))
        c = p["calibration"]
        say(table_text(p["rows"], title=f"pseudo-labeling cost: {c['x_realtime_per_node']}x real time per node "
                                        f"({c['workers']} workers, {c['x_realtime_per_core']}x per core), "
                                        f"{c['startup_s']} s start-up, {c['bytes_per_frame']} B/frame; "
                                        f"assumes {c['assumes']}"
                                        + ("" if c["fitted"] else "; start-up not separable: sample too short")))
        for w in c["warnings"]:
            say(f"warning: {w}")
        out.mkdir(parents=True, exist_ok=True)
        (out / "plan.json").write_text(json.dumps(p, indent=2) + "\n")
        return
    say(str(run_pseudolabel(opts, manifest, teacher, out, weight or ())))


def drift(
    reference: Annotated[Path, typer.Option(help="Manifest of what the teacher knows (source).")],
    current: Annotated[Path, typer.Option(help="Manifest of the new audio (target).")],
    out: OutDir,
    teacher: Annotated[Optional[str], typer.Option(help="Teacher for embeddings and confidence.")] = None,
    max_utts: Annotated[int, typer.Option(help="Utterances per side (random subset beyond).")] = 300,
):
    """Drift report: KS per mel band, MMD on teacher embeddings, confidence; JSON + PNG + verdict.

    Usage: edgekd drift --reference data/corpus/source/test.jsonl --current data/corpus/target/train.jsonl --teacher models/teacher/teacher.safetensors --out runs/drift
    """
    from edgekd.drift import DriftOptions, run_drift

    r = run_drift(options(DriftOptions, max_utts=max_utts), reference, current, out, teacher)
    say(f"{r['verdict']}: MMD p={r['mmd']['p_value']:.3g}, {100 * r['ks']['fraction_significant']:.0f} % of bands "
         f"differ (KS, Bonferroni) -> {out / 'drift.json'}")
