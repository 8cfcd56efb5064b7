"""Pseudo-labeling throughput: naive loop vs edgekd's shards on 1 and 2 processes, ORT/bf16, Ray 2 nodes.

Usage: python3 benchmarks/bench_pseudolabel.py --teacher models/teacher/teacher.safetensors --manifest /work/data/teacher2/target/train.jsonl --utts 400

Prints audio seconds per wall second, all on the same utterances in one run: (a) a naive loop
(one file at a time, batch 1, one torch thread); `edgekd pseudolabel` in a fresh process (b) with
1 worker, (c) 2 workers, (d) 2 workers with the teacher on onnxruntime fp32, (d') int8, (e) 2 workers in bf16,
(f) Ray actors on a 1-node and a 2-node cluster started here with `ray start` (1 CPU each), every worker
pinned to 1 thread. Throughput is shown end to end and for labeling alone (first shard start to
last shard end: without spawning workers and loading teachers, which a long run pays once), per
core, and against (a) and (b); plus padding waste, bytes per frame and the parity gate's figures.
Without --teacher, a randomly initialised teacher-m (same compute) is used and said.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch


def naive(teacher_path: str, utts) -> float:
    from edgekd.audio import load_audio
    from edgekd.pseudolabel import confidence
    from edgekd.softtargets import encode_topk
    from edgekd.teachers import load_teacher

    torch.set_num_threads(1)
    t = load_teacher(teacher_path)
    t0 = time.time()
    audio = 0.0
    for u in utts:
        w = load_audio(u.audio)
        out = t([w])
        lp = out.logits.log_softmax(-1)[0, : int(out.lengths[0])].numpy()
        encode_topk(lp)
        confidence(lp)
        audio += len(w) / 16000
    return audio / (time.time() - t0)


def ray_cluster(tag: str, nodes: int = 2):
    """A head (and, for nodes=2, a second node joined with `ray start`) on 127.0.0.1, 1 CPU each; -> env for the driver."""
    import os
    import secrets
    import socket
    import subprocess

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--disable-usage-stats"]
    run = dict(env={**os.environ, **env}, check=True, capture_output=True)
    subprocess.run(["ray", "start", "--head", "--port", str(port), "--temp-dir", tag, "--include-dashboard", "false",
                    *common], **run)
    if nodes == 2:
        subprocess.run(["ray", "start", "--address", f"127.0.0.1:{port}", *common], **run)
    return {**env, "RAY_ADDRESS": f"127.0.0.1:{port}"}


def stop_cluster(tag: str) -> None:
    """Kill our cluster's processes by id (those naming its temp dir, and their children); never `ray stop`."""
    import os
    import signal

    procs = {}
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = open(f"/proc/{d}/cmdline", "rb").read().decode(errors="replace")
            procs[int(d)] = (int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1]), cmd)
        except (OSError, ValueError):
            continue
    mine = {p for p, (_, c) in procs.items() if tag in c and p != os.getpid()}
    while new := {p for p, (pp, _) in procs.items() if pp in mine} - mine:
        mine |= new
    for p in mine:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_cli(tmp: Path, teacher: str, out: str, env: dict, *args: str) -> dict:
    """`edgekd pseudolabel` in a fresh process (as users run it): -> its stage manifest."""
    import os
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "edgekd.cli", "pseudolabel", "-m", str(tmp / "subset.jsonl"), "--teacher", teacher,
           "--out", str(tmp / out), *args]
    r = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True)
    if r.returncode:  # e.g. a runtime the parity gate refused: say so in the table, don't stop
        return {"refused": (r.stderr.strip().splitlines() or ["exit %d" % r.returncode])[-1]}
    return json.loads((tmp / out / "manifest.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default=None)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--utts", type=int, default=400)
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray 2-node row")
    a = ap.parse_args()
    from edgekd.manifest import read_manifest, write_manifest

    tmp = Path(tempfile.mkdtemp())
    teacher = a.teacher
    if teacher is None:
        from edgekd.audio import FeaturizerConfig
        from edgekd.models import Checkpoint, load_preset
        from edgekd.models.conformer import ConformerCTC
        from edgekd.tokens import DEFAULT_TOKENS

        teacher = str(Checkpoint(ConformerCTC(load_preset("teacher-m")).eval(), FeaturizerConfig(), DEFAULT_TOKENS,
                                 "teacher-m").save(tmp / "random-teacher-m.safetensors"))
        print("teacher: randomly initialised teacher-m (same compute as the shipped one)")
    else:
        print(f"teacher: {teacher}")
    utts = read_manifest(a.manifest)[: a.utts]
    write_manifest(tmp / "subset.jsonl", utts)
    audio_s = sum(u.duration or 0 for u in utts)
    print(f"utterances: {len(utts)}, audio: {audio_s:.0f} s")
    from edgekd.teachers.runtime import onnx_int8_cached

    onnx_int8_cached(teacher)  # fp32 + int8 graphs once, outside the timings (cached by sha256 like a user's second run)
    rows: dict[str, tuple[float, float, int, dict]] = {"naive per-file loop, 1 thread": (naive(teacher, utts), 0.0, 1, {})}
    runs = [("edgekd batched, 1 process", 1, "local", "torch"), ("edgekd batched, 2 processes", 2, "local", "torch"),
            ("edgekd 2 processes, onnxruntime fp32", 2, "local", "onnx"),
            ("edgekd 2 processes, onnxruntime int8", 2, "local", "onnx-int8"), ("edgekd 2 processes, bf16", 2, "local", "bf16")]
    for name, workers, engine, runtime in runs:
        m = run_cli(tmp, teacher, name.replace(" ", "_").replace(",", ""), {}, "--workers", str(workers), "--threads",
                    "1", "--teacher-runtime", runtime)
        if "refused" in m:
            print(f"{name}: not run: {m['refused']}")
            continue
        rows[name] = (m["metrics"]["x_realtime"], m["metrics"]["x_realtime_labeling"], workers, m["metrics"])
    if not a.no_ray:
        # one node of 1 CPU, then two: the scaling the issue asks of Ray (each node as a user's box)
        for nodes, name in ((1, "Ray 1 node x 1 CPU (ray start, 127.0.0.1)"), (2, "Ray 2 nodes x 1 CPU (ray start, 127.0.0.1)")):
            tag = f"/tmp/ekbench{os.getpid()}n{nodes}"
            try:
                env = ray_cluster(tag, nodes)
                m = run_cli(tmp, teacher, f"ray{nodes}", env, "--engine", "ray", "--workers", str(nodes), "--threads", "1")
                rows[name] = (m["metrics"]["x_realtime"], m["metrics"]["x_realtime_labeling"], nodes, m["metrics"])
            finally:
                stop_cluster(tag)
    base = rows["naive per-file loop, 1 thread"][0]
    one = rows["edgekd batched, 1 process"][1]
    print("x real time: end to end (start-up included) | labeling (first shard start to last shard end)")
    print(f"{'method':46s} {'x RT e2e':>9s} {'x RT lab':>9s} {'per core':>9s} {'vs naive':>9s} {'vs 1 proc':>9s} "
          f"{'pad %':>6s} {'B/frame':>8s}")
    for name, (e2e, lab, cores, mt) in rows.items():
        x = lab or e2e
        print(f"{name:46s} {e2e:9.1f} {lab or float('nan'):9.1f} {x / cores:9.1f} {x / base:9.2f} {x / one:9.2f} "
              f"{100 * mt.get('padding_waste', 0):6.1f} {mt.get('bytes_per_frame', float('nan')):8.2f}")
    r1, r2 = rows.get("Ray 1 node x 1 CPU (ray start, 127.0.0.1)"), rows.get("Ray 2 nodes x 1 CPU (ray start, 127.0.0.1)")
    if r1 and r2:
        print(f"Ray 2 nodes vs 1 node (labeling): {r2[1] / r1[1]:.2f}x; end to end: {r2[0] / r1[0]:.2f}x")
    print(f"2 processes vs 1 (labeling): {rows['edgekd batched, 2 processes'][1] / one:.2f}x")
    for name, (_, _, _, mt) in rows.items():
        for spec, fig in (mt.get("runtime_parity") or {}).items():
            print(f"parity gate, {name}: KL/frame {fig['kl_per_frame']:.2e}, best token agrees on "
                  f"{100 * fig['argmax_agree']:.2f} % of frames, identical 1-best {100 * fig['same_1best']:.0f} % "
                  f"({fig['utterances']} utts)")


if __name__ == "__main__":
    main()
