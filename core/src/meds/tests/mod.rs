use super::columns::widen;
use super::write::{data_schema, patient_rows, subject_ids, Row};
use super::*;
use crate::time::parse_time;
use arrow_schema::Field;
use parquet::arrow::ArrowWriter;
use std::collections::BTreeSet;
use std::sync::Arc;

mod write;

pub(super) fn visit(time: &str, codes: &[&str], labs: &[(&str, f64)]) -> Visit {
    Visit {
        visit_type: None,
        day: None,
        time: Some(time.to_string()),
        codes: codes.iter().map(|c| c.to_string()).collect(),
        labs: labs
            .iter()
            .map(|(c, v)| LabValue {
                code: c.to_string(),
                value: *v,
            })
            .collect(),
    }
}

pub(super) fn fixed_options(shard_size: usize) -> MedsWriteOptions {
    MedsWriteOptions {
        metadata: MedsDatasetMetadata::new("test", "1", "2024-01-01T00:00:00"),
        ..MedsWriteOptions::new(shard_size)
    }
}

pub(super) fn sample_patients() -> Vec<Patient> {
    vec![
        Patient {
            id: "42".into(),
            demographics: Demographics {
                sex: Some("F".into()),
                race: Some("white".into()),
                ethnicity: Some("hispanic".into()),
                birth_year: Some(1970),
                birth_date: Some("1970-05-17".into()),
            },
            visits: vec![
                Visit {
                    visit_type: Some("9201".into()),
                    ..visit("2020-01-01T08:00:00", &["dx/a", "lab/x", "rx/b"], &[("lab/x", 0.1)])
                },
                visit(
                    "2020-02-03T09:30:00",
                    &["lab/x", "dx/c"],
                    &[("lab/x", 2.5), ("lab/x", -3.0)],
                ),
                Visit {
                    visit_type: Some("IP".into()),
                    ..visit("2021-06-01T00:00:00", &["MEDS_DEATH"], &[])
                },
            ],
            ..Patient::default()
        },
        Patient {
            id: "7".into(),
            visits: vec![visit("2019-03-04T12:00:00", &["dx/a"], &[])],
            ..Patient::default()
        },
        Patient {
            id: "100".into(),
            demographics: Demographics {
                sex: Some("M".into()),
                ..Demographics::default()
            },
            visits: vec![
                visit("2018-01-01T00:00:00", &["dx/z"], &[]),
                visit("2018-01-02T00:00:00", &["dx/y"], &[("lab/q", 1e6)]),
            ],
            ..Patient::default()
        },
    ]
}

/// What the reader gives for a written patient: lab codes not among the codes join them.
pub(super) fn as_read(p: &Patient) -> Patient {
    let mut p = p.clone();
    for v in &mut p.visits {
        for lab in &v.labs {
            if !v.codes.contains(&lab.code) {
                v.codes.push(lab.code.clone());
            }
        }
    }
    p
}

pub(super) fn read_batches(path: &Path) -> Vec<RecordBatch> {
    let file = File::open(path).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

#[test]
fn visits_with_only_days_are_placed_after_the_first_time() {
    let mut p = sample_patients().remove(2);
    p.visits[1].time = None;
    p.visits[1].day = Some(1.5);
    let rows = patient_rows(&p, MedsWriteOptions::new(1).base_time).unwrap();
    let t = |s: &str| Some(micros_of(parse_time(s).unwrap()));
    assert_eq!(
        rows,
        vec![
            Row::new(None, "SEX//M", None),
            Row::new(t("2018-01-01T00:00:00"), "dx/z", None),
            Row::new(t("2018-01-02T12:00:00"), "dx/y", None),
            Row::new(t("2018-01-02T12:00:00"), "lab/q", Some(1e6)),
        ]
    );
}

#[test]
fn non_numeric_ids_become_record_indices() {
    let mut patients = sample_patients();
    assert_eq!(subject_ids(&patients), vec![42, 7, 100]);
    patients[0].id = "synthetic-a".into();
    assert_eq!(subject_ids(&patients), vec![0, 7, 100]);
    patients[1].id = "0".into();
    assert_eq!(subject_ids(&patients), vec![0, 1, 2]);
}

/// A hand-written MEDS file: (subject, time, code, value) rows with free column types.
pub(super) fn write_parquet(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, a)| Field::new(*name, a.data_type().clone(), true))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns.into_iter().map(|c| c.1).collect()).unwrap();
    let mut w = ArrowWriter::try_new(File::create(path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

pub(super) fn micros(s: &str) -> Option<i64> {
    Some(micros_of(parse_time(s).unwrap()))
}

pub(super) fn events_file(path: &Path, rows: &[(i64, Option<&str>, &str, Option<f32>)]) {
    let subject: Int64Array = rows.iter().map(|r| Some(r.0)).collect();
    let time: arrow_array::TimestampMicrosecondArray = rows.iter().map(|r| r.1.and_then(micros)).collect();
    let code: StringArray = rows.iter().map(|r| Some(r.2)).collect();
    let value: Float32Array = rows.iter().map(|r| r.3).collect();
    write_parquet(
        path,
        vec![
            ("subject_id", Arc::new(subject)),
            ("time", Arc::new(time)),
            ("code", Arc::new(code)),
            ("numeric_value", Arc::new(value)),
        ],
    );
}

#[test]
fn wrong_column_type_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bad.parquet");
    let subject: StringArray = vec![Some("1")].into_iter().collect();
    let time: arrow_array::TimestampMicrosecondArray = vec![Some(0i64)].into_iter().collect();
    let code: StringArray = vec![Some("a")].into_iter().collect();
    write_parquet(
        &path,
        vec![
            ("subject_id", Arc::new(subject)),
            ("time", Arc::new(time)),
            ("code", Arc::new(code)),
        ],
    );
    let msg = read_meds(&path, &ReadOptions::default()).unwrap_err().to_string();
    assert!(msg.contains("bad.parquet"), "{msg}");
    assert!(msg.contains("`subject_id`"), "{msg}");
    assert!(msg.contains("has type Utf8, expected int64"), "{msg}");
}

#[test]
fn missing_column_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bad.parquet");
    let subject: Int64Array = vec![Some(1)].into_iter().collect();
    let code: StringArray = vec![Some("a")].into_iter().collect();
    write_parquet(&path, vec![("subject_id", Arc::new(subject)), ("code", Arc::new(code))]);
    let msg = read_meds(&path, &ReadOptions::default()).unwrap_err().to_string();
    assert!(msg.contains("field `time`: missing MEDS column"), "{msg}");
}

#[test]
fn float64_values_large_strings_and_extra_columns_are_read() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("x.parquet");
    let subject: Int64Array = vec![Some(3), Some(3)].into_iter().collect();
    let extra: StringArray = vec![Some("u"), Some("v")].into_iter().collect();
    let time: arrow_array::TimestampMillisecondArray = vec![Some(1_000), Some(2_000)].into_iter().collect();
    let code: LargeStringArray = vec![Some("a"), Some("b")].into_iter().collect();
    let value: Float64Array = vec![None, Some(0.1)].into_iter().collect();
    write_parquet(
        &path,
        vec![
            ("extra", Arc::new(extra)),
            ("subject_id", Arc::new(subject)),
            ("time", Arc::new(time)),
            ("code", Arc::new(code)),
            ("numeric_value", Arc::new(value)),
        ],
    );
    let ds = read_meds(&path, &ReadOptions::default()).unwrap();
    assert_eq!(
        ds.patients,
        vec![Patient {
            id: "3".into(),
            visits: vec![visit("1970-01-01T00:00:01", &["a", "b"], &[("b", 0.1)])],
            ..Patient::default()
        }]
    );
}

#[test]
fn int32_subjects_date_times_and_dictionary_codes_are_read() {
    // What polars writes for an un-cast frame: int32 ids, date-only times, categorical codes.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("x.parquet");
    let subject: arrow_array::Int32Array = vec![Some(7), Some(7), Some(7)].into_iter().collect();
    let time: arrow_array::Date32Array = vec![Some(1), Some(1), Some(3)].into_iter().collect();
    let code: arrow_array::DictionaryArray<arrow_array::types::Int32Type> =
        vec![Some("b"), Some("a"), Some("b")].into_iter().collect();
    let value: Float64Array = vec![Some(2.5), None, None].into_iter().collect();
    write_parquet(
        &path,
        vec![
            ("subject_id", Arc::new(subject)),
            ("time", Arc::new(time)),
            ("code", Arc::new(code)),
            ("numeric_value", Arc::new(value)),
        ],
    );
    let ds = read_meds(&path, &ReadOptions::default()).unwrap();
    assert_eq!(
        ds.patients,
        vec![Patient {
            id: "7".into(),
            visits: vec![
                visit("1970-01-02T00:00:00", &["b", "a"], &[("b", 2.5)]),
                visit("1970-01-04T00:00:00", &["b"], &[]),
            ],
            ..Patient::default()
        }]
    );
}

#[test]
fn visit_window_groups_events() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("train")).unwrap();
    // Subject 1 spread over two files, unsorted.
    events_file(
        &data.join("train/0.parquet"),
        &[
            (1, Some("2020-01-01T10:00:00"), "b", None),
            (1, Some("2020-01-01T08:00:00"), "a", None),
            (1, Some("2020-01-02T07:00:00"), "d", None),
        ],
    );
    events_file(
        &data.join("train/1.parquet"),
        &[
            (1, Some("2020-01-01T23:30:00"), "c", None),
            (1, Some("2020-01-01T08:00:00"), "a2", None),
        ],
    );
    let codes_of = |window: Option<i64>| -> Vec<(String, Vec<String>)> {
        let options = ReadOptions {
            meds_visit_window_seconds: window,
            ..Default::default()
        };
        read_meds(tmp.path(), &options).unwrap().patients[0]
            .visits
            .iter()
            .map(|v| (v.time.clone().unwrap(), v.codes.clone()))
            .collect()
    };
    let s = |x: &[&str]| x.iter().map(|c| c.to_string()).collect::<Vec<_>>();
    // Same calendar day.
    assert_eq!(
        codes_of(None),
        vec![
            ("2020-01-01T08:00:00".into(), s(&["a", "a2", "b", "c"])),
            ("2020-01-02T07:00:00".into(), s(&["d"])),
        ]
    );
    // Same timestamp only.
    assert_eq!(codes_of(Some(0)).len(), 4);
    // Within two hours of the visit's first event: 10:00 joins 08:00, 23:30 does not.
    assert_eq!(
        codes_of(Some(7200)),
        vec![
            ("2020-01-01T08:00:00".into(), s(&["a", "a2", "b"])),
            ("2020-01-01T23:30:00".into(), s(&["c"])),
            ("2020-01-02T07:00:00".into(), s(&["d"])),
        ]
    );
    // Within a day of the first event: 07:00 the next day joins too, as windows run from the first.
    assert_eq!(codes_of(Some(86_400)).len(), 1);
}

#[test]
fn visit_type_rows_set_the_visit_type_and_are_no_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("one.parquet");
    events_file(
        &path,
        &[
            (5, Some("2000-01-01T08:00:00"), "VISIT//9203", None),
            (5, Some("2000-01-01T09:00:00"), "dx/a", None),
            (5, Some("2000-01-01T10:00:00"), "VISIT//9201", None),
            (5, Some("2000-02-01T00:00:00"), "dx/b", None),
            (5, Some("2000-03-01T00:00:00"), "VISIT//9202", None),
        ],
    );
    let ds = read_meds(&path, &ReadOptions::default()).unwrap();
    let visits = &ds.patients[0].visits;
    assert_eq!(
        visits
            .iter()
            .map(|v| (v.visit_type.as_deref(), v.codes.clone()))
            .collect::<Vec<_>>(),
        [
            (Some("9203"), vec!["dx/a".to_string()]),
            (None, vec!["dx/b".to_string()])
        ]
    );
    let r = &ds.report;
    assert_eq!(
        r.skipped.get("visits with more than one VISIT// type (first kept)"),
        Some(&1)
    );
    assert_eq!(r.skipped.get("visits with only a VISIT// type row"), Some(&1));
    assert_eq!(r.visits, 2);
}

#[test]
fn birth_static_rows_and_values() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("one.parquet");
    events_file(
        &path,
        &[
            (5, None, "GENDER//F", None),
            (5, None, "race/Asian", None),
            (5, None, "ethnicity//Not Hispanic", None),
            (5, None, "SEX//M", None),
            (5, None, "INSURANCE//medicare", None),
            (5, Some("1980-02-29T06:00:00"), "MEDS_BIRTH", None),
            (5, Some("2000-01-01T00:00:00"), "lab/x", Some(f32::NAN)),
            (5, Some("2000-01-01T00:00:00"), "lab/x", Some(4.2)),
            (5, Some("2003-01-01T00:00:00"), "MEDS_DEATH", None),
            (6, None, "SEX//M", None),
        ],
    );
    let ds = read_meds(&path, &ReadOptions::default()).unwrap();
    assert_eq!(
        ds.patients,
        vec![Patient {
            id: "5".into(),
            demographics: Demographics {
                sex: Some("F".into()),
                race: Some("Asian".into()),
                ethnicity: Some("Not Hispanic".into()),
                birth_year: Some(1980),
                birth_date: Some("1980-02-29".into()),
            },
            visits: vec![
                visit("2000-01-01T00:00:00", &["lab/x"], &[("lab/x", 4.2)]),
                visit("2003-01-01T00:00:00", &["MEDS_DEATH"], &[]),
            ],
            ..Patient::default()
        }]
    );
    let r = &ds.report;
    assert_eq!(r.patients, 2);
    assert_eq!(r.patients_without_visits, 1);
    assert_eq!(r.non_finite_values, 1);
    assert_eq!(r.events, 3);
    assert_eq!(r.skipped.get("static rows that are not demographics"), Some(&1));
    assert_eq!(
        r.skipped.get("conflicting static demographic rows (first kept)"),
        Some(&1)
    );
}

#[test]
fn demographic_codes() {
    use DemographicCategory::*;
    assert_eq!(parse_demographic("SEX//F"), Some((Sex, "F")));
    assert_eq!(parse_demographic("gender/M"), Some((Sex, "M")));
    assert_eq!(
        parse_demographic("Race//Black or African American"),
        Some((Race, "Black or African American"))
    );
    assert_eq!(parse_demographic("ETHNICITY//"), None);
    assert_eq!(parse_demographic("SEXUAL_HISTORY//x"), None);
    assert_eq!(parse_demographic("MEDS_BIRTH"), None);
}

#[test]
fn float32_values_widen_through_their_decimal() {
    assert_eq!(widen(0.1), 0.1);
    assert_eq!(widen(-3.25), -3.25);
    assert!(widen(f32::NAN).is_nan());
    assert_eq!(widen(f32::INFINITY), f64::INFINITY);
}

#[test]
fn missing_input_and_empty_folder_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let msg = read_meds(&tmp.path().join("nope"), &ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("no such file"), "{msg}");
    std::fs::create_dir(tmp.path().join("data")).unwrap();
    let msg = read_meds(tmp.path(), &ReadOptions::default()).unwrap_err().to_string();
    assert!(msg.contains("no .parquet files"), "{msg}");
}

pub(super) fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_symbolic_link_loop_is_refused_and_a_linked_file_read_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("meds");
    write_meds_with(&dir, &sample_patients(), &fixed_options(10)).unwrap();
    let data = dir.join("data");
    std::os::unix::fs::symlink(data.join("0.parquet"), data.join("again.parquet")).unwrap();
    let ds = read_meds(&dir, &ReadOptions::default()).unwrap();
    assert_eq!(ds.patients.len(), 3, "the linked file is read once");
    std::os::unix::fs::symlink(&data, data.join("loop")).unwrap();
    let err = read_meds(&dir, &ReadOptions::default()).unwrap_err().to_string();
    assert!(err.contains("loop") && err.contains("data/loop"), "{err}");
}

#[test]
fn shipped_ccs_specs_label_icd9_and_icd10_diagnoses_of_meds_and_omop_records() {
    use crate::label_spec::LabelSpec;
    // Subject 1: ICD-9-CM 428.0 (heart failure, CCS 108) and 250.00 (diabetes without complication, CCS 49);
    // subject 2: the ICD-10-CM counterparts I50.9 and E11.9; subject 3: ICD-9-CM 401.9 (essential
    // hypertension, CCS 98) and a lab that sets nothing.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("events.parquet");
    let t = Some("2020-01-01T00:00:00");
    events_file(
        &path,
        &[
            (1, t, "DIAGNOSIS//ICD//9//4280", None),
            (1, t, "DIAGNOSIS//ICD//9//25000", None),
            (2, t, "DIAGNOSIS//ICD//10//I509", None),
            (2, t, "DIAGNOSIS//ICD//10//E119", None),
            (3, t, "DIAGNOSIS//ICD//9//4019", None),
            (3, t, "LAB//50912", Some(1.2)),
        ],
    );
    let ds = read_meds(&path, &ReadOptions::default()).unwrap();
    let [icd9, icd10] = ["ccs-icd9", "ccs-icd10"].map(|n| LabelSpec::read(Path::new(n)).unwrap());
    let labels = |spec: &LabelSpec, p: &Patient| spec.labels_of(p).into_iter().collect::<Vec<_>>();
    let both = ["congestive_heart_failure", "diabetes_without_complication"];
    assert_eq!(labels(&icd9, &ds.patients[0]), both);
    assert!(labels(&icd9, &ds.patients[1]).is_empty());
    assert_eq!(labels(&icd9, &ds.patients[2]), ["essential_hypertension"]);
    assert_eq!(labels(&icd10, &ds.patients[1]), both);
    assert!(labels(&icd10, &ds.patients[0]).is_empty());
    // OMOP records carry an ICD source value (dotted or not) where the condition has no standard concept.
    let omop = |codes: &[&str]| Patient {
        visits: vec![visit("2020-01-01T00:00:00", codes, &[])],
        ..Patient::default()
    };
    assert_eq!(
        labels(&icd9, &omop(&["condition/src:428.0", "condition/src:25000"])),
        both
    );
    assert_eq!(
        labels(&icd10, &omop(&["condition/src:I50.9", "condition/src:E119"])),
        both
    );
    // A standard concept id is not an ICD code: no label (docs/label-specs.md).
    assert!(labels(&icd9, &omop(&["condition/316139"])).is_empty());
}
