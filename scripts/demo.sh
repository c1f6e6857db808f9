#!/usr/bin/env bash
# The pipeline that exists today, on the embedded default model and the embedded demo data.
# Each stage writes runs/demo/<stage>/ and is skipped when its report already exists, so an
# interrupted demo continues where it stopped (delete runs/demo/<stage> to redo one stage).
# `alignkit demo` (the full stage-three demo with a simulated annotator) will replace this script.
set -euo pipefail
AK=${ALIGNKIT:-.venv/bin/alignkit}
OUT=${DEMO_DIR:-runs/demo}
mkdir -p "$OUT"

stage() {  # stage NAME MARKER-FILE COMMAND...
  local name=$1 marker=$2; shift 2
  if [ -e "$marker" ]; then echo "== $name: done already ($marker)"; return; fi
  echo "== $name"
  if ! "$@"; then
    echo "demo stage '$name' failed; re-run it alone with: $*" >&2
    exit 1
  fi
}

stage "prepare the embedded default model" /nonexistent "$AK" models --prepare
stage "write the demo data" "$OUT/data/demo_pairs.jsonl" "$AK" data demo --output "$OUT/data"
stage "inspect the demo data" "$OUT/data/inspect.json" \
  bash -c "'$AK' data inspect '$OUT/data/demo_pairs.jsonl' --json > '$OUT/data/inspect.json.tmp' && mv '$OUT/data/inspect.json.tmp' '$OUT/data/inspect.json'"
stage "train a reward model (alignkit rm)" "$OUT/rm/report.json" \
  "$AK" rm --data "$OUT/data/demo_pairs.jsonl" --eval-split 0.25 --max-steps 40 --batch-size 4 \
    --max-length 256 --lr 3e-4 --output "$OUT/rm" --save-every 20
stage "best-of-4 with the reward model (alignkit sample)" "$OUT/best_of_4.jsonl" \
  "$AK" sample --prompts "$OUT/data/demo_prompts.jsonl" --best-of-n 4 --reward-model "$OUT/rm" \
    --max-new-tokens 48 --seed 0 --output "$OUT/best_of_4.jsonl" --export-pairs "$OUT/bon_pairs.jsonl"
stage "DPO on the demo pairs (alignkit dpo)" "$OUT/dpo/report.json" \
  "$AK" dpo --data "$OUT/data/demo_pairs.jsonl" --eval-split 0.25 --max-steps 8 --batch-size 4 \
    --max-length 256 --lr 5e-5 --output "$OUT/dpo"
stage "PPO against the reward model (alignkit ppo)" "$OUT/ppo/report.json" \
  "$AK" ppo --prompts "$OUT/data/demo_prompts.jsonl" --reward-model "$OUT/rm" --max-steps 2 \
    --batch-size 8 --max-new-tokens 32 --output "$OUT/ppo"
echo "== demo finished: see $OUT/*/report.json"
