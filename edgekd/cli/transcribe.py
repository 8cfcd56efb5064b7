"""`edgekd transcribe`: a model on your own recordings, decoded as `edgekd verify` decodes it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgekd.cli._common import options


def transcribe(
    model: Annotated[str, typer.Argument(help="Checkpoint (.safetensors), .onnx, .tflite, sherpa-onnx package "
                                              "folder, or hf:<hub id or dir>.")],
    audio: Annotated[list[Path], typer.Argument(help="Audio files, folders or manifests (.jsonl/.csv).")],
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per line: text, per-token times and "
                                                          "confidence.")] = False,
    runtime: Annotated[str, typer.Option(help="auto (the model kind's own), or sherpa-onnx / sherpa-onnx-offline "
                                              "for an .onnx or package.")] = "auto",
    threads: Annotated[int, typer.Option(help="Runtime threads.")] = 1,
):
    """Print `id<TAB>text` per audio item (or JSON lines with --json); bad files get one line each on stderr.

    Usage: edgekd transcribe runs/export/sherpa-onnx my_recording.wav recordings/
    """
    import json

    from edgekd.transcribe import TranscribeOptions, transcribe as run

    opts = options(TranscribeOptions, runtime=runtime, threads=threads)
    failed = 0
    for t in run(opts, model, [str(a) for a in audio]):
        if t.error:
            failed += 1
            typer.echo(f"edgekd: {t.audio}: {t.error}", err=True)
            continue
        typer.echo(json.dumps(t.to_dict()) if json_out else f"{t.id}\t{t.text}")
    if failed:
        raise typer.Exit(1)  # the others were printed; 1 (not 2): the command itself was right
