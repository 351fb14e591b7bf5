"""A public code list for `--public-codes` from an OMOP CONCEPT table (the OHDSI vocabulary, or the table a CDM
ships with its vocabulary): one `<table>/<concept_id>` line per concept of a clinical domain, spelled as the OMOP
reader spells codes (condition/201826, drug/1332419, procedure/..., measurement/..., observation/...).

    .venv/bin/python scripts/public-codes.py data/synthea1k-omop/CONCEPT.csv runs/public-codes.txt

Only the CONCEPT table is read, never a patient table. A site should take the table from the vocabulary it
downloads (Athena), not from its own CDM when that table lists only the concepts its patients hold: such a list
says which concepts occur in the data (docs/dp-sgd.md). `--domains` picks domains (default: all five).
"""

import argparse
import csv
import pathlib
import sys

DOMAINS = {"Condition": "condition", "Drug": "drug", "Procedure": "procedure", "Measurement": "measurement",
           "Observation": "observation"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("concept", type=pathlib.Path, help="CONCEPT.csv (comma or tab separated, with a header)")
    ap.add_argument("out", type=pathlib.Path)
    ap.add_argument("--domains", default=",".join(DOMAINS), help="comma-separated OMOP domain_ids")
    ap.add_argument("--source-values", action="store_true",
                    help="also list each concept's code as a source value in every event table "
                         "(<table>/src:<concept_code>), the spelling of rows whose concept_id is 0")
    a = ap.parse_args()
    wanted = {d.strip() for d in a.domains.split(",") if d.strip()}
    unknown = wanted - DOMAINS.keys()
    if unknown:
        print(f"public-codes: unknown domain(s) {sorted(unknown)}; expected some of {list(DOMAINS)}", file=sys.stderr)
        return 2
    with a.concept.open(newline="") as f:
        sample = f.readline()
        f.seek(0)
        reader = csv.DictReader(f, delimiter="\t" if "\t" in sample else ",")
        missing = {"concept_id", "domain_id"} - set(reader.fieldnames or [])
        if missing:
            print(f"public-codes: {a.concept}: no column(s) {sorted(missing)} in the header", file=sys.stderr)
            return 2
        codes = set()
        for line, row in enumerate(reader, start=2):
            domain = row["domain_id"]
            if domain not in wanted:
                continue
            cid = row["concept_id"].strip()
            if not cid.isdigit():
                print(f"public-codes: {a.concept} line {line}: concept_id `{cid}`: expected a number", file=sys.stderr)
                return 2
            if cid != "0":
                codes.add(f"{DOMAINS[domain]}/{cid}")
                code = row.get("concept_code", "").strip()
                if a.source_values and code and not any(ch.isspace() for ch in code):
                    codes.update(f"{table}/src:{code}" for table in DOMAINS.values())
    tmp = a.out.with_name(a.out.name + ".tmp")
    tmp.write_text(f"# {len(codes)} concepts of {', '.join(sorted(wanted))} from an OMOP CONCEPT table\n"
                   + "".join(f"{c}\n" for c in sorted(codes)))
    tmp.replace(a.out)
    print(f"public-codes: {len(codes)} codes -> {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
