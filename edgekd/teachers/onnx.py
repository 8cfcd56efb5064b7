"""ONNX CTC models in the contracts sherpa-onnx reads, as edgekd teachers (`onnx:<dir or model.onnx>`).

A user arrives with a CTC model exported for sherpa-onnx (icefall zipformer2 CTC, WeNet CTC, or
one of edgekd's own exports); this runs it on onnxruntime and gives per-frame log-probs like any
teacher. What the model expects is read from the file, never guessed silently:

| `model_type` metadata | inputs | features |
|---|---|---|
| `zipformer2_ctc` (icefall, edgekd) | `x` (N, T, F) + `x_lens` | edgekd's `featurizer` metadata if present, else sherpa-onnx's defaults (Kaldi fbank, `FeaturizerConfig()`, F from the graph) |
| `zipformer2_ctc`, edgekd `input: waveform` | `audio` (N, S) + `audio_lens` | inside the graph |
| `wenet_ctc` | `x` (N, T, F) + `x_lens` | sherpa-onnx's defaults on samples scaled to int16 range (WeNet's convention) |
| `EncDecCTCModelBPE`, `EncDecCTCModel` (NeMo) | features (N, F, T) + length; output log-probs only, length = T // `subsampling_factor` | `NEMO_FEATURES` (what sherpa-onnx computes for NeMo), then `normalize_type`: "" none, `per_feature` per utterance |

The output is the graph's first two outputs: log-probs (N, T', V) and their lengths. Tokens come
from `tokens.txt` beside the model (`<symbol> <id>`, `▁` for the space of a character model) or
edgekd's `tokens` metadata; the blank (`<blk>`, `<blank>` or `<eps>`) is moved to id 0 wherever
the model has it (NeMo: last), as edgekd's teachers are defined. A missing metadata key that decides
the features (NeMo: `normalize_type`, `subsampling_factor`, `vocab_size`, the keys sherpa-onnx
reads) fails with one line naming it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import torch

from edgekd.audio import NEMO_FEATURES, SAMPLE_RATE, FeaturizerConfig, kaldi_features
from edgekd.errors import EdgekdError
from edgekd.models.conformer import ConformerDims
from edgekd.teachers.base import TeacherOutput
from edgekd.tokens import canonical_tokens, read_tokens_txt, spm_from_text

NEMO = ("EncDecCTCModelBPE", "EncDecCTCModel")
CONTRACTS = ("zipformer2_ctc", "wenet_ctc", *NEMO)
NEMO_KEYS = ("vocab_size", "subsampling_factor", "normalize_type")  # what sherpa-onnx requires of a NeMo CTC model
NEMO_NORMALIZE = ("", "per_feature")
INT16_SCALE = 32768.0  # WeNet models take samples in [-32768, 32767] (sherpa-onnx: normalize_samples=false)


def find_model(spec: str | Path) -> Path:
    """A .onnx file, or the one model in a folder (`model.onnx` preferred)."""
    p = Path(spec)
    if p.is_file():
        return p
    if not p.is_dir():
        raise EdgekdError(f"teacher onnx:{spec}: no such file or folder")
    if (p / "model.onnx").is_file():
        return p / "model.onnx"
    found = sorted(x for x in p.glob("*.onnx") if ".int8." not in x.name)
    if len(found) != 1:
        raise EdgekdError(f"teacher onnx:{spec}: expected one .onnx model (or model.onnx) in the folder, "
                          f"found {[x.name for x in found] or 'none'}")
    return found[0]


def read_tokens(model: Path, meta: dict[str, str]) -> list[str]:
    """Symbols by id from `tokens.txt` beside the model, else edgekd's `tokens` metadata."""
    txt = model.parent / "tokens.txt"
    if txt.is_file():
        return read_tokens_txt(txt)
    if "tokens" in meta:
        return list(json.loads(meta["tokens"]))
    raise EdgekdError(f"teacher onnx:{model}: no tokens.txt beside it and no 'tokens' metadata")


class OnnxCTCTeacher:
    def __init__(self, spec: str | Path, threads: int = 1):
        from edgekd.export.onnx import ort_session

        self.path = find_model(spec)
        self.name = self.path.stem
        try:
            self.sess = ort_session(self.path, threads=threads)
        except Exception as e:  # onnxruntime's errors are long; its first line names the problem
            raise EdgekdError(f"teacher onnx:{self.path}: onnxruntime can't load it ({str(e).splitlines()[0]})") from None
        meta = self.sess.get_modelmeta().custom_metadata_map
        self.model_type = meta.get("model_type")
        if self.model_type not in CONTRACTS:
            raise EdgekdError(f"teacher onnx:{self.path}: metadata 'model_type' is {self.model_type!r}; "
                              f"supported: {', '.join(CONTRACTS)}")
        self.nemo = self.model_type in NEMO
        if self.nemo:
            missing = [k for k in NEMO_KEYS if k not in meta]
            if missing:
                raise EdgekdError(f"teacher onnx:{self.path}: metadata has no {missing[0]!r}, which a {self.model_type} "
                                  f"model needs (NeMo's export writes {', '.join(NEMO_KEYS)})")
            self.normalize = meta["normalize_type"]
            if self.normalize not in NEMO_NORMALIZE:
                raise EdgekdError(f"teacher onnx:{self.path}: metadata 'normalize_type' is {self.normalize!r}; "
                                  f"supported: '' or 'per_feature' (as in sherpa-onnx)")
        self.inputs = [i.name for i in self.sess.get_inputs()]
        self.outputs = [o.name for o in self.sess.get_outputs()][:2]
        self.waveform_input = meta.get("input") == "waveform"
        self.featurizer = self._featurizer(meta)
        # edgekd's own graphs say how short an input may be (subsampling convs need a few frames);
        # shorter clips are padded as the PyTorch teacher pads them
        self.min_frames = ConformerDims.from_dict(json.loads(meta["dims"])).min_frames if "dims" in meta else 1
        self.sample_rate = self.featurizer.sample_rate
        self.subsampling = meta.get("subsampling_factor")
        if "frame_rate" in meta:
            self.frame_rate = float(meta["frame_rate"])
        elif "subsampling_factor" in meta:
            self.frame_rate = self.featurizer.frame_rate / int(meta["subsampling_factor"])
        else:
            raise EdgekdError(f"teacher onnx:{self.path}: metadata has neither 'frame_rate' nor 'subsampling_factor'")
        # edgekd's convention: blank is id 0 -> columns reordered once here, nothing else changes
        self.tokens, self.order = canonical_tokens(read_tokens(self.path, meta), f"teacher onnx:{self.path}")
        self.sentencepiece = spm_from_text(meta.get("sentencepiece"), self.tokens, f"teacher onnx:{self.path}")

    def _featurizer(self, meta: dict[str, str]) -> FeaturizerConfig:
        if "featurizer" in meta:  # edgekd's own export: the exact featurizer it was trained with
            return FeaturizerConfig.from_dict(json.loads(meta["featurizer"]))
        dim = self.sess.get_inputs()[0].shape[1 if self.nemo else -1]  # NeMo: (N, F, T)
        if not isinstance(dim, int):
            dim = int(meta.get("feat_dim", 0)) or None
        if dim is None:
            raise EdgekdError(f"teacher onnx:{self.path}: the feature size is dynamic in the graph and metadata "
                              "has no 'feat_dim'")
        if self.nemo:  # sherpa-onnx's NeMo features (hann, librosa mel, no DC removal); NeMo models are 16 kHz
            return dataclasses.replace(NEMO_FEATURES, n_mels=dim)
        return kaldi_features(int(meta.get("sample_rate", SAMPLE_RATE)), dim)

    @torch.no_grad()
    def __call__(self, waves: list[np.ndarray]) -> TeacherOutput:
        from edgekd.audio import featurize

        if self.waveform_input:
            n = max(len(w) for w in waves)
            x = np.zeros((len(waves), n), np.float32)
            for i, w in enumerate(waves):
                x[i, : len(w)] = w
            lens = np.array([len(w) for w in waves], np.int64)
        else:
            feats, flens = featurize(waves, self.featurizer)
            if self.model_type == "wenet_ctc":  # samples x s add 2 ln s to every log-energy (the same
                feats = feats + 2 * math.log(INT16_SCALE)  # except below the log floor: digital silence)
            if feats.shape[1] < self.min_frames:
                feats = torch.nn.functional.pad(feats, (0, 0, 0, self.min_frames - feats.shape[1]))
            lens = torch.clamp(flens, min=self.min_frames)
            if self.nemo:
                if self.normalize == "per_feature":
                    feats = per_feature(feats, lens)
                feats = feats.transpose(1, 2)  # NeMo: (N, F, T)
            x = feats.numpy().astype(np.float32)
            lens = lens.numpy().astype(np.int64)
        if self.nemo:  # one output; its length is what sherpa-onnx takes: frames // subsampling_factor
            lp = self.sess.run(self.outputs[:1], {self.inputs[0]: x, self.inputs[1]: lens})[0]
            out_lens = np.minimum(lens // int(self.subsampling), lp.shape[1])
        else:
            lp, out_lens = self.sess.run(self.outputs, {self.inputs[0]: x, self.inputs[1]: lens})
        logits = torch.from_numpy(np.ascontiguousarray(lp[..., self.order])).float()
        out_lens = torch.from_numpy(np.asarray(out_lens)).long()
        # no encoder output leaves the graph: the mean posterior over valid frames stands in (drift)
        mask = (torch.arange(logits.shape[1])[None, :] < out_lens[:, None]).float()[..., None]
        emb = (logits.log_softmax(-1).exp() * mask).sum(1) / mask.sum(1).clamp(min=1)
        return TeacherOutput(logits, out_lens, emb)


def per_feature(feats: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """NeMo's `per_feature` normalisation as sherpa-onnx does it: each mel bin of each clip to zero
    mean and unit (population) deviation over the clip's valid frames, 1e-5 added to the deviation."""
    mask = (torch.arange(feats.shape[1])[None, :] < lens[:, None]).float()[..., None]  # (N, T, 1)
    n = mask.sum(1, keepdim=True).clamp(min=1)
    mean = (feats * mask).sum(1, keepdim=True) / n
    std = (((feats - mean) ** 2 * mask).sum(1, keepdim=True) / n).sqrt()
    return (feats - mean) / (std + 1e-5) * mask
