//! MEDS read shard by shard: `crate::source::Records` over [`MedsShards`] gives what the whole read gives.

use super::tests::*;
use super::*;
use std::sync::Arc;

/// `n` patients with ids 10, 20, ...: a birth date, a sex, one to three visits with a lab value; every
/// fifth has a first visit in 1940 (outside [`bounds_from_1950`]), and that alone for every tenth.
fn many_patients(n: usize) -> Vec<Patient> {
    (0..n)
        .map(|i| {
            let mut visits: Vec<Visit> = (0..1 + i % 3)
                .map(|k| {
                    let time = format!("{}-0{}-1{}T08:00:00", 2000 + i, 1 + k, k);
                    let code = format!("dx/{}", (i + k) % 7);
                    visit(&time, &[code.as_str(), "lab/x"], &[("lab/x", (i * 10 + k) as f64)])
                })
                .collect();
            if i % 5 == 0 {
                visits.insert(0, visit("1940-03-03T00:00:00", &["dx/old"], &[]));
            }
            if i % 10 == 0 {
                visits.truncate(1);
            }
            Patient {
                id: ((i + 1) * 10).to_string(),
                demographics: Demographics {
                    sex: Some(if i % 2 == 0 { "F" } else { "M" }.into()),
                    birth_year: Some(1960 + i as i32),
                    birth_date: Some(format!("{}-02-03", 1960 + i)),
                    ..Demographics::default()
                },
                visits,
                ..Patient::default()
            }
        })
        .collect()
}

/// Bounds that drop the 1940 visits of [`many_patients`] (and so whole patients), so that a report
/// counting them twice shows.
fn bounds_from_1950() -> ReadOptions {
    ReadOptions {
        bounds: crate::bounds::Bounds {
            first_year: 1950,
            ..Default::default()
        },
        ..ReadOptions::default()
    }
}

/// What reading whole gives: [`read_meds`], then the bounds.
fn read_whole(path: &Path, options: &ReadOptions) -> Dataset {
    let mut whole = read_meds(path, options).unwrap();
    crate::bounds::apply(&mut whole, &options.bounds);
    whole
}

fn open_records(path: &Path, options: &ReadOptions) -> crate::source::Records {
    crate::source::Records::open(path, Some(crate::Format::Meds), options).unwrap()
}

fn ids(patients: &[Patient]) -> Vec<&str> {
    patients.iter().map(|p| p.id.as_str()).collect()
}

/// One pass: the patients handed out until the pass ended, and how it ended.
fn pass_patients(records: &mut crate::source::Records) -> (Vec<Patient>, Result<()>) {
    let mut out = Vec::new();
    let end = records.pass(&mut |p| {
        out.push(p.clone());
        Ok(())
    });
    (out, end)
}

#[test]
fn passes_over_shards_give_the_whole_read_and_its_report() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("meds");
    // 2 subjects a shard: 13 shards, whose path order (0, 1, 10, 11, 12, 2, ...) is not their id order.
    write_meds_with(&dir, &many_patients(25), &fixed_options(2)).unwrap();
    assert!(dir.join("data/12.parquet").is_file());
    let options = bounds_from_1950();
    let whole = read_whole(&dir, &options);
    assert!(whole.report.patients_without_visits > 0, "{:?}", whole.report);
    assert!(whole
        .report
        .skipped
        .keys()
        .any(|k| k.starts_with("visits dated outside")));
    let mut records = open_records(&dir, &options);
    for pass in ["first", "second"] {
        let (patients, end) = pass_patients(&mut records);
        end.unwrap();
        assert_eq!(ids(&patients), ids(&whole.patients), "{pass} pass");
        assert_eq!(patients, whole.patients, "{pass} pass");
        assert_eq!(records.report(), &whole.report, "after the {pass} pass");
    }
    let dataset = crate::read_dataset(&dir, None, &options).unwrap();
    assert_eq!(dataset.patients, whole.patients);
    assert_eq!(dataset.report, whole.report);
}

#[test]
fn a_pass_hands_out_each_shard_before_reading_the_next() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("meds");
    write_meds_with(&dir, &many_patients(12), &fixed_options(4)).unwrap();
    let whole = read_whole(&dir, &ReadOptions::default());
    let mut records = open_records(&dir, &ReadOptions::default());
    // The last shard (subjects 90..=120) spoilt after opening: a pass that held the whole dataset before
    // handing out a patient would give none, or (read at opening) all of them.
    let last = dir.join("data/2.parquet");
    std::fs::write(&last, b"not parquet").unwrap();
    let (patients, end) = pass_patients(&mut records);
    let err = end.unwrap_err().to_string();
    assert!(err.contains("2.parquet") && err.contains("parquet"), "{err}");
    assert_eq!(ids(&patients), ["10", "20", "30", "40", "50", "60", "70", "80"]);
    assert_eq!(patients, whole.patients[..8]);
}

#[test]
fn interleaved_shards_pass_in_file_order() {
    // Subjects dealt to shards at random: ranges overlap, no subject in two files.
    let tmp = tempfile::tempdir().unwrap();
    let t = Some("2020-01-01T00:00:00");
    events_file(
        &tmp.path().join("a.parquet"),
        &[(3, t, "dx/c", None), (1, t, "dx/a", Some(1.0))],
    );
    events_file(
        &tmp.path().join("b.parquet"),
        &[(4, t, "dx/d", None), (2, t, "dx/b", None), (4, None, "SEX//F", None)],
    );
    let whole = read_whole(tmp.path(), &ReadOptions::default());
    let mut records = open_records(tmp.path(), &ReadOptions::default());
    let (patients, end) = pass_patients(&mut records);
    end.unwrap();
    assert_eq!(ids(&patients), ["1", "3", "2", "4"]);
    let mut sorted = patients.clone();
    sorted.sort_by_key(|p| p.id.parse::<i64>().unwrap());
    assert_eq!(sorted, whole.patients);
    assert_eq!(records.report(), &whole.report);
}

#[test]
fn a_subject_spanning_files_is_read_whole_and_noted() {
    let tmp = tempfile::tempdir().unwrap();
    events_file(
        &tmp.path().join("a.parquet"),
        &[
            (1, Some("2020-01-01T00:00:00"), "dx/a", None),
            (2, Some("2020-01-01T00:00:00"), "dx/b", None),
        ],
    );
    events_file(
        &tmp.path().join("b.parquet"),
        &[
            (2, Some("2019-05-05T00:00:00"), "dx/c", None),
            (3, Some("2020-01-01T00:00:00"), "dx/d", None),
        ],
    );
    let whole = read_whole(tmp.path(), &ReadOptions::default());
    let two = &whole.patients[1];
    assert_eq!((two.id.as_str(), two.visits.len()), ("2", 2), "{two:?}");
    let mut records = open_records(tmp.path(), &ReadOptions::default());
    let (patients, end) = pass_patients(&mut records);
    end.unwrap();
    assert_eq!(patients, whole.patients);
    let mut report = whole.report.clone();
    report.skipped.insert(SUBJECTS_SPAN_FILES.to_string(), 1);
    assert_eq!(records.report(), &report);
}

#[test]
fn a_null_subject_is_refused_on_opening_and_rows_without_codes_in_the_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("events.parquet");
    let time: arrow_array::TimestampMicrosecondArray = vec![Some(0i64); 2].into_iter().collect();
    let write = |subject: Int64Array, code: StringArray| {
        write_parquet(
            &path,
            vec![
                ("subject_id", Arc::new(subject)),
                ("time", Arc::new(time.clone())),
                ("code", Arc::new(code)),
            ],
        )
    };
    write(vec![Some(1), None].into(), vec![Some("a"); 2].into());
    let open = crate::source::Records::open(&path, None, &ReadOptions::default());
    let err = open.err().expect("refused").to_string();
    assert!(err.contains("events.parquet") && err.contains("subject_id"), "{err}");
    assert!(err.contains("null in row 2"), "{err}");

    // Subjects but no code: refused as the whole read refuses it, when the pass finds it out.
    write(vec![Some(1), Some(2)].into(), vec![None::<&str>; 2].into());
    let whole = read_meds(&path, &ReadOptions::default()).unwrap_err().to_string();
    let mut records = open_records(&path, &ReadOptions::default());
    let (patients, end) = pass_patients(&mut records);
    assert!(patients.is_empty());
    assert_eq!(end.unwrap_err().to_string(), whole);
    assert!(whole.contains("no events"), "{whole}");
}
