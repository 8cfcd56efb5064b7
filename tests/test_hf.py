"""The HF CTC adapter on a tiny randomly initialised wav2vec2 saved locally (no download)."""

import json

import numpy as np
import pytest
import torch

from edgekd.tokens import DEFAULT_TOKENS, Tokenizer

transformers = pytest.importorskip("transformers", reason="HF adapter needs the [hf] extra (transformers)")

# tiny_hf_dir: tests/conftest.py (shared with transcribe's hf: test)


def test_hf_teacher_interface(tiny_hf_dir):
    from edgekd.teachers import load_teacher

    t = load_teacher(f"hf:{tiny_hf_dir}")
    assert t.tokens == DEFAULT_TOKENS
    assert t.frame_rate == pytest.approx(16000 / 40)
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(16000).astype(np.float32) * 0.1, rng.standard_normal(9000).astype(np.float32) * 0.1]
    out = t(waves)
    assert out.logits.shape[0] == 2 and out.logits.shape[2] == len(DEFAULT_TOKENS)
    assert out.lengths.tolist()[0] == out.logits.shape[1] and out.lengths[1] < out.lengths[0]
    assert torch.allclose(out.logits.exp().sum(-1), torch.ones(out.logits.shape[:2]), atol=1e-4)
    assert out.embeddings.shape == (2, 32)
    from edgekd.decode import greedy

    hyps = greedy(out.logits, out.lengths, Tokenizer(t.tokens))
    assert all(set(h) <= set("".join(DEFAULT_TOKENS[1:])) for h in hyps)


def test_vocab_mapping_folds_unmapped_mass_into_blank():
    from edgekd.teachers.hf import vocab_map

    vocab = {"<pad>": 0, "<unk>": 1, "|": 2, "A": 3, "B": 4, "'": 5, "1": 6}
    vocab.update({c.upper(): 7 + i for i, c in enumerate("cdefghijklmnopqrstuvwxyz")})
    g = vocab_map(vocab, "<pad>")
    assert sorted(g[0]) == [0, 1, 6]  # pad, unk and a digit all become "emit nothing"
    assert g[DEFAULT_TOKENS.index(" ")] == [2] and g[DEFAULT_TOKENS.index("a")] == [3]
    assert sorted(i for grp in g for i in grp) == sorted(vocab.values())  # every column used once


def test_bad_hf_path_is_a_clear_error(tmp_path):
    from edgekd.errors import EdgekdError
    from edgekd.teachers import load_teacher

    with pytest.raises(EdgekdError, match="cannot load HF CTC model"):
        load_teacher(f"hf:{tmp_path / 'nothing-here'}")
