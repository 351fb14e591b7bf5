#!/usr/bin/env bash
# Compares halo-sample binaries (or settings) on one model directory on a noisy machine: runs `halo-sample bench`
# for each in turn, N rounds, and prints the best and the median records/s per batch size.
#
#   scripts/bench-compare.sh MODEL_DIR ROUNDS LABEL=BINARY[ ARGS...] [LABEL=BINARY[ ARGS...] ...]
#
# e.g. scripts/bench-compare.sh runs/demo/model 5 \
#        "before=/tmp/halo-sample-old --batch-sizes 1,256 --count 2048" \
#        "after=target/release/halo-sample --batch-sizes 1,256 --count 2048"
# The binaries find ONNX Runtime as halo-sample does (ORT_DYLIB_PATH defaults to this checkout's copy).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
model="$1"
rounds="$2"
shift 2
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$root/target/release/libonnxruntime.so}"
declare -A figures
for _ in $(seq "$rounds"); do
  for spec in "$@"; do
    label="${spec%%=*}"
    read -r -a command <<< "${spec#*=}"
    # The rows of the bench table: code module, batch, ...; records/s is the column headed so.
    while read -r batch rate; do
      figures["$label batch $batch"]+="$rate "
    done < <("${command[0]}" bench --model "$model" --no-dense "${command[@]:1}" 2>&1 | awk '
      /records\/s/ { for (i = 1; i <= NF; i++) if ($i == "records/s") col = i - 1 }
      col && ($1 == "native" || $1 == "incremental" || $1 == "dense") && $2 ~ /^[0-9]+$/ { print $2, $col }')
  done
done
for key in "${!figures[@]}"; do
  printf '%s: %s\n' "$key" "$(tr ' ' '\n' <<< "${figures[$key]}" | sed '/^$/d' | sort -g |
    awk '{ v[NR] = $1 } END { printf "best %.1f, median %.1f (%d runs)", v[NR], v[int((NR + 1) / 2)], NR }')"
done | sort
