"""Acoustic drift and augmentation: noise, reverberation, telephone band, gain, speed, pitch, codecs.

All effects take a numpy Generator so a (seed, utterance) pair always gives the same audio.
`drift_params` turns one strength knob into per-utterance settings: 0 leaves audio clean,
1 is the demo's default drift, larger is harsher.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from edgekd.audio import SAMPLE_RATE

NOISE_TYPES = ("white", "pink", "brown", "hum", "babble")


def _colored(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Noise with power ∝ 1/f^exponent (0 white, 1 pink, 2 brown), shaped in the frequency domain."""
    spec = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    f[0] = f[1] if n > 2 else 1.0
    x = np.fft.irfft(spec / f ** (exponent / 2), n)
    return x / (np.std(x) + 1e-12)


def make_noise(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    """Unit-variance noise of `kind` (one of NOISE_TYPES), length n."""
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind == "pink":
        x = _colored(rng, n, 1.0)
    elif kind == "brown":
        x = _colored(rng, n, 2.0)
    elif kind == "hum":  # mains hum with harmonics plus a little hiss
        t = np.arange(n) / SAMPLE_RATE
        f0 = rng.choice([50.0, 60.0])
        x = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi)) / h for h in range(1, 8))
        x = x + 0.1 * rng.standard_normal(n)
    elif kind == "babble":  # speech-shaped noise, syllable-rate modulated (crowd-like)
        b, a = signal.butter(2, [200, 3000], btype="band", fs=SAMPLE_RATE)
        x = np.zeros(n)
        for _ in range(6):
            env = np.repeat(np.abs(rng.standard_normal(n // 800 + 2)), 800)[:n]  # ~20 Hz modulation
            x += signal.lfilter(b, a, rng.standard_normal(n)) * signal.lfilter([1.0], [1, -0.99], env) * 0.05
    else:
        raise ValueError(f"unknown noise type {kind!r}; known: {', '.join(NOISE_TYPES)}")
    x = np.asarray(x, dtype=np.float64)
    return x / (np.std(x) + 1e-12)


def add_noise(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Mix so that 10 log10(P_speech / P_noise) = snr_db (powers over the whole clip)."""
    ps = np.mean(x.astype(np.float64) ** 2)
    pn = np.mean(noise ** 2) + 1e-20
    return (x + noise * np.sqrt(ps / (pn * 10 ** (snr_db / 10)))).astype(np.float32)


def reverb(x: np.ndarray, rng: np.random.Generator, rt60: float) -> np.ndarray:
    """Convolve with a synthetic room impulse response: exponentially decaying noise (-60 dB at rt60)
    after a direct path; output keeps the input's length and RMS."""
    n = int(rt60 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    rir = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)
    rir[0] = 1.0
    y = signal.fftconvolve(x, rir)[: len(x)]
    return (y * np.sqrt(np.mean(x ** 2) / (np.mean(y ** 2) + 1e-20))).astype(np.float32)


def telephone(x: np.ndarray) -> np.ndarray:
    """Narrowband telephone: 300-3400 Hz band-pass, 8 kHz round trip, mu-law 8-bit companding."""
    import soxr

    sos = signal.butter(6, [300, 3400], btype="band", fs=SAMPLE_RATE, output="sos")
    y = signal.sosfilt(sos, x)
    y = soxr.resample(y, SAMPLE_RATE, 8000, quality="HQ")
    peak = np.max(np.abs(y)) + 1e-9
    mu = 255.0
    c = np.sign(y / peak) * np.log1p(mu * np.abs(y / peak)) / np.log1p(mu)
    c = np.round(c * 127) / 127  # 8-bit
    y = np.sign(c) * ((1 + mu) ** np.abs(c) - 1) / mu * peak
    return soxr.resample(y, 8000, SAMPLE_RATE, quality="HQ")[: len(x)].astype(np.float32)


def speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Speed perturbation (tempo and pitch, as Kaldi's): factor > 1 is faster/shorter."""
    import soxr

    return soxr.resample(x, int(round(SAMPLE_RATE * factor)), SAMPLE_RATE, quality="HQ").astype(np.float32)


def pitch_shift(x: np.ndarray, semitones: float) -> np.ndarray:
    """Pitch (and formant) shift at constant tempo: a stand-in for another vocal tract (librosa)."""
    import librosa

    return librosa.effects.pitch_shift(x.astype(np.float32), sr=SAMPLE_RATE, n_steps=semitones,
                                       res_type="soxr_hq").astype(np.float32)


CODECS = ("lowpass", "mulaw", "telephone")


def codec(x: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Channel/codec degradations: band-limited capture, 8-bit mu-law, narrowband telephone."""
    if kind == "lowpass":  # cheap microphones and low-bitrate codecs cut the top band
        sos = signal.butter(8, float(rng.uniform(3500, 6000)), btype="low", fs=SAMPLE_RATE, output="sos")
        return signal.sosfilt(sos, x).astype(np.float32)
    if kind == "mulaw":  # 8-bit mu-law at 16 kHz (G.711-style quantisation without the band limit)
        peak = np.max(np.abs(x)) + 1e-9
        c = np.sign(x / peak) * np.log1p(255 * np.abs(x / peak)) / np.log1p(255)
        c = np.round(c * 127) / 127
        return (np.sign(c) * (256 ** np.abs(c) - 1) / 255 * peak).astype(np.float32)
    if kind == "telephone":
        return telephone(x)
    raise ValueError(f"unknown codec {kind!r}; known: {', '.join(CODECS)}")


def gain(x: np.ndarray, db: float) -> np.ndarray:
    return np.clip(x * 10 ** (db / 20), -1.0, 1.0).astype(np.float32)


def drift_params(rng: np.random.Generator, strength: float) -> dict:
    """Per-utterance drift settings for a strength knob (0 none, 1 default, >1 harsher).

    At 1: noise on every clip at 5-15 dB SNR, reverb (RT60 0.2-0.6 s) on half, telephone band on
    a quarter, gain within ±6 dB. The SNR range slides down 10 dB per unit of strength.
    """
    if strength <= 0:
        return {}
    p: dict = {"noise": str(rng.choice(NOISE_TYPES)),
               "snr_db": round(float(rng.uniform(25 - 20 * strength, 35 - 20 * strength)), 2)}
    if rng.random() < min(1.0, 0.5 * strength):
        p["reverb_rt60"] = round(float(rng.uniform(0.2, 0.2 + 0.4 * strength)), 3)
    if rng.random() < min(1.0, 0.25 * strength):
        p["telephone"] = True
    p["gain_db"] = round(float(rng.uniform(-6, 6) * min(strength, 2.0)), 2)
    return p


def apply_drift(x: np.ndarray, rng: np.random.Generator, params: dict) -> np.ndarray:
    """Apply `drift_params` output in a fixed order: reverb, telephone, noise, gain."""
    if "reverb_rt60" in params:
        x = reverb(x, rng, params["reverb_rt60"])
    if params.get("telephone"):
        x = telephone(x)
    if "noise" in params:
        x = add_noise(x, make_noise(rng, len(x), params["noise"]), params["snr_db"])
    if "gain_db" in params:
        peak = np.max(np.abs(x)) + 1e-9
        x = gain(x, min(params["gain_db"], 20 * np.log10(0.99 / peak)))  # never clip
    return x.astype(np.float32)
