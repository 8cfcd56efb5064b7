"""`edgekd eval`: WER/CER of a model (checkpoint or any teacher) on a labeled manifest.

Writes `hyps.jsonl` (id, ref, hyp, per-utterance WER) and `metrics.json`; bad audio is
quarantined in `rejected.jsonl` and scoring goes on.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from edgekd.audio import AudioError, Quarantine, load_audio
from edgekd.decode import greedy, wer_cer
from edgekd.errors import EdgekdError
from edgekd.manifest import read_manifest, write_jsonl
from edgekd.teachers import load_teacher
from edgekd.tokens import Tokenizer


def transcribe(teacher, utts, batch_seconds: float = 120.0, quarantine: Quarantine | None = None,
               progress: bool = False, decoder=None) -> dict[str, str]:
    """Transcripts {id: text} for `utts`, batched by total duration, longest first; greedy CTC
    unless `decoder` (e.g. a `BeamDecoder`: (log_probs, lengths) -> texts) is given; a seq2seq
    teacher (Whisper & co) gives its own transcripts."""
    from tqdm import tqdm

    seq2seq = getattr(teacher, "kind", "ctc") == "seq2seq"
    tok = None if seq2seq else Tokenizer(teacher.tokens)
    out: dict[str, str] = {}
    order = sorted(utts, key=lambda u: -(u.duration or 0))
    bar = tqdm(total=len(order), desc="decode", disable=not progress)
    i = 0
    while i < len(order):
        batch, waves, total = [], [], 0.0
        while i < len(order) and (not batch or total + (order[i].duration or 0) <= batch_seconds):
            u = order[i]
            i += 1
            try:
                waves.append(load_audio(u.audio, teacher.sample_rate))
                batch.append(u)
                total += len(waves[-1]) / teacher.sample_rate
            except AudioError as e:
                if quarantine is not None:
                    quarantine.add_error(u.id, e)
        if batch and seq2seq:
            texts = [t for t, _ in teacher.transcribe(waves)]
        elif batch:
            with torch.no_grad():
                o = teacher(waves)
            texts = (greedy(o.logits, o.lengths, tok) if decoder is None
                     else decoder(torch.log_softmax(o.logits.float(), -1), o.lengths))
        for u, h in zip(batch, texts if batch else []):
            out[u.id] = h
        bar.update(len(batch))
    bar.close()
    return out


def run_eval(model: str, manifest: str | Path, out_dir: str | Path, progress: bool = True, beam: int = 0,
             lm: str | Path | None = None, alpha: float = 0.5, beta: float = 1.0) -> dict:
    """Score `model` (checkpoint path, hf:<id|dir> or onnx:<dir|file>) on `manifest`; returns the metrics.
    `beam` > 0 decodes with CTC prefix beam search of that width, scored by the ARPA word LM `lm`
    (weight `alpha`, word insertion bonus `beta`) when given; 0 is greedy."""
    import jiwer

    if lm and not beam:
        raise EdgekdError("an LM is used by beam search only: give --beam N (e.g. 32) with --lm")
    if lm and not Path(lm).is_file():
        raise EdgekdError(f"{lm}: language model not found")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    utts = [u for u in read_manifest(manifest) if u.text]
    if not utts:
        raise EdgekdError(f"{manifest}: no labeled utterances to score")
    teacher = load_teacher(model)
    decoder = None
    if beam and getattr(teacher, "kind", "ctc") == "seq2seq":
        raise EdgekdError(f"{model}: --beam searches CTC outputs; a seq2seq model decodes greedily by itself")
    if beam:
        from edgekd.decode import BeamDecoder

        decoder = BeamDecoder(teacher.tokens, lm_path=str(lm) if lm else None, beam_width=beam, alpha=alpha, beta=beta)
    t0 = time.time()
    q = Quarantine(out_dir / "rejected.jsonl", stage="eval")
    hyps = transcribe(teacher, utts, quarantine=q, progress=progress, decoder=decoder)
    scored = [u for u in utts if u.id in hyps]
    rows = [{"id": u.id, "ref": u.text, "hyp": hyps[u.id],
             "wer": float(jiwer.wer(u.text, hyps[u.id])) if u.text.strip() else None} for u in scored]
    write_jsonl(out_dir / "hyps.jsonl", rows)
    m = {**wer_cer([u.text for u in scored], [hyps[u.id] for u in scored]), "rejected": q.count,
         "model": str(model), "manifest": str(manifest),
         "decoder": decoder_name(beam, lm, alpha, beta), "seconds": round(time.time() - t0, 2),
         "audio_s": round(sum(u.duration or 0 for u in scored), 1)}
    (out_dir / "metrics.json").write_text(json.dumps(m, indent=2) + "\n")
    return m


def decoder_name(beam: int = 0, lm=None, alpha: float = 0.5, beta: float = 1.0) -> str:
    """How metrics.json names the decoding (defaults: run_eval's)."""
    if not beam:
        return "greedy"
    return f"beam{beam}" + (f"+lm({Path(lm).name}, alpha={alpha}, beta={beta})" if lm else "")
