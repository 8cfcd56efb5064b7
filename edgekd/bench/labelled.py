"""On-device WER: decode a small labelled bundle with the model under test and score it.

Standalone like runner.py (numpy + the runtime object runner.py opened; nothing from edgekd, never
torch): copied beside runner.py to a device and imported only when `--bundle` is given.

A bundle (made on the host by `edgekd.export.bundle.make_bundle`) is a folder:
- `bundle.json`: schema, tokens, featurizer, subsampling, gates ({precision: min identical share}),
  and per utterance: id, reference text, the host PyTorch transcript and log-prob checksum;
- `features.npz`: the log-mel features (T, F) per utterance, made by the model's pinned featurizer;
- `wavs/<i>.wav`: 16-bit mono audio (fed as is to a waveform-input graph).

Scores: WER against the references, identical-transcript share and the largest relative
difference of the log-prob checksum against the host's PyTorch run.
"""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np

BUNDLE_SCHEMA = "edgekd-bundle-1"


def load_bundle(path: str | Path) -> dict:
    d = Path(path)
    try:
        b = json.loads((d / "bundle.json").read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"runner: bundle {d}: cannot read bundle.json ({e})")
    if b.get("schema") != BUNDLE_SCHEMA:
        raise SystemExit(f"runner: bundle {d}: schema {b.get('schema')!r}, expected {BUNDLE_SCHEMA}")
    b["dir"] = str(d)
    return b


def _wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        x = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    return (x.astype(np.float32) / 32768.0)


def edit_distance(a: list[str], b: list[str]) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]


def wer(refs: list[str], hyps: list[str]) -> float:
    words = sum(len(r.split()) for r in refs)
    return sum(edit_distance(r.split(), h.split()) for r, h in zip(refs, hyps)) / max(words, 1)


def greedy(lp: np.ndarray, tokens: list[str]) -> str:
    ids = lp.argmax(-1).tolist() if len(lp) else []
    out, prev = [], 0
    for i in ids:
        if i != prev and i != 0:
            out.append(tokens[i])
        prev = i
    return " ".join("".join(out).replace("\u2581", " ").split())  # subword pieces start words with ▁


def out_len(n: int, subsampling: int) -> int:
    for _ in range({2: 1, 4: 2, 8: 3}[subsampling]):
        n = max((n - 1) // 2, 0)
    return n


def window_log_probs(run, feats: np.ndarray, window: int, context: int, s: int) -> np.ndarray:
    """Log-probs (T', V) for features (T, F) of any length through a fixed-`window` model: the
    sidecar contract's chunking, numpy only so the runner carries it to a device. Windows start
    every `window - 2*context` frames (a multiple of the subsampling); each contributes the
    output frames of its centre. A short utterance is one zero-padded window. The host's
    LiteRT export and verify use this same function (edgekd.export.litert)."""
    T, stride, ctx_out = len(feats), (window - 2 * context) // s * s, context // s
    total, pieces, produced, start = out_len(T, s), [], 0, 0
    while produced < total:
        chunk = feats[start : start + window]
        x = np.zeros((1, window, feats.shape[1]), np.float32)
        x[0, : len(chunk)] = chunk
        lp = run(x, len(chunk))[0, : out_len(len(chunk), s)]
        keep_from, last = produced - start // s, start + window >= T
        keep_to = len(lp) if last else min(len(lp), keep_from + stride // s + (ctx_out if start == 0 else 0))
        if keep_to > keep_from:
            pieces.append(lp[keep_from:keep_to])
            produced += keep_to - keep_from
        if last:
            break
        start += stride
    return np.concatenate(pieces)[:total] if pieces else np.zeros((0, 1), np.float32)


def decode_bundle(model, spec, bundle: dict) -> list[dict]:
    """Per utterance: {id, hyp, checksum} from `model` (runner.OnnxModel / LiteRtModel) fed per `spec`."""
    d = Path(bundle["dir"])
    feats = np.load(d / "features.npz")
    s = int(bundle["subsampling"])
    contract = model.metadata.get("contract")
    contract = json.loads(contract) if isinstance(contract, str) else (contract or {})
    waveform = model.metadata.get("input") == "waveform"
    out = []
    for i, u in enumerate(bundle["utterances"]):
        if waveform:
            x = _wav(d / "wavs" / f"{i}.wav")
        else:
            x = feats[str(i)].astype(np.float32)

        def run(xx, n):
            model.resize(spec.shapes(xx.shape[1]))
            feeds = {spec.feat.name: xx}
            if spec.lens is not None:
                feeds[spec.lens.name] = np.array([n], dtype=spec.lens.dtype)
            outs = model.run(feeds)
            return outs[0] if len(outs) == 1 else outs[0][:, : int(outs[1][0])]  # ONNX: log_probs_len

        if spec.fixed_frames:  # a fixed-window model (LiteRT): chunked as its sidecar says
            ctx = int(contract.get("context_frames") or model.metadata.get("context_frames") or 48)
            lp = window_log_probs(run, x, spec.fixed_frames, ctx, s)
        else:
            lp = run(x[None], len(x))[0]
        out.append({"id": u["id"], "hyp": greedy(lp, bundle["tokens"]), "checksum": float(lp.max(-1).sum())})
    return out


def score(bundle: dict, decoded: list[dict]) -> dict:
    utts = bundle["utterances"]
    hyps = [x["hyp"] for x in decoded]
    same = [h == u["host_text"] for h, u in zip(hyps, utts)]
    rel = [abs(x["checksum"] - u["host_checksum"]) / max(abs(u["host_checksum"]), 1e-9) for x, u in zip(decoded, utts)]
    return {"wer": wer([u["text"] for u in utts], hyps), "host_wer": wer([u["text"] for u in utts],
                                                                             [u["host_text"] for u in utts]),
            "identical": float(np.mean(same)) if same else 0.0, "checksum_max_rel_diff": max(rel) if rel else 0.0,
            "differs": [u["id"] for u, ok in zip(utts, same) if not ok], "utterances": len(utts)}


def bundle_records(path: str, model, spec, quantization: str, min_identical: float | None, rec) -> str:
    """Decode and score the bundle, add its records through `rec`; an error line if below the gate, else ""."""
    b = load_bundle(path)
    sc = score(b, decode_bundle(model, spec, b))
    gate = min_identical if min_identical is not None else b.get("gates", {}).get(quantization, b.get("default_gate"))
    kw = dict(iterations=1, mode="labelled", extra={"utterances": sc["utterances"], "bundle": Path(path).name,
                                                     "host_wer": sc["host_wer"], "gate_identical": gate,
                                                     "differs": sc["differs"][:20]})
    rec("wer", sc["wer"], "ratio", **kw)
    rec("identical_transcripts", sc["identical"], "ratio", **kw)
    rec("logprob_checksum_max_rel_diff", sc["checksum_max_rel_diff"], "ratio", **kw)
    if gate is not None and sc["identical"] < gate:
        return (f"runner: transcripts differ from the host's on {len(sc['differs'])} of {sc['utterances']} utterances "
                f"(identical {sc['identical']:.1%} < gate {gate:.0%}; first: {', '.join(sc['differs'][:3])})")
    return ""
