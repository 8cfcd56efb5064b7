"""Every `Usage:` line in a command's docstring parses as that command (shape, not a full run);
user errors are one line; the root registers every command module."""

import shlex
from pathlib import Path

import pytest
import typer

from edgekd.cli import COMMANDS, app
from edgekd.cli._common import options

ROOT = Path(__file__).resolve().parent.parent


def _commands():
    """(path of names, click command) for every leaf command under the root."""
    root = typer.main.get_command(app)
    out = []

    def walk(cmd, path):
        if hasattr(cmd, "commands"):  # a group (typer vendors its own click)
            for name, sub in cmd.commands.items():
                walk(sub, path + [name])
        else:
            out.append((path, cmd))
    walk(root, [])
    return out


def _usage(cmd) -> str:
    lines = [l.strip() for l in (cmd.help or "").splitlines() if l.strip().startswith("Usage: edgekd ")]
    assert len(lines) == 1, f"{cmd.name}: expected one 'Usage: edgekd ...' line in its docstring"
    return lines[0][len("Usage: "):]


LEAVES = _commands()


def test_every_command_is_registered_and_documented():
    names = {" ".join(p) for p, _ in LEAVES}
    assert set(COMMANDS) <= names and {"review export", "review import", "tokens train"} <= names
    assert len(names) == 23  # + transcribe, fit, qat, tokens train, rounds


@pytest.mark.parametrize("path,cmd", LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_usage_line_parses(path, cmd):
    argv = shlex.split(_usage(cmd))[1:]
    assert argv[: len(path)] == path, f"usage line names {argv[:len(path)]}, command is {path}"
    ctx = cmd.make_context(" ".join(path), argv[len(path):], resilient_parsing=False)
    assert ctx.params  # parsed into the command's parameters without running it
    if path == ["run"]:
        assert (ROOT / ctx.params["config"]).is_file(), "edgekd run's usage line names a config that does not exist"


def test_a_bad_usage_shape_fails_to_parse():
    cmd = dict((" ".join(p), c) for p, c in LEAVES)["distil"]
    with pytest.raises(Exception, match="no-such-flag|No such option"):
        cmd.make_context("distil", ["--no-such-flag", "1"])


def test_options_turn_value_errors_into_one_config_error():
    from edgekd.errors import ConfigError
    from edgekd.export import PruneOptions

    with pytest.raises(ConfigError, match="ratio"):
        options(PruneOptions, ratio=1.5)


def test_user_error_is_one_line_without_traceback(tmp_path, capsys, monkeypatch):
    import sys

    from edgekd.cli import main

    monkeypatch.setattr(sys, "argv", ["edgekd", "synth", "--out", str(tmp_path), "--hours-source", "-1"])
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("edgekd: error:") and err.count("\n") == 1
    monkeypatch.setenv("EDGEKD_DEBUG", "1")
    with pytest.raises(Exception) as e:
        main()
    assert not isinstance(e.value, SystemExit)  # EDGEKD_DEBUG=1: the traceback
