"""Audio loading, bad-input handling and quarantine, and the featurizer's properties."""

import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from edgekd.audio import (Featurizer, FeaturizerConfig, Quarantine, check_manifest, featurize, load_audio,
                          probe)
from edgekd.errors import AudioError
from edgekd.manifest import Utterance

SR = 16000


def _speechlike(n, sr=SR, seed=0):
    t = np.arange(n) / sr
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(n)).astype(np.float32)


@pytest.fixture
def files(tmp_path):
    """One good file and one of each kind of bad input, by name."""
    f = {}
    f["good"] = tmp_path / "good.wav"
    sf.write(f["good"], _speechlike(SR), SR)
    f["empty"] = tmp_path / "empty.wav"
    f["empty"].write_bytes(b"")
    f["truncated"] = tmp_path / "truncated.wav"
    sf.write(f["truncated"], _speechlike(SR), SR)
    f["truncated"].write_bytes(f["truncated"].read_bytes()[:30])
    f["not_audio"] = tmp_path / "notes.wav"
    f["not_audio"].write_text("this is a text file, not audio\n" * 20)
    f["nan"] = tmp_path / "nan.wav"
    x = _speechlike(SR)
    x[100:200] = np.nan
    sf.write(f["nan"], x, SR, subtype="FLOAT")
    f["silent"] = tmp_path / "silent.wav"
    sf.write(f["silent"], np.zeros(SR, np.float32), SR)
    f["too_long"] = tmp_path / "long.flac"
    sf.write(f["too_long"], np.tile(_speechlike(SR), 121), SR)
    f["too_short"] = tmp_path / "short.wav"
    sf.write(f["too_short"], _speechlike(400), SR)
    f["missing"] = tmp_path / "missing.wav"
    return f


EXPECTED = {"empty": "empty", "truncated": "unreadable", "not_audio": "unreadable", "nan": "non-finite",
            "silent": "silent", "too_long": "too-long", "too_short": "too-short", "missing": "missing"}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_bad_input_named_error(files, kind):
    with pytest.raises(AudioError) as ei:
        load_audio(files[kind])
    assert ei.value.reason == EXPECTED[kind]
    assert str(files[kind]) in str(ei.value)


def test_unreadable_permissions(files):
    p = files["good"]
    os.chmod(p, 0)
    try:
        if os.access(p, os.R_OK):
            pytest.skip("running as root: chmod 000 does not stop reading, so this case can't be produced")
        with pytest.raises(AudioError, match="permission-denied"):
            load_audio(p)
    finally:
        os.chmod(p, 0o644)


@pytest.mark.parametrize("sr,channels", [(8000, 1), (48000, 1), (44100, 2), (16000, 8)])
def test_other_rates_and_channels_are_converted(tmp_path, sr, channels):
    x = np.stack([_speechlike(sr * 2, sr, seed=c) for c in range(channels)], axis=1)
    p = tmp_path / f"x_{sr}_{channels}.wav"
    sf.write(p, x, sr)
    y = load_audio(p)
    assert y.ndim == 1 and y.dtype == np.float32
    assert abs(len(y) - 2 * SR) <= 2  # 2 s at 16 kHz
    assert probe(p) == {"duration": pytest.approx(2.0), "sample_rate": sr, "channels": channels}


def test_batch_quarantines_bad_and_keeps_all_good(files, tmp_path):
    utts = [Utterance(id=k, audio=str(p)) for k, p in files.items()]
    utts.append(Utterance(id="good2", audio=str(files["good"])))
    q = Quarantine(tmp_path / "rejected.jsonl", stage="test")
    good, n_bad = check_manifest(utts, q)
    assert [u.id for u in good] == ["good", "good2"]
    assert good[0].duration == pytest.approx(1.0) and good[0].sample_rate == SR
    recs = [json.loads(l) for l in (tmp_path / "rejected.jsonl").read_text().splitlines()]
    assert n_bad == q.count == len(recs) == len(EXPECTED)
    assert {r["id"]: r["reason"] for r in recs} == EXPECTED


@pytest.mark.parametrize("n", [400, 401, 559, 560, 16000, 16001, 33333])
def test_featurizer_lengths_and_shapes(n):
    cfg = FeaturizerConfig()
    feats, lens = featurize([_speechlike(n)], cfg)
    assert feats.shape == (1, cfg.num_frames(n), 80) and int(lens[0]) == cfg.num_frames(n)
    assert torch.isfinite(feats).all()


def test_featurizer_padding_is_zero_and_batch_equals_single():
    waves = [_speechlike(16000, seed=1), _speechlike(7000, seed=2)]
    feats, lens = featurize(waves)
    assert torch.all(feats[1, int(lens[1]):] == 0)
    single, _ = featurize(waves[1:])
    assert torch.allclose(feats[1, : int(lens[1])], single[0], atol=1e-4)


@pytest.mark.parametrize("cfg", [FeaturizerConfig(), FeaturizerConfig(window="hann", remove_dc_offset=False),
                                 FeaturizerConfig(preemphasis=0.0, window="hamming", f_min=0.0, f_max=8000.0)])
@pytest.mark.parametrize("n", [401, 12345, 16000])
def test_featurizer_matches_kaldi_native_fbank(cfg, n):
    """Same features as kaldi-native-fbank, the library sherpa-onnx computes them with on a device."""
    import kaldi_native_fbank as knf  # a declared dependency: never skipped
    x = _speechlike(n, seed=n)
    o = knf.FbankOptions()
    o.frame_opts.dither = 0
    o.frame_opts.snip_edges = False
    o.frame_opts.window_type = cfg.window
    o.frame_opts.remove_dc_offset = cfg.remove_dc_offset
    o.frame_opts.preemph_coeff = cfg.preemphasis
    o.mel_opts.num_bins = cfg.n_mels
    o.mel_opts.low_freq = cfg.f_min
    o.mel_opts.high_freq = cfg.f_max
    fb = knf.OnlineFbank(o)
    fb.accept_waveform(SR, x.tolist())
    fb.input_finished()
    ref = np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)])
    ours, lens = featurize([x], cfg)
    assert ours.shape[1] == int(lens[0]) == len(ref) == cfg.num_frames(n)
    assert np.abs(ours[0].numpy() - ref).max() < 1e-3


def test_featurizer_exports_to_onnx(tmp_path):
    import onnxruntime as ort

    fz = Featurizer().eval()
    wave = torch.from_numpy(np.stack([_speechlike(8000), _speechlike(8000, seed=3)]))
    lens = torch.tensor([8000, 6000])
    n = torch.export.Dim("N", min=400, max=16000 * 60)
    path = tmp_path / "fz.onnx"
    torch.onnx.export(fz, (wave, lens), str(path), dynamo=True, input_names=["wave", "lens"],
                      dynamic_shapes=({1: n}, None), opset_version=18)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for m in (8000, 12345):
        w = np.stack([_speechlike(m), _speechlike(m, seed=4)])
        l = np.array([m, m - 500])
        got = sess.run(None, {"wave": w, "lens": l})[0]
        want = fz(torch.from_numpy(w), torch.from_numpy(l))[0].numpy()
        assert got.shape == want.shape
        assert np.abs(got - want).max() < 1e-3
