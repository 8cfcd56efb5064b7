"""Write models/student/MODEL_CARD.md from the files the student recipe produced (no typed figures).

Usage: python3 scripts/student_card.py --run runs/student-gen --teacher-eval runs/teacher2/eval/results.json --model models/student/student-xs.safetensors
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from model_card import SET_TEXT, pct  # scripts/ is on sys.path when run as a script

from edgekd.models import load_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="the student recipe's run folder (pl/, distil/, eval/)")
    ap.add_argument("--teacher-eval", required=True, help="benchmarks/teacher_eval.py results.json of the teacher")
    ap.add_argument("--model", required=True)
    a = ap.parse_args()
    run, model = Path(a.run), Path(a.model)
    d = json.loads((run / "distil/manifest.json").read_text())
    pl = json.loads((run / "pl/manifest.json").read_text())
    res = json.loads((run / "eval/results.json").read_text())["sets"]
    teacher = json.loads(Path(a.teacher_eval).read_text())["sets"]
    ck = load_checkpoint(model)
    teacher_path = (pl["config"].get("teachers") or ["models/teacher/teacher.safetensors"])[0]
    t_params = load_checkpoint(teacher_path).model.num_params()
    hist = [json.loads(line) for line in (run / "distil/history.jsonl").read_text().splitlines() if line.strip()]
    dev = [h for h in hist if "dev_wer" in h]
    rates = sorted(h["audio_s_per_s"] for h in hist if "audio_s_per_s" in h)
    c, m = d["config"], d["metrics"]
    lines = [
        "# edgekd shipped general student (`student-xs.safetensors`)", "",
        "A small conformer CTC model over characters, distilled by `scripts/train_student.sh` from the shipped",
        "teacher v2 on the teacher's open-vocabulary synthetic corpus. It is the starting point of the demo's",
        "distil stage, which adapts it to drifted target audio by KD (`distil.init`; set it to \"\" to train",
        "from scratch).", "",
        "| | |", "|---|---|",
        f"| preset | `{ck.preset}` ({ck.model.num_params() / 1e6:.2f}M params, 1/{t_params / ck.model.num_params():.0f} "
        f"of the teacher's), stored fp16 ({model.stat().st_size / 1e6:.1f} MB) |",
        f"| teacher | {teacher_path} ({t_params / 1e6:.2f}M params) |",
        f"| soft targets | teacher posteriors, top-{pl['config'].get('k')} per frame, {pl['metrics'].get('utterances')} "
        f"utterances ({pl['metrics'].get('x_realtime')}× real time to label) |",
        f"| loss | `{c['loss']}`: KL at T={c['temperature']} × T² (weight {c['kd_weight']}) + CTC on the corpus "
        f"transcripts (weight {c['ctc_weight']}) |",
        f"| steps | {m['steps']} (batches of ≤ {c['max_frames']} padded frames), AdamW peak lr {c['loop']['lr']}, "
        f"warm-up {c['loop']['warmup_steps']} + cosine, SpecAugment, {c['loop'].get('precision', 'fp32')} autocast |",
        f"| training time | {d['timings'].get('train_s', d['timings']['wall_s']) / 60:.1f} min on 2 CPU cores "
        f"(shared with other work), median {rates[len(rates) // 2]:.0f} s of audio per second |" if rates else "",
        f"| best dev WER (source/dev, held-out sentences) | {100 * m['best']['wer']:.1f} % at step {m['best']['step']} |",
        "", "## Evaluation (`benchmarks/teacher_eval.py`, the teacher's protocol)", "",
        "| set | what | utts | student greedy WER / CER % | student beam+LM WER / CER % | teacher greedy WER / CER % "
        "| pocketsphinx WER / CER % |", "|---|---|---|---|---|---|---|",
    ]
    for name, r in res.items():
        g, b, p = r["greedy"], r.get("beam_lm"), r.get("pocketsphinx")
        t = teacher.get(name, {}).get("greedy")
        lines.append(f"| {name} | {SET_TEXT.get(name, '')} | {g['n']} | {pct(g, 'wer')} / {pct(g, 'cer')} | "
                     f"{pct(b, 'wer')} / {pct(b, 'cer')} | {pct(t, 'wer')} / {pct(t, 'cer')} | "
                     f"{pct(p, 'wer')} / {pct(p, 'cer')} |")
    lines += ["", "Reproduce: `bash scripts/train_student.sh` (after `scripts/train_teacher.sh` built the corpus; it "
              "resumes), then `python3 scripts/student_card.py --run runs/student-gen --teacher-eval "
              "runs/teacher2/eval/results.json --model models/student/student-xs.safetensors`.", "",
              "## Dev WER during training", "", "| step | dev WER | dev CER |", "|---|---|---|"]
    lines += [f"| {h['step']} | {100 * h['dev_wer']:.1f} % | {100 * h['dev_cer']:.1f} % |" for h in dev]
    out = model.with_name("MODEL_CARD.md")
    out.write_text("\n".join(x for x in lines if x is not None) + "\n")
    print(out)


if __name__ == "__main__":
    main()
