"""Validates a MEDS dataset folder with the MEDS project's own schemas (the `meds` package) and the rules
its README states: every data file matches DataSchema, codes.parquet matches CodeMetadataSchema and lists
every code of the data, dataset.json matches DatasetMetadataSchema, each subject sits in one file, its rows
contiguous and in time order (static rows, time null, first). Prints `meds validation passed` and the
counts, or raises."""

import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
from meds import CodeMetadataSchema, DataSchema, DatasetMetadataSchema

root = Path(sys.argv[1])
files = sorted((root / "data").rglob("*.parquet"))
assert files, f"{root}: no data/*.parquet"
codes = pq.read_table(root / "metadata" / "codes.parquet")
CodeMetadataSchema.validate(codes)
listed = set(codes.column("code").to_pylist())
DatasetMetadataSchema.validate(json.loads((root / "metadata" / "dataset.json").read_text()))

seen_subjects = {}
rows = 0
for f in files:
    table = pq.read_table(f)
    DataSchema.validate(table)
    subjects = table.column("subject_id").to_pylist()
    times = table.column("time").to_pylist()
    data_codes = set(table.column("code").to_pylist())
    missing = data_codes - listed
    assert not missing, f"{f}: codes missing from codes.parquet: {sorted(missing)[:5]}"
    previous = None
    for i, s in enumerate(subjects):
        if s != previous:
            assert s not in seen_subjects, f"subject {s} in {f} and in {seen_subjects[s]} (or not contiguous)"
            seen_subjects[s] = f.name
            previous, last_time = s, None
        t = times[i]
        if t is not None:
            assert last_time is None or t >= last_time, f"{f}: subject {s} rows out of time order"
            last_time = t
        else:
            assert last_time is None, f"{f}: subject {s} has a static row after a timed one"
    rows += len(subjects)
print(f"{len(files)} data files, {len(seen_subjects)} subjects, {rows} rows, {len(listed)} codes listed")
print("meds validation passed")
