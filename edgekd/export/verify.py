"""`edgekd verify`: every exported artifact against the PyTorch model, on real audio.

For each artifact: max |Δ log-prob| against the PyTorch fp32 model on the valid frames of real
test utterances, the share of frames whose best token agrees, WER/CER of greedy decoding on the
test manifest (and ΔWER vs the PyTorch model), file size, and 1-thread latency for 10 s of
audio on this host (median of repeated runs). A row passes when the diff is within the
tolerance of its precision, or — for int8, whose log-probs of unlikely tokens legitimately
move by more — when ≥ 95 % of frames agree on the best token.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from edgekd.audio import AudioError, featurize, load_audio
from edgekd.decode import wer_cer
from edgekd.manifest import read_manifest
from edgekd.models import Checkpoint
from edgekd.records import Artifact
from edgekd.tokens import Tokenizer

TOLERANCE = {"fp32": 1e-3, "fp16": 5e-2, "int8-dynamic": None, "int8-static": None}  # None: use agreement
MIN_AGREEMENT = 0.95


def _utterances(ck: Checkpoint, manifest: str | Path, max_utts: int):
    out = []
    for u in read_manifest(manifest):
        if len(out) >= max_utts:
            break
        if not u.text:
            continue
        try:
            w = load_audio(u.audio, ck.featurizer.sample_rate)
        except AudioError:
            continue  # evaluate/pseudolabel quarantine such files; here they just don't count
        f, n = featurize([w], ck.featurizer)
        out.append((u, w, f[0, : int(n[0])].numpy()))
    return out


def _runner(art: Artifact, ck: Checkpoint, threads: int = 1):
    """fn(feats (T, F)) -> log_probs (T', V) for the artifact."""
    if art.format == "pytorch":
        def run(f):
            with torch.no_grad():
                lp, n = ck.model.log_probs(torch.from_numpy(f)[None], torch.tensor([len(f)]))
            return lp[0, : int(n[0])].numpy()
        return run
    if art.format == "onnx":
        from edgekd.export.onnx import ort_session, run_onnx

        sess = ort_session(art.path, threads)

        def run(f):
            lp, n = run_onnx(sess, f[None].astype(np.float32), np.array([len(f)]))
            return lp[0, : int(n[0])]
        return run
    if art.format == "tflite":
        from edgekd.export.litert import TfliteModel, chunked_log_probs

        m = TfliteModel(art.path, threads)
        return lambda f: chunked_log_probs(m, f, m.window, art.context, ck.dims.subsampling)
    raise ValueError(f"no runner for format {art.format}")


def _sherpa_texts(art: Artifact, utts, sample_rate: int, threads: int = 1) -> list[str]:
    import sherpa_onnx

    d = Path(art.path)
    rec = sherpa_onnx.OfflineRecognizer.from_zipformer_ctc(model=str(d / "model.onnx"), tokens=str(d / "tokens.txt"),
                                                          num_threads=threads, decoding_method="greedy_search")
    out = []
    for _, w, _ in utts:
        s = rec.create_stream()
        s.accept_waveform(sample_rate, w)
        rec.decode_stream(s)
        out.append(s.result.text.strip())
    return out


def _latency_ms(run, feats: np.ndarray, repeats: int) -> float:
    run(feats)  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run(feats)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def verify(ck: Checkpoint, artifacts: list[Artifact], manifest: str | Path, *, max_utts: int = 100,
           latency_seconds: float = 10.0, repeats: int = 5, progress: bool = False) -> list[dict]:
    """One row per artifact (plus the PyTorch reference row first)."""
    from edgekd.decode import greedy

    tok = Tokenizer(ck.tokens)
    utts = _utterances(ck, manifest, max_utts)
    refs = [u.text for u, _, _ in utts]
    torch_run = _runner(Artifact("pytorch", "", "pytorch", "fp32"), ck)
    ref_lp = [torch_run(f) for _, _, f in utts]
    # 10 s of features for latency: real audio repeated, so every artifact times the same input
    cat = np.concatenate([f for _, _, f in utts]) if utts else np.zeros((0, ck.dims.n_mels), np.float32)
    n_lat = int(latency_seconds * ck.featurizer.frame_rate)
    lat_feats = np.resize(cat, (n_lat, cat.shape[1])).astype(np.float32) if len(cat) else None
    rows = []
    base_wer = None
    for art in [Artifact("pytorch", "", "pytorch", "fp32")] + list(artifacts):
        t0 = time.time()
        row = {"artifact": art.name, "format": art.format, "precision": art.precision,
               "size_mb": round(artifact_size(art.path) / 1e6, 3) if art.path else None}
        if art.format == "sherpa-onnx":
            hyps = _sherpa_texts(art, utts, ck.featurizer.sample_rate)
            row.update(max_diff=None, agreement=None)
            run = None
        else:
            run = _runner(art, ck)
            lps = [run(f) for _, _, f in utts]
            diffs, agree = [], []
            for a, b in zip(lps, ref_lp):
                n = min(len(a), len(b))
                if n:
                    diffs.append(float(np.abs(a[:n] - b[:n]).max()))
                    agree.append(np.mean(a[:n].argmax(-1) == b[:n].argmax(-1)))
            hyps = [greedy(torch.from_numpy(np.ascontiguousarray(lp))[None], [len(lp)], tok)[0] for lp in lps]
            row.update(max_diff=round(max(diffs), 6) if diffs else None,
                       agreement=round(float(np.mean(agree)), 4) if agree else None)
        scores = wer_cer(refs, hyps) if refs else {"wer": None, "cer": None}
        row.update(wer=scores["wer"], cer=scores["cer"])
        if art.format == "pytorch":
            base_wer = scores["wer"]
        row["delta_wer"] = (round(scores["wer"] - base_wer, 4) if base_wer is not None and scores["wer"] is not None
                            else None)
        row["latency_ms_10s_1thread"] = (round(_latency_ms(run, lat_feats, repeats), 2)
                                         if run is not None and lat_feats is not None else None)
        row["ok"] = _ok(row)
        row["utterances"] = len(utts)
        row["seconds"] = round(time.time() - t0, 1)
        if progress:
            print(f"verify {art.name}: {json.dumps(row)}", flush=True)
        rows.append(row)
    return rows


def _ok(row: dict) -> bool:
    if row["format"] == "pytorch":
        return True
    if row["format"] == "sherpa-onnx":  # same features and graph as the fp32 ONNX: same transcripts
        return row["delta_wer"] is not None and row["delta_wer"] <= 0.01
    tol = TOLERANCE.get(row["precision"])
    if row["max_diff"] is None:
        return False
    if tol is not None and row["max_diff"] <= tol:
        return True
    lenient = tol is None or row["format"] == "tflite"  # int8, or LiteRT's chunk boundaries
    return lenient and row["agreement"] is not None and row["agreement"] >= MIN_AGREEMENT


def artifact_size(path: str) -> int:
    p = Path(path)
    if p.is_dir():
        return sum(f.stat().st_size for f in p.iterdir() if f.name in ("model.onnx", "tokens.txt"))
    return p.stat().st_size if p.exists() else 0


COLUMNS = ["artifact", "format", "precision", "size_mb", "max_diff", "agreement", "wer", "cer", "delta_wer",
           "latency_ms_10s_1thread", "ok"]


def table_md(rows: list[dict]) -> str:
    from edgekd.tables import table_text

    return table_text(rows, COLUMNS, markdown=True)

