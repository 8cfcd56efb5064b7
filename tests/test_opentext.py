"""Open-vocabulary synthesis: sentence-level split, every engine, deterministic augmentation."""

import random

import numpy as np
import pytest

from edgekd.manifest import read_manifest
from edgekd.synth import SynthOptions, effects, engines, opentext, run_synth
from edgekd.tokens import DEFAULT_TOKENS

needs_text = pytest.mark.skipif(not (opentext.WORDNET_DIR.is_dir() or opentext.FORTUNE_DIR.is_dir()),
                                reason="open text needs Debian wordnet-base / fortunes (apt-get install)")


@needs_text
def test_sentence_split_has_no_overlap_and_is_wide():
    pool = opentext.sentence_pool()
    sets = {s: {t for src in pool[s].values() for _, t in src} for s in pool}
    assert not sets["train"] & sets["test"] and not sets["train"] & sets["dev"] and not sets["dev"] & sets["test"]
    assert all(opentext.split_of(t) == s for s in sets for t in list(sets[s])[:2000])
    assert len(sets["test"]) > 500 and len(sets["train"]) > 20 * len(sets["test"])
    assert len(opentext.vocabulary("train")) > 20000  # tens of thousands of word types
    allowed = set("".join(DEFAULT_TOKENS[1:]))
    assert all(set(t) <= allowed for t in list(sets["train"])[:5000])


def test_clean_refuses_what_tts_would_read_differently():
    assert opentext.clean("The cat sat on the mat.") == ("The cat sat on the mat.", "the cat sat on the mat")
    for bad in ("It costs $5 today", "Call Dr. Smith now please", "The NASA launch was late", "Q: why not me",
                "Two", "see the e.g. example here", "an odd line -- with dashes here"):
        assert opentext.clean(bad) is None, bad
    assert opentext.clean('pure rot and folly"- Hal Hinson') == ("Pure rot and folly", "pure rot and folly")


@pytest.mark.parametrize("engine", ["espeak", "piper", "flite"])
def test_each_engine_renders(engine):
    why = engines.available()[engine]
    if why:
        pytest.skip(f"{engine} missing here: {why}")
    rng = random.Random(0)
    voice = {"espeak": lambda: engines.sample_espeak_voice(rng, False), "piper": lambda: engines.sample_piper_voice(rng),
             "flite": lambda: engines.sample_flite_voice(rng)}[engine]()
    x = engines.synthesize("the quick brown fox jumps over the lazy dog", voice)
    assert x.dtype == np.float32 and 1.0 < len(x) / 16000 < 6.0 and np.abs(x).max() > 0.01
    assert np.array_equal(x, engines.synthesize("the quick brown fox jumps over the lazy dog", voice))


def test_missing_engine_is_skipped_with_one_line(tmp_path, monkeypatch, capsys):
    real = engines.available
    monkeypatch.setattr(engines, "available", lambda: {**real(), "flite": "the flite binary is missing (apt-get install flite)"})
    o = SynthOptions(seed=3, hours_source=0.002, hours_target=0.0, min_split_utts=2, engines=("espeak", "flite"),
                     piper_fraction=0.0, flite_fraction=0.5, held_out_voices=("flite:rms",), hours_unseen=0.001, workers=1)
    run_synth(o, tmp_path, progress=False)
    assert "skipping engine flite: the flite binary is missing" in capsys.readouterr().out
    used = {u.tags["engine"] for u in read_manifest(tmp_path / "source/train.jsonl")}
    assert used == {"espeak"} and not (tmp_path / "source/test_unseen.jsonl").exists()


def test_augmentations_deterministic_and_real():
    rng = np.random.default_rng(0)
    x = (0.3 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000)).astype(np.float32)
    up = effects.pitch_shift(x, 3.0)
    assert len(up) == len(x) and np.array_equal(up, effects.pitch_shift(x, 3.0))
    f = np.fft.rfftfreq(len(x), 1 / 16000)
    assert abs(f[np.abs(np.fft.rfft(up)).argmax()] - 220 * 2 ** (3 / 12)) < 5  # 3 semitones up
    for kind in effects.CODECS:
        y1, y2 = effects.codec(x, kind, np.random.default_rng(1)), effects.codec(x, kind, np.random.default_rng(1))
        assert np.array_equal(y1, y2) and len(y1) == len(x) and not np.allclose(y1, x, atol=1e-3)
    with pytest.raises(ValueError, match="unknown codec"):
        effects.codec(x, "mp3", rng)


@needs_text
def test_open_corpus_held_out_voice_and_same_seed_identical(tmp_path):
    if engines.available()["flite"]:
        pytest.skip("flite missing here")
    o = SynthOptions(seed=11, text="open", hours_source=0.01, hours_target=0.002, min_split_utts=3,
                     engines=("espeak", "piper", "flite"), piper_fraction=0.1, flite_fraction=0.4,
                     held_out_voices=("flite:rms",), hours_unseen=0.002, speed_perturb=True, pitch_perturb=0.5,
                     codec_fraction=0.5, source_drift=0.5, workers=2)
    run_synth(o, tmp_path / "a", progress=False)
    run_synth(SynthOptions(**{**o.__dict__, "workers": 1}), tmp_path / "b", progress=False)
    for split in ("source/train", "source/test", "source/test_unseen", "target/test"):
        a, b = read_manifest(tmp_path / "a" / f"{split}.jsonl"), read_manifest(tmp_path / "b" / f"{split}.jsonl")
        assert [u.md5 for u in a] == [u.md5 for u in b] and a
    train = read_manifest(tmp_path / "a/source/train.jsonl")
    assert all(opentext.split_of(u.text) == "train" for u in train)
    assert all(opentext.split_of(u.text) == "test" for u in read_manifest(tmp_path / "a/source/test.jsonl"))
    assert all(u.speaker != "flite:rms" for u in train)
    assert {u.speaker for u in read_manifest(tmp_path / "a/source/test_unseen.jsonl")} == {"flite:rms"}
    assert any("pitch_semitones" in u.tags for u in train) and any("codec" in u.tags for u in train)
    assert (tmp_path / "a/text/train.txt").exists()


def test_options_refuse_conflicts():
    with pytest.raises(ValueError, match="flite_fraction"):
        SynthOptions(flite_fraction=0.2)  # engines without flite
    with pytest.raises(ValueError, match="held_out_voices"):
        SynthOptions(engines=("espeak", "flite"), piper_fraction=0, held_out_voices=("espeak:m1",))
    with pytest.raises(ValueError, match="text"):
        SynthOptions(text="faker")
