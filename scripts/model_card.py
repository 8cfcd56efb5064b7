"""Write models/teacher/MODEL_CARD.md from the files the teacher recipe produced (no typed figures).

Usage: python scripts/model_card.py --run runs/teacher --data data/corpus --model models/teacher/teacher.safetensors
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgekd.models import load_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--prior-train-min", type=float, default=0.0,
                    help="training minutes of earlier legs that predate the cumulative train_s record")
    a = ap.parse_args()
    run, data, model = Path(a.run), Path(a.data), Path(a.model)
    train = json.loads((run / "manifest.json").read_text())
    synth = json.loads((data / "manifest.json").read_text())
    ev = {s: json.loads((run / f"eval-{s}" / "metrics.json").read_text()) for s in ("source-test", "target-test")}
    ck = load_checkpoint(model)
    hist = [json.loads(l) for l in (run / "history.jsonl").read_text().splitlines()]
    dev = [h for h in hist if "dev_wer" in h]
    tm, sm = train["metrics"], synth["config"]
    train_min = train["timings"].get("train_s", train["timings"]["wall_s"]) / 60 + a.prior_train_min
    logs = [h for h in hist if "lr" in h]
    restarts = [h["step"] for prev, h in zip(logs, logs[1:]) if h["lr"] > 2 * prev["lr"]]
    schedule = "warm-up + cosine" + (f", warm restart(s) at step {', '.join(map(str, restarts))}" if restarts else "")
    lines = [
        "# edgekd shipped teacher (`teacher.safetensors`)", "",
        "A conformer CTC acoustic model over characters (`<blk>`, space, `'`, a-z), trained by",
        "`scripts/train_teacher.sh` on synthetic English speech made by `edgekd synth`. It exists so the",
        "pipeline has a teacher to pseudo-label with; it is not a general-purpose recognizer.", "",
        "| | |", "|---|---|",
        f"| preset | `{ck.preset}` ({ck.model.num_params() / 1e6:.2f}M params), stored fp16 ({model.stat().st_size / 1e6:.1f} MB) |",
        f"| featurizer | {ck.featurizer.n_mels}-band log-mel, {ck.featurizer.win_length / 16:.0f} ms window, {ck.featurizer.hop_length / 16:.0f} ms hop (pinned in the file) |",
        f"| training data | `edgekd synth --seed {sm['seed']} --hours-source {sm['hours_source']} --source-drift {sm['source_drift']}`: source/train = {tm['train_hours']} h, {tm['train_utterances']} utterances (espeak-ng, many accents/variants, + piper; half of it with mild drift as augmentation) |",
        f"| steps | {tm['steps']} (batches of ≤ {train['config']['max_frames']} padded frames), AdamW peak lr {train['config']['loop']['lr']}, {schedule}, SpecAugment |",
        f"| training time | {train_min:.1f} min wall on 2 CPU cores (shared with other work), ~{tm['audio_s_per_s']} s of audio per second |",
        f"| best dev WER (source/dev) | {100 * tm['best']['wer']:.1f} % at step {tm['best']['step']} |", "",
        "## Accuracy (greedy CTC, `edgekd eval`)", "",
        "| split | utterances | WER | CER |", "|---|---|---|---|",
    ]
    for name, m in ev.items():
        what = "held-out espeak voice variants, clean" if name == "source-test" else "drifted: noise 5-15 dB SNR, reverb, telephone band, gain"
        lines.append(f"| {name} ({what}) | {m['n']} | {100 * m['wer']:.1f} % | {100 * m['cer']:.1f} % |")
    lm_ev = {s: json.loads((run / f"eval-{s}-lm" / "metrics.json").read_text()) for s in ev
             if (run / f"eval-{s}-lm" / "metrics.json").exists()}
    if lm_ev:
        lines += ["", f"With beam search + the word 3-gram LM shipped beside it (`lm.arpa`, `edgekd lm` over the source/train "
                  f"transcripts; `edgekd eval --beam 32 --lm models/teacher/lm.arpa`):", "",
                  "| split | decoder | WER | CER |", "|---|---|---|---|"]
        lines += [f"| {n} | {m['decoder']} | {100 * m['wer']:.1f} % | {100 * m['cer']:.1f} % |" for n, m in lm_ev.items()]
        lines += ["", "Both domains' sentences come from one text generator, so the LM knows the target's words and",
                  "grammar: on real data an LM helps less. Devices run greedy CTC (sherpa-onnx), so the pipeline's",
                  "verify/profile tables score greedy decoding; the LM serves the teacher's 1-best hard labels."]
    tw = ev["target-test"]["wer"]
    lines += ["", "Reproduce: `bash scripts/train_teacher.sh` (same seed: byte-identical corpus) and then",
              "`edgekd eval --model models/teacher/teacher.safetensors --manifest data/corpus/source/test.jsonl --out runs/eval`.", "",
              "## Where it is and is not usable", "",
              (f"On the target domain its WER is {100 * tw:.1f} %. " +
               ("That is under the ~20 % rule of thumb (distil-whisper) for a teacher worth distilling from." if tw <= 0.2 else
                "That is above the ~20 % rule of thumb (distil-whisper) for a teacher worth distilling from: "
                "it is under-trained for this drift, and distillation from it will inherit its errors. "
                "Training longer (rerun the recipe with more steps) is the first fix.")),
              "", "Dev WER during training:", "", "| step | dev WER | dev CER |", "|---|---|---|"]
    lines += [f"| {h['step']} | {100 * h['dev_wer']:.1f} % | {100 * h['dev_cer']:.1f} % |" for h in dev]
    model.with_name("MODEL_CARD.md").write_text("\n".join(lines) + "\n")
    print(model.with_name("MODEL_CARD.md"))


if __name__ == "__main__":
    main()
