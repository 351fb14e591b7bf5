//! The encoding under differential privacy: what its vocabulary and edges release.

use super::*;

pub(super) fn dp_statistics(epsilon_share: f64, seed: u64) -> crate::privacy::statistics::DpStatistics {
    crate::privacy::statistics::DpStatistics {
        epsilon_share,
        delta: 1e-5,
        max_codes_per_patient: 32,
        max_visits_per_patient: 16,
        seed,
    }
}

fn has_code(enc: &Encoding, code: &str) -> bool {
    enc.tokens
        .iter()
        .any(|t| matches!(t, Token::Code { code: c } if c == code))
}

/// `patients` patients, each with COMMON; the first `frequent` of them also with FREQUENT.
fn common_and_frequent(patients: usize, frequent: usize) -> Vec<Patient> {
    (0..patients)
        .map(|i| {
            patient(
                i,
                if i < frequent {
                    &["COMMON", "FREQUENT"]
                } else {
                    &["COMMON"]
                },
            )
        })
        .collect()
}

#[test]
fn under_dp_a_planted_rare_code_stays_out_though_the_small_cell_rule_would_keep_it() {
    // 300 patients share COMMON; 120 of them also FREQUENT; one alone holds PLANTED.
    let mut all = common_and_frequent(300, 120);
    all[7].visits[0].codes.push("PLANTED".into());
    let train: Vec<&Patient> = all.iter().collect();
    let exact = EncodingOptions {
        min_patients: 1,
        ..options()
    };
    assert!(has_code(
        &Encoding::fit(&all, &train, None, exact.clone()).unwrap(),
        "PLANTED"
    ));
    // ε 10 for the statistics: the threshold is far above one patient, far below 120.
    let private = EncodingOptions {
        dp: Some(dp_statistics(10.0, 1)),
        ..exact
    };
    let noise = private.dp.as_ref().unwrap().noise().unwrap();
    let threshold = noise.vocabulary_threshold(1, 32);
    assert!(threshold > 10.0 && threshold < 100.0, "{threshold}");
    let enc = Encoding::fit(&all, &train, None, private.clone()).unwrap();
    assert!(
        has_code(&enc, "COMMON") && has_code(&enc, "FREQUENT"),
        "{:?}",
        enc.tokens
    );
    assert!(!has_code(&enc, "PLANTED"));
    // Nothing about how many distinct values were left out is released.
    assert_eq!(enc.left_out, LeftOut::default());
    // The same seed gives the same encoding; the noise depends on the seed.
    assert_eq!(Encoding::fit(&all, &train, None, private.clone()).unwrap(), enc);
    let small = |seed| {
        let options = EncodingOptions {
            dp: Some(dp_statistics(0.05, seed)),
            ..private.clone()
        };
        // At ε 0.05 the threshold is far above 300 patients: nothing enters.
        let enc = Encoding::fit(&all, &train, None, options).unwrap();
        has_code(&enc, "COMMON")
    };
    assert!(!small(1) && !small(2));
}

#[test]
fn under_dp_edges_are_public_and_shares_are_noisy_counts() {
    let day = |d: f64| Visit {
        day: Some(d),
        codes: vec!["C".into()],
        ..Default::default()
    };
    let all: Vec<Patient> = (0..400)
        .map(|i| Patient {
            id: format!("p{i}"),
            // Gaps of 10 days, and one patient with a gap of 9000 days.
            visits: vec![day(0.0), day(10.0), day(if i == 0 { 9010.0 } else { 20.0 })],
            ..Default::default()
        })
        .collect();
    let train: Vec<&Patient> = all.iter().collect();
    let options = EncodingOptions {
        gaps: true,
        min_patients: 1,
        dp: Some(dp_statistics(20.0, 3)),
        ..options()
    };
    let enc = Encoding::fit(&all, &train, None, options).unwrap();
    // The closing edge is the public 3650 days, not the data's largest gap; no within-bucket points.
    assert_eq!(
        enc.gap_edges_days.last(),
        Some(&crate::privacy::statistics::DP_MAX_GAP_DAYS)
    );
    assert!(enc.gap_quantiles_days.is_empty());
    let shares = enc.gap_bucket_shares(&all);
    let bucket = bucket_of(&enc.gap_edges_days, 10.0);
    assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    // 799 of 800 gaps fall in one bucket: the noisy share is close, but not exactly the count's.
    assert!(shares[bucket] > 0.9 && shares[bucket] != 799.0 / 800.0, "{shares:?}");
    assert_eq!(enc.gap_bucket_shares(&all), shares);
}

fn listed(codes: &[&str]) -> PublicCodes {
    let text: String = codes.iter().map(|c| format!("{c}\n")).collect();
    PublicCodes::parse(&format!("# a test list\n\n{text}"), Path::new("list.txt")).unwrap()
}

fn codes_of(enc: &Encoding) -> Vec<&str> {
    let mut codes: Vec<&str> = enc
        .tokens
        .iter()
        .filter_map(|t| match t {
            Token::Code { code } => Some(code.as_str()),
            _ => None,
        })
        .collect();
    codes.sort();
    codes
}

#[test]
fn under_dp_a_public_list_is_the_vocabulary_whatever_the_data_hold() {
    // At ε 0.05 noisy counts let no code in (see above); the list's codes enter all the same, seen or not,
    // and a code off the list stays out however common.
    let mut all = common_and_frequent(300, 120);
    let options = EncodingOptions {
        min_patients: 1,
        dp: Some(dp_statistics(0.05, 1)),
        public_codes: Some(listed(&["FREQUENT", "NEVER_SEEN", "PLANTED"])),
        ..options()
    };
    let train: Vec<&Patient> = all.iter().collect();
    let enc = Encoding::fit(&all, &train, None, options.clone()).unwrap();
    assert_eq!(codes_of(&enc), ["FREQUENT", "NEVER_SEEN", "PLANTED"]);
    // One more patient with a listed code nobody held: the same vocabulary (no count decided it).
    all[7].visits[0].codes.push("PLANTED".into());
    let train: Vec<&Patient> = all.iter().collect();
    assert_eq!(Encoding::fit(&all, &train, None, options).unwrap().tokens, enc.tokens);
}

#[test]
fn without_dp_a_public_list_keeps_its_codes_that_pass_the_small_cell_rule() {
    let mut all = common_and_frequent(30, 12);
    all[7].visits[0].codes.push("RARE".into());
    let train: Vec<&Patient> = all.iter().collect();
    let options = EncodingOptions {
        public_codes: Some(listed(&["FREQUENT", "NEVER_SEEN", "RARE"])),
        ..options()
    };
    let enc = Encoding::fit(&all, &train, None, options).unwrap();
    assert_eq!(codes_of(&enc), ["FREQUENT"]);
    // COMMON is not listed; RARE is but one patient holds it.
    assert_eq!(enc.left_out.not_listed, 1);
    assert_eq!(enc.left_out.codes, 1);
    // The list's digest and size are recorded, not its codes.
    let json = serde_json::to_string(&enc.options).unwrap();
    assert!(json.contains("public_codes") && !json.contains("NEVER_SEEN"), "{json}");
}

#[test]
fn a_public_list_with_a_bad_line_names_the_file_and_line() {
    let err = PublicCodes::parse("condition/1\ncondition 2\n", Path::new("codes.txt")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "codes.txt:2: `condition 2`: expected one code per line, without spaces"
    );
    let err = PublicCodes::parse("# only a comment\n", Path::new("codes.txt")).unwrap_err();
    assert!(err.to_string().starts_with("codes.txt: no codes"), "{err}");
    // Order and repeats do not change the list.
    let a = PublicCodes::parse("b\na\n", Path::new("x")).unwrap();
    let b = PublicCodes::parse("a\nb\nb\n", Path::new("x")).unwrap();
    assert_eq!((a.count, &a.sha256), (2, &b.sha256));
}
