#!/bin/bash
# One Slurm job array samples one cohort: task K of N writes shard K/N as a MEDS folder. Submit with the
# array size as the number of shards, and one SOURCE_DATE_EPOCH for all tasks (so their metadata/ agree):
#
#   export SOURCE_DATE_EPOCH=$(date +%s)
#   sbatch --array=0-15 --export=ALL,BUNDLE=/shared/site-bundle,OUT=/shared/cohort,COUNT=10000000,SEED=1,TRUST=RW... \
#       deploy/slurm/halo-sample-array.sh
#   # when every task has finished:
#   deploy/merge-meds-shards.sh /shared/cohort-meds /shared/cohort/shard-*
#
# The array must start at 0 (--array=0-(N-1)). Record i of the cohort depends only on the model, SEED and i,
# so a failed task is simply run again (its folder appears only when complete).
#SBATCH --job-name=halo-sample
#SBATCH --cpus-per-task=2
#SBATCH --mem=2G
#SBATCH --time=04:00:00
#SBATCH --output=halo-sample-%A_%a.log
set -euo pipefail
: "${BUNDLE:?set BUNDLE to the unpacked bundle folder}"
: "${OUT:?set OUT to a folder on shared storage}"
: "${COUNT:?set COUNT to the cohort size (all shards together)}"
: "${SOURCE_DATE_EPOCH:?export one SOURCE_DATE_EPOCH for the whole array before sbatch}"
SEED=${SEED:-1}
K=${SLURM_ARRAY_TASK_ID:?run as a Slurm job array}
N=${SLURM_ARRAY_TASK_COUNT:?run as a Slurm job array}
trust=()
if [ -n "${TRUST:-}" ]; then trust=(--trust "$TRUST"); fi
mkdir -p "$OUT"
if [ "$K" = 0 ]; then
  "$BUNDLE/bin/halo-sample" verify --model "$BUNDLE/model" "${trust[@]}" --quiet
fi
exec "$BUNDLE/bin/halo-sample" --model "$BUNDLE/model" "${trust[@]}" --count "$COUNT" --seed "$SEED" \
  --shard "$K/$N" --format meds --threads "${SLURM_CPUS_PER_TASK:-2}" --quiet --out "$OUT/shard-$K"
