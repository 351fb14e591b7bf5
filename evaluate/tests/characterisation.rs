//! Record spans, visit type shares and per-domain prevalence (what an OHDSI characterisation compares),
//! pinned on a tiny example worked out by hand.

use halo_core::record::{Patient, Visit};
use halo_core::split::{SplitAssignment, SplitSource};
use halo_evaluate::{evaluate, EvalOptions, Report};

fn visit(day: f64, visit_type: Option<&str>, codes: &[&str]) -> Visit {
    Visit {
        day: Some(day),
        codes: codes.iter().map(|c| c.to_string()).collect(),
        visit_type: visit_type.map(str::to_string),
        ..Visit::default()
    }
}

fn patient(id: &str, visits: Vec<Visit>) -> Patient {
    Patient {
        id: id.into(),
        visits,
        ..Patient::default()
    }
}

/// Training split t1..t4 (spans 10, 0, 20, 30 days; visit types 9201 once, 9202 three times, 9203 once, two
/// visits without), test split e1, synthetic s1..s4 (spans 20, 0, 40, 60; every visit 9202).
fn data() -> (Vec<Patient>, SplitAssignment, Vec<Patient>) {
    let real = vec![
        patient(
            "t1",
            vec![
                visit(0.0, Some("9201"), &["condition/1", "drug/1"]),
                visit(10.0, Some("9202"), &["procedure/1"]),
            ],
        ),
        patient("t2", vec![visit(0.0, Some("9202"), &["condition/1", "drug/2"])]),
        patient(
            "t3",
            vec![
                visit(0.0, Some("9202"), &["condition/2"]),
                visit(20.0, Some("9203"), &["drug/2"]),
            ],
        ),
        patient("t4", vec![visit(0.0, None, &["Z"]), visit(30.0, None, &["Z"])]),
        patient(
            "e1",
            vec![
                visit(0.0, Some("9202"), &["condition/1"]),
                visit(5.0, Some("9202"), &["drug/1"]),
            ],
        ),
    ];
    let split = SplitAssignment {
        source: SplitSource::Given,
        seed: 0,
        train: ["t1", "t2", "t3", "t4"].map(String::from).to_vec(),
        val: vec![],
        test: vec!["e1".into()],
    };
    let t = Some("9202");
    let synthetic = vec![
        patient(
            "s1",
            vec![visit(0.0, t, &["condition/1", "drug/1"]), visit(20.0, t, &["Z"])],
        ),
        patient("s2", vec![visit(0.0, t, &["condition/1", "drug/1"])]),
        patient("s3", vec![visit(0.0, t, &["condition/2"]), visit(40.0, t, &["drug/1"])]),
        patient("s4", vec![visit(0.0, t, &["Z"]), visit(60.0, t, &["Z"])]),
    ];
    (real, split, synthetic)
}

fn report(min_patients: usize) -> Report {
    let (real, split, synthetic) = data();
    let options = EvalOptions {
        min_patients,
        ..EvalOptions::default()
    };
    evaluate(&real, &split, &synthetic, &options).unwrap()
}

#[test]
fn record_spans_by_hand() {
    // Without the rule (k counts as 1): nearest-rank quantiles. Train spans [0, 10, 20, 30]: median rank
    // ceil(0.5 * 4) = 2 -> 10, 90th percentile rank ceil(3.6) = 4 -> 30, mean 15. Synthetic [0, 20, 40, 60]:
    // 20, 60, 30: every figure +100%.
    let r = report(0);
    let spans = r.fidelity.record_spans.as_ref().unwrap();
    let (train, syn) = (spans.days.train.unwrap(), spans.days.synthetic.unwrap());
    assert_eq!(
        (train.median, train.p90, train.mean, train.records),
        (10.0, 30.0, 15.0, 4)
    );
    assert_eq!((syn.median, syn.p90, syn.mean), (20.0, 60.0, 30.0));
    assert_eq!(
        (spans.median_change, spans.p90_change, spans.mean_change),
        (Some(1.0), Some(1.0), Some(1.0))
    );
    // The test split's one record spans 5 days; with k = 2 it has too few records for a figure.
    assert_eq!(spans.days.test.unwrap().median, 5.0);
    // With k = 2 each quantile is the mean of the 2 spans nearest its rank: median (0 + 10) / 2 = 5, 90th
    // percentile (20 + 30) / 2 = 25; no figure is one patient's span.
    let r = report(2);
    let spans = r.fidelity.record_spans.as_ref().unwrap();
    let train = spans.days.train.unwrap();
    assert_eq!((train.median, train.p90, train.mean), (5.0, 25.0, 15.0));
    assert_eq!(spans.days.test, None);
}

#[test]
fn visit_type_shares_by_hand_and_rare_types_unnamed() {
    // Train: 5 typed visits, 9201 1 (0.2), 9202 3 (0.6), 9203 1 (0.2), 2 untyped; synthetic: 9202 only.
    let r = report(0);
    let v = &r.fidelity.visit_types;
    let shares: Vec<(&str, f64, f64)> = v
        .shares
        .iter()
        .map(|s| (s.visit_type.as_str(), s.train, s.synthetic))
        .collect();
    assert_eq!(shares, [("9202", 0.6, 1.0), ("9201", 0.2, 0.0), ("9203", 0.2, 0.0)]);
    assert!((v.largest_difference.unwrap() - 0.4).abs() < 1e-12);
    assert_eq!(
        (v.untyped_visits.train, v.untyped_visits.synthetic, v.hidden),
        (2, 0, 0)
    );
    // With k = 2: 9201 and 9203 are each held by one real patient and are not named anywhere; the
    // largest difference still counts every type.
    let r = report(2);
    let v = &r.fidelity.visit_types;
    assert_eq!(v.shares.len(), 1);
    assert_eq!((v.hidden, r.hidden.visit_types), (2, 2));
    assert!((v.largest_difference.unwrap() - 0.4).abs() < 1e-12);
    let json = serde_json::to_string(&r).unwrap();
    let html = halo_evaluate::report::render_html(&r);
    for text in [&json, &html] {
        assert!(!text.contains("9201") && !text.contains("9203"));
        assert!(text.contains("9202"));
    }
}

#[test]
fn prevalence_per_domain_by_hand() {
    // Share of persons per concept. condition: train {1: 2/4, 2: 1/4}, synthetic the same -> R² 1.
    // drug: train {1: 1/4, 2: 2/4}, synthetic {1: 3/4, 2: 0}: mean 0.375, SS_tot 2 * 0.125² = 0.03125,
    // SS_res 0.5² + 0.5² = 0.5 -> R² 1 - 16 = -15. procedure: one concept -> undefined. Z has no domain.
    let r = report(0);
    let d: Vec<(&str, usize, Option<f64>)> = r
        .fidelity
        .domain_prevalence
        .iter()
        .map(|d| (d.domain.as_str(), d.concepts, d.r2_synthetic_vs_train))
        .collect();
    assert_eq!(
        d,
        [
            ("condition", 2, Some(1.0)),
            ("drug", 2, Some(-15.0)),
            ("procedure", 1, None)
        ]
    );
    // With k = 2 the procedure domain (procedure/1: one patient) is not listed.
    let r = report(2);
    let domains: Vec<&str> = r.fidelity.domain_prevalence.iter().map(|d| d.domain.as_str()).collect();
    assert_eq!(domains, ["condition", "drug"]);
}

#[test]
fn headline_figures_cover_spans_visit_types_and_domains() {
    let r = report(0);
    let lines = halo_evaluate::headline::headlines(&r);
    let find = |prefix: &str| {
        lines
            .iter()
            .find(|h| h.figure.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {lines:?}"))
    };
    let median = find("record span median");
    assert_eq!((median.value.as_str(), median.within), ("20 (+100.0%)", false));
    assert!(!find("record span 90th percentile").within);
    let types = find("visit type shares");
    assert_eq!((types.value.as_str(), types.within), ("0.400", false));
    // drug: -15 against its ceiling (the test split's -25) less 0.05, condition: 1 against -9 less 0.05 (the
    // test split's one record holds condition/1 and drug/1 only): both 10.05 above their bounds, within.
    let domain = find("prevalence R² per domain");
    assert!(domain.within, "{domain:?}");
    assert!(domain.expected.contains("ceiling -"), "{domain:?}");
    let html = halo_evaluate::report::render_html(&r);
    assert!(html.contains("record span") && html.contains("ceiling: R² test vs train"));
}

#[test]
fn demographic_shares_by_hand_and_rare_values_unnamed() {
    use halo_core::record::Demographics;
    let (mut real, split, mut synthetic) = data();
    let person = |sex: &str, race: &str, birth_year: i32| Demographics {
        sex: Some(sex.into()),
        race: Some(race.into()),
        birth_year: Some(birth_year),
        ..Demographics::default()
    };
    // Train t1..t4: F, F, M, M; races white x3 and one `pacific` (a single real patient); born in the 1950s
    // x3 and 1961. Test e1: F, white, 1955. Synthetic: F x3 and M, all white, all born in the 1950s.
    let people = [
        ("F", "white", 1951),
        ("F", "white", 1952),
        ("M", "pacific", 1953),
        ("M", "white", 1961),
        ("F", "white", 1955),
    ];
    for (p, (sex, race, year)) in real.iter_mut().zip(people) {
        p.demographics = person(sex, race, year);
    }
    for (i, p) in synthetic.iter_mut().enumerate() {
        p.demographics = person(if i < 3 { "F" } else { "M" }, "white", 1950 + i as i32);
    }
    let options = |min_patients| EvalOptions {
        min_patients,
        ..EvalOptions::default()
    };
    let r = evaluate(&real, &split, &synthetic, &options(0)).unwrap();
    let field = |r: &Report, name: &str| {
        r.fidelity
            .demographics
            .iter()
            .find(|d| d.field == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name}"))
    };
    let sex = field(&r, "sex");
    let shares: Vec<(&str, f64, f64, f64)> = sex
        .shares
        .iter()
        .map(|s| (s.value.as_str(), s.train, s.test, s.synthetic))
        .collect();
    assert_eq!(shares, [("F", 0.5, 1.0, 0.75), ("M", 0.5, 0.0, 0.25)]);
    assert!((sex.largest_difference - 0.25).abs() < 1e-12);
    let decades = field(&r, "birth_decade");
    assert!((decades.largest_difference - 0.25).abs() < 1e-12, "{decades:?}");
    // No ethnicity anywhere: no such field.
    assert!(r.fidelity.demographics.iter().all(|d| d.field != "ethnicity"));
    let headline = halo_evaluate::headline::headlines(&r)
        .into_iter()
        .find(|h| h.figure.starts_with("demographic shares"))
        .expect("a demographic headline");
    assert_eq!((headline.value.as_str(), headline.within), ("0.250", false));
    // With k = 2: `pacific` (one real patient) and the 1960s (one) are named nowhere, yet still counted.
    let r = evaluate(&real, &split, &synthetic, &options(2)).unwrap();
    let race = field(&r, "race");
    assert_eq!(race.shares.len(), 1);
    assert_eq!(race.hidden, 1);
    assert!((race.largest_difference - 0.25).abs() < 1e-12);
    assert_eq!(r.hidden.demographic_values, 2);
    let json = serde_json::to_string(&r).unwrap();
    let html = halo_evaluate::report::render_html(&r);
    for text in [&json, &html] {
        assert!(
            !text.contains("pacific") && !text.contains("1960-1969"),
            "a rare value named"
        );
        assert!(text.contains("white") && text.contains("1950-1959"));
    }
}

/// Persons holding a code their sex never holds in training, worked by hand with sexes on the example's
/// persons (t1, t2 women; t3, t4, e1 men; synthetic s1, s4 men, s2, s3 women).
#[test]
fn codes_one_sex_never_holds_by_hand() {
    let (mut real, split, mut synthetic) = data();
    let sexes = [("t1", "F"), ("t2", "F"), ("t3", "M"), ("t4", "M"), ("e1", "M")];
    let synthetic_sexes = [("s1", "M"), ("s2", "F"), ("s3", "F"), ("s4", "M")];
    for p in real.iter_mut().chain(synthetic.iter_mut()) {
        let sex = sexes
            .iter()
            .chain(&synthetic_sexes)
            .find(|(id, _)| *id == p.id)
            .unwrap()
            .1;
        p.demographics.sex = Some(sex.to_string());
    }
    let options = EvalOptions {
        min_patients: 1,
        ..EvalOptions::default()
    };
    let r = evaluate(&real, &split, &synthetic, &options).unwrap();
    // Women (t1, t2) hold condition/1, drug/1, procedure/1, drug/2; men (t3, t4) condition/2, drug/2, Z.
    // Foreign to women: condition/2, Z; to men: condition/1, drug/1, procedure/1. Five codes.
    // Test: e1 (a man with condition/1) crosses: 1 of 1. Synthetic: s1 (man, condition/1) and s3 (woman,
    // condition/2) cross, s2 (woman, condition/1 and drug/1) and s4 (man, Z) do not: 2 of 4.
    let x = r.fidelity.sex_exclusive_codes.as_ref().expect("the persons have a sex");
    assert_eq!((x.codes, x.test, x.synthetic), (5, 1.0, 0.5));
    // A code counts when k persons of the other sex hold it: at k = 2 only condition/1 (t1 and t2; Z is one
    // man's), foreign to men. Synthetic: s1 alone crosses.
    let options = EvalOptions {
        min_patients: 2,
        ..EvalOptions::default()
    };
    let r = evaluate(&real, &split, &synthetic, &options).unwrap();
    let x = r.fidelity.sex_exclusive_codes.as_ref().unwrap();
    assert_eq!((x.codes, x.test, x.synthetic), (1, 1.0, 0.25));
    // Without sexes there is no figure.
    assert!(report(1).fidelity.sex_exclusive_codes.is_none());
}
