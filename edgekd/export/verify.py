"""`edgekd verify`: every exported artifact, decoded in the runtime it is deployed with, against PyTorch.

Each artifact runs through `edgekd.export.runtime` — the code `edgekd transcribe` uses — in its own
runtime: onnxruntime for .onnx, LiteRT for .tflite (chunked as its sidecar says), sherpa-onnx's
Python recognizer for the package (its own fbank and bundled onnxruntime) and, when
`sherpa-onnx-bin` is installed, the `sherpa-onnx-offline` binary too (row `<name>[bin]`).

The test set is the manifest's first utterances plus long audio (>= 30 s): the split's own long
utterances, or one built by concatenating its utterances, because long inputs are where
attention, chunking and int8 error accumulate (DESIGN.md: LiteRT windows changed ~33 % of a 44 s
clip's characters while frame agreement on short clips looked fine).

Columns: `identical` (share of utterances whose transcript equals PyTorch's), `identical_long`
(the long ones only), WER/CER, `delta_wer` (absolute) and `rel_delta_wer` ((WER - WER_torch) /
WER_torch) against PyTorch's WER on the references, `max_diff` (max |Δ log-prob| on valid frames,
runtimes that return log-probs), `agreement` (frames with the same best token: a diagnostic only,
int8 kept 98 % of frames while changing 40 % of transcripts), size, 1-thread latency for 10 s.

Gates (`GATES`, per precision) — a row passes when all hold:

| precision    | identical ≥ | rel ΔWER ≤ | max |Δ log-prob| ≤ |
|--------------|-------------|------------|-------------------|
| fp32         | 99 %        | 1 %        | 1e-3              |
| fp16         | 95 %        | 2 %        | 5e-2              |
| int8-dynamic | 90 %        | 3 %        | (not gated)       |
| int8-static  | 90 %        | 3 %        | (not gated)       |

int8 moves the log-probs of unlikely tokens a lot without changing decisions, so its log-prob
diff is reported, not gated. sherpa-onnx computes its own fbank, so its rows have no log-probs and
are gated on transcripts. A LiteRT model is exact only within its fixed window: its row is gated on
the utterances that fit one window, and `note` says how many long utterances the windows changed
(the streaming artifact is the answer for long audio).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd.audio import AudioError, featurize, load_audio
from edgekd.decode import wer_cer
from edgekd.export.runtime import SHERPA_BIN, Decoded, Runtime, normalize, open_artifact
from edgekd.manifest import read_manifest
from edgekd.models import Checkpoint
from edgekd.records import Artifact

LONG_SECONDS = 30.0  # the test set always holds audio at least this long


@dataclass(frozen=True)
class Gate:
    min_identical: float  # share of utterances with PyTorch's exact transcript
    max_rel_delta_wer: float  # (WER - WER_torch) / WER_torch
    max_diff: float | None  # max |Δ log-prob| on valid frames; None: reported, not gated


GATES = {"fp32": Gate(0.99, 0.01, 1e-3), "fp16": Gate(0.95, 0.02, 5e-2),
         "int8-dynamic": Gate(0.90, 0.03, None), "int8-static": Gate(0.90, 0.03, None)}


@dataclass
class Utt:
    id: str
    text: str
    wave: np.ndarray
    long: bool


def verify_set(ck: Checkpoint, manifest: str | Path, max_utts: int, long_seconds: float = LONG_SECONDS) -> list[Utt]:
    """Up to `max_utts` labelled utterances, plus one concatenation >= `long_seconds` if none is that long."""
    sr = ck.featurizer.sample_rate
    out: list[Utt] = []
    for u in read_manifest(manifest):
        if len(out) >= max_utts:
            break
        if not u.text:
            continue
        try:
            w = load_audio(u.audio, sr)
        except AudioError:
            continue  # evaluate/pseudolabel quarantine such files; here they just don't count
        out.append(Utt(u.id, u.text, w, len(w) >= long_seconds * sr))
    if out and not any(u.long for u in out):
        out.append(concatenate(out, long_seconds, sr)[0])
    return out


def concatenate(utts: list[Utt], seconds: float, sr: int, start: int = 0) -> tuple[Utt, int]:
    """One utterance of at least `seconds`: `utts` from `start` on, 0.3 s apart (cycling through a
    short split), and the index after the last one used."""
    gap = np.zeros(int(0.3 * sr), np.float32)
    waves, texts, i = [], [], start
    while sum(len(w) for w in waves) < seconds * sr:
        u = utts[i % len(utts)]
        waves += [u.wave, gap]
        texts.append(u.text)
        i += 1
    return Utt(f"long:concat-{i}", " ".join(texts), np.concatenate(waves), True), i


def _latency_ms(run, feats: np.ndarray, repeats: int) -> float:
    run(feats)  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run(feats)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def _rel(wer: float | None, base: float | None) -> float | None:
    if wer is None or base is None:
        return None
    if base == 0:
        return 0.0 if wer == 0 else float("inf")
    return round((wer - base) / base, 4)


def _compare(dec: list[Decoded], ref: list[Decoded], idx: list[int]) -> dict:
    """identical / max_diff / agreement of `dec` against PyTorch's `ref` over utterances `idx`."""
    same = [normalize(dec[i].text) == normalize(ref[i].text) for i in idx]
    diffs, agree = [], []
    for i in idx:
        a, b = dec[i].log_probs, ref[i].log_probs
        n = min(len(a), len(b)) if a is not None else 0
        if n:
            diffs.append(float(np.abs(a[:n] - b[:n]).max()))
            agree.append(float(np.mean(a[:n].argmax(-1) == b[:n].argmax(-1))))
    return {"identical": round(float(np.mean(same)), 4) if same else None,
            "max_diff": round(max(diffs), 6) if diffs else None,
            "agreement": round(float(np.mean(agree)), 4) if agree else None}


def with_binary(artifacts: list[Artifact]) -> list[Artifact]:
    """Each sherpa-onnx artifact once more through the `sherpa-onnx-offline` binary, when installed."""
    out = []
    for a in artifacts:
        out.append(a)
        if a.format == "sherpa-onnx" and shutil.which(SHERPA_BIN):
            out.append(dataclasses.replace(a, name=f"{a.name}[bin]", runtime=SHERPA_BIN))
    return out


def verify(ck: Checkpoint, artifacts: list[Artifact], manifest: str | Path, *, max_utts: int = 100,
           latency_seconds: float = 10.0, repeats: int = 5, progress: bool = False,
           long_seconds: float = LONG_SECONDS, transcripts: dict | None = None) -> list[dict]:
    """One row per artifact and runtime (the PyTorch reference row first).

    `transcripts`, if given, receives {row name: {utterance id: text}}: what `edgekd transcribe`
    must print for the same artifact and audio.
    """
    utts = verify_set(ck, manifest, max_utts, long_seconds)
    refs = [u.text for u in utts]
    waves = [u.wave for u in utts]
    torch_art = Artifact("pytorch", "", "pytorch", "fp32")
    ref_dec = open_artifact(torch_art, ck).decode_many(waves)
    # 10 s of features for latency: real audio repeated, so every artifact times the same input
    short = [u.wave for u in utts if not u.long] or waves
    cat = featurize([np.concatenate(short)], ck.featurizer)[0][0].numpy() if utts else None
    lat_feats = np.resize(cat, (int(latency_seconds * ck.featurizer.frame_rate), cat.shape[1])) if utts else None
    rows, base_wer = [], None
    for art in [torch_art] + with_binary(list(artifacts)):
        t0 = time.time()
        rt = open_artifact(art, ck)
        dec = ref_dec if art.format == "pytorch" else rt.decode_many(waves)
        row = {"artifact": art.name, "format": art.format, "runtime": rt.runtime, "precision": art.precision,
               "size_mb": round(artifact_size(art.path) / 1e6, 3) if art.path else None}
        gated = list(range(len(utts)))
        exact_frames = getattr(rt, "window", None)  # LiteRT: exact within one window only
        if exact_frames:
            per_s = ck.featurizer.frame_rate
            gated = [i for i, w in enumerate(waves) if len(w) / ck.featurizer.sample_rate * per_s <= exact_frames]
        row.update(_compare(dec, ref_dec, gated))
        if transcripts is not None:
            transcripts[art.name] = {u.id: d.text for u, d in zip(utts, dec)}
        long_idx = [i for i, u in enumerate(utts) if u.long]
        row["identical_long"] = _compare(dec, ref_dec, long_idx)["identical"] if long_idx else None
        scores = wer_cer(refs, [d.text for d in dec]) if refs else {"wer": None, "cer": None}
        row.update(wer=scores["wer"], cer=scores["cer"])
        if art.format == "pytorch":
            base_wer = scores["wer"]
        row["delta_wer"] = (round(scores["wer"] - base_wer, 4) if base_wer is not None and scores["wer"] is not None
                            else None)
        row["rel_delta_wer"] = _rel(scores["wer"], base_wer)
        if exact_frames:
            changed = sum(normalize(dec[i].text) != normalize(ref_dec[i].text) for i in long_idx)
            row["rel_delta_wer"] = _rel(wer_cer([refs[i] for i in gated], [dec[i].text for i in gated])["wer"],
                                        wer_cer([refs[i] for i in gated], [ref_dec[i].text for i in gated])["wer"]
                                        ) if gated else None
            row["note"] = (f"gated on the {len(gated)} utterances within one {exact_frames}-frame window; fixed windows "
                           f"changed the transcript of {changed} of {len(long_idx)} long utterances (offline LiteRT "
                           "is not exact over long audio: use the streaming artifact)") if changed else ""
        row["latency_ms_10s_1thread"] = (round(_latency_ms(rt.log_probs, lat_feats, repeats), 2)
                                         if _has_feature_input(rt) and lat_feats is not None else None)
        row["ok"] = _ok(row)
        row["utterances"] = len(utts)
        row["long_utterances"] = len(long_idx)
        row["seconds"] = round(time.time() - t0, 1)
        if progress:
            print(f"verify {art.name}: {json.dumps(row)}", flush=True)
        rows.append(row)
    return rows


def _has_feature_input(rt: Runtime) -> bool:
    return type(rt).log_probs is not Runtime.log_probs and not getattr(rt, "waveform", False)


def _ok(row: dict) -> bool:
    if row["format"] == "pytorch":
        return True
    gate = GATES.get(row["precision"])
    if gate is None or row["identical"] is None or row["rel_delta_wer"] is None:
        return False
    if row["identical"] < gate.min_identical or row["rel_delta_wer"] > gate.max_rel_delta_wer:
        return False
    if gate.max_diff is not None and row["max_diff"] is not None and row["max_diff"] > gate.max_diff:
        return False
    return True


def artifact_size(path: str) -> int:
    p = Path(path)
    if p.is_dir():
        return sum(f.stat().st_size for f in p.iterdir() if f.name in ("model.onnx", "tokens.txt"))
    return p.stat().st_size if p.exists() else 0


COLUMNS = ["artifact", "runtime", "precision", "size_mb", "identical", "identical_long", "wer", "delta_wer",
           "rel_delta_wer", "max_diff", "agreement", "latency_ms_10s_1thread", "ok"]


def table_md(rows: list[dict]) -> str:
    from edgekd.tables import table_text

    notes = "".join(f"\n- {r['artifact']}: {r['note']}" for r in rows if r.get("note"))
    return table_text(rows, COLUMNS, markdown=True) + ("\n" + notes if notes else "")
