#!/usr/bin/env bash
# The shipped teacher's recipe. Rerunning it rebuilds the same corpus (same seed: byte-identical
# WAVs) and retrains the teacher; rerunning after a kill resumes training where it stopped.
# Usage: bash scripts/train_teacher.sh [DATA_DIR] [RUN_DIR] [HOURS_OF_TRAINING]
set -euo pipefail
DATA=${1:-data/corpus}
RUN=${2:-runs/teacher}
HOURS=${3:-2.0}
[ -f "$DATA/manifest.json" ] || edgekd synth --out "$DATA" --hours-source 3 --hours-target 1.0 --source-drift 0.5 --seed 1234
# Two cosine cycles: 1400 steps, then the same command with --steps 2800 resumes the run (model,
# optimizer, sampler) and the schedule restarts warm at ~0.6 x the peak lr (dev WER was still
# falling at 1400). Each leg stops after $HOURS hours; rerunning the script continues where it stopped.
for STEPS in 1400 2800; do
  edgekd train --role teacher --preset teacher-m --train "$DATA/source/train.jsonl" --dev "$DATA/source/dev.jsonl" \
    --out "$RUN" --steps $STEPS --lr 5e-4 --warmup 100 --max-frames 6000 --eval-every 350 --ckpt-every 50 \
    --hours "$HOURS" --threads 2 --seed 0
done
mkdir -p models/teacher
python3 -m edgekd.models.ship "$RUN/model.safetensors" models/teacher/teacher.safetensors
edgekd eval --model models/teacher/teacher.safetensors --manifest "$DATA/source/test.jsonl" --out "$RUN/eval-source-test"
edgekd eval --model models/teacher/teacher.safetensors --manifest "$DATA/target/test.jsonl" --out "$RUN/eval-target-test"
# word 3-gram LM over the source transcripts, and the same two splits decoded with beam search + LM
edgekd lm "$DATA/source/train.jsonl" --out models/teacher/lm.arpa
if python3 -c "import flashlight.lib.text" 2>/dev/null; then
  for s in source target; do
    edgekd eval --model models/teacher/teacher.safetensors --manifest "$DATA/$s/test.jsonl" --out "$RUN/eval-$s-test-lm" \
      --beam 32 --lm models/teacher/lm.arpa
  done
fi
python3 scripts/model_card.py --run "$RUN" --data "$DATA" --model models/teacher/teacher.safetensors
