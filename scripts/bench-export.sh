#!/usr/bin/env bash
# Export-time benchmark for inpatient-size models: a random model of ~2,500 codes (the `small` preset's
# dimensions) whose visits sample about SAMPLED codes while its training summary says the data's visits hold
# TARGET (default 19.5 against 90: what a model trained on a MEDS ICU data set did before the visit-size group),
# so that the sampling calibration has to work as hard as it ever does. Prints `halo export`'s progress and the
# wall time; the export must finish in under 3 minutes on 2 cores with progress at least every 10 s.
#   scripts/bench-export.sh [TARGET] [SAMPLED] [VISITS]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/env.sh
target="${1:-90}"; sampled="${2:-19.5}"; visits="${3:-16}"
cargo build --release --quiet -p halo-cli -p halo-infer --example make_random_model
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
HALO_KEEP_CHECKPOINT=1 target/release/examples/make_random_model dense "$work/random" 0 "$sampled" "$visits"
.venv/bin/python - "$work/random.checkpoint/training.json" "$target" "$visits" <<'PY'
import json, sys
path, target, visits = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
t = json.load(open(path))
t.update(mean_codes_per_visit=target, mean_visits=visits, records=1000, train_records=800)
json.dump(t, open(path, "w"))
PY
start=$EPOCHREALTIME
elapsed() { awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
/usr/bin/time -f "bench-export: peak RSS %M KB" target/release/halo export --checkpoint "$work/random.checkpoint" \
  --out "$work/model" --allow-small-cells 2>&1 | while IFS= read -r line; do printf '%6s s  %s\n' "$(elapsed)" "$line"; done
echo "bench-export: target $target codes a visit, random model sampling about $sampled: $(elapsed) s in all"
