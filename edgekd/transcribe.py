"""`edgekd transcribe MODEL AUDIO...`: try any model on your own recordings.

MODEL is a checkpoint (.safetensors), an .onnx, a .tflite (with its sidecar), a sherpa-onnx
package folder or `hf:<hub id or dir>`; AUDIO is files, folders (searched recursively) or
manifests (.jsonl / .csv / a Kaldi dir). Decoding goes through `edgekd.export.runtime`, the code
`edgekd verify` checks, so the transcript a user sees is the one that was verified.

A file that cannot be read or decoded is reported (id, path, reason) and the rest go on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from edgekd.errors import EdgekdError
from edgekd.export.runtime import RUNTIMES


@dataclass(frozen=True)
class TranscribeOptions:
    runtime: str = "auto"  # the model kind's deployment runtime; or sherpa-onnx / sherpa-onnx-offline for an .onnx
    threads: int = 1  # runtime intra-op threads

    def __post_init__(self):
        self._verify()

    def _verify(self):
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")


@dataclass
class Transcript:
    id: str
    audio: str
    text: str = ""
    tokens: list[dict] = field(default_factory=list)  # {"token", "start", "end", "confidence"}
    error: str = ""  # set when this item failed; text is then empty

    def to_dict(self) -> dict:
        d = {"id": self.id, "audio": self.audio, "text": self.text, "tokens": self.tokens}
        return d | ({"error": self.error} if self.error else {})


def audio_items(inputs: list[str | Path]) -> Iterator[tuple[str, str, str]]:
    """(id, audio path, problem) per input item; a bad input is one item with its problem set."""
    from edgekd.importers import AUDIO_SUFFIXES, import_any

    for src in inputs:
        p = Path(src)
        name = p.name.lower()
        if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES:
            yield p.stem, str(p), ""
            continue
        if not p.exists():
            yield p.stem or str(p), str(p), "no such file or folder"
            continue
        if not (p.is_dir() or name.endswith((".jsonl", ".jsonl.gz", ".csv", ".tsv"))):
            yield p.stem, str(p), f"not audio ({', '.join(sorted(AUDIO_SUFFIXES))}), a folder or a manifest"
            continue
        try:
            utts = import_any(p)
        except EdgekdError as e:
            yield p.stem, str(p), str(e)
            continue
        if not utts:
            yield p.stem, str(p), "no audio in it"
        for u in utts:
            yield u.id, u.audio, ""


def transcribe(opts: TranscribeOptions, model: str | Path, inputs: list[str | Path]) -> Iterator[Transcript]:
    """Decode every audio item of `inputs` with `model`, in order; failures are yielded with `error` set."""
    from edgekd.audio import load_audio
    from edgekd.export.runtime import open_model

    rt = open_model(model, opts.runtime, opts.threads)  # a bad model stops everything: nothing could decode
    for uid, audio, problem in audio_items(inputs):
        if problem:
            yield Transcript(uid, audio, error=problem)
            continue
        try:
            d = rt.decode(load_audio(audio, rt.sample_rate))
        except EdgekdError as e:  # AudioError names the file; a runtime failure is about this input too
            yield Transcript(uid, audio, error=str(e).removeprefix(f"{audio}: "))
            continue
        yield Transcript(uid, audio, d.text, d.tokens)
