"""`edgekd bench | profile`: artifacts on (or pinned like) the target devices."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgekd.cli._common import options, OutDir, say
from edgekd.errors import EdgekdError


PROFILE_COLUMNS = ["artifact", "source", "p50_ms", "p90_ms", "rtf", "peak_mem_mib", "budget"]
STREAMING_COLUMNS = ["artifact", "source", "chunk_ms", "chunk_p50_ms", "chunk_p95_ms", "rtf", "first_partial_ms",
                     "final_ms"]


def _print_profile(manifest_path: Path) -> None:
    import json

    from edgekd.manifest import StageManifest
    from edgekd.tables import table_text

    man = StageManifest.load(manifest_path)
    out = manifest_path.parent
    for key, name in man.outputs.items():
        if not name.endswith(".table.json"):  # the plots
            continue
        t = json.loads((out / name).read_text())
        cols = STREAMING_COLUMNS if key.startswith("streaming_") else PROFILE_COLUMNS[:-1] + [
            c for c in ("chunk_p50_ms", "final_ms") if any(r.get(c) is not None for r in t["rows"])] + ["budget"]
        say(table_text(t["rows"], cols, title=t["title"]))
    m = man.metrics
    say(f"{m['records']} records, {m['errors']} errors, {m['skipped']} skipped -> {out / 'results.jsonl'}")


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
    bundle: Annotated[Optional[Path], typer.Option(help="Labelled bundle (export's bundle/): also WER and identical "
                                                        "transcripts vs the host; fails below the gate.")] = None,
):
    """Benchmark one artifact: on the device (--host over ssh, --adb), or here pinned like it.

    Usage: edgekd bench --model runs/export/student.onnx --device rpi4 --host pi@raspberrypi.local
    """
    from edgekd.profile import ProfileOptions, run_profile

    if host and adb:
        raise EdgekdError("give --host (ssh) or --adb (Android), not both")
    mode = "ssh" if host else "adb" if adb else "host"
    opts = options(ProfileOptions, devices=(device,), modes=(mode,), seconds=seconds, threads=threads, warmup=warmup,
                              iterations=iterations, chunk_seconds=chunk_seconds, ssh_host=host or "", ssh_port=port,
                              ssh_identity=identity, remote_python=remote_python, remote_venv=venv,
                              adb_serial=adb or "", benchmark_binary=benchmark_binary, cpu_mask=cpu_mask,
                              bundle=str(bundle or ""))
    _print_profile(run_profile(opts, [model], out))


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
    opts = options(ProfileOptions, devices=tuple(device), modes=modes, seconds=seconds, threads=threads,
                   iterations=iterations)
    _print_profile(run_profile(opts, models, out, wer=wers or None))
