#!/usr/bin/env bash
# Side-by-side speed of plmq, llama.cpp and transformers on one PerceptionLM checkpoint, on this
# machine, in one run: each plmq measurement is followed at once by the same llama.cpp measurement
# (plmq, llama.cpp, plmq, llama.cpp, …, each under the shared lock), then transformers' timing at
# that thread count. Prints one markdown table of figures and ratios (also saved as $OUT/table.md);
# every raw JSON output is kept in $OUT.
#
#   Examples/peers/compare_peers.sh
#   RUNS=3 LONG_RUNS=2 THREADS="1 2" Examples/peers/compare_peers.sh
#
# Measured at each of $THREADS: decode tokens/s (plmq int4 vs Q4_0, int8 vs Q8_0; 64 tokens from an
# empty context), prefill tokens/s at $PROMPTS tokens (int4 vs Q4_0), decode at depth $DEPTH (64
# tokens after $DEPTH tokens of context, int4 vs Q4_0; several depths or none may be given), the vision tower on $TILES tile(s) (plmq int4
# vs transformers), and transformers' bf16 and fp32 vision tower and prefill (hf_timing.py).
#
# Settings (environment): CHECKPOINT (/work/plm1b), Q4 / Q8 (.plm files; made with plmq convert
# when missing), PLMQ (release binary; built when missing), PEERS (/work/peers: llama.cpp build and
# GGUF files), PYTHON (/work/venv/bin/python, with Examples/peers/requirements.txt), RUNS (3),
# LONG_RUNS (runs of the 4096-token prefill and depth figures; $RUNS), THREADS ("1 2"),
# PROMPTS ("512 4096"), DEPTH (4096), TILES (1), HF (1; 0 skips transformers), HF_DTYPES
# (bfloat16,float32), HF_SKIP_SECONDS (300: transformers figures estimated longer are skipped),
# HF_MAX_SECONDS (60: a transformers figure whose first run is longer is timed once),
# LOCK (/work/.swift-build.lock when it exists; empty for none), OUT (a new folder in $PEERS).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PEERS=${PEERS:-/work/peers}
CHECKPOINT=${CHECKPOINT:-/work/plm1b}
Q4=${Q4:-/work/plm1b-q4.plm}
Q8=${Q8:-/work/plm1b-q8.plm}
PLMQ=${PLMQ:-$REPO/.build/release/plmq}
PYTHON=${PYTHON:-/work/venv/bin/python}
RUNS=${RUNS:-3}
LONG_RUNS=${LONG_RUNS:-$RUNS}
THREADS=${THREADS:-"1 2"}
PROMPTS=${PROMPTS-"512 4096"}
DEPTH=${DEPTH-4096}
TILES=${TILES-1}
HF=${HF:-1}
HF_DTYPES=${HF_DTYPES:-bfloat16,float32}
HF_SKIP_SECONDS=${HF_SKIP_SECONDS:-300}
HF_MAX_SECONDS=${HF_MAX_SECONDS:-60}
if [ -z "${LOCK+set}" ]; then LOCK=/work/.swift-build.lock; [ -e "$LOCK" ] || LOCK=; fi
OUT=${OUT:-$PEERS/run-$(date -u +%Y%m%dT%H%M%SZ)}
export LOCK HF_HUB_OFFLINE=1

locked() { if [ -n "$LOCK" ]; then flock "$LOCK" "$@"; else "$@"; fi; }
say() { echo "compare_peers: $*" >&2; }

LLAMA_SRC="$PEERS/llama_cpp_python-0.3.36/vendor/llama.cpp"
BIN="$PEERS/llama.cpp-build/bin"
NAME=$(basename "$CHECKPOINT")
GGUF="$PEERS/gguf/$NAME"

# 1. llama.cpp, the GGUF files, the .plm files and the plmq binary (each skipped when present).
PEERS="$PEERS" "$HERE/build_llamacpp.sh" >&2
if [ ! -f "$GGUF/$NAME-q4_0.gguf" ] || [ ! -f "$GGUF/$NAME-q8_0.gguf" ]; then
  say "converting the text model of $CHECKPOINT to GGUF"
  locked "$PYTHON" "$HERE/plm_text_to_gguf.py" "$CHECKPOINT" "$GGUF" --llama-cpp "$LLAMA_SRC" --bin "$BIN" >&2
fi
if [ ! -x "$PLMQ" ]; then
  say "building plmq (release)"
  (cd "$REPO" && locked swift build -c release --product plmq >&2)
fi
for pair in "4:$Q4" "8:$Q8"; do
  bits=${pair%%:*}; plm=${pair#*:}
  [ -f "$plm" ] || { say "converting $CHECKPOINT to $plm ($bits bits)"; locked "$PLMQ" convert --bits "$bits" "$CHECKPOINT" "$plm" >&2; }
done

mkdir -p "$OUT"
[ -f "$OUT/meta.json" ] && cp "$OUT/meta.json" "$OUT/meta-$(date -u +%H%M%S).json"  # an earlier invocation's settings
{
  echo "{\"date\": \"$(date -u +%FT%TZ)\", \"plmq_commit\": \"$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)\","
  echo " \"cpu\": \"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')\", \"cores\": $(nproc),"
  echo " \"runs\": $RUNS, \"long_runs\": $LONG_RUNS, \"threads\": \"$THREADS\", \"prompts\": \"$PROMPTS\", \"depth\": \"$DEPTH\", \"tiles\": \"$TILES\","
  echo " \"checkpoint\": \"$CHECKPOINT\", \"q4\": \"$Q4\", \"q8\": \"$Q8\", \"llama_cpp\": \"0c1e57098\"}"
} > "$OUT/meta.json"

# Each measurement waits for a quiet machine and records how much CPU time other processes took
# meanwhile ($OUT/NAME.quiet.json; see when_quiet.py): the table marks disturbed figures.
# A measurement whose outputs are already in $OUT is kept (rerun the script on the same OUT to
# finish an interrupted run; delete NAME.json to measure it again).
quiet() { local out=$1; shift; locked "$PYTHON" "$HERE/when_quiet.py" "$OUT/$out.quiet.json" -- "$@"; }
done_already() { [ -s "$OUT/$1.json" ] && [ -s "$OUT/$1.quiet.json" ] && say "kept $1 (already measured)"; }
plmq_bench() { local out=$1; shift; done_already "$out" && return; say "plmq bench $*"; quiet "$out" "$PLMQ" bench "$@" --json > "$OUT/$out.json"; }
llama_bench() { local out=$1; shift; done_already "$out" && return; say "llama-bench $*"; quiet "$out" "$BIN/llama-bench" "$@" -o json > "$OUT/$out.json" 2> "$OUT/$out.log"; }

# 2. The interleaved measurements.
for t in $THREADS; do
  plmq_bench "plmq-int4-decode-t$t" "$Q4" --depth 0 --runs "$RUNS" --threads "$t"
  llama_bench "llama-q4_0-decode-t$t" -m "$GGUF/$NAME-q4_0.gguf" -p 0 -n 64 -r "$RUNS" -t "$t"
  plmq_bench "plmq-int8-decode-t$t" "$Q8" --depth 0 --runs "$RUNS" --threads "$t"
  llama_bench "llama-q8_0-decode-t$t" -m "$GGUF/$NAME-q8_0.gguf" -p 0 -n 64 -r "$RUNS" -t "$t"
  for p in $PROMPTS; do
    r=$RUNS; [ "$p" -gt 1024 ] && r=$LONG_RUNS
    plmq_bench "plmq-int4-prefill$p-t$t" "$Q4" --prompt "$p" --runs "$r" --threads "$t"
    llama_bench "llama-q4_0-prefill$p-t$t" -m "$GGUF/$NAME-q4_0.gguf" -p "$p" -n 0 -r "$r" -t "$t"
  done
  for d in $DEPTH; do
    plmq_bench "plmq-int4-depth$d-t$t" "$Q4" --depth "$d" --runs "$LONG_RUNS" --threads "$t"
    llama_bench "llama-q4_0-depth$d-t$t" -m "$GGUF/$NAME-q4_0.gguf" -p 0 -n 64 -d "$d" -r "$LONG_RUNS" -t "$t"
  done
  tiles_args=(); for n in $TILES; do tiles_args+=(--vision-tiles "$n"); done
  [ -n "$TILES" ] && plmq_bench "plmq-int4-vision-t$t" "$Q4" "${tiles_args[@]}" --runs "$RUNS" --threads "$t"
  if [ "$HF" = 1 ] && ! done_already "hf-t$t"; then
    say "transformers at $t thread(s)"
    quiet "hf-t$t" "$PYTHON" "$HERE/hf_timing.py" "$CHECKPOINT" --threads "$t" --dtypes "$HF_DTYPES" \
      --tiles "$(echo $TILES | tr ' ' ,)" --prompts "$(echo $PROMPTS | tr ' ' ,)" --runs "$RUNS" \
      --skip-seconds "$HF_SKIP_SECONDS" --max-seconds "$HF_MAX_SECONDS" > "$OUT/hf-t$t.json" 2> "$OUT/hf-t$t.log"
  fi
done

# 3. The table.
"$PYTHON" "$HERE/peers_table.py" "$OUT" | tee "$OUT/table.md"
say "raw outputs in $OUT"
