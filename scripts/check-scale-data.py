#!/usr/bin/env python3
"""Checks a folder written by scripts/scale-data.sh (small N: it holds every table in memory).

    scripts/check-scale-data.py OUT N [SRC]      (SRC: the source folder, default data/synthea1k-omop)

- every table's own ids are distinct, and there are N times as many distinct persons as copy 0 has;
- every event names a person and (when it names one) a visit of the same copy, and that visit's person;
- every person of copies 1..N-1 has the same record as its copy-0 original (the person with its
  source's person_source_value, which copy k has with a "-k" suffix): the same visits at the same day offsets from birth, with the same
  visit concepts and the same events (table, concept, source value, day offset from birth).
Prints one line per check and exits non-zero on the first failure.
"""
import csv
import datetime as dt
import os
import sys
from collections import defaultdict

EVENT_TABLES = {
    "CONDITION_OCCURRENCE": ("condition_occurrence_id", "condition_concept_id", "condition_source_value", "condition_start_date"),
    "DRUG_EXPOSURE": ("drug_exposure_id", "drug_concept_id", "drug_source_value", "drug_exposure_start_date"),
    "PROCEDURE_OCCURRENCE": ("procedure_occurrence_id", "procedure_concept_id", "procedure_source_value", "procedure_date"),
    "MEASUREMENT": ("measurement_id", "measurement_concept_id", "measurement_source_value", "measurement_date"),
    "OBSERVATION": ("observation_id", "observation_concept_id", "observation_source_value", "observation_date"),
}


def rows(folder, table):
    with open(f"{folder}/{table}.csv", newline="") as f:
        yield from csv.DictReader(f)


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def day(value):
    return dt.date.fromisoformat(value[:10]).toordinal()


def main(folder, copies, source_folder):
    originals = {r["person_source_value"] for r in rows(source_folder, "PERSON")}
    persons = {}
    for r in rows(folder, "PERSON"):
        if r["person_id"] in persons:
            fail(f"person_id {r['person_id']} appears twice")
        birth = dt.date(int(r["year_of_birth"]), int(r["month_of_birth"]), int(r["day_of_birth"])).toordinal()
        if r["birth_datetime"] and day(r["birth_datetime"]) != birth:
            fail(f"person {r['person_id']}: birth_datetime {r['birth_datetime']} disagrees with year/month/day")
        source = r["person_source_value"]
        copy = 0
        if source not in originals:
            source, _, suffix = source.rpartition("-")
            if source not in originals or not suffix.isdigit():
                fail(f"person {r['person_id']}: person_source_value {r['person_source_value']} is no source value + -k")
            copy = int(suffix)
        persons[r["person_id"]] = (copy, source, birth)
    per_copy = defaultdict(int)
    for copy, _, _ in persons.values():
        per_copy[copy] += 1
    if sorted(per_copy) != list(range(copies)) or len(set(per_copy.values())) != 1:
        fail(f"persons per copy {dict(per_copy)}")
    print(f"ok: {len(persons)} distinct persons, {per_copy[0]} in each of {copies} copies")

    visits, record = {}, defaultdict(lambda: defaultdict(list))
    for r in rows(folder, "VISIT_OCCURRENCE"):
        vid, pid = r["visit_occurrence_id"], r["person_id"]
        if vid in visits:
            fail(f"visit_occurrence_id {vid} appears twice")
        visits[vid] = pid
        record[pid][vid].append(("visit", r["visit_concept_id"], day(r["visit_start_date"]) - persons[pid][2]))
    for r in rows(folder, "VISIT_OCCURRENCE"):
        prev = r["preceding_visit_occurrence_id"]
        if prev and visits.get(prev) != r["person_id"]:
            fail(f"visit {r['visit_occurrence_id']}: preceding visit {prev} is not its person's")
    print(f"ok: {len(visits)} distinct visits, preceding visits of the same person")

    events = 0
    for table, (key, concept, source, date) in EVENT_TABLES.items():
        seen = set()
        for r in rows(folder, table):
            if r[key] in seen:
                fail(f"{table}: {key} {r[key]} appears twice")
            seen.add(r[key])
            pid, vid = r["person_id"], r["visit_occurrence_id"]
            if pid not in persons:
                fail(f"{table} {r[key]}: person {pid} is not in PERSON")
            if vid and vid != "0" and visits.get(vid) != pid:
                fail(f"{table} {r[key]}: visit {vid} is not a visit of person {pid}")
            record[pid][vid].append((table, r[concept], r[source], day(r[date]) - persons[pid][2]))
        events += len(seen)
        print(f"ok: {table}: {len(seen)} distinct {key}s, persons and visits of the same copy")

    # A person's record up to ids: its visits (each with its events) in order, then the events of no visit.
    def shape(pid):
        by_visit = record[pid]
        return sorted(sorted(events) for events in by_visit.values())

    original = {source: pid for pid, (copy, source, _) in persons.items() if copy == 0}
    compared, moves = 0, defaultdict(set)
    for pid, (copy, source, birth) in persons.items():
        if copy:
            if shape(pid) != shape(original[source]):
                fail(f"person {pid} (copy {copy}) differs from its original {original[source]}")
            moves[copy].add((birth - persons[original[source]][2], int(pid) - int(original[source])))
            compared += 1
    for copy, move in sorted(moves.items()):
        if len(move) != 1:
            fail(f"copy {copy}: persons moved by different (days, id offset): {sorted(move)[:5]}")
        if copy <= 3 or copy == copies - 1:
            print(f"ok: copy {copy}: every person {next(iter(move))[0]:+d} days, ids +{next(iter(move))[1]}")
    print(f"ok: all {compared} persons of copies 1..{copies - 1} equal their copy-0 originals "
          f"(visit day offsets from birth, visit concepts, events); {events} events in all")


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    default = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "synthea1k-omop")
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) == 4 else default)
