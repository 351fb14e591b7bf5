# Sourced by the scripts: the environment the builds and tests need (set-up must have run).
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export LIBTORCH_USE_PYTORCH=1
# Binaries we ship carry no path of the machine that built them: dependency sources (named in panic
# locations) appear under /cargo instead of this machine's cargo home. Workspace paths are already relative.
export RUSTFLAGS="--remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo"
# The Python onnxruntime of the tests' clients writes no telemetry either (halo-sample turns it off itself).
export ORT_DISABLE_TELEMETRY=1
export PATH="$root/.venv/bin:$PATH"
ORT_DYLIB_PATH="$(ls "$root"/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -n1)"
export ORT_DYLIB_PATH
