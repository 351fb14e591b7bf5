//! The MEDS writer: round trips, shards, and what an interrupted or refused write leaves.

use super::*;

#[test]
fn round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("meds");
    let patients = sample_patients();
    write_meds_with(&dir, &patients, &fixed_options(2)).unwrap();
    assert!(dir.join("data/0.parquet").is_file());
    assert!(dir.join("data/1.parquet").is_file());
    assert!(!dir.join("data/2.parquet").exists());
    let ds = read_meds(&dir, &ReadOptions::default()).unwrap();
    let mut expected: Vec<Patient> = patients.iter().map(as_read).collect();
    expected.sort_by_key(|p| p.id.parse::<i64>().unwrap());
    assert_eq!(ds.patients, expected);
    assert_eq!(ds.report.patients, 3);
    assert_eq!(ds.report.visits, 6);
    // Rows in visits: 1 + 3 (a visit type, then codes) + 3 (two values of lab/x) + 2, then 1, then 1 + 2
    // (dx/y and lab/q).
    assert_eq!(ds.report.events, 13);
    assert!(ds.report.skipped.is_empty(), "{:?}", ds.report.skipped);

    let meta: MedsDatasetMetadata =
        crate::fsutil::read_json(&dir.join("metadata/dataset.json"), "dataset.json").unwrap();
    assert_eq!(meta, fixed_options(1).metadata);
    assert_eq!(meta.meds_version, "0.3.3");
    assert_eq!(meta.etl_name, "halo-sample");
}

#[test]
fn written_rows_are_sorted_and_shards_keep_subjects_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("meds");
    write_meds_with(&dir, &sample_patients(), &fixed_options(2)).unwrap();
    let mut shard_subjects = Vec::new();
    for k in 0..2 {
        let batches = read_batches(&dir.join(format!("data/{k}.parquet")));
        let batch = &batches[0];
        assert_eq!(batch.schema(), data_schema());
        let subject = batch.column(0).as_primitive::<Int64Type>();
        let time = batch.column(1).as_primitive::<TimestampMicrosecondType>();
        let rows: Vec<(i64, Option<i64>)> = (0..batch.num_rows())
            .map(|i| (subject.value(i), (!time.is_null(i)).then(|| time.value(i))))
            .collect();
        assert!(rows.windows(2).all(|w| w[0] <= w[1]), "{rows:?}");
        let mut ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
        ids.dedup();
        shard_subjects.push(ids);
    }
    assert_eq!(shard_subjects, vec![vec![7, 42], vec![100]]);

    // Subject 42's first rows: three static rows (null time), then MEDS_BIRTH, then its first visit's type.
    let batch = &read_batches(&dir.join("data/0.parquet"))[0];
    let code = batch.column(2).as_string::<i32>();
    let codes: Vec<&str> = (0..batch.num_rows()).map(|i| code.value(i)).collect();
    assert_eq!(
        &codes[..6],
        &[
            "dx/a",
            "SEX//F",
            "RACE//white",
            "ETHNICITY//hispanic",
            "MEDS_BIRTH",
            "VISIT//9201"
        ]
    );

    let codes_batch = &read_batches(&dir.join("metadata/codes.parquet"))[0];
    let listed = codes_batch.column(0).as_string::<i32>();
    let listed: Vec<&str> = (0..codes_batch.num_rows()).map(|i| listed.value(i)).collect();
    assert_eq!(
        listed,
        vec![
            "ETHNICITY//hispanic",
            "MEDS_BIRTH",
            "MEDS_DEATH",
            "RACE//white",
            "SEX//F",
            "SEX//M",
            "VISIT//9201",
            "VISIT//IP",
            "dx/a",
            "dx/c",
            "dx/y",
            "dx/z",
            "lab/q",
            "lab/x",
            "rx/b"
        ]
    );
    assert_eq!(codes_batch.column(1).null_count(), codes_batch.num_rows());
    assert_eq!(codes_batch.column(2).null_count(), codes_batch.num_rows());
}

#[test]
fn refuses_a_non_empty_target_and_fills_an_empty_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("meds");
    std::fs::create_dir(&dir).unwrap();
    write_meds_with(&dir, &sample_patients(), &fixed_options(10)).unwrap();
    assert!(dir.join("data/0.parquet").is_file());
    let msg = write_meds_with(&dir, &sample_patients(), &fixed_options(10))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("not empty"), "{msg}");
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary folder left behind");
}

#[test]
fn a_failed_write_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("meds");
    let mut patients = sample_patients();
    patients[1].visits[0].time = None;
    let msg = write_meds_with(&dir, &patients, &fixed_options(10))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("patient `7` visit 0"), "{msg}");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn streamed_files_are_named_by_first_subject_and_list_the_given_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("meds");
    let listed: BTreeSet<String> = ["dx/a", "never/written"].iter().map(|c| c.to_string()).collect();
    let options = MedsWriteOptions {
        shard_names: ShardNames::FirstSubject,
        codes: Some(listed),
        ..fixed_options(2)
    };
    let mut writer = MedsWriter::create(&dir, options).unwrap();
    for (i, p) in sample_patients().iter().enumerate() {
        writer.write(1000 + i as i64, p).unwrap();
    }
    assert!(!dir.exists(), "the folder appears only when finished");
    writer.finish().unwrap();
    assert_eq!(
        file_names(&dir.join("data")),
        vec!["000000001000.parquet", "000000001002.parquet"]
    );
    let batch = &read_batches(&dir.join("metadata/codes.parquet"))[0];
    let codes = batch.column(0).as_string::<i32>();
    let codes: Vec<&str> = (0..batch.num_rows()).map(|i| codes.value(i)).collect();
    assert!(
        codes.contains(&"never/written") && codes.contains(&"lab/q"),
        "{codes:?}"
    );
    // Read back: the same subjects, in order.
    let ds = read_meds(&dir, &ReadOptions::default()).unwrap();
    let ids: Vec<&str> = ds.patients.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, vec!["1000", "1001", "1002"]);
}

#[test]
fn an_unfinished_writer_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("meds");
    let mut writer = MedsWriter::create(&dir, fixed_options(1)).unwrap();
    writer.write(1, &sample_patients()[0]).unwrap();
    writer.write(2, &sample_patients()[1]).unwrap();
    drop(writer);
    assert!(file_names(tmp.path()).is_empty(), "{:?}", file_names(tmp.path()));
}
