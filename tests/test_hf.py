"""The HF CTC adapter on a tiny randomly initialised wav2vec2 saved locally (no download)."""

import json

import numpy as np
import pytest
import torch

from edgekd.tokens import DEFAULT_TOKENS, Tokenizer

transformers = pytest.importorskip("transformers", reason="HF adapter needs the [hf] extra (transformers)")


@pytest.fixture(scope="module")
def tiny_hf_dir(tmp_path_factory):
    from transformers import (Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC,
                              Wav2Vec2Processor)

    d = tmp_path_factory.mktemp("hf")
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "'": 5}
    vocab.update({c: 6 + i for i, c in enumerate("ETAOINSHRDLUCMFWYPVBGKQJXZ")})
    (d / "vocab.json").write_text(json.dumps(vocab))
    tok = Wav2Vec2CTCTokenizer(str(d / "vocab.json"), unk_token="<unk>", pad_token="<pad>", word_delimiter_token="|")
    fe = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                  return_attention_mask=True)
    Wav2Vec2Processor(feature_extractor=fe, tokenizer=tok).save_pretrained(d)
    cfg = Wav2Vec2Config(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, conv_dim=(16, 16, 16), conv_stride=(5, 4, 2), conv_kernel=(10, 8, 4),
                         num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, feat_extract_norm="layer",
                         pad_token_id=0, do_stable_layer_norm=True)
    torch.manual_seed(0)
    Wav2Vec2ForCTC(cfg).eval().save_pretrained(d)
    return d


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
