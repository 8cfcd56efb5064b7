"""What a pseudolabel folder's shards were made from (`resume.json`), and the resume check."""

from __future__ import annotations

import json
from pathlib import Path

from edgekd.errors import EdgekdError
from edgekd.pseudolabel.options import SHARD_LAYOUT, SHARD_OPTIONS, PseudoLabelOptions


def fingerprint(opts: PseudoLabelOptions, manifest, teachers, weights) -> dict:
    """What the shards in a folder were made from: a resume must match it exactly."""
    from edgekd.manifest import sha256_file

    def digest(p):
        return sha256_file(p) if Path(p).is_file() else str(p)  # a hub/teacher name stands for itself

    return {"manifest_sha256": sha256_file(manifest), "teachers": [digest(t) for t in teachers],
            "weights": [float(w) for w in weights],
            # teacher_weighting only when it is not the default: folders made before it existed resume
            "options": {k: getattr(opts, k) for k in SHARD_OPTIONS
                        if not (k == "teacher_weighting" and opts.teacher_weighting == "fixed")},
            "lm_sha256": sha256_file(opts.lm) if opts.lm else "", "layout": SHARD_LAYOUT}


def _differences(old, new: dict) -> str:
    if not isinstance(old, dict) or not isinstance(old.get("options"), dict):
        return "its resume.json is unreadable"
    diff = [k.replace("_sha256", "") for k in new if k != "options" and old.get(k) != new[k]]
    diff += [f"{o} {old['options'].get(o)!r} -> {v!r}" for o, v in new["options"].items() if old["options"].get(o) != v]
    return "different " + ", ".join(diff)


def claim(out: Path, fp: dict) -> None:
    """Write `resume.json` into a fresh folder, or check that an existing one is this run's.

    Resuming another run's shards would mix two label sets (utterances missing, shards of
    another k), so anything else is refused with one line saying what differs. A folder with no
    shard yet holds no work to lose and is simply claimed again.
    """
    from edgekd.atomic import atomic_write

    path = out / "resume.json"
    started = out.is_dir() and any(out.glob("shard-*"))
    if path.exists() and started:
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        if old == fp:
            return
        raise EdgekdError(f"{out}: holds pseudolabels of another run ({_differences(old, fp)}); "
                          f"use a new --out, or delete the folder to start over")
    if started:
        raise EdgekdError(f"{out}: holds shards without a resume.json (an older edgekd or another run); "
                          f"use a new --out, or delete the folder to start over")
    atomic_write(path, json.dumps(fp, indent=1, sort_keys=True) + "\n")
