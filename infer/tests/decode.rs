//! Decoding sampled vocabulary indices into a record: codes, gaps, ages, labs, labels, demographics.

mod common;

use chrono::NaiveDateTime;
use halo_core::encoding::{DemographicCategory, Token};
use halo_infer::decode::decode;
use halo_infer::sampler::record_rng;
use halo_infer::RawRecord;

fn index_of(enc: &halo_core::encoding::Encoding, t: &Token) -> u32 {
    enc.tokens.iter().position(|x| x == t).unwrap() as u32
}

#[test]
fn decodes_every_token_kind() {
    let enc = common::encoding(&common::Spec::fixture());
    let code = |c: &str| index_of(&enc, &Token::Code { code: c.into() });
    let gap = |b| index_of(&enc, &Token::Gap { bucket: b });
    let age = |b| index_of(&enc, &Token::Age { bucket: b });
    let lab = |b| {
        index_of(
            &enc,
            &Token::Lab {
                code: "LOINC/2000-0".into(),
                bucket: b,
            },
        )
    };
    let demo = |category: DemographicCategory, v: &str| {
        index_of(
            &enc,
            &Token::Demographic {
                category,
                value: v.into(),
            },
        )
    };
    let label = index_of(
        &enc,
        &Token::Label {
            name: "phenotype_1".into(),
        },
    );
    let end = enc.end_index() as u32;
    let mut labels = vec![
        label,
        demo(DemographicCategory::Sex, "F"),
        demo(DemographicCategory::BirthYear, "1950-1959"),
    ];
    labels.sort();
    let mut v1 = vec![age(2), code("ICD9/1003"), code("ICD9/1010"), lab(1)];
    v1.sort();
    let mut v2 = vec![gap(3), code("ICD9/1001")];
    v2.sort();
    let v3 = vec![gap(0)]; // only a gap: dropped, its time still passes
    let mut v4 = vec![gap(1), code("ICD9/1020"), end];
    v4.sort();
    let raw = RawRecord {
        index: 17,
        labels,
        visits: vec![v1, v2, v3, v4],
    };
    let p = decode(&enc, &raw, &mut record_rng(1, 17));

    assert_eq!(p.id, "17");
    let l = p.labels.as_ref().unwrap();
    assert_eq!(l.len(), 3);
    assert!(l["phenotype_1"] && !l["phenotype_0"] && !l["phenotype_2"]);
    assert_eq!(p.demographics.sex.as_deref(), Some("F"));
    assert_eq!(p.demographics.race, None);
    let year = p.demographics.birth_year.unwrap();
    assert!((1950..=1959).contains(&year));
    let birth = chrono::NaiveDate::parse_from_str(p.demographics.birth_date.as_deref().unwrap(), "%Y-%m-%d").unwrap();
    assert_eq!(chrono::Datelike::year(&birth), year);

    assert_eq!(p.visits.len(), 3, "the visit with only a gap code is left out");
    assert_eq!(p.visits[0].codes, ["ICD9/1003", "ICD9/1010"]);
    assert_eq!(p.visits[0].labs.len(), 1);
    let v = p.visits[0].labs[0].value;
    // LOINC/2000-0 edges 10, 15, 20, 25: bucket 1 is [15, 20).
    assert!((15.0..20.0).contains(&v), "lab value {v}");
    // Age bucket 2 is [10, 15) years: the first visit is 10 to 15 years after birth.
    let t0 = NaiveDateTime::parse_from_str(p.visits[0].time.as_deref().unwrap(), "%Y-%m-%dT%H:%M:%S").unwrap();
    let years = (t0 - birth.and_hms_opt(0, 0, 0).unwrap()).num_seconds() as f64 / (365.25 * 86400.0);
    assert!((10.0..15.0).contains(&years), "age {years}");
    // Gaps: bucket 3 = [7, 14) days, then [0, 1) (dropped visit), then [1, 2).
    assert_eq!(p.visits[0].day, Some(0.0));
    let d1 = p.visits[1].day.unwrap();
    let d2 = p.visits[2].day.unwrap();
    assert!((7.0..14.0).contains(&d1), "day {d1}");
    assert!((d1 + 1.0..d1 + 3.0).contains(&d2), "day {d2} after {d1}");
    let t2 = NaiveDateTime::parse_from_str(p.visits[2].time.as_deref().unwrap(), "%Y-%m-%dT%H:%M:%S").unwrap();
    assert!(((t2 - t0).num_seconds() as f64 / 86400.0 - d2).abs() < 1e-4);
    assert_eq!(
        p.visits[2].codes,
        ["ICD9/1020"],
        "the end code is not a code of the record"
    );

    // Same stream, same record; without birth year the times start at 2000-01-01.
    assert_eq!(decode(&enc, &raw, &mut record_rng(1, 17)), p);
    let raw2 = RawRecord {
        labels: vec![label],
        ..raw
    };
    let p2 = decode(&enc, &raw2, &mut record_rng(1, 17));
    assert_eq!(p2.visits[0].time.as_deref(), Some("2000-01-01T00:00:00"));
    assert_eq!(p2.demographics.birth_year, None);
}
