"""Word n-gram LM (ARPA) estimation and beam search with it."""


import numpy as np
import pytest
import torch

from edgekd.errors import EdgekdError
from edgekd.lm import build_arpa
from edgekd.tokens import DEFAULT_TOKENS as TOKENS, Tokenizer

TEXTS = ["the cat sat on the mat", "the dog sat on the log", "a cat ate the rat", "the cat ate", "a dog ran"]


def read_arpa(path):
    probs, bo = {}, {}
    for line in open(path):
        parts = line.rstrip("\n").split("\t")
        if len(parts) < 2:
            continue
        g = tuple(parts[1].split())
        probs[g] = 10 ** float(parts[0])
        if len(parts) > 2:
            bo[g] = 10 ** float(parts[2])
    return probs, bo


def test_arpa_is_a_normalised_backoff_model(tmp_path):
    probs, bo = read_arpa(build_arpa(TEXTS * 2, tmp_path / "lm.arpa", order=3))

    def p(w, h):  # how an ARPA reader (KenLM) computes p(w | h)
        if h + (w,) in probs:
            return probs[h + (w,)]
        return probs[("<unk>",)] if not h else bo.get(h, 1.0) * p(w, h[1:])

    vocab = [g[0] for g in probs if len(g) == 1 and g[0] != "<s>"]
    for h in [(), ("<s>",), ("the",), ("<s>", "the"), ("the", "cat"), ("sat", "on"), ("rat", "unseen")]:
        assert sum(p(w, h) for w in vocab) == pytest.approx(1.0, abs=1e-5), h
    assert p("cat", ("the",)) > p("dog", ("the",)) > p("mat", ("cat",))  # counts 3 > 1 > 0 (backed off)
    assert {len(g) for g in probs} == {1, 2, 3}


def test_bad_lm_input_is_a_clear_error(tmp_path):
    with pytest.raises(EdgekdError, match="no text"):
        build_arpa(["", "  "], tmp_path / "lm.arpa")
    from edgekd.evaluate import run_eval

    with pytest.raises(EdgekdError, match="--beam"):
        run_eval("unused.safetensors", tmp_path / "m.jsonl", tmp_path / "out", lm=tmp_path / "lm.arpa")


def _log_probs(frames: list[dict[str, float]]) -> torch.Tensor:
    """(1, T, V) log-probs: each frame spreads its given mass over tokens, the rest to blank."""
    lp = np.full((len(frames), len(TOKENS)), 1e-4)
    for t, f in enumerate(frames):
        for tok, p in f.items():
            lp[t, TOKENS.index(tok)] = p
        lp[t, 0] = max(1e-4, 1 - sum(f.values()))
    lp /= lp.sum(-1, keepdims=True)
    return torch.from_numpy(np.log(lp)).float()[None]


def test_beam_search_with_the_lm_fixes_an_acoustic_error(tmp_path):
    pytest.importorskip("flashlight.lib.text")
    from edgekd.decode import BeamDecoder, greedy

    arpa = build_arpa(TEXTS * 3, tmp_path / "lm.arpa", order=3)
    frames = []
    for ch in "the kat sat":  # acoustically 'k' narrowly beats 'c'
        frames += [{"k": 0.5, "c": 0.45} if ch == "k" else {ch: 0.95}, {}]
    lp = _log_probs(frames)
    lens = torch.tensor([lp.shape[1]])
    assert greedy(lp, lens, Tokenizer(TOKENS)) == ["the kat sat"]
    assert BeamDecoder(TOKENS, lm_path=str(arpa), beam_width=16)(lp, lens) == ["the cat sat"]
    assert BeamDecoder(TOKENS, beam_width=16)(lp, lens) == ["the kat sat"]  # no LM: acoustics decide
    # and the LM leaves clear speech alone: unambiguous frames decode to what was said
    clear = _log_probs([f for ch in "a dog ran" for f in ({ch: 0.95}, {})])
    assert BeamDecoder(TOKENS, lm_path=str(arpa), beam_width=16)(clear, torch.tensor([clear.shape[1]])) == ["a dog ran"]


def test_run_lm_and_run_eval_on_the_corpus(corpus, tmp_path, tiny_model):
    """`edgekd lm` and `edgekd eval` end to end on the session corpus (tiny random model: WER ~1)."""
    import json

    from edgekd.evaluate import run_eval
    from edgekd.lm import run_lm
    from edgekd.manifest import read_manifest

    train = corpus / "source/train.jsonl"
    texts = [u.text for u in read_manifest(train)]
    r = run_lm([train], tmp_path / "lm.arpa", order=2)
    assert r["sentences"] == len(texts) and r["vocab"] == len({w for t in texts for w in t.split()})
    assert "\\2-grams:" in (tmp_path / "lm.arpa").read_text()
    model = tiny_model.save(tmp_path / "m.safetensors")
    test = corpus / "source/test.jsonl"
    m = run_eval(str(model), test, tmp_path / "eval", progress=False)
    n = len([u for u in read_manifest(test) if u.text])
    assert m["n"] == n and m["rejected"] == 0 and m["decoder"] == "greedy" and 0.5 <= m["wer"]
    hyps = [json.loads(l) for l in (tmp_path / "eval/hyps.jsonl").read_text().splitlines()]
    assert len(hyps) == n and {h["id"] for h in hyps} == {u.id for u in read_manifest(test)}
    assert json.loads((tmp_path / "eval/metrics.json").read_text())["wer"] == m["wer"]
