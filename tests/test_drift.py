"""Drift verdicts: same-domain splits say no drift, clean source vs drifted target says drift."""

import json

import pytest

from edgekd.drift import DriftOptions, mmd_permutation, run_drift


@pytest.fixture(scope="module")
def teacher(tiny_ckpt_path):
    return str(tiny_ckpt_path)  # the shared seed-0 tiny checkpoint (conftest)


OPTS = DriftOptions(permutations=200)


def test_same_domain_is_no_drift(corpus, teacher, tmp_path):
    r = run_drift(OPTS, corpus / "source/dev.jsonl", corpus / "source/test.jsonl", tmp_path, teacher)
    assert r["verdict"] == "no drift"
    assert (tmp_path / "drift.png").stat().st_size > 1000
    assert json.loads((tmp_path / "drift.json").read_text())["utterances"]["reference"] >= 15


def test_clean_vs_drifted_is_drift(corpus, teacher, tmp_path):
    r = run_drift(OPTS, corpus / "source/dev.jsonl", corpus / "target/test.jsonl", tmp_path, teacher)
    assert r["verdict"] == "drift"
    assert r["mmd"]["p_value"] < 0.01 and r["ks"]["fraction_significant"] >= 0.1


def test_no_teacher_uses_log_mel_stats(corpus, tmp_path):
    r = run_drift(OPTS, corpus / "source/dev.jsonl", corpus / "target/test.jsonl", tmp_path)
    assert r["verdict"] == "drift" and r["mmd"]["features"] == "log-mel mean+std" and r["confidence"] is None


def test_mmd_null_and_alternative():
    import numpy as np

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((40, 5)), rng.standard_normal((40, 5))
    assert mmd_permutation(x, y, 200, rng)[1] > 0.01
    assert mmd_permutation(x, y + 1.0, 200, rng)[1] < 0.01
