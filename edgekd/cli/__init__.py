"""`edgekd` command line: each command parses, calls one library function, prints.

The root app registers the commands of its modules (huggingface_hub `hf` CLI style); a command
module never imports this one, so there is no cycle. Stage modules are imported inside the
commands, so `edgekd --help` is fast and a problem in one stage's optional dependency never
breaks the others. User errors (EdgekdError) print as one line on stderr and exit 2, here and
only here; anything else is a bug and keeps its traceback (EDGEKD_DEBUG=1 shows it for user
errors too).

| module      | commands                                  |
|-------------|-------------------------------------------|
| data        | import, synth, lm, tokens train           |
| teacher     | train, eval, pseudolabel, drift           |
| student     | distil, rounds, review export, review import |
| compress    | prune, quantize, qat, export, verify      |
| device      | bench, profile                            |
| pipeline    | run, demo                                 |
| transcribe  | transcribe                                |
"""

from __future__ import annotations

import os
import sys

import typer

from edgekd.cli import compress, data, device, fit, pipeline, student, teacher, transcribe
from edgekd.errors import EdgekdError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Distil, compress, export and profile speech recognizers for edge devices.")


@app.callback()
def _root() -> None:
    """Distil, compress, export and profile speech recognizers for edge devices."""


COMMANDS = {
    "import": data.import_cmd, "synth": data.synth, "lm": data.lm_cmd,
    "train": teacher.train, "eval": teacher.eval_cmd, "pseudolabel": teacher.pseudolabel, "drift": teacher.drift,
    "distil": student.distil, "rounds": student.rounds,
    "prune": compress.prune, "quantize": compress.quantize, "qat": compress.qat, "export": compress.export_cmd,
    "verify": compress.verify,
    "bench": device.bench, "profile": device.profile, "fit": fit.fit,
    "run": pipeline.run, "demo": pipeline.demo,
    "transcribe": transcribe.transcribe,
}
for _name, _fn in COMMANDS.items():
    app.command(_name)(_fn)
app.add_typer(student.review_cli, name="review")
app.add_typer(data.tokens_cli, name="tokens")


def main() -> None:
    try:
        app()
    except EdgekdError as e:
        if os.environ.get("EDGEKD_DEBUG"):
            raise
        typer.echo(f"edgekd: error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("edgekd: interrupted", err=True)
        sys.exit(130)
    except OSError as e:  # a full/read-only disk or a missing folder in a command that did not name it
        if os.environ.get("EDGEKD_DEBUG"):
            raise
        where = f"{e.filename}: " if e.filename else ""
        typer.echo(f"edgekd: error: {where}{e.strerror or e} (check the path, free space and permissions; "
                   "EDGEKD_DEBUG=1 shows the traceback)", err=True)
        sys.exit(2)
