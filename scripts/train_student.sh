#!/usr/bin/env bash
# The shipped general student's recipe: student-xs distilled from the shipped teacher v2 on the
# teacher's open-vocabulary corpus (frame-level KD at T=2 on the teacher's soft targets + CTC on the
# corpus transcripts), bf16 autocast, legs of at most HOURS wall time. Rerun after a kill or at the
# end of a leg to resume (pseudolabeling resumes by shard, training by train_state.pt).
# The demo's distil stage starts from this student and adapts it to the drifted target.
# Usage: bash scripts/train_student.sh [DATA_DIR] [RUN_DIR] [HOURS_PER_LEG] [STEPS]
set -euo pipefail
DATA=${1:-data/teacher2}
RUN=${2:-runs/student-gen}
HOURS=${3:-2.5}
STEPS=${4:-4000}
NPROC=$(nproc)
TEACHER=models/teacher/teacher.safetensors
[ -f "$DATA/manifest.json" ] || { echo "no corpus at $DATA: run scripts/train_teacher.sh first (it builds it)"; exit 2; }
# soft targets of the teacher on every training utterance (top-8 per frame); nothing is routed to
# review: the corpus is labeled, its transcripts are the "human" labels of the CTC term
[ -f "$RUN/pl/manifest.json" ] || edgekd pseudolabel -m "$DATA/source/train.jsonl" --teacher "$TEACHER" \
  --out "$RUN/pl" --review-fraction 0 --workers "$NPROC"
edgekd distil --pseudolabels "$RUN/pl" --human-labels "$DATA/source/train.jsonl" --dev "$DATA/source/dev.jsonl" \
  --out "$RUN/distil" --preset student-xs --loss kd+ctc --temperature 2 --ctc-weight 0.5 --steps "$STEPS" \
  --lr 2e-3 --warmup 300 --max-frames 12000 --eval-every 500 --ckpt-every 100 --hours "$HOURS" \
  --precision bf16 --threads "$NPROC" --seed 0
python3 -c "import json,sys; h=[json.loads(l) for l in open('$RUN/distil/history.jsonl')]; sys.exit(0 if max(x['step'] for x in h) >= $STEPS else 3)" \
  || { echo "leg finished before step $STEPS: rerun this script to continue"; exit 0; }
mkdir -p models/student
python3 -m edgekd.models.ship "$RUN/distil/model.safetensors" models/student/student-xs.safetensors
python3 benchmarks/teacher_eval.py --model models/student/student-xs.safetensors --data "$DATA" \
  --lm models/teacher/lm.arpa --out "$RUN/eval"
