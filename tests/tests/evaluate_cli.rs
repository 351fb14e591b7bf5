//! `halo evaluate` as a user runs it, on the inputs a user gets wrong: an empty synthetic file, a file in
//! another format, synthetic codes the real data does not have, an --out that already holds a report.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

fn real() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/synthea-60.jsonl")
}

fn evaluate(synthetic: &Path, out: &Path, extra: &[&str]) -> Output {
    common::halo_command()
        .args(["evaluate", "--real", real().to_str().unwrap(), "--synthetic"])
        .arg(synthetic)
        .arg("--out")
        .arg(out)
        .args(["--device", "cpu", "--no-utility"])
        .args(extra)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The real fixture with every code of every record `f`-mapped, as synthetic records.
fn renamed(dir: &Path, f: impl Fn(usize, &str) -> String) -> PathBuf {
    let text = std::fs::read_to_string(real()).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let mut record: serde_json::Value = serde_json::from_str(line).unwrap();
        for visit in record["visits"].as_array_mut().unwrap() {
            for (i, code) in visit["codes"].as_array_mut().unwrap().iter_mut().enumerate() {
                *code = serde_json::Value::String(f(i, code.as_str().unwrap()));
            }
        }
        out.push_str(&record.to_string());
        out.push('\n');
    }
    let path = dir.join("synthetic.jsonl");
    std::fs::write(&path, out).unwrap();
    path
}

#[test]
fn empty_and_misformatted_synthetic_files_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("report");

    let empty = tmp.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let o = evaluate(&empty, &out, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("empty.jsonl") && stderr(&o).contains("no records"),
        "{}",
        stderr(&o)
    );

    // A CSV table given where records are expected.
    let csv = tmp.path().join("visits.csv");
    std::fs::write(&csv, "person_id,visit_start_date\n1,2020-01-01\n").unwrap();
    let o = evaluate(&csv, &out, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("visits.csv"), "{}", stderr(&o));

    // JSON, but not records: the line is named.
    let not_records = tmp.path().join("other.jsonl");
    std::fs::write(&not_records, "{\"id\": \"a\", \"visits\": []}\n[1, 2]\n").unwrap();
    let o = evaluate(&not_records, &out, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("other.jsonl:2: expected a record"),
        "{}",
        stderr(&o)
    );

    // Real data read with a format it is not in.
    let o = evaluate(&real(), &out, &["--format", "meds"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("synthea-60.jsonl"), "{}", stderr(&o));
    assert!(!out.exists(), "a failed evaluation left {}", out.display());
}

#[test]
fn unknown_synthetic_codes_are_counted_and_all_unknown_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();

    // Every third code renamed: evaluated, and the unknown codes are counted in the report.
    let some = renamed(
        tmp.path(),
        |i, c| if i % 3 == 0 { format!("XX/{c}") } else { c.to_string() },
    );
    let out = tmp.path().join("report");
    let o = evaluate(&some, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The one-screen summary: a count line, then one line per headline figure with its expected range.
    let err = stderr(&o);
    assert!(err.contains("headline figures outside their expected range"), "{err}");
    assert!(
        err.lines()
            .any(|l| l.contains("codes per visit") && l.contains("expected train")),
        "{err}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let inputs = &report["inputs"];
    let unknown = inputs["unknown_code_occurrences"].as_u64().unwrap();
    let all = inputs["synthetic_code_occurrences"].as_u64().unwrap();
    assert!(unknown > 0 && unknown < all, "{inputs}");
    assert!(
        report["notes"].to_string().contains("absent from the real data"),
        "{}",
        report["notes"]
    );

    // The same --out again: refused before any work, the first report untouched.
    let before = std::fs::read(out.join("report.json")).unwrap();
    let o = evaluate(&some, &out, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("never writes over an earlier report"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(out.join("report.json")).unwrap(), before);

    // Every code renamed: a clear error, no report.
    let none = renamed(tmp.path(), |_, c| format!("XX/{c}"));
    let out = tmp.path().join("report2");
    let o = evaluate(&none, &out, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("none of the"), "{}", stderr(&o));
    assert!(!out.exists());
}

/// A copy of `fixtures/tiny-omop` in `dir` with rows of person 1 (visit 2) appended to `table`.
fn omop_with_rows(dir: &Path, table: &str, rows: &[&str]) -> PathBuf {
    let omop = dir.join("omop");
    std::fs::create_dir_all(&omop).unwrap();
    for entry in std::fs::read_dir(common::fixture("tiny-omop")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, omop.join(path.file_name().unwrap())).unwrap();
    }
    let path = omop.join(table);
    let mut text = std::fs::read_to_string(&path).unwrap();
    for row in rows {
        text.push_str(row);
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    omop
}

#[test]
fn the_report_and_the_logs_never_name_a_value_of_fewer_than_min_patients_patients() {
    let tmp = tempfile::tempdir().unwrap();
    // One patient's free-text condition, one patient's concept and one patient's lab.
    let planted = ["PLANTED-SECRET-7731", "987123456", "PLANTED-LAB-4417"];
    let real = omop_with_rows(
        tmp.path(),
        "CONDITION_OCCURRENCE.csv",
        &[
            "900001,1,0,2013-07-05,2013-07-05 00:00:00,,,32020,0,,,2,0,PLANTED-SECRET-7731,0,",
            "900002,1,987123456,2013-07-05,2013-07-05 00:00:00,,,32020,0,,,2,0,x,0,",
        ],
    );
    let lab = "900003,1,0,2013-07-05,2013-07-05 00:00:00,,5001,0,41.5,0,0,,,0,2,0,PLANTED-LAB-4417,0,,,,,";
    let mut text = std::fs::read_to_string(real.join("MEASUREMENT.csv")).unwrap();
    text.push_str(lab);
    text.push('\n');
    std::fs::write(real.join("MEASUREMENT.csv"), text).unwrap();
    // The checkpoint gives the rule (the default 10 patients); the synthetic records are the real ones, planted
    // values included: the harshest case (a model leaves them out).
    let ck = tmp.path().join("ck");
    let o = common::train(real.to_str().unwrap(), &ck, &["--epochs", "1"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let synthetic = real.clone();

    let run = |out: &Path, extra: &[&str]| {
        common::halo_command()
            .args(["evaluate", "--real", real.to_str().unwrap(), "--synthetic"])
            .arg(&synthetic)
            .arg("--out")
            .arg(out)
            .args(["--checkpoint", ck.to_str().unwrap(), "--device", "cpu", "--no-utility"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = tmp.path().join("report");
    let o = run(&out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let logs = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    let json = std::fs::read_to_string(out.join("report.json")).unwrap();
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    for value in planted {
        for (name, text) in [("report.json", &json), ("report.html", &html), ("the logs", &logs)] {
            assert!(!text.contains(value), "{value} named in {name}");
        }
    }
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let hidden = &report["hidden"];
    assert_eq!(hidden["min_patients"], 10, "{hidden}");
    assert!(
        hidden["codes"].as_u64().unwrap() >= 2 && hidden["labs"].as_u64().unwrap() >= 1,
        "{hidden}"
    );
    assert!(html.contains("not named: held by fewer than 10 real patients"));
    assert!(logs.contains("held by fewer than 10 real patients"), "{logs}");

    // --min-patients 1 names them: the values were there to hide.
    let out = tmp.path().join("report-1");
    let o = run(&out, &["--min-patients", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let json = std::fs::read_to_string(out.join("report.json")).unwrap();
    assert!(
        planted.iter().all(|v| json.contains(v)),
        "planted values missing at k = 1"
    );
}

#[test]
fn an_out_that_cannot_be_created_is_named_with_its_cause_once() {
    let tmp = tempfile::tempdir().unwrap();
    let synthetic = renamed(tmp.path(), |_, c| c.to_string());
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let o = evaluate(&synthetic, &file.join("report"), &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("a-file/report: Not a directory"), "{err}");
    assert_eq!(
        err.matches("Not a directory").count(),
        1,
        "the cause printed twice: {err}"
    );
}
