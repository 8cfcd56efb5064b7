"""`edgekd` command line: each command parses, calls one library function, prints.

Stage modules are imported inside the commands so `edgekd --help` is fast and a problem in one
stage's optional dependency never breaks the others. User errors (EdgekdError) print as one
line on stderr and exit 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from edgekd.errors import EdgekdError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Distil, compress, export and profile speech recognizers for edge devices.")

# Shared option types, defined once.
OutDir = Annotated[Path, typer.Option("--out", "-o", help="Output folder.")]
ManifestArg = Annotated[Path, typer.Option("--manifest", "-m", help="Utterance manifest (.jsonl[.gz]).")]
Seed = Annotated[int, typer.Option(help="Random seed (same seed, same output).")]
Threads = Annotated[int, typer.Option(help="Torch intra-op threads (0 = all cores).")]


@app.callback()
def _root() -> None:
    """Distil, compress, export and profile speech recognizers for edge devices."""


def _say(msg: str) -> None:
    typer.echo(msg)


@app.command("import")
def import_cmd(
    src: Annotated[Path, typer.Argument(help="Audio folder, Kaldi dir (wav.scp+text), CSV/TSV, or manifest.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Manifest to write (.jsonl or .jsonl.gz).")],
    domain: Annotated[Optional[str], typer.Option(help="Domain tag for every utterance.")] = None,
    check: Annotated[bool, typer.Option(help="Decode every file; quarantine bad ones in rejected.jsonl.")] = True,
):
    """Build an utterance manifest from a folder, Kaldi dir or CSV/TSV.

    Usage: edgekd import data/my_audio --out data/my.jsonl --domain target
    """
    from edgekd.audio import Quarantine, check_manifest
    from edgekd.manifest import import_any, write_manifest

    utts = import_any(src, domain)
    n_bad = 0
    if check:
        q = Quarantine(out.parent / "rejected.jsonl", stage="import")
        utts, n_bad = check_manifest(utts, q)
    write_manifest(out, utts)
    _say(f"{out}: {len(utts)} utterances" + (f", {n_bad} rejected -> {out.parent / 'rejected.jsonl'}" if n_bad else ""))


@app.command()
def synth(
    out: OutDir,
    hours_source: Annotated[float, typer.Option(help="Hours of labeled source-domain speech.")] = 0.2,
    hours_target: Annotated[float, typer.Option(help="Hours of drifted target-domain speech.")] = 0.2,
    drift: Annotated[float, typer.Option(help="Target drift strength: 0 none, 1 default, >1 harsher.")] = 1.0,
    piper_fraction: Annotated[float, typer.Option(help="Share of utterances spoken by piper.")] = 0.3,
    source_drift: Annotated[float, typer.Option(help="Mild drift on half of source train (augmentation).")] = 0.0,
    text: Annotated[str, typer.Option(help="template (the demo's sentences) or open (open-vocabulary text).")] = "template",
    engines: Annotated[str, typer.Option(help="Comma-separated engines: espeak, piper, flite.")] = "espeak,piper",
    flite_fraction: Annotated[float, typer.Option(help="Share of utterances spoken by flite.")] = 0.0,
    held_out_voice: Annotated[Optional[list[str]], typer.Option(help="Voice never trained on, e.g. flite:rms (repeat).")] = None,
    hours_unseen: Annotated[float, typer.Option(help="Hours of source/test_unseen in the held-out voices.")] = 0.0,
    speed_perturb: Annotated[bool, typer.Option(help="Source train speed x0.9/1.0/1.1.")] = False,
    pitch_perturb: Annotated[float, typer.Option(help="Share of source train pitch-shifted 1-3 semitones.")] = 0.0,
    codec_fraction: Annotated[float, typer.Option(help="Share of source train through a codec/bandwidth effect.")] = 0.0,
    dev_fraction: Annotated[float, typer.Option(help="Share of each domain's hours for dev.")] = 0.05,
    test_fraction: Annotated[float, typer.Option(help="Share of each domain's hours for test.")] = 0.1,
    seed: Seed = 0,
    workers: Annotated[int, typer.Option(help="Processes.")] = 2,
):
    """Synthesize a reproducible source/target speech corpus (espeak-ng, piper, flite).

    Usage: edgekd synth --out data/demo --hours-source 0.2 --hours-target 0.2 --seed 0
    """
    from edgekd.synth import SynthOptions, run_synth

    try:
        opts = SynthOptions(seed=seed, hours_source=hours_source, hours_target=hours_target, drift=drift,
                            piper_fraction=piper_fraction, source_drift=source_drift, workers=workers, text=text,
                            engines=tuple(e.strip() for e in engines.split(",") if e.strip()),
                            flite_fraction=flite_fraction, held_out_voices=tuple(held_out_voice or ()),
                            hours_unseen=hours_unseen, speed_perturb=speed_perturb, pitch_perturb=pitch_perturb,
                            codec_fraction=codec_fraction, dev_fraction=dev_fraction, test_fraction=test_fraction)
    except ValueError as e:
        raise EdgekdError(str(e)) from None
    _say(str(run_synth(opts, out)))


@app.command()
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

    try:
        opts = TrainOptions(preset=preset, role=role, max_frames=max_frames, init=str(init or ""),
                            loop=LoopOptions(max_steps=steps, lr=lr, warmup_steps=warmup, eval_every=eval_every,
                                             ckpt_every=ckpt_every, seed=seed, threads=threads,
                                             time_budget_s=hours * 3600, precision=precision, device=device))
    except ValueError as e:
        raise EdgekdError(str(e)) from None
    _say(str(run_train(opts, train_manifest, dev, out)))


@app.command("eval")
def eval_cmd(
    model: Annotated[str, typer.Option(help="Checkpoint (.safetensors) or hf:<hub id or local dir>.")],
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
    _say(f"WER {100 * m['wer']:.2f} %  CER {100 * m['cer']:.2f} %  ({m['n']} utterances, {m['rejected']} rejected, "
         f"{m['decoder']}) -> {out}")


@app.command("lm")
def lm_cmd(
    manifests: Annotated[list[Path], typer.Argument(help="Labeled manifests or .txt files whose text trains the LM.")],
    out: Annotated[Path, typer.Option(help="ARPA file to write.")],
    order: Annotated[int, typer.Option(help="n-gram order.")] = 3,
    prune_from: Annotated[int, typer.Option(help="Drop n-grams of this order and above seen once (0 = keep all).")] = 0,
):
    """Build a word n-gram LM (ARPA) from transcripts (manifests or .txt, one sentence a line).

    Usage: edgekd lm data/corpus/source/train.jsonl --out models/teacher/lm.arpa
    """
    from edgekd.lm import run_lm

    r = run_lm(manifests, out, order=order, prune_from=prune_from)
    _say(f"{r['order']}-gram LM over {r['sentences']} sentences, {r['vocab']} words -> {out} ({r['bytes'] / 1e6:.1f} MB)")


@app.command()
def pseudolabel(
    manifest: ManifestArg,
    teacher: Annotated[list[str], typer.Option(help="Teacher checkpoint or hf:<id|dir>; repeat for an ensemble.")],
    out: OutDir,
    weight: Annotated[Optional[list[float]], typer.Option(help="Ensemble weight per teacher (default equal).")] = None,
    k: Annotated[int, typer.Option(help="Max tokens kept per frame.")] = 8,
    review_fraction: Annotated[float, typer.Option(help="Lowest-confidence share routed to human review.")] = 0.1,
    threshold: Annotated[Optional[float], typer.Option(help="Route by confidence value instead of fraction.")] = None,
    workers: Annotated[int, typer.Option(help="Processes.")] = 2,
    beam: Annotated[int, typer.Option(help="1-best by beam search of this width (0 = greedy).")] = 0,
    lm: Annotated[Optional[Path], typer.Option(help="ARPA word LM for the beam search (`edgekd lm`).")] = None,
):
    """Soft targets (top-k posteriors), 1-best labels, confidence and routing for unlabeled audio.

    Usage: edgekd pseudolabel -m data/corpus/target/train.jsonl --teacher models/teacher/teacher.safetensors --out runs/pl
    """
    from edgekd.pseudolabel import PseudoLabelOptions, run_pseudolabel

    try:
        opts = PseudoLabelOptions(k=k, review_fraction=review_fraction, confidence_threshold=threshold,
                                  workers=workers, beam=beam, lm=str(lm or ""))
    except ValueError as e:
        raise EdgekdError(str(e)) from None
    _say(str(run_pseudolabel(opts, manifest, teacher, out, weight or ())))


@app.command()
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
    threads: Threads = 0,
    seed: Seed = 0,
):
    """Train a student conformer on a teacher's soft targets (rerun the same command to resume).

    Usage: edgekd distil --pseudolabels runs/pl --out runs/student --preset student-xs --loss kd+ctc --dev data/corpus/target/dev.jsonl
    """
    from edgekd.distil import DistilOptions, run_distil
    from edgekd.train.loop import LoopOptions

    try:
        opts = DistilOptions(preset=preset, loss=loss, temperature=temperature, ctc_weight=ctc_weight,
                             loop=LoopOptions(max_steps=steps, lr=lr, warmup_steps=max(1, steps // 10),
                                              eval_every=max(1, steps // 5), threads=threads, seed=seed))
    except ValueError as e:
        raise EdgekdError(str(e)) from None
    _say(str(run_distil(opts, pseudolabels, out, human_labels=human_labels, dev_manifest=dev)))


@app.command()
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

    r = run_drift(DriftOptions(max_utts=max_utts), reference, current, out, teacher)
    _say(f"{r['verdict']}: MMD p={r['mmd']['p_value']:.3g}, {100 * r['ks']['fraction_significant']:.0f} % of bands "
         f"differ (KS, Bonferroni) -> {out / 'drift.json'}")


review_app = typer.Typer(no_args_is_help=True, help="Human review through Label Studio.")
app.add_typer(review_app, name="review")


@review_app.command("export")
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
    _say(f"{paths['tasks']} (import into Label Studio with {paths['config']})")


@review_app.command("import")
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
    _say(f"{s['imported']}/{s['tasks']} tasks imported, {s['errors']} errors, "
         f"{100 * s['fraction_unanimous']:.0f} % unanimous -> {out / 'labeled.jsonl'}")


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="Pipeline config YAML.")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a key: --set distil.steps=200.")] = None,
    force: Annotated[Optional[list[str]], typer.Option(help="Rerun this stage and its dependants.")] = None,
):
    """Run the pipeline: every stage whose inputs changed, skipping the rest; resumes after a kill.

    Usage: edgekd run examples/demo.yaml --set run_dir=runs/try1 --force teacher_eval
    """
    from edgekd.pipeline import run_pipeline

    res = run_pipeline(config, set_ or [], tuple(force or ()))
    _say(f"report: {res['report']['html']}")


@app.command()
def demo(
    run_dir: Annotated[Path, typer.Option(help="Where the demo run goes.")] = Path("runs/demo"),
    force: Annotated[Optional[list[str]], typer.Option(help="Rerun this stage and its dependants.")] = None,
):
    """Run the embedded default pipeline on a small synthetic corpus with the shipped teacher.

    Usage: edgekd demo
    """
    import time

    from edgekd.pipeline import DEMO_CONFIG, run_pipeline

    t0 = time.time()
    # the shipped teacher lives in the repo's models/, wherever the demo is started from
    teacher = Path(__file__).resolve().parent.parent / "models" / "teacher" / "teacher.safetensors"
    sets = [f"run_dir={run_dir}", f"teachers=[{teacher}]"]
    lm = teacher.parent / "lm.arpa"
    if lm.is_file() and _have("flashlight.lib.text"):  # the teacher's 1-best hard labels by beam search + LM
        sets += ["pseudolabel.beam=16", f"pseudolabel.lm={lm}"]
    else:
        _say("note: greedy 1-best pseudo-labels (beam search + LM needs `pip install -e '.[lm]'`)")
    res = run_pipeline(DEMO_CONFIG, sets, tuple(force or ()))
    _say(f"demo finished in {time.time() - t0:.0f} s; report: {res['report']['html']}")
    from edgekd.pipeline import summary_lines

    for line in summary_lines(res["run_dir"]):
        _say("  " + line)


def _have(*modules: str) -> bool:
    import importlib.util

    try:
        return all(importlib.util.find_spec(m) is not None for m in modules)
    except ModuleNotFoundError:  # a missing parent package of a dotted name
        return False


def _print_profile(manifest_path: Path) -> None:
    import json

    from edgekd.manifest import StageManifest

    man = StageManifest.load(manifest_path)
    out = manifest_path.parent
    for key, name in man.outputs.items():
        if not key.startswith("table_"):
            continue
        t = json.loads((out / name).read_text())
        _say(t["title"])
        for r in t["rows"]:
            f = lambda v, p="{:.1f}": "-" if v is None else p.format(v)  # noqa: E731
            _say(f"  {r['artifact']:<28} {r['source']:<19} p50 {f(r['p50_ms'])} ms  p90 {f(r['p90_ms'])} ms  "
                 f"RTF {f(r['rtf'], '{:.3f}')}  mem {f(r['peak_mem_mib'])} MiB  {r['budget']}")
    m = man.metrics
    _say(f"{m['records']} records, {m['errors']} errors, {m['skipped']} skipped -> {out / 'results.jsonl'}")


@app.command()
def bench(
    model: Annotated[Path, typer.Option(help="Exported artifact (.onnx or .tflite).")],
    device: Annotated[str, typer.Option(help="Device profile (devices/*.yaml): labels records, sets threads.")],
    out: OutDir = Path("runs/bench"),
    host: Annotated[Optional[str], typer.Option(help="user@host: run on the device over ssh.")] = None,
    port: Annotated[int, typer.Option(help="ssh port (Termux: 8022).")] = 22,
    identity: Annotated[str, typer.Option(help="ssh private key file.")] = "",
    remote_python: Annotated[str, typer.Option(help="Python on the device.")] = "python3",
    venv: Annotated[bool, typer.Option(help="Create/reuse a venv on the device (else use --remote-python as is).")] = True,
    adb: Annotated[Optional[str], typer.Option(help="Phone serial: run LiteRT benchmark_model over adb.")] = None,
    benchmark_binary: Annotated[str, typer.Option(help="benchmark_model built for the phone (with --adb).")] = "",
    cpu_mask: Annotated[str, typer.Option(help="taskset mask of the phone's big cores (with --adb).")] = "",
    seconds: Annotated[float, typer.Option(help="Audio seconds per utterance.")] = 10.0,
    threads: Annotated[int, typer.Option(help="Intra-op threads (0 = the device profile's).")] = 0,
    iterations: Annotated[int, typer.Option(help="Timed runs.")] = 20,
    warmup: Annotated[int, typer.Option(help="Untimed runs after the first.")] = 3,
    chunk_seconds: Annotated[float, typer.Option(help="Streaming window (0 = only for fixed-length models).")] = 0.0,
):
    """Benchmark one artifact: on the device (--host over ssh, --adb), or here pinned like it.

    Usage: edgekd bench --model runs/export/student.onnx --device rpi4 --host pi@raspberrypi.local
    """
    from edgekd.profile import ProfileOptions, run_profile

    if host and adb:
        raise EdgekdError("give --host (ssh) or --adb (Android), not both")
    mode = "ssh" if host else "adb" if adb else "host"
    try:
        opts = ProfileOptions(devices=(device,), modes=(mode,), seconds=seconds, threads=threads, warmup=warmup,
                              iterations=iterations, chunk_seconds=chunk_seconds, ssh_host=host or "", ssh_port=port,
                              ssh_identity=identity, remote_python=remote_python, remote_venv=venv,
                              adb_serial=adb or "", benchmark_binary=benchmark_binary, cpu_mask=cpu_mask)
    except ValueError as e:
        raise EdgekdError(str(e)) from None
    _print_profile(run_profile(opts, [model], out))


@app.command()
def profile(
    models: Annotated[list[Path], typer.Argument(help="Exported artifacts (.onnx / .tflite).")],
    device: Annotated[list[str], typer.Option(help="Device profile(s) (devices/*.yaml); repeat for several.")],
    out: OutDir = Path("runs/profile"),
    on_host: Annotated[bool, typer.Option("--on-host", help="Run here with the device's thread count.")] = False,
    estimate: Annotated[bool, typer.Option("--estimate", help="Static graph estimate (ONNX).")] = False,
    seconds: Annotated[float, typer.Option(help="Audio seconds per utterance.")] = 10.0,
    threads: Annotated[int, typer.Option(help="Intra-op threads (0 = each device profile's).")] = 0,
    iterations: Annotated[int, typer.Option(help="Timed runs per artifact (--on-host).")] = 20,
    wer: Annotated[Optional[list[str]], typer.Option(help="name=WER for the Pareto plot, e.g. student=0.12.")] = None,
):
    """Per-device table (and WER-vs-latency plot) of artifacts: --estimate and/or --on-host.

    Usage: edgekd profile runs/export/student.onnx --device rpi4 --device rpi5 --estimate --on-host
    """
    from edgekd.profile import ProfileOptions, run_profile

    modes = tuple(m for m, on in (("estimate", estimate), ("host", on_host)) if on) or ("estimate", "host")
    wers = {}
    for item in wer or []:
        name, _, val = item.partition("=")
        try:
            wers[name] = float(val)
        except ValueError:
            raise EdgekdError(f"--wer {item!r}: expected name=number") from None
    try:
        opts = ProfileOptions(devices=tuple(device), modes=modes, seconds=seconds, threads=threads,
                              iterations=iterations)
    except ValueError as e:
        raise EdgekdError(str(e)) from None
    _print_profile(run_profile(opts, models, out, wer=wers or None))


from edgekd import cli_compress  # noqa: E402,F401  (registers prune/quantize/export/verify on `app`)


def main() -> None:
    try:
        app()
    except EdgekdError as e:
        typer.echo(f"edgekd: error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("edgekd: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    # `python -m edgekd.cli`: run the importable module, whose app has every command registered
    from edgekd.cli import main as _main

    _main()
