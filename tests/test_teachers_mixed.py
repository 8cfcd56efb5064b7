"""Teachers that are not plain CTC: a tiny Whisper made here (hard labels + confidence), a mixed
ensemble (CTC soft targets + the seq2seq transcript), distil-whisper's WER filter, and teachers
at different sample rates each hearing the audio at its own rate."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from edgekd.errors import EdgekdError
from edgekd.teachers import load_teacher
from edgekd.tokens import ALPHABET, DEFAULT_TOKENS


def _waves(n=3):
    rng = np.random.default_rng(0)
    return [(0.1 * rng.standard_normal(16000 + 4000 * i)).astype(np.float32) for i in range(n)]


def test_whisper_teacher_gives_normalised_labels_and_their_confidence(tiny_whisper_dir):
    t = load_teacher(f"hf:{tiny_whisper_dir}")
    assert t.kind == "seq2seq" and t.sample_rate == 16000 and t.featurizer is None
    waves = _waves()
    got = t.transcribe(waves)
    assert len(got) == 3
    for (text, conf), w in zip(got, waves):
        assert text and set(text) <= set(ALPHABET + " ") and 0 < conf <= 1
        # the confidence is exp(mean token log-prob) of exactly this transcript: rescore it with
        # the whole sequence given at once (no cache), end-of-text included
        feats = t.processor.feature_extractor([w], sampling_rate=16000, return_tensors="pt")["input_features"]
        ids = t.processor.tokenizer(text, add_special_tokens=False)["input_ids"]
        seq = torch.tensor([t.prompt + ids + [t.eos]])
        with torch.no_grad():
            lp = t.model(input_features=feats, decoder_input_ids=seq[:, :-1]).logits.float().log_softmax(-1)
        n = len(t.prompt)
        tok_lp = lp[0, n - 1:].gather(-1, seq[0, n:, None])[:, 0]
        assert abs(float(tok_lp.mean().exp()) - conf) < 1e-4


def test_mixed_ensemble_and_the_wer_filter(tiny_whisper_dir, tiny_ckpt_path, tmp_path):
    from edgekd.manifest import Utterance, read_manifest, write_manifest
    from edgekd.pseudolabel import PseudoLabelOptions, run_pseudolabel
    from edgekd.softtargets import SoftTargets

    waves = _waves()
    whisper = load_teacher(f"hf:{tiny_whisper_dir}").transcribe(waves)
    refs = [whisper[0][0], "a reference the teacher does not say", None]  # agrees / disagrees / unlabelled
    utts = []
    for i, (w, ref) in enumerate(zip(waves, refs)):
        sf.write(tmp_path / f"u{i}.wav", w, 16000)
        utts.append(Utterance(id=f"u{i}", audio=str(tmp_path / f"u{i}.wav"), duration=len(w) / 16000, text=ref))
    man = write_manifest(tmp_path / "m.jsonl", utts)
    opts = PseudoLabelOptions(workers=1, review_fraction=0.0, wer_filter=True)
    m = json.loads(run_pseudolabel(opts, man, [str(tiny_ckpt_path), f"hf:{tiny_whisper_dir}"], tmp_path / "pl",
                                   progress=False).read_text())
    labels = {l["id"]: l for l in map(json.loads, (tmp_path / "pl/labels.jsonl").read_text().splitlines())}
    for i, (text, conf) in enumerate(whisper):  # the seq2seq teacher's transcript and confidence ...
        assert labels[f"u{i}"]["text"] == text and abs(labels[f"u{i}"]["confidence"] - conf) < 1e-5
    st = SoftTargets(tmp_path / "pl")  # ... over the CTC teacher's soft targets
    assert st.tokens == DEFAULT_TOKENS and all(f"u{i}" in st for i in range(3))
    assert labels["u1"]["route"] == "dropped" and labels["u0"]["route"] == labels["u2"]["route"] == "distil"
    assert m["metrics"]["wer_filter"] == {"threshold": 0.1, "checked": 2, "dropped": 1}
    assert sorted(u.id for u in read_manifest(tmp_path / "pl/distil.jsonl")) == ["u0", "u2"]


def test_a_seq2seq_teacher_alone_or_twice_is_one_clear_line(tiny_whisper_dir):
    from edgekd.pseudolabel import Ensemble

    with pytest.raises(EdgekdError, match="gives transcripts, not frame posteriors: add a CTC teacher"):
        Ensemble([f"hf:{tiny_whisper_dir}"])
    with pytest.raises(EdgekdError, match="both give transcripts only"):
        Ensemble([f"hf:{tiny_whisper_dir}", f"hf:{tiny_whisper_dir}"])


def test_each_teacher_hears_the_audio_at_its_own_sample_rate(tmp_path):
    """Two copies of one linear CTC graph (100 frames/s), one declaring 8 kHz: the ensemble feeds
    16 kHz audio, the 8 kHz teacher gets it resampled, exactly as if it were called on its own."""
    from test_onnx_teacher import _linear_graph

    from edgekd.audio import resample
    from edgekd.pseudolabel import Ensemble

    _linear_graph(tmp_path / "a", "zipformer2_ctc", DEFAULT_TOKENS)
    _linear_graph(tmp_path / "b", "zipformer2_ctc", DEFAULT_TOKENS, extra_meta={"sample_rate": "8000"})
    ens = Ensemble([f"onnx:{tmp_path / 'a'}", f"onnx:{tmp_path / 'b'}"], weights=[0.0, 1.0])
    assert [t.sample_rate for t in ens.teachers] == [16000, 8000] and ens.sample_rate == 16000
    waves = _waves(2)
    lp, lens = ens(waves)
    alone = ens.teachers[1]([resample(w, 16000, 8000) for w in waves])
    n = int(lens[0])
    assert torch.allclose(lp[0, :n], alone.logits[0, :n].log_softmax(-1), atol=1e-4)


def test_a_teacher_with_more_tokens_than_shards_hold_is_one_line(tmp_path):
    """Shards hold 16-bit token ids: a 301-piece ONNX teacher is taken (format 2 shards, see
    test_softtargets), a set past 65,536 is refused in one line before any audio is read."""
    from test_onnx_teacher import _linear_graph

    from edgekd.pseudolabel import Ensemble

    _linear_graph(tmp_path / "a", "zipformer2_ctc", ["<blk>"] + [f"▁w{i}" for i in range(300)])
    assert len(Ensemble([f"onnx:{tmp_path / 'a'}"]).tokens) == 301
    _linear_graph(tmp_path / "b", "zipformer2_ctc", ["<blk>"] + [f"▁w{i}" for i in range(65536)])
    with pytest.raises(EdgekdError, match="65537 tokens; soft-target shards hold at most 65536"):
        Ensemble([f"onnx:{tmp_path / 'b'}"])


def test_whisper_transcribes_through_eval_and_transcribe(tiny_whisper_dir, tmp_path):
    """The other doors a teacher spec opens: `edgekd eval` scores its transcripts, `transcribe`
    prints them, and drift (which needs an encoder embedding) refuses it in one line."""
    from edgekd.drift import DriftOptions, run_drift
    from edgekd.evaluate import run_eval
    from edgekd.export.runtime import HFRuntime
    from edgekd.manifest import Utterance, write_manifest

    t = load_teacher(f"hf:{tiny_whisper_dir}")
    w = _waves(1)[0]
    text = t.transcribe([w])[0][0]
    sf.write(tmp_path / "u.wav", w, 16000)
    man = write_manifest(tmp_path / "m.jsonl", [Utterance(id="u", audio=str(tmp_path / "u.wav"), duration=1.0, text=text)])
    assert run_eval(f"hf:{tiny_whisper_dir}", man, tmp_path / "ev", progress=False)["wer"] == 0.0
    assert HFRuntime(str(tiny_whisper_dir)).decode(w).text == text
    with pytest.raises(EdgekdError, match="seq2seq teacher gives no encoder embedding"):
        run_drift(DriftOptions(), man, man, tmp_path / "drift", teacher=f"hf:{tiny_whisper_dir}")
