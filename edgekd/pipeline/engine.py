"""A small stage graph runner: skip what is unchanged, resume what was killed, force on demand.

The stage contract: a `Stage` declares everything it reads as named `inputs` -- an upstream
stage's declared output (`Ref("synth", "target/test")`) or an external file -- and the engine
resolves them into `ctx.inputs`; a stage never reaches into a sibling's folder by name, and its
dependencies are exactly the stages its Refs name. Each stage runs in `run_dir/<stage>/` and ends
by writing `manifest.json` (atomically), so a stage with a manifest is complete and a stage without
one was interrupted. A stage's fingerprint hashes its config, the content of its external inputs
and the manifests of the upstream stages it reads: when an upstream stage reruns, its manifest
changes and every dependant reruns too.
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
from typing import Any, Callable, Union

from edgekd.errors import ConfigError, EdgekdError
from edgekd.manifest import StageManifest, sha256_file

FINGERPRINT_FILE = ".fingerprint"


@dataclass(frozen=True)
class Ref:
    """An input that is an upstream stage's declared output (`outputs[output]` of its manifest)."""

    stage: str
    output: str
    optional: bool = False  # the upstream stage may not write it (then the input is None)


Input = Union[Ref, Path, None]  # an upstream output, an external file/folder, or nothing


@dataclass
class StageContext:
    name: str
    dir: Path  # this stage's folder: everything it writes goes here
    inputs: dict[str, Path | None]  # every declared input, resolved to a path by the engine
    upstream: dict[str, StageManifest]  # manifests of the stages it reads from (their metrics)

    def input(self, name: str) -> Path:
        """A declared, present input; a stage never reads anything it did not declare."""
        if name not in self.inputs:
            raise EdgekdError(f"stage {self.name}: '{name}' is not a declared input "
                              f"(declared: {', '.join(self.inputs) or 'none'})")
        p = self.inputs[name]
        if p is None:
            raise EdgekdError(f"stage {self.name}: input '{name}' is not available")
        return p


@dataclass
class StageResult:
    outputs: dict[str, str]  # name -> path relative to the stage dir
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class Stage:
    """A stage: `run(ctx) -> StageResult` reading only `inputs`, deciding its output by `config`."""

    name: str
    run: Callable[[StageContext], StageResult]
    config: dict[str, Any]  # the resolved options that decide this stage's output
    inputs: dict[str, Input] = field(default_factory=dict)  # everything it reads, by name

    @property
    def deps(self) -> tuple[str, ...]:
        """The stages it reads from: exactly those named by its Ref inputs."""
        return tuple(dict.fromkeys(r.stage for r in self.inputs.values() if isinstance(r, Ref)))


def _hash_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _content_hash(p: Path) -> str:
    """sha256 of a file; for a folder, of every file's relative name, size and mtime (cheap for audio)."""
    if p.is_file():
        return sha256_file(p)
    return _hash_json(sorted((str(q.relative_to(p)), q.stat().st_size, q.stat().st_mtime_ns)
                             for q in p.rglob("*") if q.is_file()))


def fingerprint(stage: Stage, run_dir: Path) -> str:
    """Hash of everything that can change the stage's result: its config, the content of every
    external input, and the manifest of every upstream stage it reads (which hashes their outputs)."""
    inputs: dict[str, Any] = {}
    for name, ref in sorted(stage.inputs.items()):
        if isinstance(ref, Ref):
            mp = run_dir / ref.stage / "manifest.json"
            inputs[name] = {"stage": ref.stage, "output": ref.output, "manifest": sha256_file(mp) if mp.exists() else None}
        elif ref is not None:
            p = Path(ref)
            if not p.exists():
                raise EdgekdError(f"stage {stage.name}: input {name} = {p} does not exist")
            inputs[name] = {"path": str(p), "sha256": _content_hash(p)}
        else:
            inputs[name] = None
    return _hash_json({"stage": stage.name, "config": stage.config, "inputs": inputs})


def _resolve(stage: Stage, manifests: dict[str, StageManifest], run_dir: Path) -> dict[str, Path | None]:
    out: dict[str, Path | None] = {}
    for name, ref in stage.inputs.items():
        if isinstance(ref, Ref):
            m = manifests[ref.stage]
            if ref.output not in m.outputs:
                if ref.optional:
                    out[name] = None
                    continue
                raise EdgekdError(f"stage {stage.name}: upstream {ref.stage} has no output '{ref.output}' "
                                  f"(has {', '.join(m.outputs)})")
            out[name] = run_dir / ref.stage / m.outputs[ref.output]
        else:
            out[name] = Path(ref) if ref is not None else None
    return out


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
        ctx = StageContext(s.name, sdir, _resolve(s, manifests, run_dir), {d: manifests[d] for d in s.deps})
        res = s.run(ctx)
        for k, v in res.outputs.items():
            if not (sdir / v).exists():
                raise EdgekdError(f"stage {s.name}: declared output {k} = {v} was not written")
        m = StageManifest(stage=s.name, config=s.config, outputs=res.outputs, metrics=res.metrics,
                          timings={"wall_s": round(time.time() - t0, 3)}, fingerprint=fp)
        m.add_inputs(*[p for p in ctx.inputs.values() if p is not None and p.is_file()])
        for d in s.deps:
            m.inputs[str(run_dir / d / "manifest.json")] = sha256_file(run_dir / d / "manifest.json")
        m.save(sdir)
        manifests[s.name] = m
        status[s.name] = "ran"
        log(f"[{s.name}] done in {time.time() - t0:.1f} s")
    return status
