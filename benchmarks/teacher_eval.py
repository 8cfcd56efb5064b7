"""The teacher's evaluation protocol: four kinds of audio it never trained on, greedy and beam+LM,
with pocketsphinx 5 (a recognizer trained on real speech) on the same sets as the anchor.

Usage: python3 benchmarks/teacher_eval.py --model models/teacher/teacher.safetensors --data data/teacher2 --lm models/teacher/lm.arpa --out runs/teacher2-eval

Sets (every sentence is a test sentence: never in training, by the hash split of opentext.py):
  heldout       source/test: held-out espeak voice variants (+ piper on new sentences)
  unseen-voice  source/test_unseen: a voice left out of training entirely (flite rms)
  real-*        human speech from Debian pocketsphinx-testdata (LibriVox read speech, card names)
  target        target/test: the drifted domain (noise, reverberation, telephone band, gain)
Writes `<out>/results.json` (read by scripts/model_card.py) and prints one table.
pocketsphinx scores are cached under `<out>/pocketsphinx/` (they do not depend on the teacher).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

from edgekd.audio import load_audio
from edgekd.decode import wer_cer
from edgekd.evaluate import run_eval
from edgekd.manifest import Utterance, read_manifest, write_manifest
from edgekd.tokens import normalize_text

PS_TESTDATA = Path("/usr/share/pocketsphinx/test/data")


def real_speech_manifests(out: Path) -> dict[str, Path]:
    """Manifests of pocketsphinx-testdata's LibriVox and cards recordings (apt pocketsphinx-testdata)."""
    found = {}
    for name, folder, trans in (("real-librivox", "librivox", "transcription"), ("real-cards", "cards", "cards.transcription")):
        t = PS_TESTDATA / folder / trans
        if not t.exists():
            print(f"skipping {name}: {t} missing (apt-get install pocketsphinx-testdata)")
            continue
        utts = []
        for line in t.read_text().splitlines():
            m = re.match(r"<s>(.*)</s>\s*\((.+)\)", line.strip())
            if not m:
                continue
            wav = PS_TESTDATA / folder / f"{Path(m.group(2)).name}.wav"
            x = load_audio(wav)
            utts.append(Utterance(id=m.group(2), audio=str(wav), duration=len(x) / 16000, sample_rate=16000, channels=1,
                                  text=normalize_text(m.group(1)), domain=name, tags={"engine": "human"}))
        found[name] = write_manifest(out / f"{name}.jsonl", utts)
    return found


def pocketsphinx_scores(manifest: Path, cache: Path) -> dict | None:
    """pocketsphinx 5's US-English model on every utterance (cached); None when it is not installed."""
    if cache.exists():
        return json.loads(cache.read_text())
    try:
        from pocketsphinx import Decoder
    except ImportError:
        print("pocketsphinx not installed (pip install pocketsphinx): no anchor column")
        return None
    import numpy as np

    dec = Decoder(samprate=16000, logfn="/dev/null")
    utts = [u for u in read_manifest(manifest) if u.text]
    refs, hyps, t0 = [], [], time.time()
    for u in utts:
        pcm = (np.clip(load_audio(u.audio), -1, 1) * 32767).astype(np.int16).tobytes()
        dec.start_utt()
        dec.process_raw(pcm, full_utt=True)
        dec.end_utt()
        refs.append(u.text)
        hyps.append(normalize_text(dec.hyp().hypstr if dec.hyp() else ""))
    m = {**wer_cer(refs, hyps), "seconds": round(time.time() - t0, 1), "audio_s": round(sum(u.duration for u in utts), 1)}
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(m, indent=2) + "\n")
    return m


def by_engine(hyps_jsonl: Path, manifest: Path) -> dict[str, dict]:
    """Greedy WER/CER per TTS engine of one set (from eval's hyps.jsonl and the manifest's tags)."""
    eng = {u.id: (u.tags or {}).get("engine", "?") for u in read_manifest(manifest)}
    rows = [json.loads(line) for line in hyps_jsonl.read_text().splitlines()]
    out = {}
    for e in sorted({eng[r["id"]] for r in rows}):
        sel = [r for r in rows if eng[r["id"]] == e]
        out[e] = wer_cer([r["ref"] for r in sel], [r["hyp"] for r in sel])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="corpus made by the teacher recipe (edgekd synth --text open)")
    ap.add_argument("--lm", default=None, help="ARPA word LM for the beam+LM rows")
    ap.add_argument("--beam", type=int, default=32)
    ap.add_argument("--out", required=True)
    ap.add_argument("--no-pocketsphinx", action="store_true")
    ap.add_argument("--sets", default="", help="comma-separated subset of set names")
    a = ap.parse_args()
    data, out = Path(a.data), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    sets = {"heldout": data / "source/test.jsonl", "unseen-voice": data / "source/test_unseen.jsonl",
            **real_speech_manifests(out / "real"), "target": data / "target/test.jsonl"}
    sets = {k: v for k, v in sets.items() if v.exists() and (not a.sets or k in a.sets.split(","))}
    results = {}
    for name, man in sets.items():
        r = {"manifest": str(man), "greedy": run_eval(a.model, man, out / name / "greedy", progress=False)}
        if a.lm:
            r["beam_lm"] = run_eval(a.model, man, out / name / "beam-lm", progress=False, beam=a.beam, lm=a.lm)
        r["by_engine"] = by_engine(out / name / "greedy" / "hyps.jsonl", man)
        if not a.no_pocketsphinx:
            r["pocketsphinx"] = pocketsphinx_scores(man, out / "pocketsphinx" / f"{name}.json")
        results[name] = r
        print(name, json.dumps({k: (v.get("wer"), v.get("cer")) for k, v in r.items() if isinstance(v, dict) and "wer" in v}))
    (out / "results.json").write_text(json.dumps({"model": a.model, "lm": a.lm, "sets": results}, indent=2) + "\n")
    print(table(results))


def table(results: dict) -> str:
    pct = lambda m, k: f"{100 * m[k]:.1f}" if m and m.get(k) == m.get(k) else "–"  # noqa: E731  (nan -> dash)
    lines = ["| set | utts | audio min | greedy WER / CER % | beam+LM WER / CER % | pocketsphinx WER / CER % |",
             "|---|---|---|---|---|---|"]
    for name, r in results.items():
        g, b, p = r["greedy"], r.get("beam_lm"), r.get("pocketsphinx")
        lines.append(f"| {name} | {g['n']} | {g['audio_s'] / 60:.1f} | {pct(g, 'wer')} / {pct(g, 'cer')} | "
                     f"{pct(b, 'wer')} / {pct(b, 'cer')} | {pct(p, 'wer')} / {pct(p, 'cer')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
