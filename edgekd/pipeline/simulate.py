"""Simulated annotators for the demo and tests: a Label Studio export answered from hidden references."""

from __future__ import annotations

import json
import random
from pathlib import Path

from edgekd.errors import EdgekdError
from edgekd.manifest import read_manifest


def simulate_annotators(tasks_json: Path, ref_manifest: Path | None, n: int, error_rate: float, seed: int,
                        out: Path) -> Path:
    """A Label Studio export in which `n` simulated annotators transcribe each task from the hidden
    reference with word substitutions/deletions at `error_rate` (demo and tests only)."""
    if ref_manifest is None:
        raise EdgekdError("review.simulate_annotators needs data.target_ref (hidden transcripts)")
    refs = {u.id: u.text or "" for u in read_manifest(ref_manifest)}
    rng = random.Random(seed)
    vocab = sorted({w for t in refs.values() for w in t.split()}) or ["a"]
    tasks = json.loads(tasks_json.read_text())
    for i, t in enumerate(tasks):
        t["id"] = i + 1
        words = refs.get(t["data"]["utt_id"], "").split()
        anns = []
        for a in range(n):
            out_w = []
            for w in words:
                r = rng.random()
                if r < error_rate / 2:
                    continue  # deletion
                out_w.append(rng.choice(vocab) if r < error_rate else w)
            anns.append({"id": a + 1, "created_at": f"2026-01-01T00:00:0{a}", "was_cancelled": False,
                         "result": [{"from_name": "transcription", "to_name": "audio", "type": "textarea",
                                     "value": {"text": [" ".join(out_w)]}}]})
        t["annotations"] = anns
    path = out / "simulated_export.json"
    path.write_text(json.dumps(tasks, indent=1))
    return path
