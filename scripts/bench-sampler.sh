#!/usr/bin/env bash
# Measures halo-sample: records/s and peak memory per batch size, on random models of the `small`
# (n_embd 128, 2 layers, ~760 codes) and `paper` (n_embd 768, 12 layers, ~6,900 codes) dimensions whose
# code biases give MIMIC-III-like records (~1.3 visits of ~15 codes).
#
#   scripts/bench-sampler.sh [small|paper|all] [COUNT] [BATCH_SIZES]
#
# Defaults: all, 256 records per batch size for small and 64 for paper, batch sizes 1,64,256.
# Models are built once into target/bench-models/ (the paper model is about 1 GB).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/env.sh
which="${1:-all}"
count="${2:-}"
batches="${3:-1,64,256}"

cargo build --release --quiet -p halo-infer --bin halo-sample --example make_random_model
bin=target/release/halo-sample
models=target/bench-models
mkdir -p "$models"
echo "halo-sample binary: $(du -h "$bin" | cut -f1) ($(stat -c %s "$bin") bytes)"
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"

for preset in small paper; do
  if [ "$which" != all ] && [ "$which" != "$preset" ]; then continue; fi
  dir="$models/$preset"
  if [ ! -f "$dir/manifest.json" ]; then
    rm -rf "$dir" "$dir.checkpoint"
    target/release/examples/make_random_model "$preset" "$dir" 0 15 1.3
  fi
  n="$count"
  if [ -z "$n" ]; then
    if [ "$preset" = paper ]; then n=64; else n=256; fi
  fi
  echo
  echo "== $preset model, $n records per batch size =="
  "$bin" bench --model "$dir" --batch-sizes "$batches" --count "$n"
done
