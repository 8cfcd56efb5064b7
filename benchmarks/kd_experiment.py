"""The distillation experiment: which way of training a small student works on drifted audio?

Usage: python benchmarks/kd_experiment.py --data data/corpus --teacher models/teacher/teacher.safetensors \
           --out runs/kd --steps 600 --preset student-xs

Same budget (steps, batch, lr, seed) for every student; WER on the *target-domain test split*:
  (a) the teacher;
  (b) student trained with CTC on the labeled *source* data only (no teacher);
  (c) student on the teacher's 1-best transcripts of the unlabeled target audio (CTC, sequence-level KD);
  (d) student on the teacher's soft targets only (frame-level KD at T);
  (e) soft + hard mixed (kd + 0.3 ctc);
  (f) Annealing-KD (phase 1 logit MSE with T stepping 1→τmax, phase 2 CTC);
  (g) soft + hard on *all* the audio: the teacher's soft targets on the source and target train
      sets, CTC on the source's human transcripts and the target's 1-best (what a user with both
      would run; (b) sees the same labeled source, (d)-(f) only the target audio);
  (h)-(l) (e) plus one of the terms of edgekd.kd_terms, weight 1: (h) feature KD (every student
      layer <- teacher layer round(i·Lt/Ls), learned projection, cosine), (i) relation KD
      (last-layer frame-similarity KL), (j) response + feature + relation, (k) mutual learning
      (a peer student, KL both ways), (l) self-distillation (EMA of the student, decay 0.99).
Plus params and the student/teacher latency ratio (10 s of audio, 1 thread, median of 5).
Every run resumes if killed (rerun the command). `--only d,e` trains just those (two such commands with
`--threads 1` can share a 2-core box); the table always lists every finished run under --out.
Writes <out>/kd_table.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch


def latency_ms(model_path: str) -> float:
    from edgekd.models import load_checkpoint

    torch.set_num_threads(1)
    m = load_checkpoint(model_path).model.eval()
    x, n = torch.randn(1, 1000, 80), torch.tensor([1000])
    with torch.no_grad():
        m(x, n)
        ts = []
        for _ in range(5):
            t = time.perf_counter()
            m(x, n)
            ts.append((time.perf_counter() - t) * 1000)
    return statistics.median(ts)


def cached_eval(model: str, test: Path, out: Path, beam: int = 0, lm: str = "") -> dict:
    """run_eval, reusing <out>/metrics.json when it scored this very checkpoint (same path, newer
    file) on the same manifest with the same decoder."""
    from edgekd.evaluate import decoder_name, run_eval

    m = out / "metrics.json"
    if m.exists() and m.stat().st_mtime > Path(model).stat().st_mtime:
        d = json.loads(m.read_text())
        if (d.get("model"), d.get("manifest"), d.get("decoder")) == (str(model), str(test), decoder_name(beam, lm or None)):
            return d
    return run_eval(model, test, out, progress=False, beam=beam, lm=lm or None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--preset", default="student-xs")
    ap.add_argument("--lr", type=float, default=5e-4)  # 2e-3 stalled CTC from scratch (the teacher)
    ap.add_argument("--max-frames", type=int, default=12000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="training seed (init, batches, SpecAugment)")
    ap.add_argument("--only", default="", help="comma-separated subset of b,c,d,e,f,g,h,i,j,k,l")
    ap.add_argument("--lm", default="", help="ARPA LM: the teacher's 1-best hard labels by beam search + LM")
    ap.add_argument("--beam", type=int, default=16)
    a = ap.parse_args()

    from edgekd.distil import DistilOptions, run_distil
    from edgekd.kd_terms import KDTerms
    from edgekd.manifest import read_manifest, write_manifest
    from edgekd.models import load_checkpoint
    from edgekd.pseudolabel import PseudoLabelOptions, run_pseudolabel
    from edgekd.train import TrainOptions, run_train
    from edgekd.train.loop import LoopOptions

    torch.set_num_threads(a.threads)
    a.out.mkdir(parents=True, exist_ok=True)
    test, dev = a.data / "target/test.jsonl", a.data / "target/dev.jsonl"
    loop = LoopOptions(max_steps=a.steps, lr=a.lr, warmup_steps=max(1, a.steps // 10), eval_every=max(1, a.steps // 3),
                       ckpt_every=50, seed=a.seed, threads=a.threads)
    # no review route here: every utterance keeps the teacher's 1-best (what (c), (e) and (g) learn from)
    pl_opts = PseudoLabelOptions(review_fraction=0.0, workers=1, beam=a.beam if a.lm else 0, lm=a.lm)
    pl = a.out / "pseudolabels"
    if not (pl / "manifest.json").exists():
        run_pseudolabel(pl_opts, a.data / "target/train.jsonl", [a.teacher], pl)

    def pseudolabels_all():  # soft targets on source + target train audio (g), made on first use
        pl_all = a.out / "pseudolabels-all"
        if not (pl_all / "manifest.json").exists():
            both = a.out / "train-source+target.jsonl"
            write_manifest(both, [*read_manifest(a.data / "source/train.jsonl"),
                                  *read_manifest(a.data / "target/train.jsonl")])
            run_pseudolabel(pl_opts, both, [a.teacher], pl_all)
        return pl_all

    runs = {
        "b": ("student, CTC on labeled source only", lambda o: run_train(
            TrainOptions(preset=a.preset, role="student", loop=loop, max_frames=a.max_frames),
            a.data / "source/train.jsonl", dev, o)),
        "c": ("student, CTC on teacher 1-best (sequence KD)", lambda o: run_distil(
            DistilOptions(preset=a.preset, loss="ctc", loop=loop, max_frames=a.max_frames), pl, o, dev_manifest=dev)),
        "d": ("student, soft targets only (KD, T=2)", lambda o: run_distil(
            DistilOptions(preset=a.preset, loss="kd", loop=loop, max_frames=a.max_frames), pl, o, dev_manifest=dev)),
        "e": ("student, soft + hard (KD + 0.3 CTC)", lambda o: run_distil(
            DistilOptions(preset=a.preset, loss="kd+ctc", loop=loop, max_frames=a.max_frames), pl, o, dev_manifest=dev)),
        "f": ("student, Annealing-KD", lambda o: run_distil(
            DistilOptions(preset=a.preset, loss="annealing", loop=loop, max_frames=a.max_frames), pl, o,
            dev_manifest=dev)),
        "g": ("student, soft + hard on source + target audio (source human labels)", lambda o: run_distil(
            DistilOptions(preset=a.preset, loss="kd+ctc", loop=loop, max_frames=a.max_frames), pseudolabels_all(), o,
            human_labels=a.data / "source/train.jsonl", dev_manifest=dev)),
    }
    extra = {"h": ("(e) + feature KD (all layers, cosine)", KDTerms(feature_weight=1.0)),
             "i": ("(e) + relation KD (last layer)", KDTerms(relation_weight=1.0)),
             "j": ("(e) + feature + relation KD", KDTerms(feature_weight=1.0, relation_weight=1.0)),
             "k": ("(e) + mutual learning (peer student)", KDTerms(mutual_weight=1.0)),
             "l": ("(e) + self-distillation (EMA teacher)", KDTerms(self_weight=1.0))}
    for key, (what, terms) in extra.items():
        runs[key] = (f"student, {what}", lambda o, terms=terms: run_distil(
            DistilOptions(preset=a.preset, loss="kd+ctc", loop=loop, max_frames=a.max_frames, terms=terms), pl, o,
            dev_manifest=dev))
    only = set(a.only.split(",")) - {""} or set(runs)
    t_lat = latency_ms(a.teacher)
    t_params = load_checkpoint(a.teacher).model.num_params()
    rows = []
    e = cached_eval(a.teacher, test, a.out / "eval-a")
    rows.append({"run": "a", "what": "teacher", "params": t_params, "target_test_wer_%": round(100 * e["wer"], 2),
                 "target_test_cer_%": round(100 * e["cer"], 2), "latency_ratio_vs_teacher": 1.0, "train_min": None})
    if a.lm:  # what the hard labels were decoded with
        e = cached_eval(a.teacher, test, a.out / "eval-a-lm", beam=a.beam, lm=a.lm)
        rows.append({"run": "a+lm", "what": f"teacher, beam {a.beam} + LM", "params": t_params,
                     "target_test_wer_%": round(100 * e["wer"], 2), "target_test_cer_%": round(100 * e["cer"], 2),
                     "latency_ratio_vs_teacher": None, "train_min": None})
    for key, (what, fn) in runs.items():
        o = a.out / key
        if key in only and not (o / "model.safetensors").exists():
            fn(o)
        if not (o / "model.safetensors").exists():
            continue  # not trained (yet): another --only command may be training it
        model = str(o / "model.safetensors")
        e = cached_eval(model, test, a.out / f"eval-{key}")
        train_s = json.loads((o / "manifest.json").read_text())["timings"]["train_s"]
        rows.append({"run": key, "what": what, "params": load_checkpoint(model).model.num_params(),
                     "target_test_wer_%": round(100 * e["wer"], 2), "target_test_cer_%": round(100 * e["cer"], 2),
                     "latency_ratio_vs_teacher": round(latency_ms(model) / t_lat, 3),
                     "train_min": round(train_s / 60, 1)})
        print(json.dumps(rows[-1]), flush=True)
    lm_note = f", hard labels by beam {a.beam} + {Path(a.lm).name}" if a.lm else ", hard labels greedy"
    title = f"KD comparison ({a.steps} steps, lr {a.lr:g}, {a.max_frames} frames/batch, seed {a.seed}, {a.preset}{lm_note})"
    (a.out / "kd_table.json").write_text(json.dumps({"title": title,
                                                     "rows": rows}, indent=1))
    from edgekd.tables import table_text

    print(table_text(rows, markdown=True), end="")


if __name__ == "__main__":
    main()
