"""Dense-visit test data from an OMOP CDM folder: each person's visits are merged into admission-like windows.

    .venv/bin/python scripts/dense-visits.py data/synthea1k-omop runs/dense-omop --window-days 1825

Every visit starting within `--window-days` of the first visit of its window joins that window; the window keeps
the first visit's row (and id) in visit_occurrence, and every event of its visits is moved onto it. The person,
observation-period and event tables are otherwise copied unchanged, so `halo train --data OUT` reads it with
the ordinary OMOP reader: a window holds the distinct codes of all its visits (Synthea-1k at 1825 days: about
4 windows a person of about 21 distinct codes and lab results, against 8.5 codes in its 28 visits a person).

`--persons N` keeps the first N persons (by person_id) and their rows only: a small ICU-like set, few records of
dense visits (docs/records.md, "Dense visits").
"""

import argparse
import pathlib
import sys

import duckdb

EVENT_TABLES = ["CONDITION_OCCURRENCE", "DRUG_EXPOSURE", "PROCEDURE_OCCURRENCE", "MEASUREMENT", "OBSERVATION"]


def find(src: pathlib.Path, table: str) -> pathlib.Path | None:
    for p in src.iterdir():
        if p.name.lower() == f"{table.lower()}.csv":
            return p
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=pathlib.Path)
    ap.add_argument("out", type=pathlib.Path)
    ap.add_argument("--window-days", type=int, default=1825)
    ap.add_argument("--persons", type=int, default=None, help="keep the first N persons (by person_id) only")
    a = ap.parse_args()
    if a.out.exists():
        print(f"dense-visits: {a.out} exists; give a new folder", file=sys.stderr)
        return 2
    visits = find(a.src, "VISIT_OCCURRENCE")
    if visits is None:
        print(f"dense-visits: no VISIT_OCCURRENCE.csv in {a.src}", file=sys.stderr)
        return 2
    tmp = a.out.with_name(a.out.name + ".tmp")
    tmp.mkdir(parents=True)
    db = duckdb.connect()
    read = lambda p: f"read_csv('{p}', header=true, all_varchar=true)"  # noqa: E731
    db.execute(f"CREATE TABLE v AS SELECT * FROM {read(visits)}")
    person = find(a.src, "PERSON")
    if a.persons is not None and person is not None:
        db.execute(
            f"CREATE TABLE kept AS SELECT person_id FROM {read(person)} "
            f"ORDER BY CAST(person_id AS BIGINT) LIMIT {int(a.persons)}"
        )
        db.execute("DELETE FROM v WHERE person_id NOT IN (SELECT person_id FROM kept)")
    # Rows of a table with a person_id column, restricted to the persons kept.
    only_kept = (
        (lambda cols: " WHERE person_id IN (SELECT person_id FROM kept)" if "person_id" in cols else "")
        if a.persons is not None and person is not None
        else (lambda cols: "")
    )
    # Windows are greedy in time order: a visit opens a new window when it starts more than window-days after
    # the current window's first visit (ties broken by id, so the result does not depend on file order).
    rows = db.execute(
        "SELECT person_id, visit_occurrence_id, CAST(visit_start_date AS DATE) FROM v "
        "ORDER BY CAST(person_id AS BIGINT), CAST(visit_start_date AS DATE), CAST(visit_occurrence_id AS BIGINT)"
    ).fetchall()
    window_of, person, opened, first_id = {}, None, None, None
    for pid, vid, start in rows:
        if pid != person or (start - opened).days > a.window_days:
            person, opened, first_id = pid, start, vid
        window_of[vid] = first_id
    db.execute("CREATE TABLE w (visit_occurrence_id VARCHAR, window_id VARCHAR)")
    db.executemany("INSERT INTO w VALUES (?, ?)", list(window_of.items()))
    db.execute(
        f"COPY (SELECT v.* FROM v WHERE visit_occurrence_id IN (SELECT DISTINCT window_id FROM w)) "
        f"TO '{tmp / visits.name}' (HEADER, DELIMITER ',')"
    )
    for p in sorted(a.src.iterdir()):
        if p.name == visits.name or not p.is_file():
            continue
        if p.suffix.lower() == ".csv" and p.stem.upper() in EVENT_TABLES:
            db.execute(f"CREATE OR REPLACE TABLE e AS SELECT * FROM {read(p)}")
            cols = [c[0] for c in db.execute("DESCRIBE e").fetchall()]
            sel = ", ".join("w.window_id AS visit_occurrence_id" if c == "visit_occurrence_id" else f'e."{c}"' for c in cols)
            db.execute(
                f"COPY (SELECT {sel} FROM e LEFT JOIN w USING (visit_occurrence_id){only_kept(cols)}) "
                f"TO '{tmp / p.name}' (HEADER, DELIMITER ',')"
            )
        elif p.suffix.lower() == ".csv" and a.persons is not None and person is not None:
            db.execute(f"CREATE OR REPLACE TABLE e AS SELECT * FROM {read(p)}")
            cols = [c[0] for c in db.execute("DESCRIBE e").fetchall()]
            db.execute(f"COPY (SELECT * FROM e{only_kept(cols)}) TO '{tmp / p.name}' (HEADER, DELIMITER ',')")
        else:
            (tmp / p.name).write_bytes(p.read_bytes())
    tmp.rename(a.out)
    windows = len(set(window_of.values()))
    print(f"dense-visits: {len(rows)} visits -> {windows} windows of {a.window_days} days in {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
