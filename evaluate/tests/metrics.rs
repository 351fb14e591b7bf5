//! Every metric pinned on tiny examples worked out by hand (the working is in the comments).

use halo_core::record::{LabValue, Patient, Visit};
use halo_core::split::SplitAssignment;
use halo_evaluate::corpus::{CodeSets, Corpus, Interner};
use halo_evaluate::fidelity::{self, r2_score, Level, Statistic};
use halo_evaluate::privacy::{
    adversarial_accuracy, attribute_f1, count_copies, distance_attack, likelihood_attack, median, nearest_distances,
    AttributeRecord,
};
use halo_evaluate::{attacked_records, evaluate, write_report, EvalError, EvalOptions, LabelSource, Report};
use std::collections::BTreeSet;

const EPS: f64 = 1e-12;

/// The default options with the small-cell rule off (0 patients): these hand-made data sets have a few records.
fn every_value_named() -> EvalOptions<'static> {
    EvalOptions {
        min_patients: 0,
        ..EvalOptions::default()
    }
}

fn close(a: Option<f64>, b: f64) {
    let a = a.expect("a value");
    assert!((a - b).abs() < 1e-9, "{a} != {b}");
}

fn visit(codes: &[&str]) -> Visit {
    Visit {
        codes: codes.iter().map(|c| c.to_string()).collect(),
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

fn with_labels(mut p: Patient, labels: &[(&str, bool)]) -> Patient {
    p.labels = Some(labels.iter().map(|(k, v)| (k.to_string(), *v)).collect());
    p
}

fn split(train: &[&str], test: &[&str]) -> SplitAssignment {
    SplitAssignment {
        source: halo_core::split::SplitSource::Given,
        seed: 0,
        train: train.iter().map(|s| s.to_string()).collect(),
        val: vec![],
        test: test.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn r2_matches_sklearn_formula_by_hand() {
    // y_true = [3, -0.5, 2, 7], y_pred = [2.5, 0, 2, 8] (sklearn's documentation example).
    // mean(y_true) = 11.5 / 4 = 2.875.
    // SS_res = 0.25 + 0.25 + 0 + 1 = 1.5.
    // SS_tot = 0.015625 + 11.390625 + 0.765625 + 17.015625 = 29.1875.
    // R² = 1 - 1.5 / 29.1875 = 0.948608137...
    let r2 = r2_score(&[3.0, -0.5, 2.0, 7.0], &[2.5, 0.0, 2.0, 8.0]).unwrap();
    assert!((r2 - (1.0 - 1.5 / 29.1875)).abs() < EPS);
    assert!((r2 - 0.948_608_137).abs() < 1e-9);
    // Perfect prediction: 1; constant truth with errors: 0 (sklearn's force_finite); constant truth, exact: 1.
    assert_eq!(r2_score(&[1.0, 2.0], &[1.0, 2.0]), Some(1.0));
    assert_eq!(r2_score(&[1.0, 1.0], &[1.0, 2.0]), Some(0.0));
    assert_eq!(r2_score(&[1.0, 1.0], &[1.0, 1.0]), Some(1.0));
    // Fewer than two values: undefined.
    assert_eq!(r2_score(&[1.0], &[1.0]), None);
    // Union of keys, missing = 0: truth {a: 1, b: 0.5}, pred {b: 0.5, c: 1} -> y_true [1, .5, 0],
    // y_pred [0, .5, 1]; mean 0.5, SS_tot = 0.25 + 0 + 0.25 = 0.5, SS_res = 1 + 0 + 1 = 2 -> R² = -3.
    close(r2_score(&[1.0, 0.5, 0.0], &[0.0, 0.5, 1.0]), -3.0);
}

/// Training split: t1 = [A B] -> [B C], t2 = [A]. Test split: e1 = [A B].
/// Synthetic: s1 = [A B C], s2 = [C] -> [A].
fn small_data() -> (Vec<Patient>, SplitAssignment, Vec<Patient>) {
    let mut t1 = patient("t1", vec![visit(&["A", "B"]), visit(&["B", "C"])]);
    t1.visits[0].day = Some(0.0);
    t1.visits[1].day = Some(10.0);
    t1.visits[0].labs = vec![
        LabValue {
            code: "L1".into(),
            value: 2.0,
        },
        LabValue {
            code: "L1".into(),
            value: 4.0,
        },
    ];
    let real = vec![
        with_labels(t1, &[("x", true)]),
        with_labels(patient("t2", vec![visit(&["A"])]), &[("x", false)]),
        with_labels(patient("e1", vec![visit(&["A", "B"])]), &[("x", true)]),
    ];
    let mut s2 = patient("s2", vec![visit(&["C"]), visit(&["A"])]);
    s2.visits[0].day = Some(0.0);
    s2.visits[1].day = Some(30.0);
    s2.visits[1].labs = vec![LabValue {
        code: "L1".into(),
        value: 5.0,
    }];
    let synthetic = vec![
        with_labels(patient("s1", vec![visit(&["A", "B", "C"])]), &[("x", true)]),
        with_labels(s2, &[("x", true)]),
    ];
    (real, split(&["t1", "t2"], &["e1"]), synthetic)
}

fn comparison(r: &Report, s: Statistic, l: Level) -> &fidelity::ProbabilityComparison {
    r.fidelity
        .probabilities
        .iter()
        .find(|p| p.statistic == s && p.level == l)
        .unwrap()
}

#[test]
fn code_probabilities_and_r2_by_hand() {
    let (real, split, synthetic) = small_data();
    let report = evaluate(&real, &split, &synthetic, &every_value_named()).unwrap();

    // Training split: 2 records, 3 visits, 1 transition (t1's visit 1 -> 2).
    // Visit-level unigrams: A in 2 of 3 visits, B in 2, C in 1 -> [2/3, 2/3, 1/3].
    // Synthetic: 2 records, 3 visits: A in s1, s2.v2; B in s1; C in s1, s2.v1 -> [2/3, 1/3, 2/3].
    // mean(true) = 5/9; SS_tot = (1/9)² + (1/9)² + (2/9)² = 6/81; SS_res = 0 + 1/9 + 1/9 = 18/81.
    // R² = 1 - 18/6 = -2.
    let p = comparison(&report, Statistic::Unigram, Level::Visit);
    close(p.r2_synthetic_vs_train, -2.0);
    assert_eq!((p.keys_train, p.keys_test, p.keys_synthetic), (3, 2, 3));
    // Against the test split (A, B in its one visit: [1, 1, 0] with C missing):
    // mean 2/3; SS_tot = 1/9 + 1/9 + 4/9 = 6/9; SS_res = (1/3)² + (2/3)² + (2/3)² = 1 -> R² = 1 - 9/6 = -0.5.
    close(p.r2_synthetic_vs_test, -0.5);
    // Ceiling, test [1, 1, 0] against train [2/3, 2/3, 1/3]: SS_res = 3 * 1/9 = 27/81 -> 1 - 27/6 = -3.5.
    close(p.r2_test_vs_train, -3.5);

    // Record-level unigrams: train A 2/2, B 1/2, C 1/2; synthetic A 1, B 1/2, C 1.
    // mean 2/3; SS_tot = 1/9 + 1/36 + 1/36 = 1/6; SS_res = 1/4 -> R² = 1 - 1.5 = -0.5.
    let p = comparison(&report, Statistic::Unigram, Level::Record);
    close(p.r2_synthetic_vs_train, -0.5);

    // Same-visit bigrams: train {AB: 1 visit (t1.v1), BC: 1 (t1.v2)}; synthetic {AB, AC, BC: 1 each (s1)}.
    // Visit level (/3 visits): true [1/3, 1/3, 0], pred [1/3, 1/3, 1/3]; mean 2/9;
    // SS_tot = 2 (1/9)² + (2/9)² = 6/81; SS_res = 9/81 -> R² = -0.5.
    let p = comparison(&report, Statistic::SameVisitBigram, Level::Visit);
    close(p.r2_synthetic_vs_train, -0.5);
    assert_eq!((p.keys_train, p.keys_synthetic), (2, 3));
    // Record level (/2 records): true [1/2, 1/2, 0], pred [1/2, 1/2, 1/2]; mean 1/3;
    // SS_tot = 2/36 + 4/36 = 1/6; SS_res = 1/4 -> R² = -0.5.
    close(
        comparison(&report, Statistic::SameVisitBigram, Level::Record).r2_synthetic_vs_train,
        -0.5,
    );

    // Consecutive-visit bigrams: train t1 [A B] -> [B C] gives A->B, A->C, B->B, B->C, once each, over
    // 3 visits - 2 records = 1 transition: [1, 1, 1, 1]; synthetic s2 [C] -> [A] gives C->A: 1 of 1.
    // Union of 5: true [1, 1, 1, 1, 0], pred [0, 0, 0, 0, 1]; mean 4/5;
    // SS_tot = 4/25 + 16/25 = 0.8; SS_res = 5 -> R² = 1 - 6.25 = -5.25.
    let p = comparison(&report, Statistic::ConsecutiveVisitBigram, Level::Visit);
    close(p.r2_synthetic_vs_train, -5.25);
    assert_eq!((p.keys_train, p.keys_test, p.keys_synthetic), (4, 0, 1));
    // The test split has no transition: predictions all 0 against a constant truth of 1 -> R² = 0.
    close(p.r2_test_vs_train, 0.0);
    // Record level: true [1/2 x 4, 0], pred [0 x 4, 1/2]; mean 2/5; SS_tot = 4/100 + 16/100 = 0.2;
    // SS_res = 5/4 -> R² = 1 - 6.25 = -5.25.
    close(
        comparison(&report, Statistic::ConsecutiveVisitBigram, Level::Record).r2_synthetic_vs_train,
        -5.25,
    );
    // The plotted probabilities themselves (R² alone cannot see a denominator that scales both sides alike).
    let point = |s, l, key: &str| {
        let p = comparison(&report, s, l).points.iter().find(|p| p.key == key).unwrap();
        (p.real, p.synthetic)
    };
    let third = 1.0 / 3.0;
    assert_eq!(point(Statistic::Unigram, Level::Visit, "B"), (2.0 * third, third));
    assert_eq!(point(Statistic::Unigram, Level::Record, "C"), (0.5, 1.0));
    assert_eq!(point(Statistic::SameVisitBigram, Level::Visit, "A + C"), (0.0, third));
    assert_eq!(point(Statistic::SameVisitBigram, Level::Record, "A + B"), (0.5, 0.5));
    // Consecutive pairs per transition: 1 of 1 on both sides; per record: 1 of 2.
    assert_eq!(
        point(Statistic::ConsecutiveVisitBigram, Level::Visit, "A -> B"),
        (1.0, 0.0)
    );
    assert_eq!(
        point(Statistic::ConsecutiveVisitBigram, Level::Visit, "C -> A"),
        (0.0, 1.0)
    );
    assert_eq!(
        point(Statistic::ConsecutiveVisitBigram, Level::Record, "B -> B"),
        (0.5, 0.0)
    );
}

#[test]
fn shapes_labels_and_continuous_by_hand() {
    let (real, split, synthetic) = small_data();
    let r = evaluate(&real, &split, &synthetic, &every_value_named()).unwrap();
    let s = &r.fidelity.shape;
    // Train visits per record [2, 1]: mean 1.5, std 0.5. Codes per visit [2, 2, 1]: mean 5/3,
    // std = sqrt(((1/3)² + (1/3)² + (2/3)²) / 3) = sqrt(2/9).
    let vpr = s.train.visits_per_record.unwrap();
    assert!((vpr.mean - 1.5).abs() < EPS && (vpr.std - 0.5).abs() < EPS);
    let cpv = s.train.codes_per_visit.unwrap();
    assert!((cpv.mean - 5.0 / 3.0).abs() < EPS && (cpv.std - (2.0f64 / 9.0).sqrt()).abs() < EPS);
    // Synthetic codes per visit [3, 1, 1]: mean 5/3.
    assert!((s.synthetic.codes_per_visit.unwrap().mean - 5.0 / 3.0).abs() < EPS);
    assert_eq!((s.train.records, s.train.visits, s.synthetic.distinct_codes), (2, 3, 3));

    // Label x: train 1 of 2, test 1 of 1, synthetic 2 of 2.
    assert_eq!(r.fidelity.labels.len(), 1);
    let l = &r.fidelity.labels[0];
    assert_eq!((l.label.as_str(), l.train, l.test, l.synthetic), ("x", 0.5, 1.0, 1.0));

    // Histogram of visits per record: train [1, 2] -> half in bin "1", half in bin "2".
    let h = &r.fidelity.histograms[0];
    assert_eq!(h.bins[0], "1");
    assert_eq!(&h.series[0].fractions[..2], &[0.5, 0.5]);
    // Synthetic s1 has 1 visit, s2 has 2.
    assert_eq!(&h.series[2].fractions[..2], &[0.5, 0.5]);

    // Gaps: train t1 10 days, synthetic s2 30 days; the test split has none.
    let c = &r.fidelity.continuous;
    assert_eq!(c.mean_gap_days.train, Some(10.0));
    assert_eq!(c.mean_gap_days.synthetic, Some(30.0));
    assert_eq!(c.mean_gap_days.test, None);
    // Gap bins [0,1) [1,2) [2,7) [7,14) [14,30) [30,60) ...: 10 -> bin 3, 30 -> bin 5.
    let g = c.gap_histogram.as_ref().unwrap();
    assert_eq!(g.series[0].fractions[3], 1.0);
    assert_eq!(g.series[2].fractions[5], 1.0);
    // Lab L1: train in 1 of 3 visits with values 2, 4 (mean 3); synthetic 1 of 3 visits, value 5.
    assert_eq!(c.labs.len(), 1);
    let lab = &c.labs[0];
    assert!((lab.presence.train - 1.0 / 3.0).abs() < EPS);
    assert!((lab.presence.synthetic - 1.0 / 3.0).abs() < EPS);
    assert_eq!(lab.mean_value.train, Some(3.0));
    assert_eq!(lab.mean_value.synthetic, Some(5.0));
    assert_eq!(lab.presence.test, 0.0);
    // One lab: R² undefined (fewer than two values).
    assert_eq!(c.lab_presence_r2, None);
}

#[test]
fn values_of_fewer_than_min_patients_real_patients_are_counted_not_named() {
    // Real patients holding each value: A 3, B 2, C 1 (t1), lab L1 1 (t1), label x 2 (t1, e1); pairs:
    // A + B in 2 (t1, e1), every other pair in t1 only.
    let (real, split, synthetic) = small_data();
    let options = |k| EvalOptions {
        min_patients: k,
        ..EvalOptions::default()
    };
    let r = evaluate(&real, &split, &synthetic, &options(2)).unwrap();
    let json = serde_json::to_string(&r).unwrap();
    let html = halo_evaluate::report::render_html(&r);
    for text in [&json, &html] {
        assert!(!text.contains("L1"), "{text}");
    }
    let keys: Vec<&str> = r
        .fidelity
        .probabilities
        .iter()
        .flat_map(|p| &p.points)
        .map(|p| p.key.as_str())
        .collect();
    assert!(
        keys.contains(&"A") && keys.contains(&"B") && keys.contains(&"A + B"),
        "{keys:?}"
    );
    assert!(!keys.iter().any(|k| k.contains('C') || k.contains("->")), "{keys:?}");
    let hidden_points = keys.iter().filter(|k| **k == "(held by fewer than 2 patients)").count();
    // Synthetic-only pairs (no real patient) are not named either, even at 1.
    assert!(hidden_points > 0);
    let at_one = evaluate(&real, &split, &synthetic, &options(1)).unwrap();
    assert!(!at_one
        .fidelity
        .probabilities
        .iter()
        .flat_map(|p| &p.points)
        .any(|p| p.key == "A + C"));
    assert_eq!(
        (r.hidden.codes, r.hidden.labs, r.hidden.labels, r.hidden.plot_points),
        (1, 1, 0, hidden_points)
    );
    assert!(r.fidelity.continuous.labs.is_empty());
    assert!(html.contains("not named: held by fewer than 2 real patients"), "{html}");
    // The figures still count every record: the R²s are those of the report that names everything.
    let all = evaluate(&real, &split, &synthetic, &every_value_named()).unwrap();
    let r2 = |r: &Report| {
        r.fidelity
            .probabilities
            .iter()
            .map(|p| p.r2_synthetic_vs_train)
            .collect::<Vec<_>>()
    };
    assert_eq!(r2(&r), r2(&all));
    assert_eq!(
        r.fidelity.continuous.lab_presence_r2,
        all.fidelity.continuous.lab_presence_r2
    );
    assert_eq!(all.hidden.codes + all.hidden.labs + all.hidden.plot_points, 0);

    // At 3, label x (2 patients) leaves the label table, and B with it.
    let r = evaluate(&real, &split, &synthetic, &options(3)).unwrap();
    assert!(r.fidelity.labels.is_empty());
    assert_eq!((r.hidden.codes, r.hidden.labels), (2, 1));
}

#[test]
fn parallel_counting_equals_direct_r2_over_the_union() {
    // A pseudo-random corpus: the two-thread map R² must equal r2_score over explicit union vectors.
    let mut state = 12345u64;
    let mut next = |n: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % n
    };
    let mut make = |records: usize| {
        (0..records)
            .map(|_| {
                (0..1 + next(3))
                    .map(|_| (0..1 + next(6)).map(|_| next(25) as u32).collect())
                    .collect()
            })
            .collect::<Vec<Vec<Vec<u32>>>>()
    };
    let (a, b) = (corpus_from_ids(&make(300)), corpus_from_ids(&make(200)));
    for threads in [1, 2, 3, 7] {
        let (ca, cb) = (
            fidelity::count_codes(&a, 25, threads),
            fidelity::count_codes(&b, 25, threads),
        );
        for s in Statistic::ALL {
            let r2 = fidelity::r2_counts(&ca, &cb, s);
            let keys: BTreeSet<u64> = ca.table(s).iter().chain(cb.table(s).iter()).map(|(k, _)| k).collect();
            for (l, level) in Level::ALL.into_iter().enumerate() {
                let t: Vec<f64> = keys.iter().map(|&k| ca.probability(s, level, k)).collect();
                let p: Vec<f64> = keys.iter().map(|&k| cb.probability(s, level, k)).collect();
                let direct = r2_score(&t, &p).unwrap();
                assert!(
                    (r2[l].unwrap() - direct).abs() < 1e-9,
                    "{s:?} {level:?} threads {threads}"
                );
            }
        }
    }
    // Counting by hand on one record [1 2] -> [2 3] -> [1 2]: visit counts of the pair (1, 2): 2 visits,
    // 1 record; consecutive 2 -> 2: transitions 1->2 and 2->3 give it twice, 1 record.
    let c = fidelity::count_codes(&corpus_from_ids(&[vec![vec![1, 2], vec![2, 3], vec![1, 2]]]), 4, 2);
    let same = c.same_visit.get(c.pair_key(1, 2)).unwrap();
    assert_eq!((same.visits, same.records), (2, 1));
    let cons = c.consecutive.get(c.pair_key(2, 2)).unwrap();
    assert_eq!((cons.visits, cons.records), (2, 1));
    // Distinct transitions: 1->2, 1->3, 2->2, 2->3 (first step), then 2->1, 3->1, 3->2 (2->2 again): 7.
    assert_eq!(c.consecutive.len(), 7);
    assert_eq!(c.unigrams.get(2).unwrap().visits, 3);
}

fn sets(interner: &mut Interner, records: &[&[&str]]) -> CodeSets {
    let mut s = CodeSets::new();
    for r in records {
        let mut ids: Vec<u32> = r.iter().map(|c| interner.intern(c)).collect();
        ids.sort_unstable();
        s.push(&ids);
    }
    s
}

#[test]
fn hamming_distances_and_membership_attack_by_hand() {
    let mut i = Interner::default();
    // Synthetic S1 = {A, B}, S2 = {C, D, E}.
    let syn = sets(&mut i, &[&["A", "B"], &["C", "D", "E"]]);
    // Members M1 = {A, B}: to S1 0, to S2 2 + 3 = 5 -> 0. M2 = {A, B, C}: S1 3 + 2 - 2*2 = 1, S2 3 + 3 - 2 = 4 -> 1.
    let members = sets(&mut i, &[&["A", "B"], &["A", "B", "C"]]);
    // Non-members N1 = {D, F}: S1 4, S2 2 + 3 - 2 = 3 -> 3. N2 = {A, C, E}: S1 3 + 2 - 2 = 3, S2 3 + 3 - 4 = 2 -> 2.
    let non = sets(&mut i, &[&["D", "F"], &["A", "C", "E"]]);
    for threads in [1, 2] {
        assert_eq!(nearest_distances(&members, &syn, false, threads), vec![0, 1]);
        assert_eq!(nearest_distances(&non, &syn, false, threads), vec![3, 2]);
    }
    // Median of [0, 1, 3, 2] = (1 + 2) / 2 = 1.5; members 0, 1 < 1.5, non-members not: accuracy 1.
    let a = distance_attack(&[0.0, 1.0], &[3.0, 2.0]).unwrap();
    assert_eq!(
        (a.threshold, a.accuracy, a.precision, a.recall),
        (1.5, 1.0, Some(1.0), 1.0)
    );
    assert_eq!((a.mean_member, a.mean_non_member), (0.5, 2.5));
    // Ties: [2, 2] vs [2, 3]: median 2, nobody below it -> all "non-member": accuracy 2/4.
    let a = distance_attack(&[2.0, 2.0], &[2.0, 3.0]).unwrap();
    assert_eq!((a.accuracy, a.precision, a.recall), (0.5, None, 0.0));
    // Model attack: members [-10, -3], non-members [-5, -20]; median of sorted [-20, -10, -5, -3] = -7.5.
    // Above it: -3 (member, right), -5 (non-member, wrong) -> 1 TP, 1 TN: accuracy 0.5, precision 0.5.
    let m = likelihood_attack(&[-10.0, -3.0], &[-5.0, -20.0]).unwrap();
    assert_eq!(
        (m.threshold, m.accuracy, m.precision, m.recall),
        (-7.5, 0.5, Some(0.5), 0.5)
    );
    assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
    assert_eq!(median(&[]), None);
}

#[test]
fn adversarial_accuracy_by_hand() {
    let mut i = Interner::default();
    let t = sets(&mut i, &[&["A"], &["A", "B"]]);
    let e = sets(&mut i, &[&["C"], &["C", "D"]]);
    let s = sets(&mut i, &[&["A"], &["B"]]);
    let nd = |q: &CodeSets, r: &CodeSets, loo| nearest_distances(q, r, loo, 2);
    // d_TS: {A} -> {A} 0; {A,B} -> {A} or {B} 1.   d_TT (leave one out): {A} <-> {A,B} 1, 1.
    // d_ST: {A} -> {A} 0; {B} -> {A,B} 1.           d_SS: {A} <-> {B} 2, 2.
    let (d_ts, d_tt, d_st, d_ss) = (nd(&t, &s, false), nd(&t, &t, true), nd(&s, &t, false), nd(&s, &s, true));
    assert_eq!(
        (d_ts.clone(), d_tt.clone(), d_st.clone(), d_ss.clone()),
        (vec![0, 1], vec![1, 1], vec![0, 1], vec![2, 2])
    );
    // AA_TS = 0.5 (mean[0>1, 1>1] + mean[0>2, 1>2]) = 0.5 (0 + 0) = 0.
    assert_eq!(adversarial_accuracy(&d_ts, &d_tt, &d_st, &d_ss), 0.0);
    // d_ES: {C} -> 2, {C,D} -> 3.  d_EE: 1, 1.  d_SE: {A} -> {C} 2; {B} -> {C} 2.
    // AA_ES = 0.5 (mean[2>1, 3>1] + mean[2>2, 2>2]) = 0.5 (1 + 0) = 0.5; privacy loss 0.5 - 0 = 0.5.
    let (d_es, d_ee, d_se) = (nd(&e, &s, false), nd(&e, &e, true), nd(&s, &e, false));
    assert_eq!(
        (d_es.clone(), d_ee.clone(), d_se.clone()),
        (vec![2, 3], vec![1, 1], vec![2, 2])
    );
    assert_eq!(adversarial_accuracy(&d_es, &d_ee, &d_se, &d_ss), 0.5);
    // One set alone with leave-one-out has no candidate.
    assert_eq!(
        nd(&sets(&mut i, &[&["A"]]), &sets(&mut i, &[&["A"]]), true),
        vec![u32::MAX]
    );
}

#[test]
fn attribute_inference_by_hand() {
    // Known bits: 0 = label, 1 = common code c1, 2 = common code c2.
    let rec = |bits: &[u32], hidden: &[u32]| AttributeRecord {
        known: vec![bits.iter().map(|b| 1u64 << b).sum()],
        hidden: hidden.to_vec(),
    };
    let attacked = vec![rec(&[0, 1], &[10, 11]), rec(&[2], &[12])];
    let reference = vec![rec(&[0, 1], &[10, 13]), rec(&[2], &[]), rec(&[2], &[12])];
    // k = 1: a1's nearest is r1 (distance 0): predicts {10, 13}: TP 10, FP 13, FN 11.
    // a2's nearest: r2 and r3 both at 0, the earlier r2 wins: predicts {}: FN 12.
    // TP 1, FP 1, FN 2 -> F1 = 1 / (1 + 0.5 * 3) = 0.4.
    close(attribute_f1(&attacked, &reference, 1), 0.4);
    // k = 3 (all references): a1's votes 10, 13, 12 once each, none above 3/2 -> nothing predicted;
    // same for a2. TP 0, FN 3 -> F1 0.
    close(attribute_f1(&attacked, &reference, 3), 0.0);
    // Add r4 = {label, c1} hiding {10}: for a1, k = 3 picks r1, r4 (0) and r2 (3, earlier than r3):
    // 10 gets 2 votes > 3/2 -> predicted {10}: TP 1, FN 1 (11). a2 picks r2, r3 (0) and r1 (3): votes
    // 10, 13, 12 once each -> nothing: FN 1. F1 = 1 / (1 + 0.5 * 2) = 0.5.
    let mut reference = reference;
    reference.push(rec(&[0, 1], &[10]));
    close(attribute_f1(&attacked, &reference, 3), 0.5);
    // Nothing to score.
    assert_eq!(attribute_f1(&[rec(&[0], &[])], &[rec(&[0], &[])], 1), None);
}

/// A corpus whose code ids are the given numbers (code `k` is the string "k", interned in order).
fn corpus_from_ids(records: &[Vec<Vec<u32>>]) -> Corpus {
    let top = records.iter().flatten().flatten().max().map_or(0, |m| m + 1);
    let mut interner = Interner::default();
    for id in 0..top {
        interner.intern(&id.to_string());
    }
    let patients: Vec<Patient> = records
        .iter()
        .map(|r| {
            let visits = r
                .iter()
                .map(|v| Visit {
                    codes: v.iter().map(u32::to_string).collect(),
                    ..Visit::default()
                })
                .collect();
            patient("p", visits)
        })
        .collect();
    Corpus::build(&patients, &mut interner)
}

fn corpus_of(interner: &mut Interner, records: &[&[&[&str]]]) -> Corpus {
    let patients: Vec<Patient> = records
        .iter()
        .map(|r| patient("p", r.iter().map(|codes| visit(codes)).collect()))
        .collect();
    Corpus::build(&patients, interner)
}

#[test]
fn exact_copies_by_hand() {
    let mut i = Interner::default();
    let train = corpus_of(&mut i, &[&[&["A", "B"], &["C"]], &[&["D"]]]);
    // Equal: codes reordered within a visit ([B A] [C]); not equal: regrouped ([A] [B C]), visits swapped
    // ([C] [A B]), a prefix ([A B]). -> 1 copy of 4.
    let syn = corpus_of(
        &mut i,
        &[
            &[&["B", "A"], &["C"]],
            &[&["A"], &["B", "C"]],
            &[&["C"], &["A", "B"]],
            &[&["A", "B"]],
        ],
    );
    assert_eq!(count_copies(&train, &syn), 1);
    let test = corpus_of(&mut i, &[&[&["D"]], &[&["D", "D"]], &[&["E"]]]);
    // [D] and [D D] (a visit is a set) equal t2; [E] does not -> 2.
    assert_eq!(count_copies(&train, &test), 2);
}

/// Members t1..t4, non-members e1..e4 and synthetic records built so that distances are easy:
/// the synthetic data copies t1 and t2 exactly.
fn privacy_data() -> (Vec<Patient>, SplitAssignment, Vec<Patient>) {
    let real = vec![
        patient("t1", vec![visit(&["A", "B"])]),
        patient("t2", vec![visit(&["C", "D"])]),
        patient("t3", vec![visit(&["A", "E"])]),
        patient("t4", vec![visit(&["F"])]),
        patient("e1", vec![visit(&["G", "H"])]),
        patient("e2", vec![visit(&["A", "B", "C"])]),
        patient("e3", vec![visit(&["I"])]),
        patient("e4", vec![visit(&["F"])]),
    ];
    let synthetic = vec![
        patient("s1", vec![visit(&["A", "B"])]),
        patient("s2", vec![visit(&["C", "D"])]),
        patient("s3", vec![visit(&["Z"])]),
    ];
    (
        real,
        split(&["t1", "t2", "t3", "t4"], &["e1", "e2", "e3", "e4"]),
        synthetic,
    )
}

#[test]
fn privacy_end_to_end_by_hand() {
    let (real, split, synthetic) = privacy_data();
    let r = evaluate(&real, &split, &synthetic, &every_value_named()).unwrap();
    // Nearest synthetic distances: t1 0, t2 0, t3 {A,E} vs {A,B} 2, t4 {F} vs {Z} 2;
    // e1 {G,H} vs {Z} 3, e2 {A,B,C} vs {A,B} 1, e3 {I} vs {Z} 2, e4 {F} vs {Z} 2.
    // Sorted [0, 0, 1, 2, 2, 2, 2, 3]: median 2. Below 2: t1, t2 (members, right) and e2 (wrong);
    // right as non-members: e1, e3, e4 -> 5 of 8 = 0.625; precision 2/3, recall 2/4.
    let a = r.privacy.membership.dataset_attack.as_ref().unwrap();
    assert_eq!((a.members, a.non_members), (4, 4));
    assert_eq!((a.threshold, a.accuracy, a.recall), (2.0, 0.625, 0.5));
    close(a.precision, 2.0 / 3.0);
    assert_eq!(r.privacy.membership.synthetic_reference, 3);
    assert!(r.privacy.membership.model_attack.is_none());
    // Exact copies: s1 = t1, s2 = t2 -> 2 of 3; test: e4 = t4 -> 1 of 4.
    let e = &r.privacy.exact_copies;
    assert_eq!((e.synthetic_copies, e.test_copies), (2, 1));
    assert!((e.synthetic_rate - 2.0 / 3.0).abs() < EPS && (e.test_rate - 0.25).abs() < EPS);
    // Unknown code Z: 1 of the 5 synthetic code occurrences.
    assert_eq!(r.inputs.unknown_code_occurrences, 1);
    assert_eq!(r.inputs.unknown_codes, 1);
    assert!((r.inputs.unknown_code_fraction - 0.2).abs() < EPS);
    // Adversarial accuracy over 3 records per set (capped by the synthetic data): defined, in [0, 1].
    let aa = r.privacy.adversarial.as_ref().unwrap();
    assert_eq!(aa.n, 3);
    assert!((aa.privacy_loss - (aa.aa_test_synthetic - aa.aa_train_synthetic)).abs() < EPS);

    // Model attack with log-likelihoods in the order of attacked_records: members t1..t4 (all of them, in
    // input order) then e1..e4. Members [-1, -2, -3, -4], non-members [-5, -6, -7, -8]: median -4.5,
    // members all above: accuracy 1.
    let options = EvalOptions {
        log_likelihoods: Some(vec![-1.0, -2.0, -3.0, -4.0, -5.0, -6.0, -7.0, -8.0]),
        ..every_value_named()
    };
    let attacked = attacked_records(&real, &split, &options).unwrap();
    let ids: Vec<&str> = attacked
        .members
        .iter()
        .chain(&attacked.non_members)
        .map(|p| p.id.as_str())
        .collect();
    assert_eq!(ids, ["t1", "t2", "t3", "t4", "e1", "e2", "e3", "e4"]);
    let r = evaluate(&real, &split, &synthetic, &options).unwrap();
    let m = r.privacy.membership.model_attack.unwrap();
    assert_eq!((m.threshold, m.accuracy), (-4.5, 1.0));
    assert!(r.options.model_attack);

    // A wrong number of log-likelihoods is an error that says what was expected.
    let bad = EvalOptions {
        log_likelihoods: Some(vec![0.0; 3]),
        ..every_value_named()
    };
    let err = evaluate(&real, &split, &synthetic, &bad).unwrap_err();
    assert!(
        matches!(
            err,
            EvalError::Length {
                expected: 8,
                got: 3,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn sample_caps_are_respected_and_reported() {
    let (real, split, synthetic) = privacy_data();
    let options = EvalOptions {
        privacy_sample: 2,
        privacy_reference: 1,
        ..every_value_named()
    };
    let r = evaluate(&real, &split, &synthetic, &options).unwrap();
    let a = r.privacy.membership.dataset_attack.as_ref().unwrap();
    assert_eq!(
        (a.members, a.non_members, r.privacy.membership.synthetic_reference),
        (2, 2, 1)
    );
    assert_eq!(r.privacy.adversarial.as_ref().unwrap().n, 2);
    assert_eq!(r.privacy.attribute.as_ref().unwrap().attacked, 2);
    assert!(r
        .privacy
        .notes
        .iter()
        .any(|n| n.contains("(cap 2)") && n.contains("1 of 3 synthetic")));
    // The same options pick the same records.
    let again = evaluate(&real, &split, &synthetic, &options).unwrap();
    assert_eq!(r.privacy, again.privacy);
}

#[test]
fn label_sources() {
    let (real, split, synthetic) = small_data();
    // Precomputed: label "has_c" when the record has code C. Train: t1 yes, t2 no; test e1 no;
    // synthetic s1, s2 yes.
    let has_c = |p: &Patient| -> BTreeSet<String> {
        if p.all_codes().any(|c| c == "C") {
            ["has_c".to_string()].into()
        } else {
            BTreeSet::new()
        }
    };
    let (real_has_c, synthetic_has_c): (Vec<_>, Vec<_>) =
        (real.iter().map(has_c).collect(), synthetic.iter().map(has_c).collect());
    let options = EvalOptions {
        labels: LabelSource::Precomputed {
            real: &real_has_c,
            synthetic: &synthetic_has_c,
        },
        ..every_value_named()
    };
    let r = evaluate(&real, &split, &synthetic, &options).unwrap();
    let l = &r.fidelity.labels[0];
    assert_eq!(
        (l.label.as_str(), l.train, l.test, l.synthetic),
        ("has_c", 0.5, 0.0, 1.0)
    );
    // Precomputed sets must match the record counts.
    let real_sets = vec![BTreeSet::new(); real.len()];
    let bad = EvalOptions {
        labels: LabelSource::Precomputed {
            real: &real_sets,
            synthetic: &[],
        },
        ..every_value_named()
    };
    let err = evaluate(&real, &split, &synthetic, &bad).unwrap_err();
    assert!(err.to_string().contains("synthetic records"), "{err}");
}

#[test]
fn bad_inputs_are_clear_errors() {
    let (real, split, synthetic) = small_data();
    let err = evaluate(&real, &split, &[], &every_value_named()).unwrap_err();
    assert!(matches!(err, EvalError::EmptySynthetic { records: 0 }));
    assert!(err.to_string().contains("synthetic data set has no records"), "{err}");
    let empty = vec![patient("s", vec![])];
    let err = evaluate(&real, &split, &empty, &every_value_named()).unwrap_err();
    assert!(matches!(err, EvalError::EmptySynthetic { records: 1 }));
    // A split naming none of the real records.
    let other = SplitAssignment {
        train: vec!["nobody".into()],
        ..split.clone()
    };
    let err = evaluate(&real, &other, &synthetic, &every_value_named()).unwrap_err();
    assert!(err.to_string().contains("no training records"), "{err}");
    let no_test = SplitAssignment { test: vec![], ..split };
    let err = evaluate(&real, &no_test, &synthetic, &every_value_named()).unwrap_err();
    assert!(err.to_string().contains("no test records"), "{err}");
}

#[test]
fn report_is_written_whole_and_self_contained() {
    let (real, split, synthetic) = privacy_data();
    let mut report = evaluate(&real, &split, &synthetic, &every_value_named()).unwrap();
    report.utility.push(halo_evaluate::UtilityResult {
        label: "x<y".into(),
        real: halo_evaluate::ClassifierScores {
            accuracy: 0.9,
            f1: 0.8,
            auroc: Some(0.95),
        },
        synthetic: halo_evaluate::ClassifierScores {
            accuracy: 0.85,
            f1: 0.75,
            auroc: None,
        },
        n_train: 2500,
        n_val: 250,
        n_test: 500,
        note: None,
    });
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nested").join("report");
    write_report(&out, &report).unwrap();
    let json = std::fs::read_to_string(out.join("report.json")).unwrap();
    let back: Report = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    // Six scatter plots and the histograms, inline; no scripts, no external files.
    assert!(html.matches("<svg").count() >= 8, "{}", html.matches("<svg").count());
    assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("href="));
    assert!(html.contains("x&lt;y") && !html.contains("x<y"));
    assert!(html.contains("R² synthetic vs train"));
    // Only the two report files, no temporary leftovers.
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["report.html", "report.json"]);
}

/// The labels a spec "x means has code B" gives each record.
fn x_means_code_b(records: &[Patient]) -> Vec<BTreeSet<String>> {
    records
        .iter()
        .map(|p| match p.all_codes().any(|c| c == "B") {
            true => ["x".to_string()].into(),
            false => BTreeSet::new(),
        })
        .collect()
}

#[test]
fn synthetic_labels_are_checked_against_what_their_codes_imply() {
    // Both synthetic records carry label x; suppose the spec says x means "has code B": s1 has B (agrees),
    // s2 has not (disagrees), so agreement is 1/2.
    let (real, split, synthetic) = small_data();
    let implied = x_means_code_b(&synthetic);
    let options = EvalOptions {
        synthetic_labels_from_codes: Some(&implied),
        ..every_value_named()
    };
    let r = evaluate(&real, &split, &synthetic, &options).unwrap();
    let l = &r.fidelity.labels[0];
    assert_eq!((l.label.as_str(), l.synthetic_agreement), ("x", Some(0.5)));
    assert_eq!(l.kind, fidelity::LabelKind::FromCodes);
    // Without it, no agreement is reported, and the label is one given with the records.
    let r = evaluate(&real, &split, &synthetic, &every_value_named()).unwrap();
    assert_eq!(r.fidelity.labels[0].synthetic_agreement, None);
    assert_eq!(r.fidelity.labels[0].kind, fidelity::LabelKind::Given);
    // One set per synthetic record, or a clear error.
    let short = &implied[..1];
    let bad = EvalOptions {
        synthetic_labels_from_codes: Some(short),
        ..every_value_named()
    };
    let err = evaluate(&real, &split, &synthetic, &bad).unwrap_err();
    assert!(err.to_string().contains("synthetic_labels_from_codes"), "{err}");
}

#[test]
fn headline_figures_flag_what_lies_outside_its_expected_range() {
    // small_data: visits per record 1.5 in train and synthetic, codes per visit 5/3 in both (within); no
    // same-day gaps in either (within); the one gap is 10 days in train and 30 synthetic, in different
    // bins, so the gap histograms' total variation is 1 (outside); label x agrees with "has code B" in
    // 1 of 2 synthetic records (outside).
    let (real, split, synthetic) = small_data();
    let implied = x_means_code_b(&synthetic);
    let options = EvalOptions {
        synthetic_labels_from_codes: Some(&implied),
        ..every_value_named()
    };
    let r = evaluate(&real, &split, &synthetic, &options).unwrap();
    let lines = halo_evaluate::headline::headlines(&r);
    let within = |prefix: &str| {
        lines
            .iter()
            .find(|h| h.figure.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {lines:?}"))
            .within
    };
    assert!(within("visits per record"));
    assert!(within("codes per visit"));
    assert!(within("same-day consecutive visits"));
    assert!(!within("gap histogram total variation"));
    assert!(!within("label agreement with codes"));
    let gap = lines.iter().find(|h| h.figure.starts_with("gap histogram")).unwrap();
    assert_eq!(gap.value, "1.000");

    // (The R² of three visits against each other are what they are: counted, not pinned here.)
    let outside = lines.iter().filter(|h| !h.within).count();
    let text = halo_evaluate::headline::summary_text(&r);
    assert!(
        text.starts_with(&format!("{outside} of {} headline figures outside", lines.len())),
        "{text}"
    );
    assert!(text.lines().any(|l| l.starts_with("! gap histogram")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("  visits per record")), "{text}");
    let html = halo_evaluate::report::render_html(&r);
    assert_eq!(html.matches("<tr class=\"outside\">").count(), outside);
    assert_eq!(html.matches("<tr class=\"within\">").count(), lines.len() - outside);
}
