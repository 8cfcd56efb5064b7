"""Token sets as data: sentencepiece subwords end to end (train -> pseudolabel -> distil with the
teacher's set), tokens.txt with the blank anywhere, and the one-line errors. sherpa-onnx decoding
a subword export is in test_export.py (its exported graph is shared there)."""

import dataclasses
import json

import pytest
import torch

from edgekd.errors import EdgekdError
from edgekd.tokens import (BLANK, DEFAULT_TOKENS, Tokenizer, canonical_tokens, load_token_set, read_tokens_txt,
                           train_sentencepiece)

TEXT = ["the cat sat on the mat", "a dog ran far away from the house", "hello world this is speech",
        "don't stop the music", "seven quick zebras jump over lazy foxes"] * 20


def test_sentencepiece_round_trip_and_tokens_txt(tmp_path):
    model = train_sentencepiece(TEXT, 60, tmp_path / "sp.model")
    tokens, spm = load_token_set(model)
    assert len(tokens) == 60 and tokens[0] == BLANK and spm == model.read_bytes()
    tok = Tokenizer(tokens, spm)
    assert tok.subword and any(t.startswith("▁") and len(t) > 1 for t in tokens)
    for s in ["The cat sat on the mat.", "don't quiz jumpy vexing wolves", "seven 7"]:
        ids = tok.encode(s)
        assert 0 not in ids and tok.decode(ids) == " ".join(tok.decode(tok.encode(s)).split())
        assert tok.decode(ids) == tok.decode(tok.encode(tok.decode(ids)))  # a fixed point ...
    assert tok.decode(tok.encode("don't quiz jumpy")) == "don't quiz jumpy"  # ... that spells any normalised text
    # tokens.txt written beside the model reads back as the same set; without the sentencepiece
    # model a subword set still spells every word (longest piece first)
    from_txt, none = load_token_set(tmp_path / "tokens.txt")
    assert from_txt == tokens and none is None
    plain = Tokenizer(from_txt)
    assert plain.decode(plain.encode("the cat quizzed the dog")) == "the cat quizzed the dog"
    assert [from_txt[i] for i in plain.encode("the the")] == ["▁the", "▁the"]
    # CTC collapse merges repeated pieces and keeps word boundaries
    the, cat = tokens.index("▁the"), tok.encode("cat")
    assert tok.ctc_collapse([the, the, 0, the] + cat + [0]) == "the the cat"


def test_blank_last_and_character_tokens_txt_become_edgekd_sets(tmp_path):
    (tmp_path / "nemo.txt").write_text("".join(f"{s} {i}\n" for i, s in enumerate(["▁the", "▁a", "t", "<blank>"])))
    tokens, order = canonical_tokens(read_tokens_txt(tmp_path / "nemo.txt"), "nemo.txt")
    assert tokens == (BLANK, "▁the", "▁a", "t") and order == [3, 0, 1, 2]
    (tmp_path / "chars.txt").write_text(Tokenizer().tokens_txt())
    assert load_token_set(tmp_path / "chars.txt") == (DEFAULT_TOKENS, None)
    assert load_token_set("chars") == (DEFAULT_TOKENS, None)
    (tmp_path / "noblank.txt").write_text("▁a 0\nb 1\n")
    with pytest.raises(EdgekdError, match="no blank symbol"):
        load_token_set(tmp_path / "noblank.txt")
    with pytest.raises(EdgekdError, match="no such file"):
        load_token_set(tmp_path / "missing.model")
    (tmp_path / "bad.model").write_bytes(b"not a protobuf")
    with pytest.raises(EdgekdError, match="not a sentencepiece model"):
        load_token_set(tmp_path / "bad.model")
    with pytest.raises(EdgekdError, match=r"sentencepiece: .*vocab"):  # asked for more pieces than the text has
        train_sentencepiece(["ab ab"], 500, tmp_path / "big.model")


def test_checkpoint_carries_its_token_set_and_refuses_a_mismatched_one(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    from edgekd.audio import FeaturizerConfig
    from edgekd.models import Checkpoint, load_checkpoint, load_preset
    from edgekd.models.conformer import ConformerCTC

    tokens, spm = load_token_set(train_sentencepiece(TEXT, 48, tmp_path / "sp.model"))
    ck = Checkpoint(ConformerCTC(load_preset("tiny", vocab_size=len(tokens))).eval(), FeaturizerConfig(), tokens,
                    "tiny", sentencepiece=spm)
    ck.save(tmp_path / "m.safetensors")
    back = load_checkpoint(tmp_path / "m.safetensors")
    assert back.tokens == tokens and back.sentencepiece == spm and back.tokenizer.encode("the cat") == ck.tokenizer.encode("the cat")
    # a sentencepiece model that spells other tokens is refused with the file named
    other = train_sentencepiece(TEXT[:3] * 10, 40, tmp_path / "o" / "sp.model").read_bytes()
    with safe_open(str(tmp_path / "m.safetensors"), framework="pt") as f:
        meta, sd = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    import base64

    save_file(sd, str(tmp_path / "bad.safetensors"), metadata={**meta, "sentencepiece": base64.b64encode(other).decode()})
    with pytest.raises(EdgekdError, match="bad.safetensors: metadata 'sentencepiece' does not spell"):
        load_checkpoint(tmp_path / "bad.safetensors")


def test_subword_beam_search_without_lm_and_the_word_lm_refuses(tmp_path):
    pytest.importorskip("flashlight.lib.text", reason="beam search needs the [lm] extra (flashlight-text)")
    from edgekd.decode import BeamDecoder, greedy

    tokens, spm = load_token_set(train_sentencepiece(TEXT, 48, tmp_path / "sp.model"))
    tok = Tokenizer(tokens, spm)
    ids = tok.encode("the cat sat on the mat")
    path = [i for t in ids for i in (t, 0)]  # each piece then a blank: a peaky CTC path
    lp = torch.full((1, len(path), len(tokens)), -12.0)
    lp[0, torch.arange(len(path)), torch.tensor(path)] = -0.01
    want = greedy(lp, [len(path)], tok)
    assert want == ["the cat sat on the mat"]
    assert BeamDecoder(tokens, beam_width=8)(lp, [len(path)]) == want
    (tmp_path / "lm.arpa").write_text("\\data\\\nngram 1=1\n\n\\1-grams:\n-1.0\tthe\n\n\\end\\\n")
    with pytest.raises(EdgekdError, match="word LM .* subword"):
        BeamDecoder(tokens, lm_path=str(tmp_path / "lm.arpa"), beam_width=8)


def speak(ck):
    """A few training steps leave a model that says blank everywhere; make it emit many pieces."""
    with torch.no_grad():
        ck.model.head.weight.mul_(8.0)
        ck.model.head.bias[0] -= 30.0
    return ck


@pytest.fixture(scope="module")
def subword_run(tmp_path_factory, corpus):
    """A subword teacher trained a few steps -> its pseudolabels -> a student adopting its tokens."""
    from edgekd.distil import DistilOptions, run_distil
    from edgekd.models import load_checkpoint
    from edgekd.pseudolabel import PseudoLabelOptions, run_pseudolabel
    from edgekd.tokens import run_tokens
    from edgekd.train import TrainOptions, run_train
    from edgekd.train.loop import LoopOptions

    d = tmp_path_factory.mktemp("subword")
    run_tokens([corpus / "source/train.jsonl"], 64, d / "tok/sp.model")
    loop = LoopOptions(max_steps=3, lr=3e-3, warmup_steps=1, eval_every=0, ckpt_every=3, log_every=1, progress=False)
    run_train(TrainOptions(preset="tiny", max_frames=3000, max_dev_utts=2, loop=loop, tokens=str(d / "tok/sp.model")),
              corpus / "source/train.jsonl", corpus / "source/dev.jsonl", d / "teacher")
    speak(load_checkpoint(d / "teacher/model.safetensors")).save(d / "teacher/speaks.safetensors")
    run_pseudolabel(PseudoLabelOptions(workers=1, review_fraction=0.3), corpus / "target/train.jsonl",
                    [str(d / "teacher/speaks.safetensors")], d / "pl", progress=False)
    run_distil(DistilOptions(preset="tiny", loss="kd+ctc", max_frames=3000, max_dev_utts=2, loop=loop, tokens="teacher"),
               d / "pl", d / "student", dev_manifest=corpus / "target/dev.jsonl")
    return d


def test_warm_start_into_another_token_set_keeps_the_encoder_and_renews_the_head(subword_run, corpus,
                                                                                   tiny_ckpt_path, tmp_path):
    """Retraining a character model with subword tokens: --init-new-head takes every weight but the
    output layer (whose shape follows the new tokens); without it the token sets must match."""
    from edgekd.errors import EdgekdError
    from edgekd.models import load_checkpoint
    from edgekd.train import TrainOptions, run_train
    from edgekd.train.loop import LoopOptions

    loop = LoopOptions(max_steps=1, lr=1e-7, warmup_steps=1, eval_every=0, ckpt_every=1, progress=False)
    opts = TrainOptions(preset="tiny", max_frames=3000, max_dev_utts=2, loop=loop, init=str(tiny_ckpt_path),
                        tokens=str(subword_run / "tok/sp.model"))
    with pytest.raises(EdgekdError, match="token set mismatch"):
        run_train(opts, corpus / "source/train.jsonl", None, tmp_path / "a")
    run_train(dataclasses.replace(opts, init_new_head=True), corpus / "source/train.jsonl", None, tmp_path / "b")
    old, new = load_checkpoint(tiny_ckpt_path).model.state_dict(), load_checkpoint(tmp_path / "b/model.safetensors")
    assert new.model.head.weight.shape[0] == len(new.tokens) == 64 != old["head.weight"].shape[0]
    body = [k for k in old if not k.startswith("head.")]
    assert body and all(torch.allclose(new.model.state_dict()[k], old[k], atol=1e-4) for k in body)


def test_a_subword_student_adopts_the_teachers_token_set(subword_run):
    from edgekd.models import load_checkpoint

    want, spm = load_token_set(subword_run / "tok/sp.model")
    teacher = load_checkpoint(subword_run / "teacher/model.safetensors")
    assert teacher.tokens == want and teacher.sentencepiece == spm and teacher.dims.vocab_size == 64
    assert json.loads((subword_run / "pl/meta.json").read_text())["tokens"] == list(want)
    labels = [json.loads(l) for l in (subword_run / "pl/labels.jsonl").read_text().splitlines()]
    assert sum(len(l["text"].split()) for l in labels) >= 5  # the subword 1-best, joined into words
    student = load_checkpoint(subword_run / "student/model.safetensors")
    assert student.tokens == want and student.sentencepiece == spm  # the split travels with the tokens
    hist = [json.loads(l) for l in (subword_run / "student/history.jsonl").read_text().splitlines()]
    assert any("kd" in h and "ctc" in h for h in hist)  # frame KD and CTC on the subword 1-best both ran



def test_frame_kd_needs_the_teachers_token_set():
    from edgekd.distil import DistilOptions

    with pytest.raises(ValueError, match="needs loss='ctc'"):
        DistilOptions(loss="kd+ctc", tokens="spm.model")
    assert DistilOptions(loss="ctc", tokens="spm.model").tokens == "spm.model"  # sequence-level KD may change sets


def test_tokens_train_command(tmp_path, capsys, monkeypatch):
    import sys

    from edgekd.cli import main

    (tmp_path / "text.txt").write_text("\n".join(TEXT))
    monkeypatch.setattr(sys, "argv", ["edgekd", "tokens", "train", "--text", str(tmp_path / "text.txt"), "--vocab", "40",
                                      "--model-type", "unigram", "--out", str(tmp_path / "t/sp.model")])
    with pytest.raises(SystemExit) as e:  # typer ends a command with exit(0)
        main()
    assert e.value.code == 0
    assert "40 unigram tokens from 100 sentences" in capsys.readouterr().out
    tokens, spm = load_token_set(tmp_path / "t/sp.model")
    assert len(tokens) == 40 and read_tokens_txt(tmp_path / "t/tokens.txt") == list(tokens)
    monkeypatch.setattr(sys, "argv", ["edgekd", "tokens", "train", "--text", str(tmp_path / "text.txt"), "--vocab", "5000",
                                      "--out", str(tmp_path / "t/big.model")])
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("edgekd: error: sentencepiece:") and err.count("\n") == 1


def test_sequence_kd_into_another_token_set(subword_run, corpus, tmp_path):
    """--tokens <set> with --loss ctc: a character student learns the subword teacher's 1-best."""
    from edgekd.distil import DistilOptions, run_distil
    from edgekd.models import load_checkpoint
    from edgekd.train.loop import LoopOptions

    loop = LoopOptions(max_steps=2, lr=3e-3, warmup_steps=1, eval_every=0, ckpt_every=2, log_every=1, progress=False)
    run_distil(DistilOptions(preset="tiny", loss="ctc", max_frames=3000, loop=loop, tokens="chars"), subword_run / "pl",
               tmp_path)
    ck = load_checkpoint(tmp_path / "model.safetensors")
    assert ck.tokens == DEFAULT_TOKENS and ck.sentencepiece is None and ck.dims.vocab_size == len(DEFAULT_TOKENS)
    hist = [json.loads(l) for l in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert any(h.get("ctc", 0) > 0 for h in hist)
