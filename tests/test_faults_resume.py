"""Fault suite, SIGKILL at any point, then resume to identical outputs.

Helpers live in faultkit.py, shared fixtures in conftest.py.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from faultkit import ENV, ROOT, cli, count, leftovers, one_line_error

pytestmark = pytest.mark.usefixtures("fault_counts")


# ------------------------------------------------------------------ SIGKILL and resume


def _launch(argv: list, log: Path, pause: str = "") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *map(str, argv)], stdout=subprocess.DEVNULL, stderr=open(log, "w"),
                            env={**ENV, "EDGEKD_FAULT_PAUSE": pause}, cwd=ROOT)


def _wait_for(p: subprocess.Popen, log: Path, what, timeout: float = 900) -> bool:
    """True once `what` (a text in the process's stderr, or a predicate) holds; False if it exited first."""
    seen = what if callable(what) else (lambda: what in log.read_text(errors="replace"))
    end = time.time() + timeout
    while time.time() < end:
        if seen():
            return True
        if p.poll() is not None:
            return seen()
        time.sleep(0.02)
    raise AssertionError(f"no {what!r} within {timeout} s: {log.read_text()[-2000:]}")


def _kill_chain(argv: list, log: Path, point: str, started, plan: list[str], seed: int,
                on_kill=None) -> int:
    """Run `argv` to completion through SIGKILLs: 'between' kills at the fault point, 'random' at a
    random moment after `started` shows in stderr. Returns the number of real kills."""
    rng = random.Random(seed)
    kills = 0
    for kind in plan:
        p = _launch(argv, log, pause=f"{point}:900" if kind == "between" else "")
        hit = _wait_for(p, log, "edgekd-fault-point" if kind == "between" else started)
        if kind == "random" and hit:
            time.sleep(rng.uniform(0.0, 1.0))
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            assert p.wait(30) == -signal.SIGKILL
            kills += 1
            count(f"kill_points_{kind}")
            if on_kill:
                on_kill(kind)
        else:
            assert p.returncode == 0, log.read_text()[-3000:]
    p = _launch(argv, log)
    assert p.wait(900) == 0, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()
    return kills


def _train_argv(small_corpus: Path, out: Path) -> list:
    return ["-m", "edgekd.cli", "train", "--train", small_corpus / "source/train.jsonl", "--out", out,
            "--preset", "tiny", "--steps", "40", "--lr", "3e-3", "--warmup", "5", "--max-frames", "3000", "--eval-every", "0",
            "--ckpt-every", "2", "--threads", "1"]


def _same_training(a: Path, b: Path, history: bool = True) -> None:
    from safetensors.torch import load_file

    for name in ("last.safetensors", "model.safetensors"):
        x, y = load_file(str(a / name)), load_file(str(b / name))
        assert x.keys() == y.keys()
        for k in x:
            assert torch.equal(x[k], y[k]), (name, k)
    sa, sb = (torch.load(d / "train_state.pt", weights_only=True) for d in (a, b))
    assert sa["step"] == sb["step"] and sa["sampler"] == sb["sampler"]
    for (ka, va), (kb, vb) in zip(sa["optim"]["state"].items(), sb["optim"]["state"].items()):
        assert all(torch.equal(va[s], vb[s]) for s in va), ka
    assert torch.equal(sa["torch_rng"], sb["torch_rng"]) and torch.equal(sa["gen_rng"], sb["gen_rng"])
    strip = lambda h: [{k: v for k, v in e.items() if k not in ("train_s", "audio_s_per_s")} for e in h]  # noqa: E731
    assert not history or strip(sa["history"]) == strip(sb["history"])


@pytest.fixture(scope="module")
def train_full(small_corpus, tmp_path_factory):
    """The uninterrupted run every resumed one must equal."""
    d = tmp_path_factory.mktemp("train")
    p = _launch(_train_argv(small_corpus, d / "full"), d / "full.log")
    assert p.wait(900) == 0, (d / "full.log").read_text()[-3000:]
    return d / "full"


def test_train_sigkill_anywhere_resumes_tensor_identical(small_corpus, train_full, tmp_path):
    from safetensors import safe_open

    out = tmp_path / "killed"
    windows = []

    def check_window(kind):  # the kill between the two files left them at different steps
        if kind == "between":
            state, last = out / "train_state.pt", out / "last.safetensors"
            s = torch.load(state, weights_only=True)["step"] if state.exists() else -1
            step = json.loads(safe_open(str(last), "pt").metadata()["train"])["step"] if last.exists() else -1
            windows.append((s, step))

    kills = _kill_chain(_train_argv(small_corpus, out), tmp_path / "killed.log", "train-between-checkpoint-files",
                        "train:", ["between", "random", "between"], seed=5,
                        on_kill=check_window)
    _same_training(train_full, out)
    # and the window was hit: the state file already at the new step, last.safetensors still older
    assert kills >= 3 and len(windows) == 2 and all(s > l for s, l in windows), windows
    count("identical_resumes")
    assert not leftovers(out)


def test_train_resumes_a_folder_of_the_old_two_file_format(small_corpus, train_full, tmp_path):
    """Folders written before train_state.pt held the weights (weights in last.safetensors only)."""
    from safetensors.torch import save_file

    out = tmp_path / "old"
    p = _launch(_train_argv(small_corpus, out), tmp_path / "old.log", pause="train-between-checkpoint-files:900")
    _wait_for(p, tmp_path / "old.log", "edgekd-fault-point")
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    st = torch.load(out / "train_state.pt", weights_only=True)
    save_file(st.pop("model"), str(out / "last.safetensors"))  # the old pair: exact weights, state without them
    st.pop("logs_acc"), st.pop("n_acc")  # nor partial log means: history may differ, tensors may not
    torch.save(st, out / "train_state.pt")
    p = _launch(_train_argv(small_corpus, out), tmp_path / "old.log")
    assert p.wait(900) == 0, (tmp_path / "old.log").read_text()[-3000:]
    _same_training(train_full, out, history=False)
    count("identical_resumes")


_PL_DRIVER = ("import sys, torch; torch.set_num_threads(1)\n"
              "from edgekd.pseudolabel import PseudoLabelOptions, run_pseudolabel\n"
              "run_pseudolabel(PseudoLabelOptions(shard_utts=1, workers=1, k=int(sys.argv[4])), sys.argv[1], "
              "[sys.argv[2]], sys.argv[3], progress=False)\n"
              "print('pseudolabel: done', file=sys.stderr)\n")


def _pl_outputs(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())
            if p.suffix in (".npz", ".jsonl") or p.name in ("index.json", "meta.json", "resume.json")}


def test_pseudolabel_sigkill_anywhere_resumes_byte_identical(small_corpus, teacher, tmp_path):
    from edgekd.manifest import read_manifest

    manifest = small_corpus / "target/train.jsonl"
    assert len(read_manifest(manifest)) >= 4  # >= 4 shards of 1
    argv = lambda out, k=8: ["-c", _PL_DRIVER, manifest, teacher, out, k]  # noqa: E731
    p = _launch(argv(tmp_path / "full"), tmp_path / "full.log")
    assert p.wait(900) == 0, (tmp_path / "full.log").read_text()[-3000:]
    out = tmp_path / "killed"
    kills = _kill_chain(argv(out), tmp_path / "killed.log", "pseudolabel-between-shard-files",
                        lambda: (out / "resume.json").exists(),
                        ["between", "random", "between"], seed=9)
    assert kills >= 2
    assert _pl_outputs(tmp_path / "full") == _pl_outputs(out)
    count("identical_resumes")
    assert not leftovers(out)

    # resuming into it with another manifest or other options: one line, the folder untouched
    before = _pl_outputs(out)
    from edgekd.manifest import write_manifest

    other = write_manifest(tmp_path / "other.jsonl", read_manifest(manifest)[:-1])
    r = cli("pseudolabel", "-m", other, "--teacher", teacher, "--out", out, "--workers", "1")
    one_line_error(r, str(out), "another run", "manifest", "new --out")
    r = cli("pseudolabel", "-m", manifest, "--teacher", teacher, "--out", out, "--workers", "1", "--k", "2")
    one_line_error(r, "k 8 -> 2")
    assert _pl_outputs(out) == before
