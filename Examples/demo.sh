#!/usr/bin/env bash
# The main job on the bundled example: checkpoint → .plm → verify → run both and compare.
set -euo pipefail
cd "$(dirname "$0")/.."
PLMQ=${PLMQ:-.build/release/plmq}
OUT=${OUT:-.build/demo}
mkdir -p "$OUT"

echo "== plmq inspect Examples/tiny-plm"
"$PLMQ" inspect Examples/tiny-plm | sed -n 1,20p
echo
echo "== plmq convert --dry-run (plan and exact size)"
"$PLMQ" convert Examples/tiny-plm "$OUT/tiny-plm-q4.plm" --dry-run | sed -n "/^  storage/,\$p"
echo
echo "== plmq convert --bits 4 and --bits 8"
"$PLMQ" convert Examples/tiny-plm "$OUT/tiny-plm-q4.plm" --quiet
"$PLMQ" convert Examples/tiny-plm "$OUT/tiny-plm-q8.plm" --bits 8 --quiet
ls -l "$OUT"/tiny-plm-q4.plm "$OUT"/tiny-plm-q8.plm
echo
echo "== plmq verify"
"$PLMQ" verify "$OUT/tiny-plm-q4.plm"
"$PLMQ" verify "$OUT/tiny-plm-q8.plm"
echo
echo "== plmq generate: fp32 checkpoint, int8 file, int4 file (greedy token ids)"
for model in Examples/tiny-plm "$OUT/tiny-plm-q8.plm" "$OUT/tiny-plm-q4.plm"; do
  printf '%-28s ' "$(basename "$model")"
  "$PLMQ" generate "$model" --inputs Examples/tiny-plm-prompt.safetensors --max-new-tokens 8 --ignore-eos 2>/dev/null
done
