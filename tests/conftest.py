"""Shared test fixtures: one torch thread (the box has 2 cores shared by parallel tests)."""

import os
from pathlib import Path

import pytest
import torch

# The files that take longest (40-90 s each on this box), run first: `--dist loadfile` hands files
# to the two workers in collection order (pyproject's --no-loadscope-reorder; xdist otherwise
# orders files by test count), one at a time, so long files started last leave one worker idle
# at the end (38 s of imbalance measured). Longest first is the classic fix; the list only
# orders, so a stale entry costs balance, never a test.
SLOW_FIRST = ("test_fit.py", "test_export.py", "test_transcribe_verify.py", "test_pipeline.py",
              "test_faults_resume.py", "test_pseudolabel_ray.py", "test_streaming.py", "test_faults_disk.py")


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda it: rank.get(it.path.name, len(rank)))  # stable: file order kept otherwise


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    torch.set_num_threads(1)
    yield


def _run_root(tmp_path_factory) -> Path:
    """A folder of this test run that every xdist worker sees (their base temps are its children)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # never /tmp/pytest-of-<user>


def _once_per_run(tmp_path_factory, name: str, build) -> Path:
    """<run root>/shared/<name>, made by `build(folder)` by whichever worker asks first (under a file
    lock; the other waits, then reuses it). A build that died leaves no manifest.json: redone."""
    import fcntl
    import shutil

    d = _run_root(tmp_path_factory) / "shared" / name
    d.parent.mkdir(parents=True, exist_ok=True)
    with open(d.parent / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (d / "manifest.json").exists():  # run_synth writes its stage manifest last
            shutil.rmtree(d, ignore_errors=True)
            build(d)
    return d


@pytest.fixture(autouse=True, scope="session")
def _graph_cache(tmp_path_factory):
    """One on-disk ONNX graph cache for the run, shared by the xdist workers: several files export
    the same fixture weights, at 8-15 s a dynamo export."""
    os.environ.setdefault("EDGEKD_GRAPH_CACHE", str(_run_root(tmp_path_factory) / "onnx-graphs"))
    yield


@pytest.fixture
def tiny_model():
    """A randomly initialised ~40k-param conformer with the default featurizer and tokens."""
    from edgekd.audio import FeaturizerConfig
    from edgekd.models import Checkpoint, load_preset
    from edgekd.models.conformer import ConformerCTC
    from edgekd.tokens import DEFAULT_TOKENS

    torch.manual_seed(0)
    return Checkpoint(model=ConformerCTC(load_preset("tiny")).eval(), featurizer=FeaturizerConfig(),
                      tokens=DEFAULT_TOKENS, preset="tiny", role="test")


@pytest.fixture(scope="session")
def tiny_ckpt_path(tmp_path_factory):
    """A seed-0 tiny conformer checkpoint saved once for the test run (read-only by convention)."""
    from edgekd.audio import FeaturizerConfig
    from edgekd.models import Checkpoint, load_preset
    from edgekd.models.conformer import ConformerCTC
    from edgekd.tokens import DEFAULT_TOKENS

    torch.manual_seed(0)
    p = tmp_path_factory.mktemp("tiny") / "teacher.safetensors"
    Checkpoint(ConformerCTC(load_preset("tiny")).eval(), FeaturizerConfig(), DEFAULT_TOKENS, "tiny").save(p)
    return p


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """The one synthetic corpus of the test run (espeak only, ~4 min of speech), synthesized once.

    source/{train,dev,test} are clean (dev and test ~14 utterances each: drift's two halves);
    target/{train,dev,test} drifted, with hidden references in target/train.ref.jsonl.
    Read-only by convention: a test that needs to change data writes its own files beside it.
    """
    from edgekd.synth import SynthOptions, run_synth

    return _once_per_run(tmp_path_factory, "corpus", lambda d: run_synth(SynthOptions(
        seed=21, hours_source=0.04, hours_target=0.02, dev_fraction=0.3, test_fraction=0.3, min_split_utts=2,
        piper_fraction=0.0, workers=1), d, progress=False))


# ------------------------------------------------------------------ the fault suite (test_faults_*.py)


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory):
    """A smaller synthetic corpus (~35 s; target/train >= 4 utterances) for tests that train or
    label it many times over, e.g. once per SIGKILL."""
    from edgekd.synth import SynthOptions, run_synth

    return _once_per_run(tmp_path_factory, "small_corpus", lambda d: run_synth(SynthOptions(
        seed=3, hours_source=0.006, hours_target=0.004, min_split_utts=2, piper_fraction=0.0), d, progress=False))


@pytest.fixture(scope="session")
def teacher(tiny_ckpt_path):
    return tiny_ckpt_path  # the shared seed-0 tiny checkpoint (a module may override it)


@pytest.fixture(scope="session")
def good_ckpt(tiny_ckpt_path):
    return tiny_ckpt_path  # a checkpoint that loads: the base the hostile ones are made from


@pytest.fixture(scope="module")
def fault_counts():
    """Prints what the fault suite tried so far (`pytest -s`), after each of its files."""
    import json

    from faultkit import COUNTS

    yield
    print("\nfault suite counts:", json.dumps(COUNTS, sort_keys=True))


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory):
    """A tiny randomly initialised wav2vec2 CTC model + processor saved locally (no download)."""
    pytest.importorskip("transformers", reason="hf: models need the [hf] extra (transformers)")
    import json

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


@pytest.fixture(scope="session")
def tiny_whisper_dir(tmp_path_factory):
    """A tiny randomly initialised Whisper (1+1 layers, d=32) with a byte-level BPE tokenizer made
    here (the 256 byte symbols, three merges, Whisper's special tokens), saved locally: no download."""
    pytest.importorskip("transformers", reason="hf: models need the [hf] extra (transformers)")
    import json

    from transformers import (GenerationConfig, WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration,
                              WhisperProcessor, WhisperTokenizer)

    d = tmp_path_factory.mktemp("whisper")
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in printable]  # GPT-2's byte -> symbol table
    symbols = [chr(b) for b in printable] + [chr(256 + i) for i in range(len(extra))]
    merges = ["Ġ t", "h e", "Ġt he"]
    vocab = {s: i for i, s in enumerate(symbols)} | {m.replace(" ", ""): 256 + i for i, m in enumerate(merges)}
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    eot = "<|endoftext|>"
    tok = WhisperTokenizer(str(d / "vocab.json"), str(d / "merges.txt"), unk_token=eot, bos_token=eot, eos_token=eot,
                           pad_token=eot)
    tok.add_special_tokens({"additional_special_tokens": ["<|startoftranscript|>", "<|en|>", "<|transcribe|>",
                                                          "<|notimestamps|>"]})
    WhisperProcessor(WhisperFeatureExtractor(feature_size=80), tok).save_pretrained(d)
    ids = {s: tok.convert_tokens_to_ids(s) for s in (eot, "<|startoftranscript|>", "<|notimestamps|>")}
    cfg = WhisperConfig(vocab_size=len(tok), num_mel_bins=80, encoder_layers=1, decoder_layers=1, d_model=32,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                        max_target_positions=64, pad_token_id=ids[eot], bos_token_id=ids[eot], eos_token_id=ids[eot],
                        decoder_start_token_id=ids["<|startoftranscript|>"])
    torch.manual_seed(0)
    m = WhisperForConditionalGeneration(cfg).eval()
    # as Whisper's own config does: symbols it must never say are suppressed (here all but letters,
    # the word start and end-of-text, so a random model speaks words), and never end-of-text first
    speak = {vocab[c] for c in "abcdefghijklmnopqrstuvwxyzĠ"} | set(range(256, 259)) | {ids[eot]}
    m.generation_config = GenerationConfig(decoder_start_token_id=ids["<|startoftranscript|>"], eos_token_id=ids[eot],
                                           pad_token_id=ids[eot], no_timestamps_token_id=ids["<|notimestamps|>"],
                                           suppress_tokens=[i for i in range(len(tok)) if i not in speak],
                                           begin_suppress_tokens=[ids[eot]])
    m.save_pretrained(d)
    return d
