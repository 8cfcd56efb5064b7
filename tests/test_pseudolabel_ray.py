"""The Ray engine on a real 2-node cluster on this machine: outputs identical to the local engine,
and a worker SIGKILLed in the middle of a shard costs nothing but time.

The cluster is what a user builds across two boxes: `ray start --head` and a second `ray start
--address` joining it, each with its own CPUs, on 127.0.0.1 (Ray itself advertises the host's
own address). Token auth with a token made here, so no file in ~/.ray is read or needed.
"""

import importlib.util
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from edgekd.manifest import read_manifest, write_manifest
from edgekd.pseudolabel import PseudoLabelOptions, run_pseudolabel

if importlib.util.find_spec("ray") is None:  # found, not imported: the driver runs in its own process
    pytest.skip("the Ray engine needs the [ray] extra (pip install 'edgekd[ray]')", allow_module_level=True)


def _procs() -> dict[int, tuple[int, str]]:
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                cmd = open(f"/proc/{d}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
                ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            out[int(d)] = (ppid, cmd)
    return out


def _cluster_pids(tag: str) -> dict[int, str]:
    """Processes of our cluster only: those naming its temp dir, and their descendants."""
    procs = _procs()
    mine = {p for p, (_, c) in procs.items() if tag in c and p != os.getpid()}
    grew = True
    while grew:
        new = {p for p, (pp, _) in procs.items() if pp in mine} - mine
        mine |= new
        grew = bool(new)
    return {p: procs[p][1] for p in mine}


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    tag = f"/tmp/ekray{secrets.token_hex(3)}"  # short: Ray's unix sockets live under it
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--disable-usage-stats"]
    try:
        subprocess.run(["ray", "start", "--head", "--port", str(port), "--temp-dir", tag, "--include-dashboard",
                        "false", *common], env=env, check=True, capture_output=True, timeout=120)
        subprocess.run(["ray", "start", "--address", f"127.0.0.1:{port}", *common], env=env, check=True,
                       capture_output=True, timeout=120)
        yield {"RAY_ADDRESS": f"127.0.0.1:{port}", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": env["RAY_AUTH_TOKEN"]}, tag
    finally:
        for pid in _cluster_pids(tag):  # by id, ours only: `ray stop` would stop every cluster on the box
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="module")
def job(tmp_path_factory, corpus, tiny_ckpt_path):
    d = tmp_path_factory.mktemp("plray")
    write_manifest(d / "m.jsonl", read_manifest(corpus / "target/train.jsonl"))
    local = d / "local"
    run_pseudolabel(PseudoLabelOptions(workers=1), d / "m.jsonl", [str(tiny_ckpt_path)], local, progress=False)
    return d, str(tiny_ckpt_path), local


def _driver(env: dict, d, teacher: str, out, **extra_env) -> subprocess.Popen:
    """`edgekd pseudolabel --engine ray` in its own process, as a user runs it against the cluster
    (and so Ray's driver state, read from the environment at import, stays out of pytest's)."""
    cmd = [sys.executable, "-m", "edgekd.cli", "pseudolabel", "-m", str(d / "m.jsonl"), "--teacher", teacher,
           "--out", str(out), "--engine", "ray", "--workers", "2", "--threads", "1"]
    return subprocess.Popen(cmd, env={**os.environ, **env, **extra_env}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _same_outputs(a, b):
    def names(d):
        return sorted(p.name for p in d.iterdir() if p.suffix in (".npz", ".jsonl", ".json") and p.name != "manifest.json")

    assert names(a) == names(b)
    for n in ("labels.jsonl", "index.json", "distil.jsonl", "review.jsonl", "rejected.jsonl"):
        assert (a / n).read_bytes() == (b / n).read_bytes(), n
    for p in sorted(a.glob("shard-*.npz")):
        za, zb = np.load(p), np.load(b / p.name)
        assert set(za.files) == set(zb.files)
        for k in za.files:
            assert np.array_equal(za[k], zb[k]), (p.name, k)


def test_two_nodes_give_local_outputs_through_a_worker_killed_mid_shard(two_nodes, job, tmp_path):
    """One run covers both promises, as one job would meet them: a 2-node cluster's outputs equal
    the local engine's, both nodes label, and an actor SIGKILLed mid-shard is replaced (a run
    without the kill is the same code path minus the restart, so it earns no second cluster job)."""
    env, tag = two_nodes
    d, teacher, local = job
    out = tmp_path / "ray"
    # every actor pauses between a shard's labels file and its npz, so the kill lands mid-shard
    p = _driver(env, d, teacher, out, EDGEKD_FAULT_PAUSE="pseudolabel-between-shard-files:0.5")
    killed = None
    deadline = time.time() + 240
    while killed is None and time.time() < deadline and p.poll() is None:
        half = [x for x in out.glob("shard-*.labels.jsonl") if not x.with_name(x.name.replace(".labels.jsonl", ".npz")).exists()]
        busy = [pid for pid, c in _cluster_pids(tag).items() if c.startswith("ray::_ShardActor.label")]
        if half and busy:
            killed = busy[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    log = p.communicate(timeout=300)[0]
    assert killed is not None, "no actor was caught mid-shard: " + log[-2000:]
    assert p.returncode == 0, log[-3000:]
    assert killed not in _cluster_pids(tag)  # it really died; a restarted actor finished its shard
    _same_outputs(local, out)
    m = json.loads((out / "manifest.json").read_text())
    assert len(m["metrics"]["nodes"]) == 2, m["metrics"]  # actors on both nodes labeled shards
