use super::*;
use crate::record::{DemographicCategory, LabValue, Visit};

fn cohort(records: std::ops::Range<u64>, cohort_end: u64) -> OmopCohort {
    OmopCohort {
        records,
        cohort_end,
        source: CdmSource {
            description: "test cohort, seed 1".into(),
            etl_reference: "halo-sample test".into(),
            release_date: NaiveDate::from_ymd_opt(2026, 12, 3).unwrap(),
        },
    }
}

fn visit(time: &str, codes: &[&str], labs: &[(&str, f64)]) -> Visit {
    Visit {
        day: None,
        time: Some(time.into()),
        codes: codes.iter().map(|c| c.to_string()).collect(),
        labs: labs
            .iter()
            .map(|&(code, value)| LabValue {
                code: code.into(),
                value,
            })
            .collect(),
        visit_type: None,
    }
}

fn patients() -> Vec<Patient> {
    vec![
        Patient {
            id: "0".into(),
            demographics: Demographics {
                sex: Some("F".into()),
                race: Some("white".into()),
                ethnicity: Some("irish".into()),
                birth_year: Some(1971),
                birth_date: Some("1971-03-09".into()),
            },
            visits: vec![
                visit(
                    "2010-05-01T08:00:00",
                    &["condition/201826", "drug/1503297", "procedure/src:X,1 \"a\""],
                    &[],
                ),
                // Same day, later: the time of day must survive.
                visit(
                    "2010-05-01T13:30:05",
                    &["measurement/3004249", "condition/src:E11.9"],
                    &[
                        ("measurement/3004249", 120.5),
                        ("measurement/3004249", 0.1),
                        ("measurement/3012888", -3e-7),
                    ],
                ),
                visit("2012-01-02T00:00:00", &["observation/4275495"], &[]),
            ],
            ..Patient::default()
        },
        Patient {
            id: "1".into(),
            // A race kept as a concept id (the source had no source value).
            demographics: Demographics {
                race: Some("8516".into()),
                birth_year: Some(1950),
                ..Demographics::default()
            },
            visits: vec![visit("2001-07-04T10:00:00", &["drug/src:aspirin"], &[])],
            ..Patient::default()
        },
    ]
}

fn read_table(dir: &Path, table: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(dir.join(format!("{table}.csv"))).unwrap();
    let header = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|row| row.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

/// What reading an OMOP folder gives for a written record: lab codes also among the visit's codes, codes
/// and lab values compared as sets (OMOP rows have no order within a visit), no ids, labels or days.
/// A visit as (time, sorted codes, sorted lab values).
type VisitSets = (String, Vec<String>, Vec<String>);

fn normalized(p: &Patient) -> (Demographics, Vec<VisitSets>) {
    let visits = p
        .visits
        .iter()
        .map(|v| {
            let mut codes: Vec<String> = v.codes.iter().chain(v.labs.iter().map(|l| &l.code)).cloned().collect();
            codes.sort();
            codes.dedup();
            let mut labs: Vec<String> = v.labs.iter().map(|l| format!("{} {:?}", l.code, l.value)).collect();
            labs.sort();
            (v.time.clone().unwrap_or_default(), codes, labs)
        })
        .collect();
    (p.demographics.clone(), visits)
}

fn write_all(dir: &Path, records: &[Patient], first_index: u64, cohort_end: u64) -> OmopWriteReport {
    let range = first_index..first_index + records.len() as u64;
    let mut w = OmopWriter::create(dir, cohort(range, cohort_end)).unwrap();
    for (i, p) in records.iter().enumerate() {
        w.write(first_index + i as u64, p).unwrap();
    }
    w.finish().unwrap()
}

#[test]
fn routes_codes_to_their_tables() {
    let r = route("condition/201826");
    assert_eq!(
        (r.table, r.concept_id, r.source_value, r.unprefixed),
        (EventTable::Condition, 201826, "", false)
    );
    let r = route("drug/src:aspirin 81");
    assert_eq!(
        (r.table, r.concept_id, r.source_value),
        (EventTable::Drug, 0, "aspirin 81")
    );
    // A domain named another way keeps the whole code as its source value.
    let r = route("LAB//51221");
    assert_eq!(
        (r.table, r.concept_id, r.source_value, r.unprefixed),
        (EventTable::Measurement, 0, "LAB//51221", false)
    );
    let r = route("DIAGNOSIS//ICD9CM//250.00");
    assert_eq!(r.table, EventTable::Condition);
    // Not a concept id: zero, negative, too large for the DDL's integer.
    for code in ["condition/0", "condition/-5", "condition/99999999999", "condition/E11"] {
        let r = route(code);
        assert_eq!(
            (r.table, r.concept_id, r.source_value),
            (EventTable::Condition, 0, code),
            "{code}"
        );
    }
    for code in ["ICD9_250.00", "", "GAP/3", "250.00/x"] {
        let r = route(code);
        assert_eq!(
            (r.table, r.concept_id, r.source_value, r.unprefixed),
            (EventTable::Observation, 0, code, true)
        );
    }
}

#[test]
fn demographic_values_map_to_standard_concepts() {
    assert_eq!(demographic_concept(DemographicCategory::Sex, "M"), 8507);
    assert_eq!(demographic_concept(DemographicCategory::Sex, "female"), 8532);
    assert_eq!(
        demographic_concept(DemographicCategory::Race, "Black or African American"),
        8516
    );
    assert_eq!(
        demographic_concept(DemographicCategory::Ethnicity, "nonhispanic"),
        38003564
    );
    assert_eq!(demographic_concept(DemographicCategory::Race, "8527"), 8527);
    assert_eq!(demographic_concept(DemographicCategory::Ethnicity, "irish"), 0);
    assert_eq!(
        demographic_concept(DemographicCategory::Race, "hispanic"),
        0,
        "a race table value, not an ethnicity"
    );
}

#[test]
fn id_share_keeps_every_id_within_32_bits() {
    assert_eq!(id_share(1), MAX_ID);
    assert_eq!(id_share(1_000_000), 2_147);
    assert_eq!(id_share(10_000_000), 214);
    assert_eq!(id_share(MAX_ID), 1);
    for end in [1, 7, 999, 10_000_000, 123_456_789, MAX_ID] {
        assert!(end * id_share(end) <= MAX_ID, "end {end}");
    }
}

#[test]
fn written_tables_read_back_as_the_same_records() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("omop");
    let records = patients();
    let report = write_all(&dir, &records, 0, 2);
    assert_eq!(report.persons, 2);
    assert_eq!(report.visits, 4);
    // condition 2, drug 2, procedure 1, measurement: one code row with a value, one extra value of it,
    // one value of a code the visit lacks; observation 1.
    assert_eq!(report.events, [2, 2, 1, 3, 1]);
    assert_eq!(report.unprefixed_rows, 0);

    let back = crate::omop::read_omop(&dir).unwrap();
    let expected: Vec<Patient> = records
        .iter()
        .enumerate()
        .map(|(i, p)| as_read_back(i as u64, p))
        .collect();
    assert_eq!(back.patients, expected);
    // What the reader cannot see: the observation code, and the visit that had only it.
    assert_eq!(expected[0].visits.len(), 2);
    assert_eq!(
        expected[0].visits[1].codes,
        ["condition/src:E11.9", "measurement/3004249", "measurement/3012888"]
    );
    // Everything else is the record itself, as sets per visit.
    let seen: Vec<_> = back.patients.iter().map(normalized).collect();
    let mut written: Vec<_> = records.iter().map(normalized).collect();
    written[0].1.pop();
    assert_eq!(seen, written);
    // Person ids are the record index + 1.
    assert_eq!(back.patients[0].id, "1");
    assert_eq!(back.patients[1].id, "2");
}

#[test]
fn every_row_has_its_header_width_and_ids_are_unique_and_inside_the_visits() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("omop");
    write_all(&dir, &patients(), 10, 1_000);
    let (_, visits) = read_table(&dir, "visit_occurrence");
    let visit_dates: std::collections::HashMap<String, (String, String)> = visits
        .iter()
        .map(|v| (v[0].clone(), (v[1].clone(), v[3].clone())))
        .collect();
    assert_eq!(
        visits.iter().map(|v| v[0].as_str()).collect::<Vec<_>>(),
        ["21474831", "21474832", "21474833", "21474834"]
    );
    let (_, persons) = read_table(&dir, "person");
    assert_eq!(
        persons[0][..8],
        ["11", "8532", "1971", "3", "9", "1971-03-09 00:00:00", "8527", "0"]
    );
    assert_eq!(persons[0][16], "irish");
    assert_eq!(persons[1][..8], ["12", "0", "1950", "", "", "", "8516", "0"]);
    assert_eq!(persons[1][14], "", "a concept id is not repeated as a source value");
    let (_, periods) = read_table(&dir, "observation_period");
    assert_eq!(periods[0], ["11", "11", "2010-05-01", "2012-01-02", "32817"]);
    for table in EventTable::ALL {
        let (header, rows) = read_table(&dir, table.name());
        assert_eq!(header.len(), table.columns().len());
        let mut ids: Vec<&String> = rows.iter().map(|r| &r[0]).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), rows.len(), "{}", table.name());
        let visit_col = header.iter().position(|h| h == "visit_occurrence_id").unwrap();
        for row in &rows {
            let (person, date) = &visit_dates[&row[visit_col]];
            assert_eq!(&row[1], person);
            assert_eq!(&row[3], date, "{} row {row:?} dated outside its visit", table.name());
        }
    }
    let (_, source) = read_table(&dir, "cdm_source");
    assert_eq!(source.len(), 1);
    assert_eq!(source[0][3], "test cohort, seed 1");
    assert_eq!(source[0][6..10], ["2026-12-03", "2026-12-03", "5.4", "756265"]);
}

#[test]
fn unprefixed_codes_go_to_observation_with_their_source_value() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("omop");
    let p = Patient {
        id: "0".into(),
        visits: vec![Visit {
            codes: vec!["ICD9_250.00".into(), "401.9".into()],
            labs: vec![LabValue {
                code: "glucose".into(),
                value: 5.5,
            }],
            ..Visit::default()
        }],
        ..Patient::default()
    };
    let report = write_all(&dir, &[p], 0, 1);
    assert_eq!(report.unprefixed_rows, 3);
    assert_eq!(report.persons_without_birth_year, 1);
    let (_, rows) = read_table(&dir, "observation");
    let got: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| (r[2].as_str(), r[6].as_str(), r[14].as_str()))
        .collect();
    assert_eq!(
        got,
        [("0", "", "ICD9_250.00"), ("0", "", "401.9"), ("0", "5.5", "glucose")]
    );
    // Without a time, the visit is on the base date and the person born that year.
    let (_, visits) = read_table(&dir, "visit_occurrence");
    assert_eq!(visits[0][3], "2000-01-01");
    let (_, persons) = read_table(&dir, "person");
    assert_eq!(persons[0][2], "2000");
}

#[test]
fn more_rows_than_the_records_ids_allow_is_an_error_and_nothing_is_left() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("omop");
    let end = MAX_ID / 2; // 2 ids a record
    let mut w = OmopWriter::create(&dir, cohort(4..6, end)).unwrap();
    assert_eq!(w.share(), 2);
    let conditions = |n: usize| Patient {
        visits: vec![visit(
            "2010-01-01T00:00:00",
            &["condition/1", "condition/2", "condition/3", "condition/4"][..n],
            &[],
        )],
        ..Patient::default()
    };
    // Two records share 4 ids: 3 + 1 rows fit, as an average of 2.
    w.write(4, &conditions(3)).unwrap();
    w.write(5, &conditions(1)).unwrap();
    let err = w.write(5, &conditions(1)).unwrap_err().to_string();
    assert!(
        err.contains("records 4..6 have more condition_occurrence rows than 32-bit ids leave them"),
        "{err}"
    );
    assert!(w
        .write(6, &conditions(1))
        .unwrap_err()
        .to_string()
        .contains("outside the records 4..6"));
    drop(w);
    assert!(
        std::fs::read_dir(tmp.path()).unwrap().next().is_none(),
        "the temporary folder is removed"
    );
}

#[test]
fn ids_of_shards_never_meet() {
    let tmp = tempfile::tempdir().unwrap();
    let p = &patients()[0];
    let mut seen = std::collections::HashSet::new();
    for (k, range) in [0..2u64, 2..3, 3..5].into_iter().enumerate() {
        let dir = tmp.path().join(format!("part{k}"));
        let mut w = OmopWriter::create(&dir, cohort(range.clone(), 5)).unwrap();
        for i in range {
            w.write(i, p).unwrap();
        }
        w.finish().unwrap();
        for table in ["visit_occurrence", "condition_occurrence", "measurement"] {
            for row in read_table(&dir, table).1 {
                assert!(seen.insert((table, row[0].clone())), "{table} id {} twice", row[0]);
            }
        }
    }
}

#[test]
fn an_existing_output_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let err = OmopWriter::create(tmp.path(), cohort(0..1, 1))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn source_values_longer_than_the_ddl_allows_are_cut_on_a_character_boundary_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("omop");
    // 49 ASCII characters then multi-byte ones: the 50th character is 'é' (2 bytes), so a byte cut at 50
    // would split it.
    let long = format!("{}éééé", "a".repeat(49));
    let exactly_fifty = "b".repeat(50);
    let p = Patient {
        id: "0".into(),
        demographics: Demographics {
            race: Some(format!("race {long}")),
            ..Demographics::default()
        },
        visits: vec![visit(
            "2010-05-01T08:00:00",
            &[
                &format!("condition/src:{long}"),
                &format!("condition/src:{exactly_fifty}"),
                &format!("MEDS/{long}"),
            ],
            &[],
        )],
        ..Patient::default()
    };
    let report = write_all(&dir, std::slice::from_ref(&p), 0, 1);
    // The condition's source value, the unprefixed code (whole code as source value) and the race.
    assert_eq!(report.truncated_source_values, 3);
    let cut = format!("{}é", "a".repeat(49));
    let (header, conditions) = read_table(&dir, "condition_occurrence");
    let column = header.iter().position(|c| c == "condition_source_value").unwrap();
    let sources: Vec<&str> = conditions.iter().map(|r| r[column].as_str()).collect();
    assert_eq!(sources, [cut.as_str(), exactly_fifty.as_str()]);
    let (header, observations) = read_table(&dir, "observation");
    let column = header.iter().position(|c| c == "observation_source_value").unwrap();
    assert_eq!(observations[0][column], format!("MEDS/{}", "a".repeat(45)));
    let (header, persons) = read_table(&dir, "person");
    let column = header.iter().position(|c| c == "race_source_value").unwrap();
    assert_eq!(persons[0][column].chars().count(), SOURCE_VALUE_WIDTH);
    // Every source value fits, and the reader gets back what as_read_back says.
    for table in ["condition_occurrence", "observation", "person"] {
        let (header, rows) = read_table(&dir, table);
        for (i, name) in header.iter().enumerate().filter(|(_, n)| n.ends_with("_source_value")) {
            for row in &rows {
                assert!(
                    row[i].chars().count() <= SOURCE_VALUE_WIDTH,
                    "{table}.{name}: {}",
                    row[i]
                );
            }
        }
    }
    let back = crate::omop::read_omop(&dir).unwrap();
    assert_eq!(back.patients, [as_read_back(0, &p)]);
}
