#!/usr/bin/env bash
# Hospital-size benchmark of `halo prepare` and of training from its corpus: per stage (read, split, fit,
# encode) the seconds, events per second and peak RSS of the prepare process, then (train/examples/
# corpus_steps.rs) batch assembly alone over one epoch against whole training steps, with the resident and
# anonymous memory of the first STEPS steps (anonymous memory leaves out the mapped corpus's file pages).
#   scripts/bench-prepare.sh DATA [PRESET] [STEPS]      e.g. after scripts/scale-data.sh 30 runs/omop30:
#   scripts/bench-prepare.sh runs/omop30 small 100
# A benchmark that prints figures, not a test: the targets (issue 27) are read off its output.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/env.sh
data="${1:?usage: scripts/bench-prepare.sh DATA [PRESET] [STEPS]}"
preset="${2:-small}"; steps="${3:-100}"
cargo build --release --quiet -p halo-prepare -p halo-cli
cargo build --release --quiet -p halo-train --example corpus_steps
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
start=$EPOCHREALTIME
target/release/halo prepare --data "$data" --out "$work/corpus" --preset "$preset" --json >"$work/stages.json"
wall=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
.venv/bin/python - "$work/stages.json" "$wall" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
events = t["events"]
print(f"bench-prepare: {events:,} events; wall {sys.argv[2]} s")
print(f"{'stage':<8} {'seconds':>8} {'events/s':>12} {'peak RSS MB':>12}")
for s in t["stages"]:
    print(f"{s['name']:<8} {s['seconds']:>8.1f} {events / s['seconds']:>12,.0f} {s['peak_rss_mb']:>12.0f}")
total = sum(s["seconds"] for s in t["stages"])
print(f"{'all':<8} {total:>8.1f} {events / total:>12,.0f} {max(s['peak_rss_mb'] for s in t['stages']):>12.0f}")
PY
du -sh "$work/corpus" | awk '{print "bench-prepare: corpus " $1}'
target/release/examples/corpus_steps "$work/corpus" "$preset" "$steps" 48
