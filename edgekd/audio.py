"""Audio loading and checking, quarantine of bad files, and THE featurizer.

Every model edgekd trains or exports reads features made by `Featurizer` with the settings in
`FeaturizerConfig`; those settings are stored in every checkpoint and exported artifact, so a
model and its features cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekd.errors import AudioError
from edgekd.filterbank import kaldi_window, mel_filters

SAMPLE_RATE = 16000
MIN_DURATION = 0.1  # s; shorter is not speech for a CTC model with x4 subsampling
MAX_DURATION = 120.0  # s; longer is almost surely a wrong file (a whole recording, not an utterance)
SILENCE_RMS = 1e-4  # below -80 dBFS everywhere: silence or a digital zero file


@dataclass(frozen=True)
class FeaturizerConfig:
    """Kaldi-style log-mel filterbank, bit-for-bit the recipe of kaldi-native-fbank.

    The defaults are exactly what the sherpa-onnx runtime computes for its CTC models of type
    `zipformer2_ctc` (FeatureExtractorConfig defaults: povey window, DC removal, 0.97 pre-emphasis
    per frame, 20-7600 Hz HTK mel bands, no dither, snip_edges=false, log floor FLT_EPSILON), so a
    model trained here runs on a Pi/phone under sherpa-onnx with the features it was trained on.
    """

    sample_rate: int = SAMPLE_RATE  # Hz the model expects; audio is resampled to it
    n_fft: int = 512  # FFT size (window zero-padded to it)
    win_length: int = 400  # 25 ms analysis window
    hop_length: int = 160  # 10 ms frame shift -> 100 frames/s
    n_mels: int = 80  # mel bands
    f_min: float = 20.0
    f_max: float = 7600.0  # sherpa-onnx's high_freq=-400: Nyquist - 400 Hz
    log_floor: float = 1.1920929e-07  # log(max(energy, floor)); FLT_EPSILON as in Kaldi
    preemphasis: float = 0.97  # applied inside each frame, Kaldi style; 0 disables
    window: str = "povey"  # povey | hann | hamming, as kaldi-native-fbank defines them
    remove_dc_offset: bool = True  # subtract each frame's mean before pre-emphasis
    # "kaldi": HTK-mel triangles, not area-normalised (kaldi-native-fbank's default); "librosa":
    # slaney mel scale and slaney area normalisation (kaldi-native-fbank's is_librosa), what
    # sherpa-onnx computes for NeMo models: see NEMO_FEATURES
    mel: str = "kaldi"

    def __post_init__(self):
        self._verify()

    def _verify(self):
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length ({self.win_length}) can't exceed n_fft ({self.n_fft})")
        if not (0 <= self.f_min < self.f_max <= self.sample_rate / 2):
            raise ValueError(f"need 0 <= f_min < f_max <= sample_rate/2, got f_min={self.f_min} f_max={self.f_max}")
        if self.hop_length <= 0 or self.n_mels <= 0:
            raise ValueError("hop_length and n_mels must be positive")
        if self.window not in ("povey", "hann", "hamming"):
            raise ValueError(f"window must be povey, hann or hamming, got {self.window!r}")
        if self.mel not in ("kaldi", "librosa"):
            raise ValueError(f"mel must be kaldi or librosa, got {self.mel!r}")

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if self.mel == "kaldi":  # the featurizer every model had before `mel` existed: same metadata
            del d["mel"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FeaturizerConfig":
        from edgekd.config import known_fields

        return cls(**known_fields(cls, d, "featurizer setting(s)"))

    def num_frames(self, num_samples: int) -> int:
        """Frames `Featurizer` yields for `num_samples` samples (Kaldi snip_edges=false)."""
        return max(0, (num_samples + self.hop_length // 2) // self.hop_length)


# What sherpa-onnx 2.0.1's OnlineRecognizer.from_nemo_ctc computes (measured through its own
# recognizer with a probe model that echoes its input, tests/test_streaming.py keeps it honest):
# periodic hann, no DC removal, 0.97 pre-emphasis, librosa (slaney) mel over 0-8000 Hz, no dither,
# no normalisation. Not FeatureExtractorConfig's kaldi defaults: its NeMo path overrides them.
def kaldi_features(sr: int, n_mels: int = 80) -> FeaturizerConfig:
    """sherpa-onnx's default fbank at `sr` Hz: 25 ms windows every 10 ms (FFT rounded up to a power
    of two), mel bands from 20 Hz to 400 Hz below Nyquist; at 16 kHz exactly `FeaturizerConfig()`."""
    win = sr * 25 // 1000
    return FeaturizerConfig(sample_rate=sr, n_mels=n_mels, win_length=win, hop_length=sr // 100,
                            n_fft=1 << (win - 1).bit_length(), f_max=sr / 2 - 400)


NEMO_FEATURES = FeaturizerConfig(window="hann", remove_dc_offset=False, f_min=0.0, f_max=8000.0, mel="librosa")


class Featurizer(torch.nn.Module):
    """Waveform (B, N) float32 in [-1, 1] + lengths (B,) -> log-mel (B, T, n_mels), lengths (B,).

    Written with torch ops that export to ONNX (framing is a gather, the DFT a matmul with a
    fixed basis), so the featurizer can live inside an exported graph. Framing follows Kaldi's
    snip_edges=false: frame t is centred on sample t*hop + hop/2 and samples outside the
    utterance are mirrored from its own edges (per utterance, so padding never leaks in).
    Frames past each utterance's length are zeroed. Features are raw log-mel: the model
    normalises them with mean/std buffers stored in its own weights.
    """

    def __init__(self, cfg: FeaturizerConfig = FeaturizerConfig()):
        super().__init__()
        self.cfg = cfg
        n_bins = cfg.n_fft // 2 + 1
        k = torch.arange(n_bins, dtype=torch.float64)[:, None]
        n = torch.arange(cfg.win_length, dtype=torch.float64)[None, :]
        ang = 2 * math.pi * k * n / cfg.n_fft
        window = kaldi_window(cfg.window, cfg.win_length)
        # (win_length, 2*n_bins): windowed real and imaginary DFT basis
        basis = torch.cat([torch.cos(ang), -torch.sin(ang)], 0) * window[None, :]
        self.register_buffer("dft", basis.T.float().contiguous(), persistent=False)
        self.register_buffer("mel", torch.from_numpy(mel_filters(cfg).astype(np.float32)), persistent=False)
        self.register_buffer("offsets", torch.arange(cfg.win_length, dtype=torch.int64), persistent=False)
        self.n_bins = n_bins

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None):
        cfg = self.cfg
        if lengths is None:
            lengths = torch.full((wave.shape[0],), wave.shape[1], dtype=torch.int64, device=wave.device)
        hop = cfg.hop_length
        feat_lens = (lengths + hop // 2) // hop
        n_frames = (wave.shape[1] + hop // 2) // hop
        start = torch.arange(n_frames, device=wave.device) * hop + (hop // 2 - cfg.win_length // 2)
        idx = start[:, None] + self.offsets[None, :]  # (T, win) sample index of each frame sample
        n = lengths.clamp(min=1)[:, None, None]
        idx = idx[None].expand(wave.shape[0], -1, -1)
        idx = torch.where(idx < 0, -idx - 1, idx)  # mirror at the start, Kaldi's way
        idx = torch.where(idx >= n, 2 * n - 1 - idx, idx)  # and at this utterance's own end
        idx = idx.clamp(min=0)
        frames = torch.gather(wave, 1, idx.reshape(wave.shape[0], -1)).reshape(idx.shape)  # (B, T, win)
        if cfg.remove_dc_offset:
            frames = frames - frames.mean(-1, keepdim=True)
        if cfg.preemphasis:
            frames = torch.cat([frames[..., :1] * (1 - cfg.preemphasis),
                                frames[..., 1:] - cfg.preemphasis * frames[..., :-1]], dim=-1)
        spec = frames @ self.dft  # (B, T, 2*bins)
        power = spec[..., : self.n_bins] ** 2 + spec[..., self.n_bins :] ** 2
        feats = torch.log(torch.clamp(power @ self.mel, min=cfg.log_floor))
        mask = torch.arange(feats.shape[1], device=wave.device)[None, :] < feat_lens[:, None]
        return feats * mask[..., None], feat_lens


# ---------------------------------------------------------------- loading and checks


def probe(path: str | Path) -> dict[str, Any]:
    """Header facts (duration, sample_rate, channels) without decoding; AudioError if unreadable.

    A WAV whose data chunk is shorter than its header says is "truncated": libsndfile would
    silently decode the part that is there, and a cut-off utterance with its full transcript
    teaches a model wrong alignments.
    """
    import soundfile as sf

    path = Path(path)
    _check_file(path)
    try:
        info = sf.info(str(path))
    except Exception as e:  # libsndfile's errors are RuntimeError/LibsndfileError with a message
        raise AudioError(path, "unreadable", _short(e)) from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioError(path, "empty", "no samples")
    if info.format in ("WAV", "WAVEX"):
        short = _wav_shortfall(path)
        if short:
            raise AudioError(path, "truncated", short)
    return {"duration": info.frames / info.samplerate, "sample_rate": info.samplerate, "channels": info.channels}


def _wav_shortfall(path: Path) -> str:
    """'' if the RIFF data chunk is complete, else how much is missing (reads chunk headers only)."""
    import struct

    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            if f.read(4) != b"RIFF" or len(f.read(4)) < 4 or f.read(4) != b"WAVE":
                return ""  # RF64 / odd variants: leave them to libsndfile
            pos = 12
            while pos + 8 <= size:
                f.seek(pos)
                cid, n = struct.unpack("<4sI", f.read(8))
                if cid == b"data":
                    # 0 and 0xFFFFFFFF are "unknown" sizes written by streaming recorders
                    if n not in (0, 0xFFFFFFFF) and size - pos - 8 < n:
                        return f"data chunk declares {n} bytes, file holds {size - pos - 8}"
                    return ""
                pos += 8 + n + (n & 1)
    except OSError:
        return ""
    return ""


def _check_file(path: Path) -> None:
    if path.is_symlink():
        try:
            os.stat(path)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise AudioError(path, "symlink-loop", "the link points back to itself") from None
            raise AudioError(path, "dangling-link", f"the link target {os.readlink(path)} does not exist") from None
    try:
        st = os.stat(path)
    except OSError as e:
        reason = "symlink-loop" if e.errno == errno.ELOOP else "missing"
        raise AudioError(path, reason, e.strerror or "no such file") from None
    if not stat.S_ISREG(st.st_mode):
        raise AudioError(path, "not-a-file", "a folder or device, not an audio file")
    if not os.access(path, os.R_OK):
        raise AudioError(path, "permission-denied", "file is not readable")
    if st.st_size == 0:
        raise AudioError(path, "empty", "0 bytes")


def _short(e: Exception) -> str:
    return str(e).strip().splitlines()[-1][:200] if str(e).strip() else type(e).__name__


def resample(x: np.ndarray, sr: int, to: int) -> np.ndarray:
    """Float32 mono `x` at `sr` Hz -> at `to` Hz (soxr HQ: deterministic); unchanged if equal."""
    if sr == to:
        return x
    import soxr

    return soxr.resample(x, sr, to, quality="HQ").astype(np.float32)


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE, *, max_duration: float = MAX_DURATION,
               min_duration: float = MIN_DURATION, allow_silence: bool = False) -> np.ndarray:
    """Decode, mix to mono, resample to `sample_rate`; float32 (N,) in [-1, 1].

    Raises AudioError naming the file for: missing, unreadable permissions, empty, corrupt or
    not audio, NaN/Inf samples, shorter than `min_duration`, longer than `max_duration`, and
    (unless `allow_silence`) silence-only. Other sample rates and channel counts are converted,
    not rejected.
    """
    import soundfile as sf

    path = Path(path)
    info = probe(path)
    # judge the length from the header BEFORE decoding: a 1-hour file would cost ~0.5 GB to decode
    if info["duration"] > max_duration:
        raise AudioError(path, "too-long", f"{info['duration']:.1f} s > {max_duration:.0f} s")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:
        raise AudioError(path, "unreadable", _short(e)) from None
    if data.size == 0:
        raise AudioError(path, "empty", "no samples")
    if not np.isfinite(data).all():
        raise AudioError(path, "non-finite", f"{int((~np.isfinite(data)).sum())} NaN/Inf samples")
    dur = data.shape[0] / sr
    if dur > max_duration:
        raise AudioError(path, "too-long", f"{dur:.1f} s > {max_duration:.0f} s")
    if dur < min_duration:
        raise AudioError(path, "too-short", f"{dur:.3f} s < {min_duration} s")
    x = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    x = resample(x, sr, sample_rate)
    if not allow_silence and float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) < SILENCE_RMS:
        raise AudioError(path, "silent", "RMS below -80 dBFS")
    return np.clip(x, -1.0, 1.0).astype(np.float32, copy=False)


class Quarantine:
    """Collects rejected items as `rejected.jsonl` lines {id, audio, reason, detail, stage}.

    One line per (stage, id, audio): judging an item again replaces its line, and `forget`
    drops the line of an item that is now good, so rerunning a stage never duplicates or keeps
    stale lines, while lines of other runs sharing the file (another manifest imported into the
    same folder, another stage) are kept. The file is rewritten atomically after every change,
    so a crash loses nothing already judged.
    """

    def __init__(self, path: str | Path, stage: str):
        self.path = Path(path)
        self.stage = stage
        self.count = 0
        self._recs: dict[tuple, dict] = {}
        if self.path.exists():
            try:
                lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                lines = []
            for line in lines:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn line from an older, appending edgekd: drop it
                if isinstance(rec, dict):
                    self._recs[self._key(rec)] = rec

    @staticmethod
    def _key(rec: dict) -> tuple:
        return (rec.get("stage"), rec.get("id"), rec.get("audio"))

    def _save(self) -> None:
        from edgekd.atomic import atomic_write

        atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in self._recs.values()))

    def add(self, uid: str, audio: str, reason: str, detail: str = "") -> None:
        rec = {"id": uid, "audio": audio, "reason": reason, "detail": detail, "stage": self.stage}
        self._recs.pop(self._key(rec), None)  # re-judged: its line moves to this run's order
        self._recs[self._key(rec)] = rec
        self._save()
        self.count += 1

    def add_error(self, uid: str, err: AudioError) -> None:
        self.add(uid, err.path, err.reason, err.detail)

    def forget(self, uid: str, audio: str) -> None:
        """Drop the line of an item this run found good (a file fixed since the last run)."""
        if self._recs.pop((self.stage, uid, audio), None) is not None:
            self._save()


def mark_rejected(utt, reason: str, detail: str = ""):
    """Tag an utterance an importer already knows is bad (a duplicate id, an unreadable transcript)
    so that `check_manifest` quarantines it with this reason instead of probing it. The mark is
    an attribute, not a field: it is never written into a manifest."""
    object.__setattr__(utt, "_rejected", (reason, detail))
    return utt


def check_manifest(utts, quarantine: Quarantine | None = None, sample_rate: int = SAMPLE_RATE):
    """Decode every utterance once; return (good utterances with duration/sr/channels filled, n_bad).

    Bad files (and entries an importer marked with `mark_rejected`) go to `quarantine` (if
    given) and are skipped; good ones are never dropped.
    """
    good, bad = [], 0
    for u in utts:
        try:
            marked = getattr(u, "_rejected", None)
            if marked:
                raise AudioError(u.audio, *marked)
            info = probe(u.audio)
            load_audio(u.audio, sample_rate)
        except AudioError as e:
            bad += 1
            if quarantine is not None:
                quarantine.add_error(u.id, e)
            continue
        if quarantine is not None:
            quarantine.forget(u.id, u.audio)
        good.append(dataclasses.replace(u, **info))
    return good, bad


def pad_waves(waves: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """List of (N_i,) float32 -> zero-padded (B, max N) tensor and lengths (B,) int64."""
    lens = torch.tensor([len(w) for w in waves], dtype=torch.int64)
    out = torch.zeros(len(waves), int(lens.max()) if len(waves) else 0)
    for i, w in enumerate(waves):
        out[i, : len(w)] = torch.from_numpy(np.asarray(w, dtype=np.float32))
    return out, lens


_FEATURIZERS: dict[FeaturizerConfig, Featurizer] = {}


def featurize(waves: list[np.ndarray], cfg: FeaturizerConfig = FeaturizerConfig()):
    """List of 16 kHz waves -> log-mel (B, T, n_mels), frame lengths (B,); featurizer cached per cfg."""
    fz = _FEATURIZERS.get(cfg)
    if fz is None:
        fz = _FEATURIZERS[cfg] = Featurizer(cfg).eval()
    wave, lens = pad_waves(waves)
    with torch.no_grad():
        return fz(wave, lens)
