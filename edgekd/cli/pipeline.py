"""`edgekd run | demo`: the whole pipeline from a config (or the embedded demo)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgekd.cli._common import have, say


def run(
    config: Annotated[Path, typer.Argument(help="Pipeline config YAML.")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a key: --set distil.steps=200.")] = None,
    force: Annotated[Optional[list[str]], typer.Option(help="Rerun this stage and its dependants.")] = None,
):
    """Run the pipeline: every stage whose inputs changed, skipping the rest; resumes after a kill.

    Usage: edgekd run edgekd/pipeline/demo.yaml --set run_dir=runs/try1 --force teacher_eval
    """
    from edgekd.pipeline import run_pipeline

    res = run_pipeline(config, set_ or [], tuple(force or ()))
    say(f"report: {res['report']['html']}")


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
    from edgekd.teachers import SHIPPED_TEACHER as teacher  # wherever the demo is started from

    from edgekd.models import SHIPPED_STREAMING_STUDENT as streaming
    from edgekd.models import SHIPPED_STUDENT as student

    sets = [f"run_dir={run_dir}", f"teachers=[{teacher}]"]
    if student.is_file():  # the demo adapts the shipped general student (distil.init in demo.yaml)
        sets.append(f"distil.init={student}")
    if streaming.is_file():  # and exports + profiles the shipped streaming student beside it
        sets.append(f"export.streaming_checkpoint={streaming}")
    lm = teacher.parent / "lm.arpa"
    if lm.is_file() and have("flashlight.lib.text"):  # the teacher's 1-best hard labels by beam search + LM
        sets += ["pseudolabel.beam=16", f"pseudolabel.lm={lm}"]
    else:
        say("note: greedy 1-best pseudo-labels (beam search + LM needs `pip install -e '.[lm]'`)")
    res = run_pipeline(DEMO_CONFIG, sets, tuple(force or ()))
    say(f"demo finished in {time.time() - t0:.0f} s; report: {res['report']['html']}")
    from edgekd.pipeline import summary_lines

    for line in summary_lines(res["run_dir"]):
        say("  " + line)
