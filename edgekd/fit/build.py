"""Turn a fully trained architecture into one variant (pruned? precision?) and score it where it runs.

Pruning uses the prune stage (`run_prune`: torch-pruning + a KD fine-tune); precision uses the
export code (`export_onnx` + `quantize`); the WER is onnxruntime's greedy transcript of the test
set through `run_eval("onnx:...")`, i.e. the file that would ship, not the PyTorch model. A
streaming variant is exported per chunk size (`export_streaming_onnx`, a sherpa-onnx online
package) and scored by sherpa-onnx's online recognizer, the runtime it ships for.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgekd.atomic import atomic_write
from edgekd.fit.space import Variant


def _weights(v: Variant, checkpoint: Path, root: Path, soft_targets, dev, finetune_steps: int) -> Path:
    """The variant's weights: the fully trained checkpoint, pruned (once per architecture and ratio)."""
    from edgekd.export import PruneOptions, run_prune

    d = root / v.stem
    if (d / "checkpoint").exists():
        return variant_checkpoint(v, root)
    ckpt = checkpoint
    if v.prune:
        if not (d / "prune" / "manifest.json").exists():
            run_prune(PruneOptions(ratio=v.prune, finetune_steps=finetune_steps), checkpoint, d / "prune",
                      soft_targets=soft_targets, dev_manifest=dev, progress=False)
        ckpt = d / "prune" / "model.safetensors"
    d.mkdir(parents=True, exist_ok=True)
    atomic_write(d / "checkpoint", str(ckpt))  # which weights this folder's ONNX files hold
    return ckpt


def _base(v: Variant, root: Path) -> Path:
    """The fp32 offline ONNX of the variant's weights, built once per (architecture, ratio)."""
    from edgekd.export.onnx import export_onnx
    from edgekd.models import load_checkpoint

    onnx = root / v.stem / "model.onnx"
    if not onnx.exists():
        export_onnx(load_checkpoint(variant_checkpoint(v, root)), onnx)
    return onnx


def _streaming_base(v: Variant, root: Path) -> Path:
    """The fp32 streaming package of the variant's weights for its chunk size (once per chunk)."""
    from edgekd.export.streaming import export_streaming_onnx
    from edgekd.models import load_checkpoint
    from edgekd.models.streaming import chunk_frames

    onnx = variant_onnx(Variant(v.arch, v.prune, "fp32", v.chunk_ms), root)
    if not onnx.exists():
        ck = load_checkpoint(variant_checkpoint(v, root))
        export_streaming_onnx(ck, onnx, chunk_frames(ck.dims, v.chunk_ms, ck.featurizer.frame_rate))
    return onnx


def variant_onnx(v: Variant, root: Path) -> Path:
    d = root / v.stem / (f"c{v.chunk_ms}" if v.chunk_ms else "")
    return d / ("model.onnx" if v.precision == "fp32" else f"model.{v.precision}.onnx")


def variant_checkpoint(v: Variant, root: Path) -> Path:
    """The checkpoint `v`'s ONNX files were exported from (recorded when the fp32 one was built)."""
    return Path((root / v.stem / "checkpoint").read_text())


def build_variant(v: Variant, checkpoint: Path, root: Path, *, soft_targets, dev, test, finetune_steps: int) -> dict:
    """Build `v` from the fully trained `checkpoint` under `root`; returns its test {wer, cer} (cached)."""
    from edgekd.evaluate import run_eval
    from edgekd.export.quantize import calibration_features, quantize
    from edgekd.models import load_checkpoint

    res = root / f"{v.name}.wer.json"
    if res.exists():
        return json.loads(res.read_text())
    _weights(v, checkpoint, root, soft_targets, dev, finetune_steps)
    fp32 = _streaming_base(v, root) if v.chunk_ms else _base(v, root)
    path = variant_onnx(v, root)
    if not path.exists():
        cal = None
        if v.precision.startswith("int8") and not v.chunk_ms:
            ck = load_checkpoint(variant_checkpoint(v, root))
            cal = calibration_features(dev, ck.featurizer, 16)
        # streaming: no calibration, so MatMul-only dynamic int8 without fallback, as the online package ships
        quantize(fp32, path, v.precision, calibration=cal)
    m = (score_online(path, test, root / f"{v.name}.eval") if v.chunk_ms else
         run_eval(f"onnx:{path}", test, root / f"{v.name}.eval", progress=False))
    atomic_write(res, json.dumps({"wer": m["wer"], "cer": m.get("cer"), "onnx": str(path)}))
    return json.loads(res.read_text())


def score_online(onnx: Path, test, out: Path) -> dict:
    """WER/CER of sherpa-onnx's online recognizer on the labelled `test` manifest (hyps.jsonl kept)."""
    from edgekd.audio import load_audio
    from edgekd.decode import wer_cer
    from edgekd.export.runtime import SherpaOnline
    from edgekd.manifest import read_manifest, write_jsonl

    rt = SherpaOnline(onnx)
    utts = [u for u in read_manifest(test) if u.text]
    hyps = [rt.decode(load_audio(u.audio, rt.sample_rate)).text for u in utts]
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "hyps.jsonl", [{"id": u.id, "ref": u.text, "hyp": h} for u, h in zip(utts, hyps)])
    return wer_cer([u.text for u in utts], hyps)


def _summary(recs: dict[str, dict]) -> dict[str, float]:
    out = {"rtf": recs["rtf"]["value"], "peak_rss_mb": recs["peak_rss"]["value"]}
    for k in ("chunk_latency_p50", "chunk_latency_p95", "final_latency_p50"):  # streaming files
        if k in recs:
            out[k + "_ms"] = recs[k]["value"]
    return out


def measure_host(device, onnx: Path, threads: int | None, seconds: float, target=None,
                 out_dir: Path | None = None) -> dict:
    """The runner on this host, pinned to the device's thread count: rtf and peak RSS (+ streaming
    chunk and final latency). With `target` (an `SshTarget` for the device) the same runner also
    runs on the device over ssh: `on_device` holds its figures (`source: measured-on-device`)."""
    from edgekd.profile.hostpin import run_host_pinned

    recs = {r["metric"]: r for r in run_host_pinned(device, onnx, threads=threads, seconds=seconds,
                                                    warmup=1, iterations=5)}
    out = _summary(recs) | {"host_threads": recs["rtf"]["pinned"]["host_threads"]}
    if target is not None:
        from edgekd.profile.remote import ssh_bench

        log = Path(out_dir or onnx.parent) / f"{device.name}-{onnx.parent.name}-{onnx.stem}.jsonl"
        got = ssh_bench(target, onnx, log, seconds=seconds, threads=threads or device.threads, warmup=1,
                        iterations=5, device=device.name, name=onnx.stem)
        out["on_device"] = _summary({r["metric"]: r for r in got}) | {"host": target.host, "records": str(log)}
    return out


def export_streaming_winner(checkpoint: Path, chunk_ms: int, out: Path, test, verify_utts: int) -> Path:
    """The streaming winner as a sherpa-onnx online package (`out/<ms>ms/`: fp32 + MatMul-only
    int8), verified as `edgekd.export.stream_export` verifies every streaming package."""
    from edgekd.export.stream_export import run_streaming_export

    return run_streaming_export(checkpoint, out, (chunk_ms,), test_manifest=test, verify_utts=verify_utts)
