#!/bin/bash
# Prepare a hospital export once, on a CPU node, into a corpus on shared storage that training nodes
# memory-map (`halo train --corpus`). One process, one core: measured 2.6 us an event (386,000 events/s) and
# about 31 bytes an event at its peak (docs/scale-out.md), so a 2.5 x 10^8-event export needs about 11 minutes
# and 8 GB. Submit with:
#
#   sbatch --export=ALL,HALO=/opt/halo/bin,DATA=/shared/omop-export,CORPUS=/shared/corpus deploy/slurm/halo-prepare.sh
#
# Give the same --preset (or --n-ctx) as the training will, and the same --seed, --min-patients and encoding
# options; the corpus appears at CORPUS only when complete.
#SBATCH --job-name=halo-prepare
#SBATCH --cpus-per-task=1
#SBATCH --mem=16G
#SBATCH --time=02:00:00
#SBATCH --output=halo-prepare-%j.log
set -euo pipefail
: "${HALO:?set HALO to the folder holding halo and halo-prepare}"
: "${DATA:?set DATA to the OMOP, MEDS or JSONL export}"
: "${CORPUS:?set CORPUS to a new folder on shared storage}"
exec "$HALO/halo" prepare --data "$DATA" --out "$CORPUS" --preset "${PRESET:-small}" --seed "${SEED:-4}"
