"""`edgekd fit`: the most accurate student that meets a device's budget."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgekd.cli._common import OutDir, options, say
from edgekd.errors import ConfigError


def fit(
    pseudolabels: Annotated[Path, typer.Option(help="Soft targets (a pseudolabel output folder).")],
    dev: Annotated[Path, typer.Option(help="Labelled dev manifest (proxy ranking).")],
    test: Annotated[Path, typer.Option(help="Labelled test manifest (the WER that picks the winner).")],
    out: OutDir,
    device: Annotated[Optional[str], typer.Option(help="Device profile (devices/<name>.yaml).")] = None,
    rtf: Annotated[Optional[float], typer.Option(help="Max real-time factor at the device's threads.")] = None,
    mem: Annotated[Optional[str], typer.Option(help="Max model memory, e.g. 64MB.")] = None,
    size: Annotated[Optional[str], typer.Option(help="Max artifact size, e.g. 5MB.")] = None,
    latency_ms: Annotated[Optional[float], typer.Option(help="Max latency of one 10 s inference.")] = None,
    threads: Annotated[Optional[int], typer.Option(help="Threads on the device (default: its profile's).")] = None,
    streaming: Annotated[bool, typer.Option(help="A streaming student (sherpa-onnx online); --rtf is per chunk, "
                                                 "--latency-ms word-to-text.")] = False,
    chunk_ms: Annotated[Optional[int], typer.Option(help="Streaming chunk (default: search 160/320/640 ms).")] = None,
    budgets: Annotated[Optional[Path], typer.Option(help="YAML list of budget blocks (several devices).")] = None,
    ssh: Annotated[Optional[str], typer.Option(help="user@host of the --device, reachable over ssh: the winner "
                                                    "and near-budget candidates also run there.")] = None,
    ssh_port: Annotated[int, typer.Option(help="ssh port of --ssh.")] = 22,
    ssh_identity: Annotated[str, typer.Option(help="Private key for --ssh (default: ssh's own).")] = "",
    human_labels: Annotated[Optional[Path], typer.Option(help="Reviewed labels (CTC targets).")] = None,
    proxy_steps: Annotated[int, typer.Option(help="KD steps per proxy run.")] = 150,
    full_steps: Annotated[int, typer.Option(help="KD steps of the full runs.")] = 1000,
    top_k: Annotated[int, typer.Option(help="Architectures trained fully per device.")] = 3,
    workers: Annotated[int, typer.Option(help="Proxy runs at once (one thread each).")] = 2,
    widths: Annotated[Optional[list[int]], typer.Option("--width", help="d_model values (repeat).")] = None,
    depths: Annotated[Optional[list[int]], typer.Option("--depth", help="Layer counts (repeat).")] = None,
    precision: Annotated[str, typer.Option(help="Training autocast: fp32 or bf16.")] = "fp32",
):
    """Search width/depth, pruning and precision for the most accurate student under each budget.

    A streaming student: add `--streaming [--chunk-ms 320] --latency-ms 400` (sherpa-onnx online).

    Usage: edgekd fit --device rpi4 --rtf 0.1 --mem 64MB --pseudolabels runs/pl --dev data/corpus/target/dev.jsonl --test data/corpus/target/test.jsonl --out runs/fit
    """
    import yaml

    from edgekd.fit import load_budget

    if budgets is not None:
        if device:
            raise ConfigError("give --device (with its flags) or --budgets FILE, not both")
        try:
            blocks = yaml.safe_load(budgets.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"{budgets}: not a readable YAML file ({str(e).splitlines()[0]})") from None
        if not isinstance(blocks, list) or not blocks:
            raise ConfigError(f"{budgets}: expected a list of budget blocks (device: ..., rtf: ..., memory: ...)")
    elif device:
        blocks = [{"device": device, "rtf": rtf, "memory": mem, "size": size, "latency_ms": latency_ms,
                   "threads": threads, "streaming": streaming, "chunk_ms": chunk_ms}]
    else:
        raise ConfigError("give --device NAME (and budget flags) or --budgets FILE")
    bs = [load_budget(b) for b in blocks]  # before torch is imported: a bad budget is one quick line
    from edgekd.fit import FitOptions, run_fit

    kw = {k: tuple(v) for k, v in (("widths", widths), ("depths", depths)) if v}
    opts = options(FitOptions, proxy_steps=proxy_steps, full_steps=full_steps, top_k=top_k, workers=workers,
                   precision=precision, **kw)
    targets = None
    if ssh:
        if not device:
            raise ConfigError("--ssh names the --device's host: give --device (not --budgets)")
        from edgekd.profile.remote import SshTarget

        targets = {bs[0].device: SshTarget(ssh, port=ssh_port, identity=ssh_identity)}
    say(str(run_fit(opts, bs, pseudolabels, out, dev_manifest=dev, test_manifest=test, human_labels=human_labels,
                    targets=targets)))
