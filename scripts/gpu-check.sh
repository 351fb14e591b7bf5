#!/usr/bin/env bash
# The CUDA check, run on a machine with an NVIDIA GPU: trains 2 epochs on CUDA, exports, samples 2,000
# records with --device cuda and with --device cpu from the same model, and prints records/s of both and
# how many records agree (CUDA rounds differently, so a few records may differ; see halo-sample --help).
#
#   scripts/gpu-check.sh [OUT_DIR]        (default runs/gpu-check)
#
# Needs scripts/setup.sh to have run (torch's wheel carries CUDA for the trainer). The CUDA build of ONNX
# Runtime (onnxruntime-gpu, the same version as onnxruntime in requirements.txt) is installed once into
# $HALO_CACHE/venv-ort-gpu-<version>; its CUDA and cuDNN libraries come from the nvidia-* wheels.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${1:-runs/gpu-check}"
source scripts/env.sh
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

ort_version="$(sed -n 's/^onnxruntime==//p' requirements.txt)"
cache="${HALO_CACHE:-$HOME/.cache/halo}"
gpu_venv="$cache/venv-ort-gpu-$ort_version"
if [ ! -f "$gpu_venv/.complete" ]; then
  rm -rf "$gpu_venv"
  python3 -m venv "$gpu_venv"
  "$gpu_venv/bin/pip" install --quiet "onnxruntime-gpu==$ort_version" "nvidia-cudnn-cu13" "nvidia-cublas" \
    "nvidia-cuda-runtime" "nvidia-cufft" "nvidia-curand" "nvidia-cuda-nvrtc"
  touch "$gpu_venv/.complete"
fi
gpu_lib="$(ls "$gpu_venv"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -n1)"
# The CUDA execution provider finds cudart, cuBLAS and cuDNN through the library path.
nvidia_libs="$(find "$gpu_venv" "$root/.venv/" -path '*/site-packages/nvidia/*/lib' -type d 2>/dev/null | paste -sd: -)"
export LD_LIBRARY_PATH="${nvidia_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

rm -rf "$out" && mkdir -p "$out"
halo=target/release/halo
sample=target/release/halo-sample
set -x
"$halo" train --data data/synthea1k-omop --out "$out/checkpoint" --preset small --epochs 2 --device cuda
"$halo" export --checkpoint "$out/checkpoint" --out "$out/model"
"$sample" --model "$out/model" --count 2000 --seed 1 --device cuda --ort-lib "$gpu_lib" --out "$out/cuda.jsonl" 2>&1 | tee "$out/cuda.log"
"$sample" --model "$out/model" --count 2000 --seed 1 --device cpu --out "$out/cpu.jsonl" 2>&1 | tee "$out/cpu.log"
"$sample" bench --model "$out/model" --device cuda --ort-lib "$gpu_lib" --batch-sizes 1,256,1024 --count 1024
set +x
same="$(paste -d'\n' "$out/cuda.jsonl" "$out/cpu.jsonl" | paste - - | awk -F'\t' '$1 == $2' | wc -l)"
echo "gpu-check: CUDA $(grep -o '[0-9.]* records/s' "$out/cuda.log"), CPU $(grep -o '[0-9.]* records/s' "$out/cpu.log"); $same of 2000 records identical on CUDA and CPU"
