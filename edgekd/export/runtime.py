"""Decode audio with one runtime: the one code path `edgekd verify` and `edgekd transcribe` share.

What a user sees with `edgekd transcribe` is what `edgekd verify` checked, because both call
`Runtime.decode_many` on the same object: the artifact's own featurizer (read from the file,
never from the caller), its runtime (torch, onnxruntime, LiteRT, sherpa-onnx's Python API or its
`sherpa-onnx-offline` binary, transformers for `hf:`), and greedy CTC.

- `open_artifact(art, ck)`: a runtime for an `Artifact` row (verify; `ck` serves the pytorch row);
- `open_model(spec, runtime="auto")`: a runtime for what a user names (transcribe): a checkpoint,
  an .onnx, a .tflite (with its sidecar), a sherpa-onnx package folder, or `hf:<id or dir>`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekd.audio import SAMPLE_RATE, FeaturizerConfig
from edgekd.errors import EdgekdError
from edgekd.records import Artifact
from edgekd.tokens import Tokenizer

RUNTIMES = ("auto", "torch", "onnxruntime", "litert", "sherpa-onnx", "sherpa-onnx-offline", "sherpa-onnx-online",
            "transformers")
SHERPA_BIN = "sherpa-onnx-offline"


@dataclass
class Decoded:
    text: str
    # per emitted token: {"token", "start" (s), "end" (s), "confidence" (peak posterior; None where
    # the runtime gives no scores, i.e. sherpa-onnx)}
    tokens: list[dict] = field(default_factory=list)
    log_probs: np.ndarray | None = None  # (T', V); None where the runtime returns text only


def normalize(text: str) -> str:
    """Transcript comparison form: sherpa-onnx writes the space token as `▁`."""
    return re.sub(r"\s+", " ", text.replace("▁", " ")).strip()


def ctc_decode(lp: np.ndarray, tok: Tokenizer, frame_rate: float) -> Decoded:
    """Greedy CTC over (T', V) log-probs, with each token's frames and peak posterior."""
    ids = lp.argmax(-1) if len(lp) else np.zeros(0, np.int64)
    toks, prev = [], 0
    for t, i in enumerate(ids.tolist()):
        if i != 0 and i != prev:
            toks.append({"token": tok.tokens[i], "start": round(t / frame_rate, 3), "end": round((t + 1) / frame_rate, 3),
                         "confidence": round(float(np.exp(lp[t, i])), 4)})
        elif i != 0:  # the same token held over more frames
            toks[-1]["end"] = round((t + 1) / frame_rate, 3)
            toks[-1]["confidence"] = max(toks[-1]["confidence"], round(float(np.exp(lp[t, i])), 4))
        prev = i
    return Decoded(tok.ctc_collapse(ids.tolist()), toks, lp)


class Runtime:
    """Base: featurize with the artifact's featurizer, run to log-probs, greedy CTC."""

    name = "runtime"
    runtime = ""
    sample_rate = SAMPLE_RATE  # each runtime sets its artifact's featurizer rate
    featurizer: FeaturizerConfig | None = None
    tokens: tuple[str, ...] = ()
    frame_rate = 25.0

    def features(self, wave: np.ndarray) -> np.ndarray:
        from edgekd.audio import featurize

        f, n = featurize([wave], self.featurizer)
        return f[0, : int(n[0])].numpy()

    def log_probs(self, feats: np.ndarray) -> np.ndarray:
        """(T, F) features -> (T', V) log-probs."""
        raise NotImplementedError

    def wave_log_probs(self, wave: np.ndarray) -> np.ndarray:
        return self.log_probs(self.features(wave))

    def decode(self, wave: np.ndarray) -> Decoded:
        return ctc_decode(self.wave_log_probs(wave), Tokenizer(self.tokens), self.frame_rate)

    def decode_many(self, waves: list[np.ndarray]) -> list[Decoded]:
        return [self.decode(w) for w in waves]


class TorchRuntime(Runtime):
    runtime = "torch"

    def __init__(self, ck):
        self.ck, self.featurizer, self.tokens, self.frame_rate = ck, ck.featurizer, ck.tokens, ck.frame_rate
        self.sample_rate = ck.featurizer.sample_rate

    def log_probs(self, feats):
        import torch

        with torch.no_grad():
            lp, n = self.ck.model.log_probs(torch.from_numpy(feats)[None], torch.tensor([len(feats)]))
        return lp[0, : int(n[0])].numpy()


def _meta_facts(rt: Runtime, meta: dict, where: str) -> None:
    try:
        rt.featurizer = FeaturizerConfig.from_dict(json.loads(meta["featurizer"]))
        rt.tokens = tuple(json.loads(meta["tokens"]))
        rt.frame_rate = float(meta["frame_rate"])
    except (KeyError, ValueError, TypeError) as e:
        raise EdgekdError(f"{where}: not an edgekd export (metadata {e} missing or bad); re-export it") from None
    rt.sample_rate = rt.featurizer.sample_rate


class OnnxRuntime(Runtime):
    runtime = "onnxruntime"

    def __init__(self, path: str | Path, threads: int = 1):
        from edgekd.export.onnx import ort_session, read_metadata

        try:
            meta = read_metadata(path)
            self.sess = ort_session(path, threads)
        except Exception as e:  # onnx / onnxruntime raise their own types for a bad file
            raise EdgekdError(f"{path}: cannot load the ONNX model ({str(e).strip().splitlines()[0][:200]})") from None
        _meta_facts(self, meta, str(path))
        self.waveform = meta.get("input") == "waveform"

    def _run(self, x: np.ndarray, n: int) -> np.ndarray:
        from edgekd.export.onnx import run_onnx

        lp, ol = run_onnx(self.sess, x[None].astype(np.float32), np.array([n]))
        return lp[0, : int(ol[0])]

    def log_probs(self, feats):
        if self.waveform:
            raise EdgekdError("a waveform-input ONNX graph takes audio, not features")
        return self._run(feats, len(feats))

    def wave_log_probs(self, wave):
        return self._run(wave, len(wave)) if self.waveform else self.log_probs(self.features(wave))


class TfliteRuntime(Runtime):
    """A fixed-window .tflite, chunked over longer audio exactly as its sidecar's contract says."""

    runtime = "litert"

    def __init__(self, path: str | Path, threads: int = 1, context: int | None = None):
        from edgekd.export.litert import TfliteModel, read_sidecar, sidecar

        meta = read_sidecar(path)
        _meta_facts(self, meta, str(sidecar(path)))
        self.subsampling = int(meta["subsampling_factor"])
        self.context = int(meta.get("context_frames") or context or 48)  # old sidecars: the Artifact's value
        try:
            self.model = TfliteModel(path, threads)
        except Exception as e:
            raise EdgekdError(f"{path}: cannot load the LiteRT model ({str(e).strip().splitlines()[0][:200]})") from None
        self.window = self.model.window

    def log_probs(self, feats):
        from edgekd.export.litert import chunked_log_probs

        return chunked_log_probs(self.model, feats, self.window, self.context, self.subsampling)


class HFRuntime(Runtime):
    runtime = "transformers"

    def __init__(self, id_or_dir: str):
        from edgekd.teachers import load_teacher

        self.teacher = load_teacher(f"hf:{id_or_dir}")
        self.seq2seq = getattr(self.teacher, "kind", "ctc") == "seq2seq"  # Whisper & co: text, no frames
        self.tokens, self.frame_rate = self.teacher.tokens, getattr(self.teacher, "frame_rate", 0.0)
        self.sample_rate = self.teacher.sample_rate

    def decode(self, wave):
        if self.seq2seq:
            return Decoded(self.teacher.transcribe([wave])[0][0], [], None)
        return super().decode(wave)

    def wave_log_probs(self, wave):
        out = self.teacher([wave])
        return out.logits[0, : int(out.lengths[0])].numpy()  # already log-probs over edgekd tokens


def _package_files(path: Path) -> tuple[Path, Path]:
    model = path / "model.onnx" if path.is_dir() else path
    tokens = model.parent / "tokens.txt"
    for p in (model, tokens):
        if not p.is_file():
            raise EdgekdError(f"{path}: not a sherpa-onnx package ({p.name} missing)")
    return model, tokens


class SherpaRuntime(Runtime):
    """sherpa-onnx's own Python recognizer: its own fbank, its own bundled onnxruntime."""

    runtime = "sherpa-onnx"

    def __init__(self, path: str | Path, threads: int = 1):
        self.model, tok = _package_files(Path(path))
        _sherpa_facts(self, self.model)
        self.tokens = tuple(line.rsplit(" ", 1)[0].replace("▁", " ") for line in tok.read_text().splitlines())
        self.rec = self._recognizer(tok, threads)

    def _recognizer(self, tok: Path, threads: int):
        import sherpa_onnx

        return sherpa_onnx.OfflineRecognizer.from_zipformer_ctc(
            model=str(self.model), tokens=str(tok), num_threads=threads, decoding_method="greedy_search")

    def decode(self, wave):
        s = self.rec.create_stream()
        s.accept_waveform(self.sample_rate, wave)
        self.rec.decode_stream(s)
        return _from_sherpa(s.result.text, list(s.result.tokens), list(s.result.timestamps), self.frame_rate)


class SherpaOnline(SherpaRuntime):
    """sherpa-onnx's streaming recognizer on a cache-aware export (`edgekd.export.streaming`): audio
    fed in 100 ms pieces as a microphone delivers it, then the tail padding a client sends."""

    runtime = "sherpa-onnx-online"

    def _recognizer(self, tok: Path, threads: int):
        import sherpa_onnx

        return sherpa_onnx.OnlineRecognizer.from_nemo_ctc(model=str(self.model), tokens=str(tok), num_threads=threads)

    def decode(self, wave):
        from edgekd.export.streaming import with_tail

        s, sr = self.rec.create_stream(), self.sample_rate
        w = with_tail(np.asarray(wave, np.float32), sr)
        for i in range(0, len(w), sr // 10):
            s.accept_waveform(sr, w[i:i + sr // 10])
            while self.rec.is_ready(s):
                self.rec.decode_stream(s)
        s.input_finished()
        while self.rec.is_ready(s):
            self.rec.decode_stream(s)
        r = self.rec.get_result_all(s)
        return _from_sherpa(r.text, list(r.tokens), list(r.timestamps), self.frame_rate)


def is_streaming_onnx(path: Path) -> bool:
    from edgekd.export.onnx import read_metadata
    from edgekd.export.streaming import CONTRACT

    model = path / "model.onnx" if path.is_dir() else path
    try:
        return model.suffix == ".onnx" and read_metadata(model).get("contract") == CONTRACT
    except Exception:  # noqa: BLE001 -- not readable as ONNX: the offline paths say why
        return False


def _sherpa_facts(rt: Runtime, model: Path) -> None:
    """Frame rate and sample rate from an edgekd export's metadata; sherpa-onnx's defaults otherwise."""
    from edgekd.export.onnx import read_metadata

    try:
        _meta_facts(rt, read_metadata(model), str(model))
    except EdgekdError:
        pass  # a third-party zipformer2_ctc package: 16 kHz, timestamps as sherpa-onnx gives them
    except Exception as e:
        raise EdgekdError(f"{model}: not an ONNX model ({str(e).strip().splitlines()[0][:200]})") from None


def _from_sherpa(text: str, tokens: list[str], times: list[float], frame_rate: float) -> Decoded:
    toks = [{"token": t.replace("▁", " "), "start": round(float(s), 3), "end": round(float(s) + 1 / frame_rate, 3),
             "confidence": None} for t, s in zip(tokens, times)]
    return Decoded(normalize(text), toks, None)


class SherpaBinary(SherpaRuntime):
    """The `sherpa-onnx-offline` command users run (sherpa-onnx-bin): one process for a batch."""

    runtime = SHERPA_BIN

    def __init__(self, path: str | Path, threads: int = 1):
        if shutil.which(SHERPA_BIN) is None:
            raise EdgekdError(f"{SHERPA_BIN} not found: pip install sherpa-onnx-bin")
        self.model, self.tok = _package_files(Path(path))
        _sherpa_facts(self, self.model)
        self.threads = threads

    def decode(self, wave):
        return self.decode_many([wave])[0]

    def decode_many(self, waves):
        import soundfile as sf

        if not waves:
            return []
        with tempfile.TemporaryDirectory() as td:
            files = []
            for i, w in enumerate(waves):
                files.append(str(Path(td) / f"{i}.wav"))
                sf.write(files[-1], w, self.sample_rate, subtype="FLOAT")  # float: no requantization
            r = subprocess.run([SHERPA_BIN, f"--zipformer-ctc-model={self.model}", f"--tokens={self.tok}",
                                f"--num-threads={self.threads}", *files], capture_output=True, text=True)
        lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
        if r.returncode or len(lines) != len(waves):
            tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
            raise EdgekdError(f"{SHERPA_BIN} failed on {self.model} (exit {r.returncode}, {len(lines)} of "
                              f"{len(waves)} results): {tail[:200]}")
        # one JSON line per file, in the order given
        return [_from_sherpa(d["text"], d.get("tokens", []), d.get("timestamps", []), self.frame_rate) for d in lines]


def open_artifact(art: Artifact, ck=None, threads: int = 1) -> Runtime:
    """The runtime an `Artifact` is meant for (`art.runtime`); `ck` is the pytorch row's model."""
    if art.format == "pytorch":
        return TorchRuntime(ck)
    kind = {"onnxruntime": OnnxRuntime, "litert": TfliteRuntime, "sherpa-onnx": SherpaRuntime,
            SHERPA_BIN: SherpaBinary}.get(art.runtime)
    if kind is None:
        raise EdgekdError(f"artifact {art.name}: no runtime {art.runtime!r} (known: onnxruntime, litert, "
                          f"sherpa-onnx, {SHERPA_BIN})")
    if kind is TfliteRuntime:
        return TfliteRuntime(art.path, threads, context=art.context)
    return kind(art.path, threads)


def open_model(spec: str | Path, runtime: str = "auto", threads: int = 1) -> Runtime:
    """A runtime for a user's model: checkpoint, .onnx, .tflite, sherpa-onnx folder or `hf:<id|dir>`.

    `runtime` picks sherpa-onnx (Python) or its binary for an .onnx or a package; `auto` runs each
    kind where it is deployed (a package in sherpa-onnx, an .onnx in onnxruntime).
    """
    spec = str(spec)
    if runtime not in RUNTIMES:
        raise EdgekdError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    if spec.startswith("hf:"):
        kind = "transformers"
    else:
        p = Path(spec)
        if not p.exists():
            raise EdgekdError(f"model {spec}: no such file or folder (a .safetensors, .onnx, .tflite, "
                              "a sherpa-onnx package folder, or hf:<id or dir>)")
        kind = {".safetensors": "torch", ".onnx": "onnxruntime", ".tflite": "litert"}.get(p.suffix, "")
        if p.is_dir():
            kind = "sherpa-onnx"
        if kind in ("onnxruntime", "sherpa-onnx") and is_streaming_onnx(p):
            kind = "sherpa-onnx-online"  # a cache-aware streaming export runs in sherpa-onnx's online recognizer
        if not kind:
            raise EdgekdError(f"model {spec}: unknown kind (expected .safetensors, .onnx, .tflite, a sherpa-onnx "
                              "package folder or hf:<id or dir>)")
    if runtime != "auto" and runtime != kind and not (kind in ("onnxruntime", "sherpa-onnx")
                                                       and runtime in ("sherpa-onnx", SHERPA_BIN)):
        raise EdgekdError(f"model {spec} runs in {kind}, not {runtime} (sherpa-onnx runtimes take an .onnx "
                          "or a package)")
    kind = kind if runtime == "auto" else runtime
    if kind == "transformers":
        return HFRuntime(spec[3:])
    if kind == "torch":
        from edgekd.models import load_checkpoint

        return TorchRuntime(load_checkpoint(spec))
    return {"onnxruntime": OnnxRuntime, "litert": TfliteRuntime, "sherpa-onnx": SherpaRuntime,
            SHERPA_BIN: SherpaBinary, "sherpa-onnx-online": SherpaOnline}[kind](spec, threads)
