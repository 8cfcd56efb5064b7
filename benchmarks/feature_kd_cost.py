"""What feature/relation KD costs: teacher features recomputed per step vs stored.

Usage: python benchmarks/feature_kd_cost.py --teacher models/teacher/teacher.safetensors \
           --student models/student/student-xs.safetensors --frames 6000 --threads 1

On random features of one batch (`--frames` padded feature frames, as distil's --max-frames,
in utterances of `--utt-frames`), median of `--repeats`:
  - a plain distil step of the student (forward + backward, KD on random targets);
  - the same step with feature KD (all layers, cosine, projection) + relation KD, teacher cached;
  - the teacher's forward (no grad) over the batch: what each step pays uncached, and what the
    cache pays once per utterance per run;
and the bytes per teacher frame that storing the mapped layers in the shards (fp16) would take.
Prints one JSON record.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def timed(fns: dict, repeats: int) -> dict:
    """Median ms of each function, run in turn (round-robin): load on a shared box hits all alike."""
    ts: dict = {k: [] for k in fns}
    for k, f in fns.items():
        f()  # warm-up
    for _ in range(repeats):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            ts[k].append((time.perf_counter() - t) * 1000)
    return {k: round(statistics.median(v), 1) for k, v in ts.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--student", required=True)
    ap.add_argument("--frames", type=int, default=6000)
    ap.add_argument("--utt-frames", type=int, default=750)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()

    from edgekd.kd_losses import kd_loss
    from edgekd.kd_terms import ExtraTerms, FeatureTeacher, KDTerms, Students
    from edgekd.models import load_checkpoint

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    st = load_checkpoint(a.student)
    b = max(1, a.frames // a.utt_frames)
    x, lens = torch.randn(b, a.utt_frames, 80), torch.full((b,), a.utt_frames)
    ids = [f"u{i}" for i in range(b)]
    student = st.model.train()
    t_out = int(student.output_lengths(lens)[0])
    target = torch.randn(b, t_out, st.dims.vocab_size).log_softmax(-1)

    def base(logits, olens):
        return kd_loss(logits, target, olens, 2.0), {}

    def plain():
        logits, olens = student(x, lens)
        base(logits, olens)[0].backward()

    rate = st.featurizer.frame_rate / st.dims.subsampling
    terms = KDTerms(feature_weight=1.0, relation_weight=1.0)
    teacher = FeatureTeacher(a.teacher, st.featurizer, st.dims.n_layers, rate, "all", cache=True)
    wrapped = Students(student, terms, teacher.dim, len(teacher.student_layers)).train()
    extra = ExtraTerms(terms, 2.0, teacher)

    def with_terms():
        extra(wrapped, ids, x, x, lens, None, base)[0].backward()

    def teacher_fwd():
        with torch.no_grad():
            teacher.model.encode_layers(x, lens)

    rec = {"threads": a.threads, "batch": f"{b} x {a.utt_frames} frames", "student": a.student, "teacher": a.teacher,
           **timed({"student_step_ms": plain, "step_with_feature_relation_kd_cached_ms": with_terms,
                    "teacher_forward_ms": teacher_fwd}, a.repeats),
           "mapped_teacher_layers": teacher.teacher_layers,
           "stored_bytes_per_teacher_frame_fp16": 2 * teacher.dim * len(teacher.teacher_layers)}
    rec["uncached_step_ms_estimate"] = round(rec["step_with_feature_relation_kd_cached_ms"] + rec["teacher_forward_ms"], 1)
    print(json.dumps(rec))


if __name__ == "__main__":
    main()
