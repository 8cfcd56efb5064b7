"""A small stage graph runner: skip what is unchanged, resume what was killed, force on demand.

Each stage runs in `run_dir/<stage>/` and ends by writing `manifest.json` (atomically), so a stage
with a manifest is complete and a stage without one was interrupted. A stage's fingerprint
hashes its config, the sha256 of its external inputs and the manifests of the stages it depends
on: when an upstream stage reruns, its manifest changes and every dependant reruns too.
An interrupted stage keeps its folder, so the stage itself can resume from its partial outputs
(finished pseudo-label shards, training checkpoints); a folder left by a different fingerprint
is cleared first, so stale partial work is never resumed into a changed config.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgekd.errors import ConfigError, EdgekdError
from edgekd.manifest import StageManifest, sha256_file

FINGERPRINT_FILE = ".fingerprint"


@dataclass
class StageContext:
    name: str
    dir: Path  # this stage's folder
    run_dir: Path
    upstream: dict[str, StageManifest]  # manifests of the stages this one depends on

    def upstream_path(self, stage: str, output: str) -> Path:
        """Absolute path of output `output` of upstream stage `stage`."""
        m = self.upstream[stage]
        if output not in m.outputs:
            raise EdgekdError(f"stage {self.name}: upstream {stage} has no output '{output}' "
                              f"(has {', '.join(m.outputs)})")
        return self.run_dir / stage / m.outputs[output]


@dataclass
class StageResult:
    outputs: dict[str, str]  # name -> path relative to the stage dir
    metrics: dict[str, Any] = field(default_factory=dict)
    inputs: list[Path] = field(default_factory=list)  # files read that are not upstream outputs


@dataclass
class Stage:
    name: str
    run: Callable[[StageContext], StageResult]
    config: dict[str, Any]  # the resolved options that decide this stage's output
    deps: tuple[str, ...] = ()
    inputs: tuple[Path, ...] = ()  # external files whose content decides the output


def _hash_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def fingerprint(stage: Stage, run_dir: Path) -> str:
    inputs = {}
    for p in stage.inputs:
        p = Path(p)
        if not p.exists():
            raise EdgekdError(f"stage {stage.name}: input {p} does not exist")
        inputs[str(p)] = sha256_file(p) if p.is_file() else _hash_json(sorted(str(q) for q in p.rglob("*")))
    ups = {}
    for d in stage.deps:
        mp = run_dir / d / "manifest.json"
        ups[d] = sha256_file(mp) if mp.exists() else None
    return _hash_json({"stage": stage.name, "config": stage.config, "inputs": inputs, "upstream": ups})


def _descendants(stages: list[Stage], roots: set[str]) -> set[str]:
    out = set(roots)
    changed = True
    while changed:
        changed = False
        for s in stages:
            if s.name not in out and any(d in out for d in s.deps):
                out.add(s.name)
                changed = True
    return out


def run_stages(stages: list[Stage], run_dir: str | Path, *, force: tuple[str, ...] = (),
               log: Callable[[str], None] = print) -> dict[str, str]:
    """Run `stages` (in the given order, which must respect deps). Returns {stage: status} with
    status in {"ran", "skipped"}. A failing stage raises after earlier stages' results are saved."""
    run_dir = Path(run_dir)
    names = [s.name for s in stages]
    for f in force:
        if f not in names:
            raise ConfigError(f"Unknown stage '{f}' in --force. Stages: {', '.join(names)}")
    for i, s in enumerate(stages):
        for d in s.deps:
            if d not in names[:i]:
                raise ConfigError(f"stage {s.name} depends on {d}, which does not run before it")
    forced = _descendants(stages, set(force))
    status: dict[str, str] = {}
    manifests: dict[str, StageManifest] = {}
    for s in stages:
        sdir = run_dir / s.name
        fp = fingerprint(s, run_dir)
        mpath = sdir / "manifest.json"
        if s.name not in forced and mpath.exists():
            m = StageManifest.load(mpath)
            if m.fingerprint == fp and all((sdir / o).exists() for o in m.outputs.values()):
                manifests[s.name] = m
                status[s.name] = "skipped"
                log(f"[{s.name}] up to date, skipped")
                continue
        fpfile = sdir / FINGERPRINT_FILE
        stale = mpath.exists() or (fpfile.exists() and fpfile.read_text().strip() != fp)
        if sdir.exists() and (stale or s.name in forced):
            shutil.rmtree(sdir)  # a different config's partial or complete work: never mix it in
        resuming = sdir.exists()
        sdir.mkdir(parents=True, exist_ok=True)
        fpfile.write_text(fp)
        log(f"[{s.name}] {'resuming' if resuming else 'running'}")
        t0 = time.time()
        ctx = StageContext(s.name, sdir, run_dir, {d: manifests[d] for d in s.deps})
        res = s.run(ctx)
        for k, v in res.outputs.items():
            if not (sdir / v).exists():
                raise EdgekdError(f"stage {s.name}: declared output {k} = {v} was not written")
        m = StageManifest(stage=s.name, config=s.config, outputs=res.outputs, metrics=res.metrics,
                          timings={"wall_s": round(time.time() - t0, 3)}, fingerprint=fp)
        m.add_inputs(*[p for p in (*s.inputs, *res.inputs) if Path(p).is_file()])
        for d in s.deps:
            m.inputs[str(run_dir / d / "manifest.json")] = sha256_file(run_dir / d / "manifest.json")
        m.save(sdir)
        manifests[s.name] = m
        status[s.name] = "ran"
        log(f"[{s.name}] done in {time.time() - t0:.1f} s")
    return status
