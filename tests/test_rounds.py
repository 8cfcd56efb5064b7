"""Iterative labeling rounds with random audits: sampling, the error estimate, the threshold, resume."""

import json
import math

import pytest

from edgekd.audit import estimate_error, next_threshold, sample_audit


def test_audit_sampling_never_selects_reviewed_items():
    accepted = [f"u{i:03d}" for i in range(100)]
    reviewed = {f"u{i:03d}" for i in range(0, 100, 3)} | {"x1", "x2"}  # earlier rounds' and this round's
    for seed in range(20):
        a = sample_audit(accepted, reviewed, 0.25, seed, round_no=1)
        assert a and not set(a) & reviewed and set(a) <= set(accepted)
        assert len(a) == round(0.25 * (100 - 34))
    assert sample_audit(accepted, reviewed, 0.25, 0, 1) == sample_audit(accepted, reviewed, 0.25, 0, 1)
    assert sample_audit(accepted, reviewed, 0.25, 0, 1) != sample_audit(accepted, reviewed, 0.25, 0, 2)
    assert sample_audit(accepted, set(accepted), 0.5, 0, 0) == []  # nothing unseen: no audit
    # a floor on the audit size: 0.25 of 66 is 16, at least 30 asked; all 66 when 80 are asked
    assert len(sample_audit(accepted, reviewed, 0.25, 0, 1, minimum=30)) == 30
    floor = sample_audit(accepted, reviewed, 0.25, 0, 1, minimum=80)
    assert sorted(floor) == sorted(set(accepted) - reviewed)
    assert sample_audit(accepted, reviewed, 0.0, 0, 1, minimum=30) == []  # audits off stay off
    with pytest.raises(ValueError, match="audit fraction"):
        sample_audit(accepted, set(), 1.5, 0, 0)


def test_error_estimate_pools_words_and_brackets_it():
    counts = [(1, 10), (0, 5), (3, 5), (0, 10)]
    e = estimate_error(counts, seed=0)
    assert e.wer == pytest.approx(4 / 30) and e.low <= e.wer <= e.high and e.low < e.high
    assert (e.utterances, e.words) == (4, 30)
    assert estimate_error([(0, 5)] * 8).high == 0  # no error seen: the interval is [0, 0]
    assert math.isnan(estimate_error([]).wer)


def test_threshold_moves_toward_the_target_error_rate():
    # the less confident half of the accepted labels is wrong, the rest right: 50 % WER overall
    audited = [(0.5 + 0.01 * i, 10 if i < 10 else 0, 10) for i in range(20)]
    up = next_threshold(audited, 0.5, target=0.2, step=0.05)
    # the lowest cut whose audited labels meet 20 %: from 0.58 up 2 of 12 are wrong (17 %), from 0.57 3 of 13 (23 %)
    assert up == pytest.approx(0.58)
    above = [a for a in audited if a[0] >= up]
    assert sum(a[1] for a in above) / sum(a[2] for a in above) <= 0.2  # the raised cut meets the target
    assert next_threshold(audited, 0.5, target=0.6, step=0.05) == pytest.approx(0.45)  # met: accept more
    assert next_threshold([], 0.5, target=0.2, step=0.05) == 0.5
    all_bad = [(0.6, 5, 5), (0.7, 5, 5)]
    assert next_threshold(all_bad, 0.5, target=0.1, step=0.05) >= 0.7  # nothing meets it: as high as seen


@pytest.fixture(scope="module")
def tiny_rounds(tmp_path_factory, corpus, tiny_ckpt_path):
    from edgekd.distil import DistilOptions
    from edgekd.pseudolabel import PseudoLabelOptions
    from edgekd.rounds import RoundsOptions
    from edgekd.train.loop import LoopOptions

    opts = RoundsOptions(rounds=2, review_fraction=0.3, audit_fraction=0.5, target_error=0.5,
                         pseudolabel=PseudoLabelOptions(workers=1),
                         distil=DistilOptions(preset="tiny", max_frames=3000, max_dev_utts=2,
                                              loop=LoopOptions(max_steps=2, warmup_steps=1, eval_every=0,
                                                               ckpt_every=1, progress=False)))
    return opts, tmp_path_factory.mktemp("rounds")


def test_round_loop_resumes_after_a_kill_mid_round(tiny_rounds, corpus, tiny_ckpt_path, monkeypatch):
    from edgekd import rounds

    opts, out = tiny_rounds
    args = (corpus / "target/train.jsonl", corpus / "target/train.ref.jsonl", [str(tiny_ckpt_path)], out)
    real = rounds.run_distil

    def killed_in_round_1(o, pl, st, **kw):
        if "round-1" in str(st):
            raise KeyboardInterrupt("killed mid-round")
        return real(o, pl, st, **kw)

    monkeypatch.setattr(rounds, "run_distil", killed_in_round_1)
    with pytest.raises(KeyboardInterrupt):
        rounds.run_rounds(opts, *args, test=corpus / "target/test.jsonl")
    assert (out / "round-0/round.json").exists() and not (out / "round-1/round.json").exists()
    stamps = {p: p.stat().st_mtime_ns for p in [out / "round-0/round.json", out / "round-0/pseudolabel/labels.jsonl",
                                                out / "round-1/pseudolabel/labels.jsonl",
                                                out / "round-1/review/labeled.jsonl"]}
    monkeypatch.setattr(rounds, "run_distil", real)
    rounds.run_rounds(opts, *args, test=corpus / "target/test.jsonl")
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # finished work is read back, not redone
    rows = json.loads((out / "rounds.json").read_text())["rows"]
    assert [r["round"] for r in rows] == [0, 1] and rows[1]["teachers"] == 2  # the round-0 student joined
    assert (out / "rounds.png").stat().st_size > 0
    # audit tasks are marked, and never one a human reviewed (this round's doubtful or an earlier one)
    seen = set()
    for r in (0, 1):
        tasks = json.loads((out / f"round-{r}/review/tasks.json").read_text())
        audit = {t["data"]["utt_id"] for t in tasks if t["data"].get("audit")}
        review = {t["data"]["utt_id"] for t in tasks if not t["data"].get("audit")}
        assert len(audit) == rows[r]["audit"] and len(review) == rows[r]["review"]
        assert not audit & review and not (audit | review) & seen  # nobody labels an utterance twice
        seen |= audit | review


def test_rounds_options_checks():
    from edgekd.rounds import RoundsOptions

    with pytest.raises(ValueError, match="update must be one of"):
        RoundsOptions(update="retrain")
    with pytest.raises(ValueError, match="rounds must be"):
        RoundsOptions(rounds=0)
