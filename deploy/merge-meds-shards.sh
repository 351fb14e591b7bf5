#!/bin/sh
# Joins the MEDS folders that `halo-sample --shard K/N --format meds` wrote on several machines into one MEDS
# data set, by moving files only: every shard's data/*.parquet into OUT/data/ (their names, the first record
# number of each file, never collide), and metadata/ once, after checking that it is the same in every shard
# (it is, when all shards ran with the same model, --count, --seed and SOURCE_DATE_EPOCH).
#
# usage: deploy/merge-meds-shards.sh OUT SHARD_DIR...
set -eu
[ "$#" -ge 2 ] || { echo "usage: $0 OUT SHARD_DIR..." >&2; exit 2; }
out=$1
shift
[ ! -e "$out" ] || { echo "$out: already exists; choose a new folder" >&2; exit 1; }
first=$1
for dir in "$@"; do
  for f in codes.parquet dataset.json; do
    [ -f "$dir/metadata/$f" ] || { echo "$dir: no metadata/$f (not a finished halo-sample MEDS folder)" >&2; exit 1; }
    cmp -s "$first/metadata/$f" "$dir/metadata/$f" || {
      echo "$dir/metadata/$f differs from $first's: the shards were not sampled with the same model, --count," >&2
      echo "--seed and SOURCE_DATE_EPOCH, so they are not parts of one data set" >&2
      exit 1
    }
  done
  for f in "$dir"/data/*.parquet; do
    name=$(basename "$f")
    for other in "$@"; do
      [ "$other" = "$dir" ] || [ ! -e "$other/data/$name" ] || { echo "data/$name is in $dir and in $other" >&2; exit 1; }
    done
  done
done
mkdir -p "$out/data"
mv "$first/metadata" "$out/metadata"
for dir in "$@"; do
  mv "$dir"/data/*.parquet "$out/data/"
done
echo "merged $# shards into $out ($(ls "$out/data" | wc -l) data files)"
