"""Export a streaming student as sherpa-onnx online packages, one per chunk size, each verified.

`run_streaming_export` is what `edgekd fit` ships for a streaming winner and what the pipeline's
export stage adds beside the offline student when `export.streaming_checkpoint` names one (the
demo's shipped streaming student). Verification is `edgekd verify`'s, for the streaming runtime:
sherpa-onnx's online transcript of each file (fed 100 ms pieces plus the tail padding an app
sends) against edgekd's own PyTorch streaming transcript, on the test set plus >= 30 s of long
audio, with the same identical-transcript gates per precision (`edgekd.export.verify.GATES`),
and the WER against the references.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from edgekd.atomic import atomic_write
from edgekd.manifest import StageManifest

RUNTIME = "sherpa-onnx-online"
FILES = (("model.onnx", "fp32"), ("model.int8.onnx", "int8-dynamic"))  # a package's two files


def verify_package(pkg: Path, utts, torch_hyps: list[str]) -> list[dict]:
    """One row per file of the package in `pkg`: WER, identical share with `torch_hyps` (PyTorch's
    streaming transcripts of `utts`; all / long), ok."""
    from edgekd.decode import wer_cer
    from edgekd.export.runtime import SherpaOnline
    from edgekd.export.verify import GATES

    refs = [u.text for u in utts]
    rows = []
    for name, precision in FILES:
        rt = SherpaOnline(pkg / name)
        hyps = [rt.decode(u.wave).text for u in utts]
        same = [h == t for h, t in zip(hyps, torch_hyps)]
        longs = [s for s, u in zip(same, utts) if u.long]
        row = {"artifact": f"{pkg.name}/{name}", "runtime": RUNTIME, "precision": precision, **wer_cer(refs, hyps),
               "identical": sum(same) / len(same), "identical_long": sum(longs) / len(longs) if longs else None}
        row["ok"] = row["identical"] >= GATES[precision].min_identical
        rows.append(row)
    return rows


def run_streaming_export(checkpoint: str | Path, out: str | Path, chunks_ms: tuple[int, ...], *, test_manifest,
                         verify_utts: int = 100) -> Path:
    """`out/<ms>ms/` per chunk size (model.onnx, model.int8.onnx, tokens.txt, README.md), verified;
    `artifacts.json` (typed `Artifact` rows, runtime sherpa-onnx-online) and the manifest."""
    from edgekd.decode import wer_cer
    from edgekd.export.runtime import normalize
    from edgekd.export.streaming import CONTRACT, stream_text, write_streaming_package
    from edgekd.export.verify import artifact_size, verify_set
    from edgekd.models import load_checkpoint
    from edgekd.models.streaming import chunk_frames
    from edgekd.records import Artifact, write_artifacts

    t0, out = time.time(), Path(out)
    ck = load_checkpoint(checkpoint)
    utts = verify_set(ck, test_manifest, verify_utts)
    rows, arts = [], []
    for ms in chunks_ms:
        chunk = chunk_frames(ck.dims, ms, ck.featurizer.frame_rate)
        pkg = write_streaming_package(ck, out / f"{ms}ms", chunk)
        torch_hyps = [normalize(stream_text(ck, u.wave, chunk)) for u in utts]
        rows.append({"artifact": f"{ms}ms/pytorch-streaming", "runtime": "torch", "precision": "fp32",
                     **wer_cer([u.text for u in utts], torch_hyps), "identical": 1.0, "ok": True})
        got = verify_package(pkg, utts, torch_hyps)
        rows += got
        for (name, precision), row in zip(FILES, got):
            arts.append(Artifact(f"streaming-{ms}ms-{precision}", str(pkg / name), "onnx", precision,
                                 runtime=RUNTIME, contract=CONTRACT,
                                 size_bytes=artifact_size(str(pkg / name)),
                                 metadata={"checkpoint": str(checkpoint), "chunk_ms": ms, "wer": row["wer"],
                                           "verified": row["ok"]}))
    write_artifacts(arts, out / "artifacts.json")
    atomic_write(out / "verify.table.json", json.dumps(
        {"title": "streaming packages: sherpa-onnx online vs PyTorch streaming", "rows": rows}, indent=1))
    m = StageManifest(stage="export", config={"checkpoint": str(checkpoint), "chunks_ms": list(chunks_ms)},
                      outputs={**{f"{ms}ms": f"{ms}ms" for ms in chunks_ms}, "verify": "verify.table.json",
                               "artifacts": "artifacts.json"},
                      metrics={"failed": [r["artifact"] for r in rows if not r["ok"]], "utterances": len(utts)},
                      timings={"wall_s": round(time.time() - t0, 1)})
    m.add_inputs(checkpoint, test_manifest)
    return m.save(out)
