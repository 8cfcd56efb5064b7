import json
from pathlib import Path

import pytest

from edgekd.errors import ConfigError
from edgekd.manifest import StageManifest
from edgekd.pipeline.engine import Stage, StageResult, run_stages


def _graph(tmp_path, calls, cfg_b=1, fail_in=None):
    src = tmp_path / "input.txt"
    if not src.exists():
        src.write_text("hello")

    def mk(name, text):
        def run(ctx):
            calls.append(name)
            if fail_in == name:
                (ctx.dir / "partial").write_text("half done")
                raise RuntimeError("killed")
            prev = "".join((ctx.upstream_path(d, "out")).read_text() for d in ctx.upstream)
            (ctx.dir / "out.txt").write_text(prev + text)
            return StageResult(outputs={"out": "out.txt"}, metrics={"n": len(prev)})
        return run

    return [
        Stage("a", mk("a", "A"), {"x": 1}, inputs=(src,)),
        Stage("b", mk("b", "B"), {"x": cfg_b}, deps=("a",)),
        Stage("c", mk("c", "C"), {}, deps=("b",)),
        Stage("d", mk("d", "D"), {}, deps=("a",)),
    ]


def test_skip_force_and_dependants(tmp_path):
    run = tmp_path / "run"
    calls = []
    assert set(run_stages(_graph(tmp_path, calls), run, log=lambda m: None).values()) == {"ran"}
    assert (run / "c" / "out.txt").read_text() == "ABC"
    for s in "abcd":
        m = StageManifest.load(run / s)
        assert m.stage == s and m.fingerprint and m.outputs == {"out": "out.txt"}
    calls.clear()
    assert set(run_stages(_graph(tmp_path, calls), run, log=lambda m: None).values()) == {"skipped"}
    assert calls == []
    st = run_stages(_graph(tmp_path, calls), run, force=("b",), log=lambda m: None)
    assert calls == ["b", "c"] and st == {"a": "skipped", "b": "ran", "c": "ran", "d": "skipped"}


def test_config_or_input_change_reruns_dependants(tmp_path):
    run, calls = tmp_path / "run", []
    run_stages(_graph(tmp_path, calls), run, log=lambda m: None)
    calls.clear()
    run_stages(_graph(tmp_path, calls, cfg_b=2), run, log=lambda m: None)
    assert calls == ["b", "c"]
    calls.clear()
    (tmp_path / "input.txt").write_text("changed")
    run_stages(_graph(tmp_path, calls, cfg_b=2), run, log=lambda m: None)
    assert calls == ["a", "b", "c", "d"]


def test_killed_stage_resumes_keeping_partial_work(tmp_path):
    run, calls = tmp_path / "run", []
    with pytest.raises(RuntimeError):
        run_stages(_graph(tmp_path, calls, fail_in="c"), run, log=lambda m: None)
    assert (run / "b" / "manifest.json").exists() and not (run / "c" / "manifest.json").exists()
    assert (run / "c" / "partial").exists()
    calls.clear()
    st = run_stages(_graph(tmp_path, calls), run, log=lambda m: None)
    assert calls == ["c", "d"] and st["a"] == st["b"] == "skipped"
    assert (run / "c" / "partial").exists()  # same fingerprint: the stage may resume from it


def test_unknown_force_and_bad_order(tmp_path):
    with pytest.raises(ConfigError, match="Unknown stage 'zz'"):
        run_stages(_graph(tmp_path, []), tmp_path / "r", force=("zz",), log=lambda m: None)
    g = _graph(tmp_path, [])
    with pytest.raises(ConfigError, match="depends on"):
        run_stages(g[::-1], tmp_path / "r", log=lambda m: None)
