use super::*;
use std::collections::BTreeMap;

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// A small folder exercising most rules: visits out of order, unknown and empty visit ids, an event
/// of one person in another's visit, a NaN measurement, upper-case file and column names, a source-value code, an absent table.
fn sample_folder() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(
            d,
            "PERSON.csv",
            "person_id,gender_concept_id,year_of_birth,month_of_birth,day_of_birth,birth_datetime,race_concept_id,ethnicity_concept_id,gender_source_value,race_source_value,ethnicity_source_value\n\
             2,8532,1950,8,2,,8527,0,,,hispanic\n\
             1,8507,1974,12,6,1974-12-06 00:00:00,8527,0,M,white,\n\
             3,0,,,,,0,0,,,\n",
        );
    write(
        d,
        "visit_occurrence.csv",
        "visit_occurrence_id,person_id,visit_concept_id,visit_start_date,visit_start_datetime\n\
             10,1,9202,2020-03-01,\n\
             11,1,9202,2020-01-15,2020-01-15 10:30:00\n\
             12,1,9202,2020-05-01,\n\
             20,2,9202,2019-07-04,2019-07-04\n",
    );
    write(
        d,
        "condition_occurrence.csv",
        "condition_occurrence_id,person_id,condition_concept_id,visit_occurrence_id,condition_source_value\n\
             1,1,316866,10,38341003\n\
             2,1,0,11,E11.9\n\
             3,1,316866,10,38341003\n\
             4,1,201826,99,44054006\n\
             5,1,201826,,44054006\n\
             6,2,320128,20,59621000\n\
             7,2,201826,10,44054006\n",
    );
    write(
        d,
        "DRUG_EXPOSURE.csv",
        "DRUG_EXPOSURE_ID,PERSON_ID,DRUG_CONCEPT_ID,VISIT_OCCURRENCE_ID,DRUG_SOURCE_VALUE\n\
             1,1,1308216,10,314076\n\
             2,1,1308216,11,314076\n",
    );
    write(
            d,
            "measurement.csv",
            "measurement_id,person_id,measurement_concept_id,value_as_number,visit_occurrence_id,measurement_source_value\n\
             1,1,3004249,132.5,11,8480-6\n\
             2,1,3004249,NaN,11,8480-6\n\
             3,1,0,,10,2339-0\n\
             4,2,3004249,,20,8480-6\n\
             5,2,3012888,abc,20,8462-4\n",
        );
    tmp
}

/// Rewrites every table of `from` into `to` with another delimiter and file name, gzipped or not.
fn rewrite(from: &Path, to: &Path, delimiter: char, ext: &str, gzip: bool) {
    use std::io::Write;
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace(',', &delimiter.to_string());
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        let name = format!("{stem}.{ext}{}", if gzip { ".gz" } else { "" });
        let mut file = std::fs::File::create(to.join(name)).unwrap();
        if gzip {
            let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
            gz.write_all(text.as_bytes()).unwrap();
            gz.finish().unwrap();
        } else {
            file.write_all(text.as_bytes()).unwrap();
        }
    }
}

#[test]
fn tab_pipe_semicolon_and_gzipped_tables_read_like_csv() {
    let csv = sample_folder();
    let expected = read_omop(csv.path()).unwrap();
    for (delimiter, ext, gzip) in [
        ('\t', "tsv", false),
        ('\t', "csv", true),
        ('|', "txt", false),
        (';', "csv", true),
    ] {
        let other = tempfile::tempdir().unwrap();
        rewrite(csv.path(), other.path(), delimiter, ext, gzip);
        let ds = read_omop(other.path()).unwrap_or_else(|e| panic!("{delimiter:?} {ext} gz={gzip}: {e}"));
        assert_eq!(ds.patients, expected.patients, "{delimiter:?} {ext} gz={gzip}");
        assert_eq!(ds.report, expected.report, "{delimiter:?} {ext} gz={gzip}");
        assert_eq!(crate::Format::detect(other.path()).unwrap(), crate::Format::Omop);
    }
    // The same table twice (plain and gzipped) is ambiguous: an error, not a silent pick.
    let both = tempfile::tempdir().unwrap();
    rewrite(csv.path(), both.path(), ',', "csv", false);
    rewrite(csv.path(), both.path(), ',', "csv", true);
    let err = read_omop(both.path()).unwrap_err().to_string();
    assert!(err.contains("keep one"), "{err}");
}

#[test]
fn compact_and_offset_dates_parse() {
    use crate::time::parse_time;
    let t = |s: &str| parse_time(s).map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string());
    assert_eq!(t("20200115").as_deref(), Some("2020-01-15T00:00:00"));
    assert_eq!(t("2020-01-15 10:30").as_deref(), Some("2020-01-15T10:30:00"));
    assert_eq!(t("2020-01-15T10:30:00+02:00").as_deref(), Some("2020-01-15T10:30:00"));
    assert_eq!(
        t("2020-01-15 10:30:00.123-0500").as_deref(),
        Some("2020-01-15T10:30:00")
    );
    assert_eq!(t("2020-1-5"), None);
    assert_eq!(t("202001150"), None);
}

#[test]
fn reads_a_small_folder_exactly() {
    let tmp = sample_folder();
    let ds = read_omop(tmp.path()).unwrap();
    let expected = vec![
        Patient {
            id: "1".into(),
            demographics: Demographics {
                sex: Some("M".into()),
                race: Some("white".into()),
                ethnicity: None,
                birth_year: Some(1974),
                birth_date: Some("1974-12-06".into()),
            },
            visits: vec![
                Visit {
                    day: None,
                    time: Some("2020-01-15T10:30:00".into()),
                    codes: vec![
                        "condition/src:E11.9".into(),
                        "drug/1308216".into(),
                        "measurement/3004249".into(),
                    ],
                    labs: vec![LabValue {
                        code: "measurement/3004249".into(),
                        value: 132.5,
                    }],
                    visit_type: None,
                },
                Visit {
                    day: None,
                    time: Some("2020-03-01T00:00:00".into()),
                    codes: vec![
                        "condition/316866".into(),
                        "drug/1308216".into(),
                        "measurement/src:2339-0".into(),
                    ],
                    labs: vec![],
                    visit_type: None,
                },
            ],
            ..Patient::default()
        },
        Patient {
            id: "2".into(),
            demographics: Demographics {
                sex: Some("F".into()),
                race: Some("8527".into()),
                ethnicity: Some("hispanic".into()),
                birth_year: Some(1950),
                birth_date: Some("1950-08-02".into()),
            },
            visits: vec![Visit {
                day: None,
                time: Some("2019-07-04T00:00:00".into()),
                codes: vec![
                    "condition/320128".into(),
                    "measurement/3004249".into(),
                    "measurement/3012888".into(),
                ],
                labs: vec![],
                visit_type: None,
            }],
            ..Patient::default()
        },
    ];
    assert_eq!(ds.patients, expected);
    let r = &ds.report;
    assert_eq!(r.patients, 3);
    assert_eq!(r.patients_without_visits, 1);
    assert_eq!(r.visits, 3);
    assert_eq!(r.events, 11);
    assert_eq!(r.events_without_visit, 2);
    assert_eq!(r.non_finite_values, 2);
    let skipped: BTreeMap<String, usize> = [
        ("table procedure_occurrence.csv absent", 1),
        ("visits without codes", 1),
        ("records with visits out of time order (sorted)", 1),
        // Row 7: person 2's event filed under person 1's visit 10.
        ("events whose person_id is not their visit's person", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(r.skipped, skipped);
}

#[test]
fn missing_person_table_is_named() {
    let tmp = sample_folder();
    std::fs::remove_file(tmp.path().join("PERSON.csv")).unwrap();
    let msg = read_omop(tmp.path()).unwrap_err().to_string();
    assert!(msg.contains("person.csv"), "{msg}");
    assert!(msg.contains("missing required OMOP table"), "{msg}");
}

#[test]
fn missing_visit_table_is_named() {
    let tmp = sample_folder();
    std::fs::remove_file(tmp.path().join("visit_occurrence.csv")).unwrap();
    let msg = read_omop(tmp.path()).unwrap_err().to_string();
    assert!(msg.contains("visit_occurrence.csv"), "{msg}");
}

#[test]
fn row_with_wrong_field_count_names_the_line() {
    let tmp = sample_folder();
    write(
        tmp.path(),
        "visit_occurrence.csv",
        "visit_occurrence_id,person_id,visit_start_date\n10,1,2020-03-01\n11,1\n",
    );
    let msg = read_omop(tmp.path()).unwrap_err().to_string();
    assert!(msg.contains("visit_occurrence.csv:3:"), "{msg}");
    assert!(msg.contains("2 fields, expected 3"), "{msg}");
}

#[test]
fn unparseable_id_names_file_line_and_column() {
    let tmp = sample_folder();
    write(
        tmp.path(),
        "condition_occurrence.csv",
        "person_id,condition_concept_id,visit_occurrence_id\n1,316866,10\n1,316866,ten\n",
    );
    let msg = read_omop(tmp.path()).unwrap_err().to_string();
    assert!(msg.contains("condition_occurrence.csv:3:"), "{msg}");
    assert!(msg.contains("`visit_occurrence_id` is `ten`"), "{msg}");
}

#[test]
fn missing_column_names_file_and_column() {
    let tmp = sample_folder();
    write(
        tmp.path(),
        "measurement.csv",
        "measurement_id,person_id,visit_occurrence_id,value_as_number\n1,1,10,3\n",
    );
    let msg = read_omop(tmp.path()).unwrap_err().to_string();
    assert!(msg.contains("measurement.csv"), "{msg}");
    assert!(msg.contains("`measurement_concept_id`"), "{msg}");
}

#[test]
fn empty_and_colon_delimited_tables_say_what_is_wrong() {
    let tmp = sample_folder();
    write(tmp.path(), "measurement.csv", "");
    let msg = read_omop(tmp.path()).unwrap_err().to_string();
    assert!(msg.contains("measurement.csv:1:") && msg.contains("is empty"), "{msg}");
    write(
        tmp.path(),
        "measurement.csv",
        "measurement_id:visit_occurrence_id:measurement_concept_id\n1:10:3\n",
    );
    let msg = read_omop(tmp.path()).unwrap_err().to_string();
    assert!(
        msg.contains("measurement.csv:1:") && msg.contains("no comma, tab, pipe or semicolon"),
        "{msg}"
    );
}

#[test]
fn unparseable_visit_date_is_an_error() {
    let tmp = sample_folder();
    write(
        tmp.path(),
        "visit_occurrence.csv",
        "visit_occurrence_id,person_id,visit_start_date\n10,1,03/01/2020\n",
    );
    let msg = read_omop(tmp.path()).unwrap_err().to_string();
    assert!(msg.contains("visit_occurrence.csv:2:"), "{msg}");
    assert!(msg.contains("visit_start_date"), "{msg}");
}

#[test]
fn table_files_differing_in_case_are_refused() {
    let tmp = sample_folder();
    write(tmp.path(), "person.csv", "person_id\n1\n");
    let msg = read_omop(tmp.path()).unwrap_err().to_string();
    assert!(msg.contains("differing only in case"), "{msg}");
}

#[test]
fn lab_fields() {
    assert_eq!(parse_lab_field(""), LabField::Absent);
    assert_eq!(parse_lab_field("1e3"), LabField::Finite(1000.0));
    assert_eq!(parse_lab_field("inf"), LabField::NotFinite);
    assert_eq!(parse_lab_field("NaN"), LabField::NotFinite);
    assert_eq!(parse_lab_field("1,5"), LabField::NotFinite);
}

/// The bundled Synthea-1k demo data (`./scripts/setup.sh` extracts it).
#[test]
#[ignore = "needs the demo data of ./scripts/setup.sh in data/synthea1k-omop"]
fn reads_the_synthea_demo_data() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/synthea1k-omop");
    let ds = read_omop(&dir).unwrap();
    assert_eq!(ds.report.patients, 1130);
    assert!(ds.patients.len() > 1000, "{}", ds.patients.len());
    assert!(ds.report.visits > 25_000, "{:?}", ds.report);
    for p in &ds.patients {
        let times: Vec<&str> = p.visits.iter().map(|v| v.time.as_deref().unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{}", p.id);
    }
}

#[test]
fn event_dates_that_do_not_parse_are_errors_naming_file_line_and_column() {
    for (date, datetime) in [
        ("0000-00-00", ""),
        ("2020-03-01", "2020-13-01 00:00:00"),
        ("03/01/2020", ""),
    ] {
        let tmp = sample_folder();
        write(
            tmp.path(),
            "condition_occurrence.csv",
            &format!(
                "condition_occurrence_id,person_id,condition_concept_id,condition_start_date,condition_start_datetime,visit_occurrence_id\n\
                 1,1,316866,2020-03-01,,10\n\
                 2,1,316866,{date},{datetime},10\n"
            ),
        );
        let msg = read_omop(tmp.path()).unwrap_err().to_string();
        let column = if datetime.is_empty() {
            "condition_start_date"
        } else {
            "condition_start_datetime"
        };
        assert!(msg.contains("condition_occurrence.csv:3:"), "{msg}");
        assert!(msg.contains(column) && msg.contains("expected YYYY-MM-DD"), "{msg}");
    }
}

#[test]
fn an_event_table_without_person_id_is_refused() {
    let tmp = sample_folder();
    write(
        tmp.path(),
        "condition_occurrence.csv",
        "condition_occurrence_id,condition_concept_id,visit_occurrence_id\n1,316866,10\n",
    );
    let msg = read_omop(tmp.path()).unwrap_err().to_string();
    assert!(
        msg.contains("condition_occurrence.csv") && msg.contains("person_id"),
        "{msg}"
    );
    assert!(msg.contains("missing required column"), "{msg}");
}
