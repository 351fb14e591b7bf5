//! The label bias's start (`data::label_bias_init`): a code that only one sex holds starts rare for the other.

use halo_core::encoding::{DemographicCategory, EncodedPatient, Encoding, LabelCategory, Token};
use halo_train::data::label_bias_init;

/// Codes A (women only), B (men only) and C (everyone); label codes: sex F, sex M, then a phenotype label.
fn encoding() -> Encoding {
    let codes = ["A", "B", "C"].map(String::from).to_vec();
    let mut enc = Encoding::plain(codes, ["F", "M", "diabetes"].map(String::from).to_vec(), 10);
    for (i, value) in ["F", "M"].into_iter().enumerate() {
        enc.tokens[3 + i] = Token::Demographic {
            category: DemographicCategory::Sex,
            value: value.to_string(),
        };
    }
    enc.demographic_categories = vec![LabelCategory {
        name: "sex".to_string(),
        first: 0,
        len: 2,
    }];
    enc
}

#[test]
fn a_code_one_sex_never_holds_starts_rare_for_the_other() {
    let enc = encoding();
    let (a, b, c, f, m, diabetes) = (0u32, 1, 2, 3, 4, 5);
    // 40 women with A and C on each of 3 visits, 40 men with B and C, some of each with the phenotype label.
    let patients: Vec<EncodedPatient> = (0..80)
        .map(|i| {
            let woman = i % 2 == 0;
            let mut labels = vec![if woman { f } else { m }];
            if i % 3 == 0 {
                labels.push(diabetes);
            }
            EncodedPatient {
                labels,
                visits: vec![vec![if woman { a } else { b }, c]; 3],
                continues: false,
            }
        })
        .collect();
    let init = label_bias_init(&patients, &enc);
    let (v, l) = (enc.vocab_size(), enc.label_vocab_size);
    assert_eq!(init.size(), [v as i64, l as i64]);
    let at = |code: u32, label: usize| init.double_value(&[code as i64, label as i64]);
    // Shrunk by 100 visits of pseudo-count against the 120 visits of each sex: A for men at
    // (0 + 100 * 0.5) / 220, against 0.5 overall.
    assert!(at(a, 1) < -1.0, "A for men: {}", at(a, 1));
    assert!(at(b, 0) < -1.0, "B for women: {}", at(b, 0));
    assert!(
        at(a, 0) > 0.5 && at(b, 1) > 0.5,
        "A for women {}, B for men {}",
        at(a, 0),
        at(b, 1)
    );
    for label in 0..l {
        assert!(
            at(c, label).abs() < 1e-6,
            "C, held by everyone, label {label}: {}",
            at(c, label)
        );
    }
    for code in 0..v as u32 {
        assert_eq!(at(code, 2), 0.0, "the phenotype label starts at zero (code {code})");
    }
}
