#!/usr/bin/env python3
"""Where records end, real against synthetic (issue 26's diagnosis; an analysis, not a test).

    scripts/record-ends.py OMOP_DIR CHECKPOINT SYNTHETIC_JSONL [--code procedure/4060626]

Reads the real OMOP CDM tables (VISIT_OCCURRENCE, PERSON and the event tables) for the persons of the
checkpoint's training split (split.json), and the synthetic JSONL records. Prints:
  - the share of records whose last visit falls in each 5-year calendar bucket;
  - with --code, per sex and birth decade: persons, the share holding the code, its visits per holder and
    its share of visits, so that a prevalence miss can be told apart from a per-visit rate miss.
Codes are spelled as the OMOP reader spells them (`procedure/<concept_id>`, `<domain>/src:<source value>`).
A real bucket or row of fewer than 10 persons is shown as a count only.
"""
import argparse
import collections
import csv
import json
import os

TABLES = {"condition": "CONDITION_OCCURRENCE", "drug": "DRUG_EXPOSURE", "procedure": "PROCEDURE_OCCURRENCE",
          "measurement": "MEASUREMENT", "observation": "OBSERVATION"}
MIN_PERSONS = 10


def table(folder, name):
    for spelling in (name + ".csv", name.lower() + ".csv"):
        path = os.path.join(folder, spelling)
        if os.path.exists(path):
            return csv.DictReader(open(path, newline=""))
    raise SystemExit(f"record-ends: {folder} has no {name}.csv")


def real_records(folder, train, code):
    persons = {r["person_id"]: r for r in table(folder, "PERSON") if r["person_id"] in train}
    visits = {}
    for r in table(folder, "VISIT_OCCURRENCE"):
        if r["person_id"] in persons:
            visits[r["visit_occurrence_id"]] = (r["person_id"], r["visit_start_date"][:10])
    hits = collections.defaultdict(set)
    if code:
        domain, concept = code.split("/", 1)
        for r in table(folder, TABLES[domain]):
            spelled = r[f"{domain}_concept_id"]
            spelled = spelled if spelled != "0" else "src:" + r[f"{domain}_source_value"]
            if spelled == concept and r["visit_occurrence_id"] in visits:
                hits[r["person_id"]].add(r["visit_occurrence_id"])
    dates = collections.defaultdict(list)
    for person, date in visits.values():
        dates[person].append(date)
    sex = {"8507": "M", "8532": "F"}
    for pid, p in persons.items():
        if dates[pid]:
            yield (sex.get(p["gender_concept_id"], "?"), int(p["year_of_birth"]), max(dates[pid]),
                   len(dates[pid]), len(hits[pid]))


def synthetic_records(path, code):
    for line in open(path):
        rec = json.loads(line)
        dem = rec.get("demographics") or {}
        visits = rec["visits"]
        yield (dem.get("sex", "?"), dem.get("birth_year"), max(v["time"][:10] for v in visits), len(visits),
               sum(code in v["codes"] for v in visits) if code else 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("omop")
    ap.add_argument("checkpoint")
    ap.add_argument("synthetic")
    ap.add_argument("--code")
    a = ap.parse_args()
    train = set(map(str, json.load(open(os.path.join(a.checkpoint, "split.json")))["train"]))
    sides = {"real": list(real_records(a.omop, train, a.code)), "synthetic": list(synthetic_records(a.synthetic, a.code))}
    print("last visit (5-year bucket): share of records, real / synthetic")
    shares = {k: collections.Counter(int(r[2][:4]) // 5 * 5 for r in v) for k, v in sides.items()}
    for bucket in sorted(set(shares["real"]) | set(shares["synthetic"])):
        real = shares["real"][bucket]
        real = f"{real / len(sides['real']):.3f}" if real == 0 or real >= MIN_PERSONS else f"<{MIN_PERSONS} records"
        print(f"  {bucket}-{bucket + 4}: {real} / {shares['synthetic'][bucket] / len(sides['synthetic']):.3f}")
    if not a.code:
        return
    print(f"{a.code} by sex and birth decade: persons, share holding it, visits per holder, share of visits")
    groups = collections.defaultdict(lambda: collections.defaultdict(list))
    for k, records in sides.items():
        for sex, born, _, n_visits, n_hits in records:
            if born is not None:
                groups[(sex, born // 10 * 10)][k].append((n_visits, n_hits))
    for (sex, decade), by_side in sorted(groups.items()):
        cells = []
        for k in ("real", "synthetic"):
            rows = by_side.get(k, [])
            holders = sum(1 for _, h in rows if h)
            if len(rows) < MIN_PERSONS:
                cells.append(f"{k} {len(rows)} persons")
                continue
            cells.append(f"{k} {len(rows)}, {holders / len(rows):.2f}, {sum(h for _, h in rows) / max(holders, 1):.2f}, "
                         f"{sum(h for _, h in rows) / sum(v for v, _ in rows):.4f}")
        print(f"  {sex} {decade}s: " + " | ".join(cells))


if __name__ == "__main__":
    main()
