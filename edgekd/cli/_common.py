"""What every command module shares: option types (defined once), printing, option building.

Command modules import this, never the root app (edgekd/cli/__init__.py registers them).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from edgekd.errors import ConfigError

OutDir = Annotated[Path, typer.Option("--out", "-o", help="Output folder.")]
ManifestArg = Annotated[Path, typer.Option("--manifest", "-m", help="Utterance manifest (.jsonl[.gz]).")]
Seed = Annotated[int, typer.Option(help="Random seed (same seed, same output).")]
Threads = Annotated[int, typer.Option(help="Torch intra-op threads (0 = all cores).")]

T = TypeVar("T")


def say(msg: str) -> None:
    typer.echo(msg)


def options(cls: type[T], **kw: Any) -> T:
    """Build an options dataclass from flags; its `_verify` ValueError becomes a one-line user error.

    The one place the CLI turns ValueError into EdgekdError (ConfigError): a ValueError raised
    anywhere else is a bug and keeps its traceback.
    """
    try:
        return cls(**kw)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def have(*modules: str) -> bool:
    """Whether every (dotted) module is importable, without importing it."""
    try:
        return all(importlib.util.find_spec(m) is not None for m in modules)
    except ModuleNotFoundError:  # a missing parent package of a dotted name
        return False
