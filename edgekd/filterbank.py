"""The filterbank pieces of `edgekd.audio.Featurizer`: analysis windows and mel filters, built the
way kaldi-native-fbank builds them (its default HTK-style banks, and its `is_librosa` mode that
sherpa-onnx uses for NeMo models), so features match sherpa-onnx's to ~1e-4."""

from __future__ import annotations

import math

import numpy as np
import torch


def kaldi_window(kind: str, n: int) -> torch.Tensor:
    # kaldi-native-fbank: "hann" is periodic (torch.hann_window's default), the others symmetric
    a = 2 * math.pi / (n if kind == "hann" else n - 1)
    i = torch.arange(n, dtype=torch.float64)
    if kind == "hamming":
        return 0.54 - 0.46 * torch.cos(a * i)
    w = 0.5 - 0.5 * torch.cos(a * i)
    return w**0.85 if kind == "povey" else w


def _kaldi_mel(cfg) -> np.ndarray:
    """(n_fft//2 + 1, n_mels) triangular HTK-mel filters as Kaldi's MelBanks builds them
    (the Nyquist bin gets no weight, filters are not area-normalised)."""
    def mel(f):
        return 1127.0 * np.log(1.0 + np.asarray(f, dtype=np.float64) / 700.0)

    n_bins = cfg.n_fft // 2
    freqs = np.arange(n_bins) * cfg.sample_rate / cfg.n_fft
    m = mel(freqs)
    lo, hi = mel(cfg.f_min), mel(cfg.f_max)
    delta = (hi - lo) / (cfg.n_mels + 1)
    out = np.zeros((n_bins + 1, cfg.n_mels), np.float64)
    for b in range(cfg.n_mels):
        left, center, right = lo + b * delta, lo + (b + 1) * delta, lo + (b + 2) * delta
        up = (m > left) & (m <= center)
        down = (m > center) & (m < right)
        out[:n_bins][up, b] = (m[up] - left) / (center - left)
        out[:n_bins][down, b] = (right - m[down]) / (right - center)
    return out


def _librosa_mel(cfg) -> np.ndarray:
    """(n_fft//2 + 1, n_mels) slaney-scale, slaney-normalised filters (librosa.filters.mel's defaults)."""
    def mel(f):
        f = np.asarray(f, dtype=np.float64)
        lin = f / (200.0 / 3)
        log_part = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
        return np.where(f >= 1000.0, log_part, lin)

    def hz(m):
        m = np.asarray(m, dtype=np.float64)
        return np.where(m >= 15.0, 1000.0 * np.exp(np.log(6.4) / 27.0 * (m - 15.0)), m * (200.0 / 3))

    freqs = np.arange(cfg.n_fft // 2 + 1) * cfg.sample_rate / cfg.n_fft
    edges = hz(np.linspace(mel(cfg.f_min), mel(cfg.f_max), cfg.n_mels + 2))
    lower = (freqs[None, :] - edges[:-2, None]) / np.diff(edges)[:-1, None]
    upper = (edges[2:, None] - freqs[None, :]) / np.diff(edges)[1:, None]
    w = np.maximum(0.0, np.minimum(lower, upper)) * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return w.T


def mel_filters(cfg) -> np.ndarray:
    """(n_fft//2 + 1, n_mels) filters for a FeaturizerConfig (`cfg.mel`: kaldi or librosa)."""
    return _librosa_mel(cfg) if cfg.mel == "librosa" else _kaldi_mel(cfg)
