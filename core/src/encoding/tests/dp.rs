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

#[test]
fn under_dp_a_planted_rare_code_stays_out_though_the_small_cell_rule_would_keep_it() {
    // 300 patients share COMMON; 120 of them also FREQUENT; one alone holds PLANTED.
    let mut all: Vec<Patient> = (0..300)
        .map(|i| patient(i, if i < 120 { &["COMMON", "FREQUENT"] } else { &["COMMON"] }))
        .collect();
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
