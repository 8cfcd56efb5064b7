
import pytest

from edgekd.errors import ConfigError
from edgekd.manifest import StageManifest
from edgekd.pipeline.engine import Ref, Stage, StageResult, run_stages


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
            prev = "".join(p.read_text() for k, p in sorted(ctx.inputs.items()) if k.startswith("up"))
            (ctx.dir / "out.txt").write_text(prev + text)
            return StageResult(outputs={"out": "out.txt"}, metrics={"n": len(prev)})
        return run

    return [
        Stage("a", mk("a", "A"), {"x": 1}, inputs={"src": src}),
        Stage("b", mk("b", "B"), {"x": cfg_b}, inputs={"up": Ref("a", "out")}),
        Stage("c", mk("c", "C"), {}, inputs={"up": Ref("b", "out")}),
        Stage("d", mk("d", "D"), {}, inputs={"up": Ref("a", "out")}),
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


def test_a_stage_reads_only_declared_inputs_and_optional_refs_may_be_absent(tmp_path):
    from edgekd.errors import EdgekdError

    seen = {}

    def a(ctx):
        (ctx.dir / "x.txt").write_text("x")
        return StageResult(outputs={"x": "x.txt"})

    def b(ctx):
        seen["opt"] = ctx.inputs["opt"]
        seen["x"] = ctx.input("x").read_text()
        with pytest.raises(EdgekdError, match="not a declared input"):
            ctx.input("sibling")
        (ctx.dir / "y.txt").write_text("y")
        return StageResult(outputs={"y": "y.txt"})

    stages = [Stage("a", a, {}), Stage("b", b, {}, inputs={"x": Ref("a", "x"), "opt": Ref("a", "nope", optional=True)})]
    assert stages[1].deps == ("a",)
    run_stages(stages, tmp_path / "r", log=lambda m: None)
    assert seen == {"opt": None, "x": "x"}
    bad = [Stage("a", a, {}), Stage("b", b, {}, inputs={"x": Ref("a", "nope")})]
    with pytest.raises(EdgekdError, match="has no output 'nope'"):
        run_stages(bad, tmp_path / "r2", log=lambda m: None)


def test_external_folder_content_is_fingerprinted(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    (folder / "a.wav").write_bytes(b"1")
    calls = []

    def a(ctx):
        calls.append(1)
        (ctx.dir / "o").write_text("")
        return StageResult(outputs={"o": "o"})

    st = lambda: [Stage("a", a, {}, inputs={"audio": folder})]  # noqa: E731
    run_stages(st(), tmp_path / "r", log=lambda m: None)
    run_stages(st(), tmp_path / "r", log=lambda m: None)
    assert len(calls) == 1
    (folder / "a.wav").write_bytes(b"12")  # same name, new content
    run_stages(st(), tmp_path / "r", log=lambda m: None)
    assert len(calls) == 2


def test_csv_and_folder_data_are_imported_where_the_pipeline_reads_them(tmp_path):
    """examples/own-data-hf-teacher.yaml names CSVs and a folder: the data stage turns them into
    the manifests every later stage reads (a bad row quarantined, not fatal)."""
    from pathlib import Path

    import numpy as np
    import soundfile as sf

    from edgekd.manifest import read_manifest
    from edgekd.pipeline import build_stages
    from edgekd.pipeline.config import load_pipeline_config

    audio = tmp_path / "audio"
    audio.mkdir()
    for i in range(3):
        sf.write(audio / f"u{i}.wav", (0.1 * np.sin(np.arange(8000) * (0.05 + 0.01 * i))).astype(np.float32), 16000)
    (tmp_path / "dev.csv").write_text("path,text\naudio/u0.wav,hello there\naudio/u1.wav,good day\n")
    (tmp_path / "test.csv").write_text("path,text\naudio/u2.wav,see you\n,no path here\n")
    example = Path(__file__).resolve().parent.parent / "examples/own-data-hf-teacher.yaml"
    cfg = load_pipeline_config(example, [f"run_dir={tmp_path / 'run'}", f"data.target={audio}",
                                         f"data.source={tmp_path / 'dev.csv'}", f"data.target_dev={tmp_path / 'dev.csv'}",
                                         f"data.target_test={tmp_path / 'test.csv'}"])
    stages = {s.name: s for s in build_stages(cfg)}
    assert stages["pseudolabel"].inputs["target"] == Ref("data", "target")
    assert stages["distil"].inputs["test"] == Ref("data", "target_test")
    run_stages([stages["data"]], cfg.run_dir, log=lambda *a: None)
    d = Path(cfg.run_dir) / "data"
    assert [(u.id, u.text) for u in read_manifest(d / "target_dev.jsonl")] == [("u0", "hello there"), ("u1", "good day")]
    assert [u.id for u in read_manifest(d / "target_test.jsonl")] == ["u2"]  # the row without a path: rejected
    assert "no-path" in (d / "rejected.jsonl").read_text()
    assert len(read_manifest(d / "target.jsonl")) == 3 and all(u.duration == 0.5 for u in read_manifest(d / "target.jsonl"))
