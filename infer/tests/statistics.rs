//! The sampler draws from HALO's distribution: for a tiny model whose whole record distribution can be
//! enumerated (4 codes, 1 label, n_ctx 3: a label visit and one visit), 20,000 sampled records match
//! the exact probabilities computed from the graphs by the chain rule (chi-square at a fixed seed).

mod common;

use halo_infer::model::{Seen, SeenCodes};
use halo_infer::runtime::{self, Device, SessionOptions};
use halo_infer::{generate, CodeModule, Model, Plan};
use std::collections::BTreeMap;

fn sigmoid(x: f32) -> f64 {
    1.0 / (1.0 + (-(x as f64)).exp())
}

/// ln Gamma(x) (Lanczos, g = 7).
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + 7.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Upper regularized incomplete gamma Q(a, x): series below a + 1, continued fraction above.
fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let lead = (-x + a * x.ln() - ln_gamma(a)).exp();
    if x < a + 1.0 {
        let (mut sum, mut term, mut n) = (1.0 / a, 1.0 / a, a);
        for _ in 0..10_000 {
            n += 1.0;
            term *= x / n;
            sum += term;
            if term.abs() < sum.abs() * 1e-15 {
                break;
            }
        }
        1.0 - sum * lead
    } else {
        // Lentz's method for the continued fraction of Q.
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..10_000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-15 {
                break;
            }
        }
        lead * h
    }
}

/// p-value of Pearson's chi-square of `counts` against `probs`, cells with expected < 5 pooled.
fn chi_square_p(counts: &[u64], probs: &[f64]) -> (f64, f64, usize) {
    let n: u64 = counts.iter().sum();
    let (mut stat, mut cells) = (0.0, 0usize);
    let (mut pool_obs, mut pool_exp) = (0.0, 0.0);
    for (c, p) in counts.iter().zip(probs) {
        let e = p * n as f64;
        if e < 5.0 {
            pool_obs += *c as f64;
            pool_exp += e;
            continue;
        }
        stat += (*c as f64 - e).powi(2) / e;
        cells += 1;
    }
    if pool_exp > 0.0 {
        stat += (pool_obs - pool_exp).powi(2) / pool_exp.max(1e-12);
        cells += 1;
    }
    let df = (cells - 1) as f64;
    (stat, gamma_q(df / 2.0, stat / 2.0), cells)
}

#[test]
fn chi_square_helper_is_right() {
    // Known quantiles: chi2(df 1) 3.841 -> p 0.05; chi2(df 10) 23.209 -> p 0.01; chi2(df 60) 88.38 -> 0.01.
    assert!((gamma_q(0.5, 3.841 / 2.0) - 0.05).abs() < 1e-3);
    assert!((gamma_q(5.0, 23.209 / 2.0) - 0.01).abs() < 1e-4);
    assert!((gamma_q(30.0, 88.379 / 2.0) - 0.01).abs() < 1e-4);
}

/// Outcome cell of a record: (label set?, visit code bitmask over [c0, c1, c2, c3, end]).
fn cell(label: bool, mask: usize) -> usize {
    (label as usize) * 32 + mask
}

/// The statistical test's model (built in `dir`) and the candidates of its visits: c0..c3, then the end code.
/// Vocabulary: c0..c3 (0..4), label (4), start (5), end (6), pad (7).
fn tiny_model(dir: &std::path::Path) -> (std::path::PathBuf, [usize; 5]) {
    let spec = common::Spec::tiny();
    assert_eq!(common::encoding(&spec).vocab_size(), 8);
    let bias = [0.6f32, -0.8, 0.9, -0.3, 0.4, 0.0, -0.2];
    // Weights scaled up so that each code's probability depends strongly on the codes before it.
    (
        common::build_model(dir, &spec, 3, Some(&bias), Some(50.0)),
        [0, 1, 2, 3, 6],
    )
}

/// Exact probability of every (label, first visit) cell by enumeration through the graphs, with
/// `code_offset` added to the logits of c0..c3 (the sampling calibration; not to the label or the end
/// code); and the same pretending codes were independent given the history (what a sampler that never
/// recomputes the logits within a visit would draw).
fn exact_distribution(model: &mut Model, cands: &[usize], code_offset: f32) -> (Vec<f64>, Vec<f64>) {
    let v = 8usize;
    let offset = |j: usize| if j < 4 { code_offset } else { 0.0 };
    let (mut h0, mut logits) = (Vec::new(), Vec::new());
    let start: &[u32] = &[5];
    let mut seen0 = SeenCodes::new(1, v);
    seen0.add(&[start]);
    let empty = model.empty_cache();
    let past0 = model.step(&[start], Seen::Codes(&seen0), &empty, 0, &mut h0).unwrap();
    model.head(&h0, &vec![0f32; v], 1, &mut logits).unwrap();
    let p_label = sigmoid(logits[4]);
    let mut exact = vec![0f64; 64];
    let mut independent = vec![0f64; 64];
    for label in [false, true] {
        let label_visit: &[u32] = if label { &[4] } else { &[] };
        let mut h1 = Vec::new();
        let mut seen = seen0.clone();
        seen.add(&[label_visit]);
        model
            .step(&[label_visit], Seen::Codes(&seen), &past0, 1, &mut h1)
            .unwrap();
        assert_eq!(h1.len(), model.config().n_embd);
        let pl = if label { p_label } else { 1.0 - p_label };
        let mut empty_logits = Vec::new();
        model.head(&h1, &vec![0f32; v], 1, &mut empty_logits).unwrap();
        for mask in 0..32usize {
            let mut visit = vec![0f32; v];
            let (mut p, mut p_ind) = (pl, pl);
            for (k, &j) in cands.iter().enumerate() {
                model.head(&h1, &visit, 1, &mut logits).unwrap();
                let q = sigmoid(logits[j] + offset(j));
                let q_ind = sigmoid(empty_logits[j] + offset(j));
                if mask >> k & 1 == 1 {
                    p *= q;
                    p_ind *= q_ind;
                    visit[j] = 1.0;
                } else {
                    p *= 1.0 - q;
                    p_ind *= 1.0 - q_ind;
                }
            }
            exact[cell(label, mask)] = p;
            independent[cell(label, mask)] = p_ind;
        }
    }
    let total: f64 = exact.iter().sum();
    assert!((total - 1.0).abs() < 1e-9, "probabilities sum to {total}");
    (exact, independent)
}

fn cpu_one_thread() -> SessionOptions {
    SessionOptions {
        device: Device::Cpu,
        threads: Some(1),
    }
}

#[test]
fn first_visits_follow_the_exact_distribution() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, cands) = tiny_model(tmp.path());
    let rt = runtime::init(None).unwrap();
    let mut model = Model::load_with(&dir, rt, &cpu_one_thread(), CodeModule::Dense).unwrap();
    let (exact, independent) = exact_distribution(&mut model, &cands, 0.0);
    let max_diff = exact
        .iter()
        .zip(&independent)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(
        max_diff > 0.02,
        "the model's codes hardly depend on each other ({max_diff}); the test would have no power"
    );

    // 20,000 sampled records, with each way of running the code module; Compared also checks every
    // incremental block against the dense logits.
    for code_module in [CodeModule::Dense, CodeModule::Compared] {
        let mut model = Model::load_with(&dir, rt, &cpu_one_thread(), code_module).unwrap();
        let counts = sample_first_visits(&mut model, &cands);
        check_fit(&counts, &exact, &independent, code_module);
    }
}

/// With a sampling calibration in the manifest, the offset goes on the logits of the codes drawn on their
/// own and nowhere else (not the label, not the end code): samples follow the exact distribution with it,
/// and not the one without it.
#[test]
fn a_calibration_offset_moves_exactly_the_codes_drawn_on_their_own() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, cands) = tiny_model(tmp.path());
    let rt = runtime::init(None).unwrap();
    let offset = -0.7f32;
    let mut model = Model::load_with(&dir, rt, &cpu_one_thread(), CodeModule::Compared).unwrap();
    let (without, _) = exact_distribution(&mut model, &cands, 0.0);
    let (with, independent) = exact_distribution(&mut model, &cands, offset);
    model.manifest.calibration = Some(halo_core::manifest::SamplingCalibration {
        code_logit_offset: offset,
        target_codes_per_visit: 1.0,
        uncalibrated_codes_per_visit: 1.0,
        calibrated_codes_per_visit: 1.0,
        records: 1,
        ..Default::default()
    });
    let counts = sample_first_visits(&mut model, &cands);
    check_fit(&counts, &with, &independent, CodeModule::Compared);
    let (stat, p, _) = chi_square_p(&counts, &without);
    assert!(
        p < 1e-6,
        "samples also fit the distribution without the offset (chi2 {stat:.1}, p {p:.2e})"
    );
}

/// Counts of (label, first visit) cells over 20,000 records sampled at seed 2024.
fn sample_first_visits(model: &mut Model, cands: &[usize]) -> Vec<u64> {
    let n = 20_000u64;
    let mut counts = vec![0u64; 64];
    let stats = generate(
        model,
        &Plan {
            seed: 2024,
            records: 0..n,
            batch_size: 512,
            conditions: None,
        },
        |batch| {
            for s in batch {
                assert!(s.raw.labels.iter().all(|&c| c == 4));
                assert_eq!(s.raw.visits.len(), 1, "n_ctx 3 allows one visit");
                let mut mask = 0;
                for &c in &s.raw.visits[0] {
                    let k = cands.iter().position(|&j| j == c as usize).unwrap();
                    mask |= 1 << k;
                }
                counts[cell(!s.raw.labels.is_empty(), mask)] += 1;
            }
            Ok(())
        },
    )
    .unwrap();
    if model.compares_dense() {
        // Not only close in distribution: the same logits.
        assert!(stats.max_dense_difference <= 1e-5, "{stats:?}");
    }
    counts
}

fn check_fit(counts: &[u64], exact: &[f64], independent: &[f64], code_module: CodeModule) {
    let n: u64 = counts.iter().sum();
    let (stat, p, cells) = chi_square_p(counts, exact);
    let (stat_ind, p_ind, _) = chi_square_p(counts, independent);
    eprintln!(
        "{code_module:?}: chi2 {stat:.1} over {cells} cells, p {p:.3}; independent: chi2 {stat_ind:.1}, p {p_ind:.2e}"
    );
    let mut top: BTreeMap<usize, (u64, f64)> = BTreeMap::new();
    for (i, (c, e)) in counts.iter().zip(exact).enumerate() {
        top.insert(i, (*c, e * n as f64));
    }
    assert!(
        p > 0.001,
        "{code_module:?}: sampled records do not follow the model: chi2 {stat:.1} over {cells} cells, p {p:.2e}; (count, expected) per cell {top:?}"
    );
    // The test can tell a wrong sampler apart: the samples reject the independent-codes distribution.
    assert!(
        p_ind < 1e-6,
        "samples also fit the independent-codes distribution (chi2 {stat_ind:.1}, p {p_ind:.2e})"
    );
}
