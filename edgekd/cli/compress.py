"""`edgekd prune | quantize | qat | export | verify`: the compression and export commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgekd.cli._common import OutDir, options, say
from edgekd.errors import EdgekdError


def prune(
    model: Annotated[Path, typer.Option(help="Student checkpoint (.safetensors).")],
    out: OutDir,
    ratio: Annotated[float, typer.Option(help="Share of FFN/conv channels to remove per layer.")] = 0.5,
    pseudolabels: Annotated[Optional[Path], typer.Option(help="Soft targets for the KD fine-tune.")] = None,
    dev: Annotated[Optional[Path], typer.Option(help="Dev manifest scored during the fine-tune.")] = None,
    finetune_steps: Annotated[int, typer.Option(help="KD fine-tune steps (0 = none).")] = 300,
):
    """Structured pruning (tensors shrink) + a short KD fine-tune against the teacher's soft targets.

    Usage: edgekd prune --model runs/student/model.safetensors --pseudolabels runs/pl --out runs/pruned --ratio 0.5
    """
    from edgekd.export import PruneOptions, run_prune

    opts = options(PruneOptions, ratio=ratio, finetune_steps=finetune_steps if pseudolabels else 0)
    say(str(run_prune(opts, model, out, soft_targets=pseudolabels, dev_manifest=dev)))


def quantize(
    model: Annotated[Path, typer.Option(help="fp32 ONNX or LiteRT (.tflite + sidecar) model from `edgekd export`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file (.onnx or .tflite, as the model).")],
    mode: Annotated[str, typer.Option(help="int8-dynamic, int8-static or fp16.")] = "int8-dynamic",
    calib: Annotated[Optional[Path], typer.Option(
        help="Manifest of real audio: int8-static ranges; int8-dynamic's per-layer sensitivity analysis.")] = None,
    calib_utts: Annotated[int, typer.Option(help="Calibration utterances.")] = 32,
    method: Annotated[str, typer.Option(help="int8-static calibration: minmax, percentile or entropy.")] = "minmax",
    fallback: Annotated[bool, typer.Option(help="int8-dynamic: keep the layers int8 hurts most in fp32.")] = True,
):
    """Quantize an exported model: ONNX with ONNX Runtime, a LiteRT window model (.tflite beside its
    sidecar) with ai-edge-quantizer; metadata or sidecar kept, `quantization` updated.

    Usage: edgekd quantize --model runs/export/model.onnx --mode int8-dynamic --calib data/corpus/target/dev.jsonl --out m.int8.onnx
    """
    import json

    from edgekd.audio import FeaturizerConfig
    from edgekd.export.onnx import read_metadata
    from edgekd.export.quantize import calibration_features, quantize as q

    if not model.exists():
        raise EdgekdError(f"{model} does not exist")
    if mode == "int8-static" and calib is None:
        raise EdgekdError("--mode int8-static needs --calib MANIFEST (real audio)")
    tflite = model.suffix == ".tflite"
    cal = None
    if calib is not None and mode.startswith("int8"):
        if tflite:
            from edgekd.export.litert import read_sidecar

            meta = read_sidecar(model)
        else:
            meta = read_metadata(model)
        cal = calibration_features(calib, FeaturizerConfig.from_dict(json.loads(meta["featurizer"])), calib_utts)
    if tflite:
        from edgekd.export.litert import quantize_tflite

        say(str(quantize_tflite(model, out, mode, calibration=cal)))
    else:
        say(str(q(model, out, mode, calibration=cal, fallback=fallback, method=method)))


def qat(
    model: Annotated[Path, typer.Option(help="Checkpoint (.safetensors) whose int8 export should decode like its fp32.")],
    audio: Annotated[Path, typer.Option(help="Manifest of audio to fine-tune on (no transcripts needed).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output checkpoint (.safetensors).")],
    steps: Annotated[int, typer.Option(help="Fine-tune steps.")] = 300,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-5,
    max_frames: Annotated[int, typer.Option(help="Padded feature frames per batch.")] = 6000,
    threads: Annotated[int, typer.Option(help="torch threads.")] = 1,
):
    """Quantization-aware KD: fine-tune so the int8-dynamic export gives the fp32 model's transcripts.

    Usage: edgekd qat --model models/student/student-xs.safetensors --audio data/corpus/target/train.jsonl --out student-qat.safetensors
    """
    from edgekd.export.qat import QATOptions, run_qat

    if not model.is_file():
        raise EdgekdError(f"{model} does not exist")
    say(str(run_qat(options(QATOptions, steps=steps, lr=lr, max_frames=max_frames, threads=threads), model, audio, out)))


def export_cmd(
    model: Annotated[Path, typer.Option(help="Checkpoint (.safetensors) to export.")],
    test: Annotated[Path, typer.Option(help="Labeled test manifest for verification (WER, diffs).")],
    out: OutDir,
    calib: Annotated[Optional[Path], typer.Option(help="Calibration manifest (default: --test).")] = None,
    quant: Annotated[Optional[list[str]], typer.Option("--quantize", help="ONNX variants (repeat).")] = None,
    tflite: Annotated[Optional[list[str]], typer.Option(help="LiteRT variants: fp32, fp16, int8-dynamic, int8-static (repeat).")] = None,
    no_tflite: Annotated[bool, typer.Option("--no-tflite", help="Skip LiteRT.")] = False,
    window: Annotated[int, typer.Option(help="LiteRT fixed window in feature frames.")] = 600,
    waveform: Annotated[bool, typer.Option(help="Also export model.wave.onnx (featurizer in the graph).")] = False,
    verify_utts: Annotated[int, typer.Option(help="Test utterances per artifact.")] = 100,
):
    """Export to ONNX (+int8/fp16), LiteRT and a sherpa-onnx package; verify every artifact.

    Usage: edgekd export --model runs/student/model.safetensors --test data/corpus/target/test.jsonl --out runs/export
    """
    from edgekd.export import DEFAULT_QUANT, ExportOptions, run_export

    opts = options(ExportOptions, quantize=tuple(quant) if quant else DEFAULT_QUANT,
                 tflite=() if no_tflite else (tuple(tflite) if tflite else ("fp32", "int8-dynamic")),
                 tflite_window=window, waveform_graph=waveform, verify_utts=verify_utts)
    import json

    m = run_export(opts, model, out, test_manifest=test, calib_manifest=calib)
    say((Path(out) / "verify.md").read_text())
    say(str(m))
    failed = json.loads(m.read_text())["metrics"]["failed"]
    if failed:
        raise EdgekdError(f"verify: {', '.join(failed)} outside tolerance (artifacts kept in {out})")


def verify(
    model: Annotated[Path, typer.Option(help="The PyTorch checkpoint the artifacts came from.")],
    artifacts: Annotated[Path, typer.Option(help="artifacts.json written by `edgekd export`.")],
    test: Annotated[Path, typer.Option(help="Labeled test manifest.")],
    max_utts: Annotated[int, typer.Option(help="Test utterances per artifact.")] = 100,
):
    """Re-check exported artifacts in their own runtimes against PyTorch: identical transcripts, WER, diffs.

    Usage: edgekd verify --model runs/student/model.safetensors --artifacts runs/export/artifacts.json --test data/corpus/target/test.jsonl
    """
    from edgekd.export.verify import table_md, verify as v
    from edgekd.records import read_artifacts
    from edgekd.models import load_checkpoint

    rows = v(load_checkpoint(model), read_artifacts(artifacts), test, max_utts=max_utts)
    say(table_md(rows))
    bad = [r["artifact"] for r in rows if not r["ok"]]
    if bad:
        raise EdgekdError(f"outside tolerance: {', '.join(bad)}")
