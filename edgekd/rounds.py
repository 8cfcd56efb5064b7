"""`edgekd rounds`: iterative labeling — label the pool, route, review (+ audits), distil, repeat.

Round r, in `out_dir/round-<r>/`:
1. `pseudolabel/`: the current teachers label the whole pool. Round 0 sends the
   `review_fraction` least confident to review; later rounds route at the threshold the previous
   round's audit chose. Utterances humans labeled in earlier rounds are neither reviewed nor
   audited again: their human text stands.
2. `review/`: Label Studio tasks for the doubtful labels plus a random `audit_fraction` of the
   accepted ones (`data.audit: true`; `edgekd.audit` draws them after routing, so they cannot
   bias it), answered by simulated annotators from the hidden references (`refs`: the demo's
   synthetic transcripts), imported by majority.
3. `audit.json`: the accepted labels' WER estimated from the audits with a bootstrap interval,
   beside the true WER of every accepted label against the references, and the next threshold
   (toward `target_error`).
4. `distil/`: a student from `distil.init` (the same start every round, so rounds differ by
   their labels only) on the round's soft targets + every human label so far; scored on `test`.
5. `update="join"`: the student joins the teacher ensemble for the next round ("none": the
   teachers stay as they are).
`round.json` closes a round; `rounds.json` (one row per round: WER, review volume, cost) and
`rounds.png` sum them up. A killed run resumes where it stopped: finished rounds and finished
steps of the current round are read back, pseudolabel and distil resume from their own state.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

from edgekd.atomic import atomic_write
from edgekd.audit import estimate_error, next_threshold, sample_audit, word_errors
from edgekd.config import to_dict
from edgekd.distil import DistilOptions, run_distil
from edgekd.errors import EdgekdError
from edgekd.manifest import StageManifest, read_manifest, write_manifest
from edgekd.pseudolabel import PseudoLabelOptions, run_pseudolabel
from edgekd.records import read_pseudolabels

UPDATES = ("join", "none")


@dataclass(frozen=True)
class RoundsOptions:
    rounds: int = 3  # labeling rounds
    review_fraction: float = 0.2  # round 0: this least-confident share of the pool goes to review
    audit_fraction: float = 0.2  # share of each round's auto-accepted labels audited by humans
    audit_min: int = 1  # ... but at least this many (all when fewer are accepted)
    target_error: float = 0.5  # label WER the accepted pool should meet; the next threshold moves toward it
    threshold_step: float = 0.02  # how far the threshold drops when the audit meets the target
    update: str = "join"  # "join": each round's student joins the teacher ensemble; "none"
    annotators: int = 3  # simulated annotators per task (majority vote)
    annotator_error_rate: float = 0.05  # their word error rate
    seed: int = 0
    pseudolabel: PseudoLabelOptions = field(default_factory=lambda: PseudoLabelOptions(workers=1))
    distil: DistilOptions = field(default_factory=DistilOptions)

    def __post_init__(self):
        self._verify()

    def _verify(self):
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        if not 0 <= self.review_fraction < 1 or not 0 <= self.audit_fraction <= 1 or self.audit_min < 0:
            raise ValueError("review_fraction must be in [0, 1), audit_fraction in [0, 1] and audit_min >= 0")
        if not 0 < self.target_error < 1 or self.threshold_step < 0:
            raise ValueError("target_error must be in (0, 1) and threshold_step >= 0")
        if self.update not in UPDATES:
            raise ValueError(f"update must be one of {', '.join(UPDATES)}, got {self.update!r}")
        if self.annotators < 1 or not 0 <= self.annotator_error_rate < 1:
            raise ValueError("annotators must be >= 1 and annotator_error_rate in [0, 1)")


def run_rounds(opts: RoundsOptions, pool: str | Path, refs: str | Path, teachers: list[str], out_dir: str | Path, *,
               test: str | Path, dev: str | Path | None = None) -> Path:
    """Run (or resume) `opts.rounds` rounds over the unlabeled `pool`; returns the stage manifest path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ref_text = {u.id: u.text or "" for u in read_manifest(refs)}
    missing = [u.id for u in read_manifest(pool) if u.id not in ref_text]
    if missing:
        raise EdgekdError(f"{refs}: no reference for {len(missing)} pool utterance(s), e.g. {missing[0]} "
                          "(simulated review answers from them)")
    t0 = time.time()
    rows, human, threshold, students = [], {}, None, []
    for r in range(opts.rounds):
        rdir = out / f"round-{r}"
        done = rdir / "round.json"
        if not done.exists():
            row = _round(opts, r, rdir, Path(pool), Path(refs), ref_text, [*teachers, *students], human, threshold,
                         Path(test), dev)
            atomic_write(done, json.dumps(row, indent=1))
        row = json.loads(done.read_text())
        rows.append(row)
        human.update({u.id: u.text for u in read_manifest(rdir / "review/labeled.jsonl")})
        threshold = row["next_threshold"]
        if opts.update == "join":
            students.append(str(rdir / "distil/model.safetensors"))
    atomic_write(out / "rounds.json", json.dumps({"title": "labeling rounds", "rows": rows}, indent=1))
    from edgekd.pipeline.plots import rounds_plot

    rounds_plot(out / "rounds.png", rows)
    m = StageManifest(stage="rounds", config={**to_dict(opts), "teachers": list(teachers)},
                      outputs={"rounds": "rounds.json", "plot": "rounds.png"},
                      metrics={"rounds": len(rows), "student_wer_%": [x["student_wer_%"] for x in rows],
                               "accepted_label_wer_%": [x["accepted_true_wer_%"] for x in rows]},
                      timings={"wall_s": round(time.time() - t0, 1)})
    m.add_inputs(pool, refs, test, *[t for t in teachers if Path(t).is_file()])
    return m.save(out)


def _round(opts: RoundsOptions, r: int, rdir: Path, pool: Path, refs: Path, ref_text: dict[str, str],
           teachers: list[str], human: dict[str, str], threshold: Optional[float], test: Path, dev) -> dict:
    from edgekd.evaluate import run_eval
    from edgekd.pipeline.simulate import simulate_annotators
    from edgekd.review import export_tasks, import_annotations

    t_start = time.time()
    pl = rdir / "pseudolabel"
    pl_opts = replace(opts.pseudolabel, review_fraction=opts.review_fraction, confidence_threshold=threshold)
    if not (pl / "manifest.json").exists():
        run_pseudolabel(pl_opts, pool, teachers, pl, progress=False)
    pl_s = time.time() - t_start
    thr = json.loads((pl / "manifest.json").read_text())["metrics"]["confidence_threshold"]
    labels = {l.id: l for l in read_pseudolabels(pl / "labels.jsonl")}
    fresh = [l for l in labels.values() if l.id not in human]
    review = sorted(l.id for l in fresh if l.route == "review")
    accepted = sorted(l.id for l in fresh if l.route == "distil")
    audit = sample_audit(accepted, set(review) | set(human), opts.audit_fraction, opts.seed, r, opts.audit_min)
    rv = rdir / "review"
    if not (rv / "labeled.jsonl").exists():
        rv.mkdir(parents=True, exist_ok=True)
        by_id = {u.id: u for u in read_manifest(pool)}
        write_manifest(rv / "to_review.jsonl", [by_id[i] for i in [*review, *audit]])
        tasks = export_tasks(rv / "to_review.jsonl", pl / "labels.jsonl", rv, audit_ids=set(audit))["tasks"]
        export = simulate_annotators(tasks, refs, opts.annotators, opts.annotator_error_rate, opts.seed + r, rv)
        import_annotations(export, rv / "to_review.jsonl", rv)
    answers = {u.id: u.text or "" for u in read_manifest(rv / "labeled.jsonl")}
    # the audit: the accepted labels against what the auditors typed (an audit without an answer is left out)
    audited = [(labels[i].confidence, *word_errors(answers[i], labels[i].text or "")) for i in audit if i in answers]
    est = estimate_error([(e, n) for _, e, n in audited], seed=opts.seed + r)
    true = [word_errors(ref_text[i], labels[i].text or "") for i in accepted]
    true_wer = sum(e for e, _ in true) / max(sum(n for _, n in true), 1)
    nxt = next_threshold(audited, thr, opts.target_error, opts.threshold_step)
    hl = rdir / "human.jsonl"  # every human label so far: earlier rounds' and this round's
    by_id = {u.id: u for u in read_manifest(pool)}
    write_manifest(hl, [replace(by_id[i], text=t) for i, t in {**human, **answers}.items() if t])
    st = rdir / "distil"
    t_d = time.time()
    if not (st / "manifest.json").exists():
        run_distil(opts.distil, pl, st, human_labels=hl, dev_manifest=dev)
    distil_s = time.time() - t_d
    ev = run_eval(str(st / "model.safetensors"), test, rdir / "eval", progress=False)
    reviewed_s = sum(by_id[i].duration or 0.0 for i in [*review, *audit])

    def pct(x):
        return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(100 * x, 2)

    row = {"round": r, "teachers": len(teachers), "threshold": round(thr, 4), "pool": len(labels),
           "accepted": len(accepted), "review": len(review), "audit": len(audit), "human_total": len(human) + len(answers),
           "review_audio_s": round(reviewed_s, 1),
           "audit_wer_%": pct(est.wer), "audit_ci_%": [pct(est.low), pct(est.high)], "accepted_true_wer_%": pct(true_wer),
           "ci_covers_true": bool(est.utterances) and est.low <= true_wer <= est.high,
           "next_threshold": round(nxt, 4), "student_wer_%": pct(ev["wer"]), "student_cer_%": pct(ev["cer"]),
           "pseudolabel_s": round(pl_s, 1), "distil_s": round(distil_s, 1)}
    atomic_write(rdir / "audit.json", json.dumps({"audited": len(audited), "words": est.words, **row}, indent=1))
    return row
