#!/usr/bin/env bash
# Sets up (idempotent), then the whole path on the bundled Synthea-1k OMOP CDM data:
# train a small HALO, test it, export it signed (a throwaway key in $out/keys), package it as the archive a site
# receives, sample as many records as the training split (JSONL, and OMOP CDM tables loaded into DuckDB), evaluate.
# HALO_DEMO_EPOCHS (default 50) and HALO_DEMO_DIR (default runs/demo) change the run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
./scripts/setup.sh
epochs="${HALO_DEMO_EPOCHS:-50}"
out="${HALO_DEMO_DIR:-runs/demo}"
halo=target/release/halo
sample=target/release/halo-sample
rm -rf "$out"
mkdir -p "$out"
set -x
"$halo" train --data data/synthea1k-omop --out "$out/checkpoint" --preset small --epochs "$epochs"
"$halo" test --checkpoint "$out/checkpoint" | tee "$out/test.json"
mkdir -p "$out/keys"
"$halo" keygen --no-password --public-key "$out/keys/halo.pub" --secret-key "$out/keys/halo.key"
"$halo" export --checkpoint "$out/checkpoint" --out "$out/model" --sign "$out/keys/halo.key"
"$sample" verify --model "$out/model" --trust "$out/keys/halo.pub"
"$halo" package --model "$out/model" --public-key "$out/keys/halo.pub" --out "$out/site-bundle.tar.gz"
n_train="$(.venv/bin/python -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["train"]))' "$out/checkpoint/split.json")"
"$sample" --model "$out/model" --count "$n_train" --seed 1 --out "$out/synthetic.jsonl"
"$sample" --model "$out/model" --count "$n_train" --seed 1 --format omop --out "$out/omop"
.venv/bin/python tests/python/check_omop_duckdb.py "$out/omop" data/omop-ddl-5.4-duckdb \
  --database "$out/omop.duckdb" > "$out/omop-check.txt"
.venv/bin/python -c 'import duckdb,sys; c=duckdb.connect(sys.argv[1], read_only=True); print("demo: DuckDB: synthetic persons with a hypertension condition (concept 316866):", c.execute("SELECT count(DISTINCT person_id) FROM cdm.condition_occurrence WHERE condition_concept_id = 316866").fetchone()[0], "of", c.execute("SELECT count(*) FROM cdm.person").fetchone()[0])' "$out/omop.duckdb"
"$halo" evaluate --real data/synthea1k-omop --synthetic "$out/synthetic.jsonl" --checkpoint "$out/checkpoint" \
  --out "$out/report"
set +x
echo "demo: report in $out/report/report.html (figures in $out/report/report.json)" >&2
