//! How an encoding takes lab values: their codes listed, a value standing for its code, one bucket a visit.

use super::*;

/// The encoding says the training visits list their lab values' codes only when every one does, and never
/// under differential privacy.
#[test]
fn lab_codes_are_listed_only_when_every_training_lab_value_names_a_listed_code() {
    let with_lab = |id: usize, listed: bool| {
        let mut p = patient(id, if listed { &["LAB1", "I10"] } else { &["I10"] });
        p.visits[0].labs = vec![crate::record::LabValue {
            code: "LAB1".into(),
            value: id as f64,
        }];
        p
    };
    let labs = EncodingOptions {
        labs: true,
        ..options()
    };
    let fit = |all: &[Patient], options: &EncodingOptions| {
        let train: Vec<&Patient> = all.iter().collect();
        Encoding::fit(all, &train, None, options.clone()).unwrap()
    };
    let listed: Vec<Patient> = (0..4).map(|i| with_lab(i, true)).collect();
    assert!(fit(&listed, &labs).lab_codes_listed);
    assert!(
        !fit(&listed, &options()).lab_codes_listed,
        "without labs in the encoding"
    );
    let mut one_not = listed.clone();
    one_not[2] = with_lab(2, false);
    assert!(!fit(&one_not, &labs).lab_codes_listed);
    let dp = EncodingOptions {
        dp: Some(dp_statistics(10.0, 1)),
        ..labs
    };
    assert!(!fit(&listed, &dp).lab_codes_listed, "under differential privacy");
}

/// With `imply_lab_codes`, a visit's lab value stands for its code: the code's token is set only in a visit
/// that lists the code without a value, the visit's size counts the value once, and a label the spec derives
/// from the lab code is set by its values.
#[test]
fn a_lab_value_stands_for_its_code_where_the_codes_are_implied() {
    // Four patients: a first visit with a value of LAB1 (its code listed) and I10, a second listing LAB1
    // without a value.
    let all: Vec<Patient> = (0..4)
        .map(|id| {
            let mut p = patient(id, &["LAB1", "I10"]);
            p.visits[0].labs = vec![crate::record::LabValue {
                code: "LAB1".into(),
                value: id as f64,
            }];
            p.visits.push(Visit {
                codes: vec!["LAB1".into()],
                ..Default::default()
            });
            p
        })
        .collect();
    let train: Vec<&Patient> = all.iter().collect();
    let spec = spec(&[("measured", &["LAB1"])]);
    let fit = |imply_lab_codes: bool| {
        let options = EncodingOptions {
            labs: true,
            imply_lab_codes,
            visit_size_buckets: 2,
            ..options()
        };
        Encoding::fit(&all, &train, Some(&spec), options).unwrap()
    };
    let names = |enc: &Encoding, visit: &[u32]| -> Vec<String> {
        let mut names: Vec<String> = visit
            .iter()
            .map(|&i| enc.tokens[i as usize].to_string())
            .filter(|t| !t.starts_with("SIZE/"))
            .collect();
        names.sort();
        names
    };
    for imply in [false, true] {
        let enc = fit(imply);
        assert_eq!(enc.lab_codes_implied, imply);
        let index = enc.index();
        let encoded = enc.encode(&all[1], &index, Some(&spec), &mut 0);
        let lab1 = code_index(&enc, "LAB1");
        let first = names(&enc, &encoded.visits[0]);
        assert_eq!(first.len(), if imply { 2 } else { 3 }, "{first:?}");
        assert_eq!(encoded.visits[0].contains(&lab1), !imply, "{first:?}");
        assert!(
            first.iter().any(|t| t.starts_with("LAB/LAB1/")) && first.contains(&"I10".to_string()),
            "{first:?}"
        );
        assert_eq!(
            names(&enc, &encoded.visits[1]),
            ["LAB1"],
            "a code listed without a value keeps its token"
        );
        // A value alone sets the label derived from its code.
        let measured = enc.code_vocab_size as u32 + enc.derived_labels[0].label as u32;
        let value_only: Vec<u32> = encoded.visits[0].iter().copied().filter(|&i| i != lab1).collect();
        assert_eq!(
            enc.with_derived_labels(&[], &[value_only]).contains(&measured),
            imply,
            "derived labels: {:?}",
            enc.derived_labels
        );
    }
}

/// With `imply_lab_codes`, a visit holds at most one bucket of a lab where fewer than 1% of the training
/// visits' measured labs have two different values in the visit; a lab measured twice with the same value
/// counts once.
#[test]
fn a_labs_buckets_are_exclusive_where_visits_hold_one_value() {
    // 200 patients, each a visit with a value of LAB1 and one of LAB2; `twice` of them measure LAB1 again
    // with another value, `same` again with the same value.
    let patients = |twice: usize, same: usize| -> Vec<Patient> {
        (0..200)
            .map(|id| {
                let mut p = patient(id, &["LAB1", "LAB2", "C0"]);
                let value = |code: &str, value: f64| crate::record::LabValue {
                    code: code.into(),
                    value,
                };
                p.visits[0].labs = vec![value("LAB1", id as f64), value("LAB2", (id * 7 % 40) as f64)];
                if id < twice {
                    p.visits[0].labs.push(value("LAB1", id as f64 + 20.0));
                } else if id < twice + same {
                    p.visits[0].labs.push(value("LAB1", id as f64));
                }
                p
            })
            .collect()
    };
    // 400 measured labs: 3 measured twice are under 1%, 4 are not.
    for (twice, same, imply, exclusive) in [
        (0, 0, true, true),
        (3, 50, true, true),
        (4, 0, true, false),
        (0, 0, false, false),
    ] {
        let all = patients(twice, same);
        let train: Vec<&Patient> = all.iter().collect();
        let options = EncodingOptions {
            labs: true,
            lab_buckets: 4,
            imply_lab_codes: imply,
            ..options()
        };
        let enc = Encoding::fit(&all, &train, None, options).unwrap();
        assert_eq!(
            enc.lab_buckets_exclusive, exclusive,
            "{twice} twice, {same} same, imply {imply}"
        );
    }
}
