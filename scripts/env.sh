# Sourced by the scripts: the environment the builds and tests need (set-up must have run).
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export LIBTORCH_USE_PYTORCH=1
export PATH="$root/.venv/bin:$PATH"
ORT_DYLIB_PATH="$(ls "$root"/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -n1)"
export ORT_DYLIB_PATH
