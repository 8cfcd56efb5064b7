"""Compression and export: pruning, quantization, ONNX, LiteRT, sherpa-onnx; every artifact verified.

Stage entry points:
- `run_prune(PruneOptions, checkpoint, out_dir, soft_targets=...)`: structured pruning + KD fine-tune;
- `run_export(ExportOptions, checkpoint, out_dir, test_manifest=...)`: ONNX (+ int8/fp16), LiteRT,
  sherpa-onnx package, then `verify` writes `verify.table.json` / `verify.md`.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from edgekd.audio import SAMPLE_RATE
from edgekd.config import to_dict
from edgekd.errors import EdgekdError
from edgekd.manifest import StageManifest
from edgekd.models import load_checkpoint

ONNX_QUANT = ("int8-dynamic", "int8-static", "fp16")
# int8-static is opt-in: on the real student it was both slower than fp32 (QDQ around MatMuls
# that ORT does not fuse on this graph) and less faithful than int8-dynamic with every calibration
# method (benchmarks/int8_sensitivity.py; README "Quantization").
DEFAULT_QUANT = ("int8-dynamic", "fp16")


@dataclass(frozen=True)
class ExportOptions:
    quantize: tuple[str, ...] = DEFAULT_QUANT  # ONNX variants besides fp32 (any of ONNX_QUANT)
    waveform_graph: bool = False  # also export model.wave.onnx (featurizer inside: raw audio in)
    tflite: tuple[str, ...] = ("fp32", "int8-dynamic")  # LiteRT variants; skipped without litert-torch
    tflite_window: int = 600  # LiteRT fixed window, feature frames (6 s)
    tflite_context: int = 48  # frames of context each side when chunking longer audio
    sherpa: bool = True  # write a sherpa-onnx package (model.onnx, model.int8.onnx, tokens.txt)
    calibration_utts: int = 32  # int8 calibration utterances (real audio): static ranges, dynamic sensitivity
    int8_fallback: bool = True  # int8-dynamic keeps the layers its sensitivity analysis flags in fp32
    verify_utts: int = 100  # test utterances scored per artifact
    latency_repeats: int = 5
    bundle_utts: int = 20  # labelled bundle/ for on-device WER (`edgekd bench --bundle`); 0 = none
    # Pipeline only: also export this streaming student, one sherpa-onnx online package per chunk
    # size (edgekd.export.stream_export), verified and profiled beside the offline artifacts.
    streaming_checkpoint: str = ""
    streaming_chunks_ms: tuple[int, ...] = (160, 320, 640)

    def __post_init__(self):
        self._verify()

    def _verify(self):
        from edgekd.export.litert import TFLITE_MODES

        bad = [q for q in self.quantize if q not in ONNX_QUANT] + [t for t in self.tflite if t not in TFLITE_MODES]
        if bad:
            raise ValueError(f"unknown quantization mode(s) {bad}; ONNX: {ONNX_QUANT}, LiteRT: {TFLITE_MODES}")
        if self.tflite_window < 16 or not 8 <= self.tflite_context < self.tflite_window // 2:
            raise ValueError("need tflite_window >= 16 and 8 <= tflite_context < tflite_window/2")
        if not self.streaming_chunks_ms or min(self.streaming_chunks_ms) <= 0:
            raise ValueError(f"streaming_chunks_ms must be > 0 ms, got {self.streaming_chunks_ms}")
        if self.calibration_utts < 1 or self.verify_utts < 1 or self.bundle_utts < 0:
            raise ValueError("calibration_utts and verify_utts must be >= 1, bundle_utts >= 0")


@dataclass(frozen=True)
class PruneOptions:
    enabled: bool = True  # in a pipeline: run the prune stage (and export/profile the pruned model)
    ratio: float = 0.5  # share of FFN hidden / conv channels removed per layer
    multiple: int = 8  # kept widths are multiples of this (SIMD-friendly)
    prune_conv: bool = True
    finetune_steps: int = 300  # KD fine-tune steps after pruning (0 = none)
    loss: str = "kd+ctc"
    lr: float = 5e-4
    max_frames: int = 12000

    def __post_init__(self):
        if not 0 < self.ratio < 1:
            raise ValueError(f"ratio must be in (0, 1), got {self.ratio}")
        if self.finetune_steps < 0 or self.multiple < 1:
            raise ValueError("finetune_steps must be >= 0 and multiple >= 1")


def write_sherpa_package(onnx_fp32: Path, onnx_int8: Path | None, out: Path, sample_rate: int = SAMPLE_RATE) -> Path:
    """A folder sherpa-onnx loads with `OfflineRecognizer.from_zipformer_ctc(model, tokens)`.

    Its README's commands are run as written by tests/test_sherpa_readme.py (Python API and the
    `sherpa-onnx-offline` binary), so they cannot rot the way `--zipformer2-ctc-model` did.
    """
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_fp32, out / "model.onnx")
    if onnx_int8 is not None:
        shutil.copyfile(onnx_int8, out / "model.int8.onnx")
    shutil.copyfile(onnx_fp32.parent / "tokens.txt", out / "tokens.txt")
    model = "model.int8.onnx" if onnx_int8 is not None else "model.onnx"  # name only a file that is there
    (out / "README.md").write_text(
        "# sherpa-onnx package (edgekd)\n\nCTC model in sherpa-onnx's `zipformer2_ctc` layout: 80-dim kaldi fbank "
        "computed by sherpa-onnx itself (the features the model was trained on).\n\n```python\nimport sherpa_onnx\n"
        f"rec = sherpa_onnx.OfflineRecognizer.from_zipformer_ctc(model='{model}', tokens='tokens.txt',\n"
        "                                                      num_threads=4)\ns = rec.create_stream()\n"
        f"s.accept_waveform({sample_rate}, samples)  # float32 in [-1, 1]\nrec.decode_stream(s)\nprint(s.result.text)\n```\n\n"
        "Command line (`pip install sherpa-onnx-bin`; one JSON line per file on stdout):\n\n```sh\n"
        f"sherpa-onnx-offline --zipformer-ctc-model={model} --tokens=tokens.txt --num-threads=1 x.wav\n```\n")
    return out


def run_export(opts: ExportOptions, checkpoint: str | Path, out_dir: str | Path, *,
               test_manifest: str | Path, calib_manifest: str | Path | None = None, progress: bool = True) -> Path:
    """Export `checkpoint` to every requested format, verify each, write the stage manifest."""
    from edgekd.export.known_broken import check, note
    from edgekd.export.litert import export_tflite, have_litert_torch
    from edgekd.export.onnx import export_onnx
    from edgekd.export.quantize import calibration_features, quantize
    from edgekd.export.verify import artifact_size, table_md, verify
    from edgekd.records import Artifact, write_artifacts

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ck = load_checkpoint(checkpoint)
    t0 = time.time()
    timings: dict[str, float] = {}
    notes: list[str] = []

    def step(name):
        timings[name] = round(time.time() - t0 - sum(timings.values()), 1)
        if progress:
            print(f"export: {name} done ({timings[name]} s)", flush=True)

    def known(fmt: str, **combo) -> bool:
        """Consult the known-broken list before trying (fmt, combo); False: skip it (noted)."""
        hits = check("export", fmt, **combo)
        notes.extend(note(e) for e in hits)
        return not any(e["effect"] == "fails" for e in hits)

    known("onnx", precision="fp32", exporter="dynamo")
    fp32 = export_onnx(ck, out / "model.onnx")
    arts = [Artifact("onnx-fp32", str(fp32), "onnx", "fp32")]
    step("onnx")
    if opts.waveform_graph:
        export_onnx(ck, out / "model.wave.onnx", waveform=True, write_tokens=False)
        step("onnx-waveform")
    calib = None
    for q in opts.quantize:
        if not known("onnx", precision=q, op_types="MatMul"):
            continue
        if q.startswith("int8") and calib is None and (q == "int8-static" or opts.int8_fallback):
            calib = calibration_features(calib_manifest or test_manifest, ck.featurizer, opts.calibration_utts)
        p = quantize(fp32, out / f"model.{q}.onnx", q, calibration=calib, fallback=opts.int8_fallback)
        arts.append(Artifact(f"onnx-{q}", str(p), "onnx", q))
        step(f"onnx-{q}")
    if opts.tflite:
        if have_litert_torch():
            for mode in opts.tflite:
                ops = "FullyConnected,Conv" if mode == "int8-static" else "all"
                if not known("tflite", precision=mode, time_axis="fixed", op_types=ops):
                    continue
                if mode == "int8-static" and calib is None:
                    calib = calibration_features(calib_manifest or test_manifest, ck.featurizer, opts.calibration_utts)
                p = export_tflite(ck, out / f"model.{mode}.tflite", window_frames=opts.tflite_window,
                                  context_frames=opts.tflite_context, mode=mode,
                                  calibration=calib if mode == "int8-static" else None)
                arts.append(Artifact(f"tflite-{mode}.chunked", str(p), "tflite", mode, opts.tflite_window,
                                     opts.tflite_context))
                step(f"tflite-{mode}")
        else:
            notes.append("LiteRT skipped: litert-torch not installed (pip install 'edgekd[tflite]')")
    if opts.sherpa and known("sherpa-onnx", subsampling="4" if ck.dims.subsampling == 4 else "not 4"):
        int8 = out / "model.int8-dynamic.onnx"
        pkg = write_sherpa_package(fp32, int8 if int8.exists() else None, out / "sherpa-onnx",
                                   sample_rate=ck.featurizer.sample_rate)
        arts.append(Artifact("sherpa-onnx", str(pkg), "sherpa-onnx", "fp32"))
        if (pkg / "model.int8.onnx").exists():  # the same int8 file decodes differently in sherpa's bundled ORT
            arts.append(Artifact("sherpa-onnx-int8", str(pkg / "model.int8.onnx"), "sherpa-onnx", "int8-dynamic"))
        if not shutil.which("sherpa-onnx-offline"):
            notes.append("sherpa-onnx-offline not installed (pip install sherpa-onnx-bin): the binary was not verified")
    texts: dict[str, dict[str, str]] = {}
    rows = verify(ck, arts, test_manifest, max_utts=opts.verify_utts, repeats=opts.latency_repeats, progress=progress,
                  transcripts=texts)
    (out / "verify.transcripts.json").write_text(json.dumps(texts, indent=1))  # what each runtime heard
    step("verify")
    if opts.bundle_utts:
        from edgekd.export.bundle import make_bundle

        make_bundle(ck, test_manifest, out / "bundle", max_utts=opts.bundle_utts)
        step("bundle")
    by_name = {r["artifact"]: r for r in rows}
    write_artifacts([dataclasses.replace(a, size_bytes=artifact_size(a.path), metadata={
        "checkpoint": str(checkpoint), "wer": by_name[a.name]["wer"], "verified": by_name[a.name]["ok"]})
        for a in arts], out / "artifacts.json")
    (out / "verify.table.json").write_text(json.dumps({"title": "Exported artifacts vs PyTorch", "rows": rows},
                                                      indent=1))
    (out / "verify.md").write_text(table_md(rows) + "".join(f"\n- {n}" for n in notes))
    failed = [r["artifact"] for r in rows if not r["ok"]]
    m = StageManifest(stage="export", config={**to_dict(opts), "checkpoint": str(checkpoint)},
                      outputs={a.name: str(Path(a.path).relative_to(out)) for a in arts} |
                      {"verify": "verify.table.json", "artifacts": "artifacts.json",
                       "transcripts": "verify.transcripts.json"} | ({"bundle": "bundle"} if opts.bundle_utts else {}),
                      metrics={"failed": failed, "notes": notes, "params": ck.model.num_params()},
                      timings=timings)
    m.add_inputs(checkpoint, test_manifest)
    # A failed check is recorded (manifest, table, report) rather than raised, so the artifacts
    # that did pass still get profiled; `edgekd export` exits non-zero on it.
    return m.save(out)


def run_prune(opts: PruneOptions, checkpoint: str | Path, out_dir: str | Path, *,
              soft_targets: str | Path | None = None, dev_manifest: str | Path | None = None,
              progress: bool = True) -> Path:
    """Structured pruning of `checkpoint`, then (with soft targets) a KD fine-tune; writes model.safetensors."""
    from edgekd.export.known_broken import check
    from edgekd.export.prune import count_macs_per_frame, structured_prune

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    ck = load_checkpoint(checkpoint)
    before = {"params": ck.model.num_params(), "weight_macs_per_frame": count_macs_per_frame(ck.model)}
    if any(e["effect"] == "fails" for e in check("prune", "any", method="structured")):
        raise EdgekdError("structured pruning is listed as known-broken")  # consulted before trying
    pruned = structured_prune(ck, opts.ratio, multiple=opts.multiple, prune_conv=opts.prune_conv)
    pruned.extra["pruning"]["params_before"] = before["params"]
    pruned.save(out / "pruned.safetensors")
    after = {"params": pruned.model.num_params(), "weight_macs_per_frame": count_macs_per_frame(pruned.model)}
    final = "pruned.safetensors"
    if opts.finetune_steps and soft_targets:
        from edgekd.distil import DistilOptions, run_distil
        from edgekd.train.loop import LoopOptions

        run_distil(DistilOptions(loss=opts.loss, init=str(out / "pruned.safetensors"), max_frames=opts.max_frames,
                                 loop=LoopOptions(max_steps=opts.finetune_steps, lr=opts.lr, warmup_steps=20,
                                                  eval_every=max(opts.finetune_steps // 2, 1), progress=progress)),
                   soft_targets, out / "finetune", dev_manifest=dev_manifest, featurizer=ck.featurizer)
        shutil.copyfile(out / "finetune/model.safetensors", out / "model.safetensors")
        final = "model.safetensors"
    elif opts.finetune_steps:
        raise EdgekdError("pruning fine-tune needs soft targets (a pseudolabel output folder); "
                          "pass them or set finetune_steps=0")
    else:
        shutil.copyfile(out / "pruned.safetensors", out / "model.safetensors")
    m = StageManifest(stage="prune", config={**to_dict(opts), "checkpoint": str(checkpoint)},
                      outputs={"model": "model.safetensors", "pruned": "pruned.safetensors"},
                      metrics={"before": before, "after": after, "finetuned_from": final,
                               "ffn_dims": list(pruned.dims.ffn_dims), "conv_dims": list(pruned.dims.conv_dims)},
                      timings={"wall_s": round(time.time() - t0, 1)})
    m.add_inputs(checkpoint)
    return m.save(out)
