#!/usr/bin/env bash
# The shipped teacher's recipe (teacher v2): an open-vocabulary corpus in every TTS engine here,
# a warm start from teacher v1, bf16 autocast, legs of at most HOURS wall time. Rerunning the
# script after a kill or at the end of a leg resumes where it stopped (model, optimizer, sampler,
# RNG); the corpus is rebuilt byte-identically from its seed when missing.
# Usage: bash scripts/train_teacher.sh [DATA_DIR] [RUN_DIR] [HOURS_PER_LEG] [DEVICE] [STEPS]
#   on a CUDA GPU: bash scripts/train_teacher.sh data/teacher2 runs/teacher2 2.5 cuda
set -euo pipefail
DATA=${1:-data/teacher2}
RUN=${2:-runs/teacher2}
HOURS=${3:-2.5}
DEVICE=${4:-cpu}
STEPS=${5:-3000}
NPROC=$(nproc)
# 8 h labeled source (espeak 60 %, flite 25 %, piper 15 %; flite rms never trained on), 2 h drifted target.
[ -f "$DATA/manifest.json" ] || edgekd synth --out "$DATA" --text open --engines espeak,piper,flite \
  --hours-source 8 --hours-target 2 --dev-fraction 0.02 --test-fraction 0.04 --piper-fraction 0.15 \
  --flite-fraction 0.25 --held-out-voice flite:rms --hours-unseen 0.1 --speed-perturb --pitch-perturb 0.3 \
  --codec-fraction 0.15 --source-drift 0.5 --seed 2026 --workers "$NPROC"
# Warm start: teacher v1 (template text, espeak + piper) already knows the acoustics of two engines,
# which saves the CTC plateau (~700 steps here). It is taken from git history, where it was shipped.
INIT=()
if [ ! -f "$RUN/train_state.pt" ] && git rev-parse --verify -q eaf0c09 >/dev/null; then
  mkdir -p "$RUN" && git show eaf0c09:models/teacher/teacher.safetensors > "$RUN/init-v1.safetensors"
fi
[ -f "$RUN/init-v1.safetensors" ] && INIT=(--init "$RUN/init-v1.safetensors")
edgekd train --role teacher --preset teacher-m --train "$DATA/source/train.jsonl" --dev "$DATA/source/dev.jsonl" \
  --out "$RUN" --steps "$STEPS" --lr 6e-4 --warmup 200 --max-frames 6000 --eval-every 400 --ckpt-every 50 \
  --hours "$HOURS" --threads "$NPROC" --seed 0 --precision bf16 --device "$DEVICE" "${INIT[@]}"
python3 -c "import json,sys; h=[json.loads(l) for l in open('$RUN/history.jsonl')]; sys.exit(0 if max(x['step'] for x in h) >= $STEPS else 3)" \
  || { echo "leg finished before step $STEPS: rerun this script to continue"; exit 0; }
mkdir -p models/teacher
python3 -m edgekd.models.ship "$RUN/model.safetensors" models/teacher/teacher.safetensors
# word 3-gram LM over the open training text (train sentences only; trigrams seen once pruned)
edgekd lm "$DATA/text/train.txt" --out models/teacher/lm.arpa --prune-from 3
python3 benchmarks/teacher_eval.py --model models/teacher/teacher.safetensors --data "$DATA" \
  --lm models/teacher/lm.arpa --out "$RUN/eval"
python3 scripts/model_card.py --run "$RUN" --data "$DATA" --model models/teacher/teacher.safetensors
