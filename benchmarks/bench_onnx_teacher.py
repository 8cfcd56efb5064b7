"""An edgekd teacher run as `onnx:` (onnxruntime) against the same teacher in PyTorch: speed and parity.

Usage: python3 benchmarks/bench_onnx_teacher.py --teacher models/teacher/teacher.safetensors --manifest data/teacher2/source/dev.jsonl --utts 40

`--layout nemo` exports NeMo's EncDecCTCModelBPE layout instead (needs a checkpoint on
NEMO_FEATURES, e.g. models/student/student-xs-stream.safetensors run offline).

Exports the checkpoint to ONNX (features input, the zipformer2_ctc contract by default) in a temp folder,
loads both as teachers, and on the same utterances, one thread each, alternating which goes
first, reports: audio seconds per second (median of `--repeats` passes), the ONNX/PyTorch
ratio, the mean per-frame KL between their posteriors and the share of identical greedy 1-bests.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from edgekd.audio import load_audio
from edgekd.decode import greedy
from edgekd.export.onnx import export_nemo_ctc, export_onnx
from edgekd.manifest import read_manifest
from edgekd.models import load_checkpoint
from edgekd.teachers import load_teacher
from edgekd.tokens import Tokenizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--utts", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--layout", choices=("zipformer2_ctc", "nemo"), default="zipformer2_ctc")
    a = ap.parse_args()
    torch.set_num_threads(1)
    utts = read_manifest(a.manifest)[: a.utts]
    waves = [load_audio(u.audio) for u in utts]
    audio_s = sum(len(w) for w in waves) / 16000
    with tempfile.TemporaryDirectory() as tmp:
        export = export_nemo_ctc if a.layout == "nemo" else export_onnx
        export(load_checkpoint(a.teacher), Path(tmp) / "model.onnx")
        teachers = {"pytorch": load_teacher(a.teacher), "onnxruntime": load_teacher(f"onnx:{tmp}")}
        times: dict[str, list[float]] = {k: [] for k in teachers}
        outs: dict[str, list] = {}
        for r in range(a.repeats):
            for name in (list(teachers) if r % 2 == 0 else list(teachers)[::-1]):
                t0 = time.perf_counter()
                outs[name] = [teachers[name]([w]) for w in waves]  # batch 1, as a naive user would
                times[name].append(time.perf_counter() - t0)
    tok = Tokenizer(teachers["pytorch"].tokens)
    kl, frames, same = 0.0, 0, 0
    for p, o in zip(outs["pytorch"], outs["onnxruntime"]):
        n = int(p.lengths[0])
        lp, lo = p.logits[0, :n].log_softmax(-1).double(), o.logits[0, :n].log_softmax(-1).double()
        kl += float((lp.exp() * (lp - lo)).sum())
        frames += n
        same += greedy(lp[None].float(), p.lengths, tok) == greedy(lo[None].float(), o.lengths, tok)
    rate = {k: audio_s / statistics.median(v) for k, v in times.items()}
    print(f"{len(waves)} utterances, {audio_s:.0f} s of audio, 1 thread, median of {a.repeats}")
    for k, v in rate.items():
        print(f"{k:12s} {v:7.1f}x real time")
    print(f"onnxruntime / pytorch: {rate['onnxruntime'] / rate['pytorch']:.2f}x; KL per frame {kl / frames:.2e}; "
          f"identical 1-best {100 * same / len(waves):.0f} %")


if __name__ == "__main__":
    main()
