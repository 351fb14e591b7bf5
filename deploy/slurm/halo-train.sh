#!/bin/bash
# Train on one GPU node from a corpus prepared by deploy/slurm/halo-prepare.sh. The corpus is memory-mapped:
# the process holds the model, the optimizer and one batch, not the records (its anonymous memory did not grow
# from 34,000 to 339,000 patients, docs/scale-out.md). A killed or timed-out job is resubmitted as is:
# --resume continues from the last finished epoch, bit for bit.
#
#   sbatch --export=ALL,HALO=/opt/halo/bin,CORPUS=/shared/corpus,OUT=/shared/runs/ck deploy/slurm/halo-train.sh
#SBATCH --job-name=halo-train
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --time=24:00:00
#SBATCH --output=halo-train-%j.log
set -euo pipefail
: "${HALO:?set HALO to the folder holding halo}"
: "${CORPUS:?set CORPUS to the prepared corpus}"
: "${OUT:?set OUT to the checkpoint folder}"
exec "$HALO/halo" train --corpus "$CORPUS" --out "$OUT" --preset "${PRESET:-small}" --seed "${SEED:-4}" \
  --epochs "${EPOCHS:-50}" --device cuda --resume --quiet
