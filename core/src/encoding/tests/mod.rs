use super::*;
use crate::record::Visit;
use dp::dp_statistics;

mod dp;
mod labs;
mod shares;

fn patient(id: usize, codes: &[&str]) -> Patient {
    Patient {
        id: format!("p{id}"),
        visits: vec![Visit {
            codes: codes.iter().map(|c| c.to_string()).collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn spec(labels: &[(&str, &[&str])]) -> LabelSpec {
    LabelSpec {
        labels: labels
            .iter()
            .map(|(name, codes)| (name.to_string(), codes.iter().map(|c| c.to_string()).collect()))
            .collect(),
        lab_edges: BTreeMap::new(),
        gap_edges_days: None,
    }
}

fn options() -> EncodingOptions {
    EncodingOptions {
        gaps: false,
        labs: false,
        demographics: false,
        min_patients: 2,
        // The size group has its own test; the others count vocabulary entries without it.
        visit_size_buckets: 0,
        ..Default::default()
    }
}

fn code_index(enc: &Encoding, code: &str) -> u32 {
    enc.tokens
        .iter()
        .position(|t| matches!(t, Token::Code { code: c } if c == code))
        .unwrap_or_else(|| panic!("{code} not in the vocabulary")) as u32
}

#[test]
fn spec_labels_list_the_vocabulary_codes_that_set_them() {
    // I10/I11.9 twice each, E11.2 twice, rare R99 once (left out by the small-cell rule), Z00 twice.
    let all: Vec<Patient> = [
        &["I10", "E11.2"][..],
        &["I10", "Z00"],
        &["I11.9", "E11.2"],
        &["I11.9", "Z00", "R99"],
    ]
    .iter()
    .enumerate()
    .map(|(i, codes)| patient(i, codes))
    .collect();
    let train: Vec<&Patient> = all.iter().collect();
    let spec = spec(&[
        ("hypertension", &["I10", "I11*"]),
        ("diabetes", &["E11*"]),
        ("rare", &["R99"]),
    ]);
    let enc = Encoding::fit(&all, &train, Some(&spec), options()).unwrap();
    let label = |name: &str| {
        enc.tokens[enc.code_vocab_size..]
            .iter()
            .position(|t| matches!(t, Token::Label { name: n } if n == name))
            .unwrap()
    };
    let derived = |name: &str| {
        enc.derived_labels
            .iter()
            .find(|d| d.label == label(name))
            .unwrap()
            .codes
            .clone()
    };
    let mut hypertension = vec![code_index(&enc, "I10"), code_index(&enc, "I11.9")];
    hypertension.sort_unstable();
    assert_eq!(derived("hypertension"), hypertension);
    assert_eq!(derived("diabetes"), vec![code_index(&enc, "E11.2")]);
    // A label whose only code is below the small-cell threshold can never be set by sampled codes.
    assert_eq!(derived("rare"), Vec::<u32>::new());
    assert_eq!(enc.derived_labels.len(), 3);

    // Derived labels follow the codes of the visits; other label codes are kept as they are.
    let c = enc.code_vocab_size as u32;
    let visits = vec![vec![code_index(&enc, "Z00")], vec![code_index(&enc, "I11.9")]];
    let sampled = vec![c + label("diabetes") as u32, c + label("rare") as u32];
    assert_eq!(
        enc.with_derived_labels(&sampled, &visits),
        vec![c + label("hypertension") as u32]
    );
    assert_eq!(enc.with_derived_labels(&[], &[]), Vec::<u32>::new());

    // The list survives the encoding's JSON round trip, and encodings without it read as before.
    let json = serde_json::to_string(&enc).unwrap();
    assert_eq!(serde_json::from_str::<Encoding>(&json).unwrap(), enc);
    let mut old: serde_json::Value = serde_json::from_str(&json).unwrap();
    old.as_object_mut().unwrap().remove("derived_labels");
    assert!(serde_json::from_value::<Encoding>(old)
        .unwrap()
        .derived_labels
        .is_empty());
}

#[test]
fn encoded_labels_come_from_the_visits_kept() {
    let all: Vec<Patient> = (0..4).map(|i| patient(i, &["I10", "Z00"])).collect();
    let train: Vec<&Patient> = all.iter().collect();
    let spec = spec(&[("hypertension", &["I10"])]);
    let options = EncodingOptions {
        max_visits: 1,
        ..options()
    };
    let enc = Encoding::fit(&all, &train, Some(&spec), options).unwrap();
    let (index, c) = (enc.index(), enc.code_vocab_size as u32);
    let two_visits = |first: &str, last: &str| Patient {
        visits: [first, last]
            .iter()
            .map(|code| Visit {
                codes: vec![code.to_string()],
                ..Default::default()
            })
            .collect(),
        ..patient(9, &[])
    };
    let mut unknown = 0;
    // Only the most recent visit is kept: the label follows it, not the record's whole history.
    let early = enc.encode(&two_visits("I10", "Z00"), &index, Some(&spec), &mut unknown);
    assert_eq!(early.labels, Vec::<u32>::new());
    let late = enc.encode(&two_visits("Z00", "I10"), &index, Some(&spec), &mut unknown);
    assert_eq!(late.labels, vec![c]);
    assert_eq!(late.visits, vec![vec![code_index(&enc, "I10")]]);
    assert_eq!(unknown, 0);
}

#[test]
fn labels_given_with_the_records_are_not_derived() {
    let mut all: Vec<Patient> = (0..3).map(|i| patient(i, &["I10"])).collect();
    for p in &mut all {
        p.labels = Some(BTreeMap::from([("hypertension".to_string(), true)]));
    }
    let train: Vec<&Patient> = all.iter().collect();
    let spec = spec(&[("hypertension", &["I10"])]);
    let enc = Encoding::fit(&all, &train, Some(&spec), options()).unwrap();
    assert!(enc.labels_given);
    assert!(enc.derived_labels.is_empty());
    let c = enc.code_vocab_size as u32;
    // Without derived labels the sampled label visit stands.
    assert_eq!(enc.with_derived_labels(&[c], &[]), vec![c]);
}

fn labelled(id: usize, labels: &[(&str, bool)], groups: &[&str]) -> Patient {
    Patient {
        labels: Some(labels.iter().map(|(k, v)| (k.to_string(), *v)).collect()),
        label_groups: groups.iter().map(|g| g.to_string()).collect(),
        ..patient(id, &["I10"])
    }
}

#[test]
fn declared_label_groups_are_exclusive_even_where_records_lack_them() {
    // GENDER is declared by the records ("GENDER": "F"), and one record has no GENDER: not a partition,
    // but a group all the same. SITE/a, SITE/b partition the records without being declared: detected.
    // COHORT/x, COHORT/y are neither (a record has both).
    let all = vec![
        labelled(
            0,
            &[
                ("GENDER/F", true),
                ("SITE/a", true),
                ("COHORT/x", true),
                ("COHORT/y", true),
            ],
            &["GENDER"],
        ),
        labelled(
            1,
            &[("GENDER/M", true), ("SITE/b", true), ("COHORT/x", true)],
            &["GENDER"],
        ),
        labelled(2, &[("SITE/a", true)], &[]),
    ];
    let train: Vec<&Patient> = all.iter().collect();
    let enc = Encoding::fit(&all, &train, None, options()).unwrap();
    let mut groups: Vec<&str> = enc.label_groups.iter().map(|g| g.name.as_str()).collect();
    groups.sort_unstable();
    assert_eq!(groups, ["GENDER", "SITE"]);
    for g in &enc.label_groups {
        for i in g.first..g.first + g.len {
            let name = enc.tokens[enc.code_vocab_size + i].to_string();
            assert!(name.starts_with(&format!("{}/", g.name)), "{name} in group {}", g.name);
        }
    }

    // A record that sets two labels of a declared group is refused, by its id.
    let mut bad = all.clone();
    bad[1].labels.as_mut().unwrap().insert("GENDER/F".into(), true);
    let train: Vec<&Patient> = bad.iter().collect();
    let err = Encoding::fit(&bad, &train, None, options()).unwrap_err().to_string();
    assert!(err.contains("`p1`") && err.contains("GENDER"), "{err}");
}

#[test]
fn window_starts_cover_a_record_and_overlap_by_the_rest_of_a_stride() {
    let starts = |len| window_starts(len, 4, 2).collect::<Vec<_>>();
    assert_eq!(starts(0), [0]);
    assert_eq!(starts(4), [0]);
    // [0, 4) goes on; [2, 5) ends, with more than 4 - 2 visits.
    assert_eq!(starts(5), [0, 2]);
    assert_eq!(starts(6), [0, 2]);
    assert_eq!(starts(7), [0, 2, 4]);
}

#[test]
fn long_records_are_learnt_in_windows_marked_by_their_first_gap() {
    // Ten visits a week apart; I10 only in the last one.
    let record = |id: usize| Patient {
        visits: (0..10)
            .map(|t| Visit {
                day: Some(7.0 * t as f64),
                codes: vec![if t == 9 { "I10" } else { "Z00" }.to_string()],
                ..Default::default()
            })
            .collect(),
        ..patient(id, &[])
    };
    let all: Vec<Patient> = (0..4).map(record).collect();
    let train: Vec<&Patient> = all.iter().collect();
    let spec = spec(&[("hypertension", &["I10"])]);
    let options = EncodingOptions {
        gaps: true,
        max_visits: 4,
        window_stride: 2,
        ..options()
    };
    let enc = Encoding::fit(&all, &train, Some(&spec), options).unwrap();
    // Every training record reaches 10 visits: the limit is the first window and three strides.
    assert_eq!(enc.record_visit_limit, 10);
    assert_eq!(enc.sampled_visit_limit(), 10);
    let index = enc.index();
    let windows = enc.encode_windows(&all[0], &index, Some(&spec), &mut 0);
    // Windows at visits 0, 2, 4 and 6; only the last ends the record.
    assert_eq!(windows.len(), 4);
    assert_eq!(
        windows.iter().map(|w| w.continues).collect::<Vec<_>>(),
        [true, true, true, false]
    );
    let gap = |w: &EncodedPatient, t: usize| {
        w.visits[t]
            .iter()
            .filter(|&&c| matches!(enc.tokens[c as usize], Token::Gap { .. }))
            .count()
    };
    // No age is known: the first window's first visit has no time code, every other visit one gap,
    // including the first visit of each later window.
    assert_eq!(gap(&windows[0], 0), 0);
    for w in &windows[1..] {
        assert!((0..w.visits.len()).all(|t| gap(w, t) == 1));
    }
    assert_eq!(windows[3].visits.len(), 4);
    // A derived label comes from the whole record, so every window carries it.
    let label = enc.code_vocab_size as u32;
    assert!(windows.iter().all(|w| w.labels == [label]));
    // encode() gives the first window.
    assert_eq!(enc.encode(&all[0], &index, Some(&spec), &mut 0), windows[0]);

    // Without windows the record keeps its 4 most recent visits, and ends there.
    let cut = Encoding {
        options: EncodingOptions {
            window_stride: 0,
            ..enc.options.clone()
        },
        ..enc.clone()
    };
    let only = cut.encode_windows(&all[0], &index, Some(&spec), &mut 0);
    assert_eq!(only.len(), 1);
    assert!(!only[0].continues);
    assert_eq!(only[0].visits.len(), 4);
    assert_eq!(cut.sampled_visit_limit(), 4);
}

#[test]
fn gap_shares_count_every_gap_and_leave_out_buckets_of_few_patients() {
    // Three patients with weekly visits (gaps in the 7-14 day bucket), one of them also with a visit
    // 400 days later (the 365-730 day bucket: one patient, fewer than min_patients = 2).
    let record = |id: usize, days: &[f64]| Patient {
        visits: days
            .iter()
            .map(|&d| Visit {
                day: Some(d),
                codes: vec!["Z00".to_string()],
                ..Default::default()
            })
            .collect(),
        ..patient(id, &[])
    };
    let all = vec![
        record(0, &[0.0, 7.0, 14.0]),
        record(1, &[0.0, 7.0]),
        record(2, &[0.0, 7.0, 407.0]),
    ];
    let train: Vec<&Patient> = all.iter().collect();
    let options = EncodingOptions {
        gaps: true,
        ..options()
    };
    // Edges as the defaults (fitting closes them at the data's longest gaps, which are few here).
    let enc = Encoding {
        gap_edges_days: DEFAULT_GAP_EDGES_DAYS.iter().copied().chain([15000.0]).collect(),
        ..Encoding::fit(&all, &train, None, options).unwrap()
    };
    let shares = enc.gap_bucket_shares(&all);
    assert_eq!(shares.len(), enc.gap_edges_days.len() - 1);
    let week = bucket_of(&enc.gap_edges_days, 7.0);
    let year = bucket_of(&enc.gap_edges_days, 400.0);
    assert_ne!(week, year);
    // Four weekly gaps counted; the one long gap, of a single patient, is left out.
    assert_eq!(shares[week], 1.0);
    assert_eq!(shares[year], 0.0);
    let with_two = Encoding {
        options: EncodingOptions {
            min_patients: 1,
            ..enc.options.clone()
        },
        ..enc.clone()
    };
    let shares = with_two.gap_bucket_shares(&all);
    assert_eq!((shares[week], shares[year]), (0.8, 0.2));
    // No gaps, no shares.
    let without = Encoding {
        options: EncodingOptions {
            gaps: false,
            ..enc.options.clone()
        },
        ..enc
    };
    assert!(without.gap_bucket_shares(&all).is_empty());
}

#[test]
fn visit_types_are_one_exclusive_group_on_every_visit_and_rare_types_stay_out() {
    // Three patients with inpatient and outpatient visits, one with a rare type, one visit without a type.
    let typed = |id: usize, types: &[Option<&str>]| Patient {
        visits: types
            .iter()
            .map(|t| Visit {
                codes: vec!["Z00".into()],
                visit_type: t.map(str::to_string),
                ..Default::default()
            })
            .collect(),
        ..patient(id, &[])
    };
    let all = vec![
        typed(0, &[Some("9201"), Some("9202")]),
        typed(1, &[Some("9202"), Some("9201")]),
        typed(2, &[Some("9202"), Some("rare-type-of-one-patient"), None]),
    ];
    let train: Vec<&Patient> = all.iter().collect();
    let enc = Encoding::fit(&all, &train, None, options()).unwrap();
    let types: Vec<&Token> = enc
        .tokens
        .iter()
        .filter(|t| matches!(t, Token::VisitType { .. }))
        .collect();
    let kept = |v: &str| Token::VisitType { value: Some(v.into()) };
    assert_eq!(types, [&kept("9201"), &kept("9202"), &Token::VisitType { value: None }]);
    assert_eq!(enc.left_out.visit_types, 1);
    assert!(!enc.tokens.iter().any(|t| t.to_string().contains("rare-type")));
    let group = enc
        .visit_groups
        .iter()
        .find(|g| g.name == VisitGroup::VISIT_TYPE)
        .expect("a visit type group");
    assert_eq!((group.first, group.len, group.on), (0, 3, GroupVisits::EveryVisit));
    assert!((0..5).all(|t| group.applies_to(t)));
    // Each visit holds exactly one token of the group: its type's, else `<other>`.
    let encoded = enc.encode(&all[2], &enc.index(), None, &mut 0);
    let in_group: Vec<Vec<u32>> = encoded
        .visits
        .iter()
        .map(|v| {
            v.iter()
                .copied()
                .filter(|&c| group.range().contains(&(c as usize)))
                .collect()
        })
        .collect();
    assert_eq!(in_group, [vec![1], vec![2], vec![2]]);
    assert_eq!(enc.tokens[1].to_string(), "VISIT_TYPE/9202");
    assert_eq!(enc.tokens[2].to_string(), "VISIT_TYPE/<other>");

    // Records without types give no group, and encodings without one encode no type.
    let plain = vec![patient(0, &["Z00"]), patient(1, &["Z00"])];
    let enc = Encoding::fit(&plain, &plain.iter().collect::<Vec<_>>(), None, options()).unwrap();
    assert!(enc.visit_groups.is_empty());
    assert!(!enc.tokens.iter().any(|t| matches!(t, Token::VisitType { .. })));
    let encoded = enc.encode(&all[0], &enc.index(), None, &mut 0);
    assert_eq!(encoded.visits, vec![vec![code_index(&enc, "Z00")]; 2]);
}

/// Codes `c0..c{n}`: a visit of the first `n` of them.
fn sized_visit(n: usize) -> Visit {
    Visit {
        codes: (0..n).map(|i| format!("c{i}")).collect(),
        ..Default::default()
    }
}

#[test]
fn every_visit_carries_one_size_bucket_and_no_edge_rests_on_one_patient() {
    // 30 patients with visits of 1, 5 and 20 codes; one more with a visit of 500 codes of its own.
    let mut all: Vec<Patient> = (0..30)
        .map(|i| Patient {
            id: format!("p{i}"),
            visits: vec![sized_visit(1), sized_visit(5), sized_visit(20)],
            ..Default::default()
        })
        .collect();
    all.push(Patient {
        id: "planted".into(),
        visits: vec![sized_visit(20), sized_visit(500)],
        ..Default::default()
    });
    let train: Vec<&Patient> = all.iter().collect();
    let options = EncodingOptions {
        visit_size_buckets: 3,
        min_patients: 10,
        ..options()
    };
    let enc = Encoding::fit(&all, &train, None, options.clone()).unwrap();
    // Quantiles of the sizes; the top edge is the 10th patient's largest visit, not the planted 500 codes
    // (whose own codes are left out of the vocabulary, so its big visit holds 20).
    assert_eq!(enc.visit_size_edges, vec![1.0, 5.0, 20.0]);
    let group = enc.visit_groups.iter().find(|g| g.name == VisitGroup::SIZE).unwrap();
    assert_eq!(group.on, GroupVisits::EveryVisit);
    assert_eq!(group.len, 2);
    assert!(group.range().all(|j| matches!(enc.tokens[j], Token::VisitSize { .. })));
    // Group codes precede the medical codes, so the code module sees the size before the visit's codes.
    assert!(enc.tokens[group.first + group.len..enc.code_vocab_size]
        .iter()
        .all(|t| matches!(t, Token::Code { .. })));

    let mut unknown = 0;
    let encoded = enc.encode(&all[0], &enc.index(), None, &mut unknown);
    let sizes: Vec<Vec<usize>> = encoded
        .visits
        .iter()
        .map(|v| {
            v.iter()
                .map(|&j| j as usize)
                .filter(|j| group.range().contains(j))
                .collect()
        })
        .collect();
    assert_eq!(
        sizes,
        vec![vec![group.first], vec![group.first + 1], vec![group.first + 1]],
        "one size code a visit: 1 code -> bucket 0; 5 and 20 -> bucket 1 (the last, open above)"
    );
    assert_eq!(
        enc.visit_size_shares(train.iter().copied()),
        vec![30.0 / 92.0, 62.0 / 92.0]
    );

    // Encodings fitted before the size group read without it (and encode as they did).
    let mut old: serde_json::Value = serde_json::to_value(&enc).unwrap();
    let obj = old.as_object_mut().unwrap();
    obj.remove("visit_size_edges");
    obj["options"].as_object_mut().unwrap().remove("visit_size_buckets");
    let old: Encoding = serde_json::from_value(old).unwrap();
    assert!(old.visit_size_edges.is_empty());
    assert_eq!(old.options.visit_size_buckets, 0);
    // Turned off, no size codes at all.
    let off = Encoding::fit(
        &all,
        &train,
        None,
        EncodingOptions {
            visit_size_buckets: 0,
            ..options
        },
    )
    .unwrap();
    assert!(off.visit_size_edges.is_empty() && !off.tokens.iter().any(|t| matches!(t, Token::VisitSize { .. })));
}

#[test]
fn rare_birth_decades_at_the_ends_merge_into_a_wider_value() {
    // Decades and their patients: three rare ones at the old end, a rare one at the young end, and one birth
    // in 2090 with seven empty decades between it and the rest.
    let mut all = Vec::new();
    for (year, n) in [
        (1905, 3),
        (1915, 4),
        (1925, 5),
        (1935, 20),
        (1945, 20),
        (2005, 20),
        (2015, 6),
        (2090, 1),
    ] {
        for _ in 0..n {
            let mut p = patient(all.len(), &["Z00"]);
            p.demographics.birth_year = Some(year);
            all.push(p);
        }
    }
    let train: Vec<&Patient> = all.iter().collect();
    let options = EncodingOptions {
        demographics: true,
        min_patients: 10,
        ..options()
    };
    let enc = Encoding::fit(&all, &train, None, options).unwrap();
    let values: Vec<&str> = enc
        .tokens
        .iter()
        .filter_map(|t| match t {
            Token::Demographic {
                category: DemographicCategory::BirthYear,
                value,
            } => Some(value.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(values, ["1900-1929", "1930-1939", "1940-1949", "2000-2019"]);
    assert_eq!(enc.left_out.demographic_values, 1, "the birth in 2090");
    // Records are encoded with the value holding their year.
    let index = enc.index();
    let birth_label = |year: i32| {
        let mut p = patient(0, &["Z00"]);
        p.demographics.birth_year = Some(year);
        let encoded = enc.encode(&p, &index, None, &mut 0);
        encoded
            .labels
            .iter()
            .map(|&l| enc.tokens[l as usize].to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(birth_label(1907), ["BIRTH_YEAR/1900-1929"]);
    assert_eq!(birth_label(1933), ["BIRTH_YEAR/1930-1939"]);
    assert_eq!(birth_label(2019), ["BIRTH_YEAR/2000-2019"]);
    assert!(birth_label(2090).is_empty());
}
