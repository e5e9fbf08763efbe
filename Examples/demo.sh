#!/usr/bin/env bash
# The whole product on the bundled trained example (Examples/shapes-plm, a tiny PerceptionLM
# trained on shape scenes): checkpoint → int8 and int4 .plm files → verify → eval against fp32
# on 200 held-out samples (HTML report) → answers about two images → a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
PLMQ=${PLMQ:-.build/release/plmq}
OUT=${OUT:-.build/demo}
MODEL=Examples/shapes-plm
mkdir -p "$OUT"

echo "== plmq inspect $MODEL"
"$PLMQ" inspect "$MODEL" | sed -n 1,12p
echo
echo "== plmq convert: int8 and int4, each with its quality certificate (an eval on the held-out samples)"
"$PLMQ" convert "$MODEL" "$OUT/shapes-q8.plm" --bits 8 --quiet --eval-dataset Examples/samples
"$PLMQ" convert "$MODEL" "$OUT/shapes-q4.plm" --bits 4 --quiet --eval-dataset Examples/samples
"$PLMQ" verify "$OUT/shapes-q8.plm"
"$PLMQ" verify "$OUT/shapes-q4.plm"
echo
echo "== plmq eval: int8 and int4 against the fp32 checkpoint on Examples/samples (200 held-out questions)"
"$PLMQ" eval "$OUT/shapes-q8.plm" "$OUT/shapes-q4.plm" --dataset Examples/samples --max-new-tokens 8 \
  --json "$OUT/report.json" --html "$OUT/report.html" | tee "$OUT/eval.txt"
echo
echo "== plmq run: two questions about two images (look at them: Examples/images/shapes-1.png, shapes-2.png)"
for q in "Examples/images/shapes-1.png|How many shapes do you see?" "Examples/images/shapes-2.png|What size is the green circle?"; do
  image=${q%%|*}; question=${q#*|}
  printf '%s — %s\n  int4: ' "$image" "$question"
  "$PLMQ" run "$OUT/shapes-q4.plm" --image "$image" --prompt "$question" --max-new-tokens 8
done
echo
echo "== summary"
size() { stat -c %s "$1"; }
weights=$(find "$MODEL" -name '*.safetensors' -exec stat -c %s {} + | awk '{s+=$1} END {print s}')
printf '%-22s %12s %s\n' "model" "bytes" ""
printf '%-22s %12s %s\n' "fp32 checkpoint (bf16)" "$weights" "$(grep '^reference accuracy' "$OUT/eval.txt" | sed 's/reference accuracy: //')"
printf '%-22s %12s\n' "int8 .plm" "$(size "$OUT/shapes-q8.plm")"
printf '%-22s %12s\n' "int4 .plm" "$(size "$OUT/shapes-q4.plm")"
grep -E '^(Mean KLD|Same top p|accuracy exact|feature cosine)' "$OUT/eval.txt" | sed 's/^/  /'
echo
echo "The report: $OUT/report.html (open it in a browser); every number: $OUT/report.json"
