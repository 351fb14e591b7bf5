//! The walk through one visit's candidate codes, shared by both ways of running the code module.
//!
//! From the current position, draw `u ~ U(0,1)` for each candidate in vocabulary order until the first
//! `u < sigmoid(logit)`; set that code and continue after it. The walk reads logits through a [`Cursor`],
//! which knows which logits are valid under the codes set so far; when it reaches a code whose logit is
//! not known, it stops and says which logits it needs ([`Progress::Need`]). Random numbers are drawn only
//! once the logit is known, so a record's draws do not depend on how its logits were computed.

use crate::conditions::Forced;
use halo_core::encoding::{Encoding, VisitGroup};
use halo_core::manifest::SamplingCalibration;
use rand::Rng;
use rand_chacha::ChaCha20Rng;
use std::ops::Range;

/// How the one value of an exclusive category is drawn from the logits of its values (all given the same
/// prefix, no value of the category set), renormalised over the category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CategoryDraw {
    /// Weight of a value: its sigmoid. For the label visit's categories (sex, race, ...): walking their
    /// values one by one leans on "earlier values of the category were not drawn", a dependence the code
    /// module carries through a single hidden unit and learns poorly (measured on Synthea: 64% F walking,
    /// 49% in the data, 51% drawn this way).
    Conditionals,
    /// Weight of a value: the probability that a walk through the category sets it first (its sigmoid times
    /// one minus the sigmoid of each value before it), i.e. the walk given that it sets one value. For the
    /// visit groups (gap, age): they open the vocabulary, so their logits given the empty prefix are what
    /// training scored, each bucket's probability given that no earlier bucket was set. Their sigmoids
    /// renormalised lean to late buckets (demo, teacher-forced on the training visits: total variation
    /// 0.051 from the data's gap histogram, 0.041 walking; sampled, 0.128 and 0.077).
    Walk,
}

/// The first manifest format whose visit types are drawn with the last type taking what the types before
/// it leave ([`VisitPlan::last_takes_rest`]).
pub const VISIT_TYPE_CHAIN_FORMAT: u32 = 6;

/// Which codes a visit may hold, in sampling order.
pub(crate) struct VisitPlan {
    /// Candidate vocabulary indices in order.
    pub cands: Vec<usize>,
    /// For each candidate position: the half-open range of positions of its exclusive category.
    pub category: Vec<Option<(usize, usize)>>,
    /// Whether forced values apply (label visit: candidate position = label-local index).
    pub forced: bool,
    /// How an exclusive category's one value is drawn.
    pub category_draw: CategoryDraw,
    /// Added to the logit of every candidate drawn on its own (not in a category, not the end code):
    /// the manifest's sampling calibration (`halo_core::manifest::SamplingCalibration`).
    pub code_logit_offset: f32,
    /// Per candidate position: the factor of its weight when its category is drawn (the calibration's gap,
    /// visit-size and visit-type weights); empty: all 1.
    pub category_factor: Vec<f64>,
    /// Per candidate position: whether it is the last value of a category whose walk always sets one value,
    /// so that it takes all that the values before it leave (its own logit is not used); empty: none.
    ///
    /// Visit types, from format 6 ([`VISIT_TYPE_CHAIN_FORMAT`]): every visit holds one type, so given none
    /// of the others the last type is certain, which training saw but a sigmoid only approaches. On the demo
    /// model the last type (emergency) took its sigmoid's weight and came out so rare that the calibration's
    /// weight hit its limit (visit-type histogram 0.052 off before calibration, `halo evaluate` 0.035 after);
    /// taking the rest: 0.021 before, 0.001 after, `halo evaluate` 0.008-0.022 over three seeds. The gap
    /// buckets are not chained: their last bucket's rest compounds eleven conditionals the model learns less
    /// well (gap histogram 0.222 off before calibration, against 0.043).
    pub last_takes_rest: Vec<bool>,
    /// Per candidate position: the end of the run of positions from it that are drawn on their own with the
    /// code offset and hold consecutive vocabulary indices (so a cursor can give their logits at once); the
    /// position itself where none starts there; empty: no runs.
    pub run_end: Vec<usize>,
}

impl VisitPlan {
    /// The label visit: its exclusive categories (demographics, label groups) drawn by their conditionals, the
    /// demographic values weighted by the calibration's demographic weights.
    pub fn labels(enc: &Encoding, calibration: Option<&SamplingCalibration>) -> VisitPlan {
        let c = enc.code_vocab_size;
        let n = enc.label_vocab_size;
        let mut category = vec![None; n];
        for cat in enc.exclusive_label_categories() {
            let range = (cat.first, (cat.first + cat.len).min(n));
            for slot in category.iter_mut().take(range.1).skip(range.0) {
                *slot = Some(range);
            }
        }
        let mut category_factor = Vec::new();
        let weights = calibration.map_or(&[][..], |c| &c.demographic_log_weights[..]);
        for (cat, log_weights) in enc.demographic_categories.iter().zip(weights) {
            if log_weights.len() == cat.len && cat.first + cat.len <= n {
                category_factor.resize(n, 1.0);
                for (f, w) in category_factor[cat.first..cat.first + cat.len]
                    .iter_mut()
                    .zip(log_weights)
                {
                    *f = f64::from(*w).exp();
                }
            }
        }
        VisitPlan {
            cands: (c..c + n).collect(),
            category,
            forced: true,
            category_draw: CategoryDraw::Conditionals,
            code_logit_offset: 0.0,
            category_factor,
            last_takes_rest: Vec::new(),
            run_end: Vec::new(),
        }
    }

    /// The codes of visit `t` (0 = the first). The encoding's visit groups (gap, age) are exclusive where
    /// they apply to `t` (one code, drawn as a categorical) and left out elsewhere. The calibration's code
    /// offset applies to the codes drawn on their own, its gap weights to the gap group.
    pub fn codes(
        enc: &Encoding,
        t: usize,
        format_version: u32,
        calibration: Option<&SamplingCalibration>,
    ) -> VisitPlan {
        let excluded = |j: usize| {
            enc.visit_groups
                .iter()
                .any(|g| !g.applies_to(t) && g.range().contains(&j))
        };
        let mut cands: Vec<usize> = (0..enc.code_vocab_size).filter(|&j| !excluded(j)).collect();
        cands.push(enc.end_index());
        let mut category = vec![None; cands.len()];
        let mut category_factor = Vec::new();
        let mut last_takes_rest = Vec::new();
        for g in enc.visit_groups.iter().filter(|g| g.applies_to(t) && g.len > 0) {
            // Candidates are in vocabulary order and the group is contiguous, so its positions are too.
            let start = cands.partition_point(|&j| j < g.first);
            let range = (start, start + g.len);
            for slot in &mut category[range.0..range.1] {
                *slot = Some(range);
            }
            if g.name == VisitGroup::VISIT_TYPE && format_version >= VISIT_TYPE_CHAIN_FORMAT {
                last_takes_rest.resize(cands.len(), false);
                last_takes_rest[range.1 - 1] = true;
            }
            let log_weights = match (calibration, g.name.as_str()) {
                (Some(c), VisitGroup::GAP) => &c.gap_log_weights[..],
                (Some(c), VisitGroup::SIZE) => &c.size_log_weights[..],
                (Some(c), VisitGroup::VISIT_TYPE) => &c.visit_type_log_weights[..],
                _ => &[],
            };
            if log_weights.len() == g.len {
                category_factor.resize(cands.len(), 1.0);
                for (f, w) in category_factor[range.0..range.1].iter_mut().zip(log_weights) {
                    *f = f64::from(*w).exp();
                }
            }
        }
        let mut plan = VisitPlan {
            category,
            cands,
            forced: false,
            category_draw: CategoryDraw::Walk,
            code_logit_offset: calibration.map_or(0.0, |c| c.code_logit_offset),
            category_factor,
            last_takes_rest,
            run_end: Vec::new(),
        };
        plan.run_end = plan.runs();
        plan
    }

    /// [`VisitPlan::run_end`] from the candidates and their categories: a run holds positions drawn on their
    /// own (no category, not the end code, the plan not forced) with consecutive vocabulary indices.
    fn runs(&self) -> Vec<usize> {
        let n = self.cands.len();
        let plain = |p: usize| !self.forced && self.category[p].is_none() && p + 1 != n;
        let mut run_end: Vec<usize> = (0..n).collect();
        for p in (0..n).rev().filter(|&p| plain(p)) {
            run_end[p] = if p + 1 < n && plain(p + 1) && self.cands[p + 1] == self.cands[p] + 1 {
                run_end[p + 1]
            } else {
                p + 1
            };
        }
        run_end
    }

    /// What is added to the logit of the candidate at `pos` when it is drawn on its own.
    fn offset(&self, pos: usize) -> f32 {
        // The end code is the last candidate of a visit's plan.
        if self.forced || self.category[pos].is_some() || pos + 1 == self.cands.len() {
            0.0
        } else {
            self.code_logit_offset
        }
    }

    /// Position after `pos` once a code at `pos` has been set: past its category.
    fn after_set(&self, pos: usize) -> usize {
        match self.category[pos] {
            Some((_, end)) => end,
            None => pos + 1,
        }
    }
}

/// A row's view of the code module while it walks a visit.
pub(crate) trait Cursor {
    /// The logit of vocabulary index `j` given the codes set so far, when known.
    fn logit(&mut self, j: usize) -> Option<f32>;
    /// The logit of `j`, a value of an exclusive category whose first value is `first`, given the codes set
    /// so far and none of `first..j` (the walk reads all of a category's values before setting one).
    fn logit_given_unset(&mut self, j: usize, first: usize) -> Option<f32> {
        let _ = first;
        self.logit(j)
    }
    /// The logits of a run of consecutive vocabulary indices `codes` given the codes set so far (each given
    /// none of the run before it set), written to `logits`; returns how many of the first it knows (at most
    /// the array's length), 0 for none or when the cursor reads logits one by one only. A code set next must
    /// be one of those.
    fn run_logits(&mut self, codes: Range<usize>, logits: &mut [f32; RUN]) -> usize {
        let _ = (codes, logits);
        0
    }
    /// Sets vocabulary index `j` in the visit (logits of later codes become unknown).
    fn set(&mut self, j: usize);
}

/// The longest run of logits a cursor gives at once. A code set inside a run makes the cursor fold again the
/// units of the run before it: short runs waste little (demo model, 2 cores: runs of 64 codes were no faster
/// than one code at a time).
pub(crate) const RUN: usize = 16;

/// Where a walk stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Progress {
    /// The visit is complete.
    Done,
    /// The walk needs the logits of these vocabulary indices (under the codes set so far).
    Need(Range<usize>),
}

#[inline]
fn sigmoid(x: f32) -> f64 {
    1.0 / (1.0 + (-(x as f64)).exp())
}

/// Whether a code with logit `x` is set by the draw `u`: `u < sigmoid(x)`, the same decision bit for bit,
/// without the exponential where a power of two above the sigmoid already rules the code out (most codes of
/// a visit: their logits lie far below zero; the exponential was 8.5% of a batch-256 profile).
#[inline]
fn is_set(u: f64, x: f32) -> bool {
    let x64 = f64::from(x);
    // NaN fails the test and takes the exact path.
    if x64 < -1.0 {
        // sigmoid(x) < e^x = 2^t with t = x log2 e < -1. Truncating t (toward zero: trunc(t) >= t, and no
        // library call as `floor` is on the baseline x86-64 target) and adding one gives a bound of at least
        // 2 e^x, a margin far above the rounding of the product and of the sigmoid as computed (a few ulps).
        let k = ((x64 * std::f64::consts::LOG2_E) as i64).max(-1000) + 1;
        let bound = f64::from_bits(((k + 1023) as u64) << 52);
        if u >= bound {
            return false;
        }
    }
    u < sigmoid(x)
}

/// Advances one row's walk from `*pos` (a candidate position of `plan`) as far as the known logits allow,
/// pushing every code it sets onto `drawn`.
pub(crate) fn walk(
    pos: &mut usize,
    plan: &VisitPlan,
    forced: Option<&Forced>,
    cursor: &mut impl Cursor,
    drawn: &mut Vec<u32>,
    rng: &mut ChaCha20Rng,
) -> Progress {
    // The label visit's conditions by label-local index; another visit's calendar code by candidate position
    // (a shorter list: positions past it are free).
    let fixed_at = |k: usize| forced.and_then(|f| f.get(k).copied().flatten());
    loop {
        let p = *pos;
        if p >= plan.cands.len() {
            return Progress::Done;
        }
        // A run of codes drawn on their own: their logits at once when the cursor gives them, the same draws
        // in the same order as one by one (each code takes one number until one is set).
        if let Some(&end) = plan.run_end.get(p).filter(|&&end| end > p) {
            debug_assert!((p..end).all(|k| fixed_at(k).is_none()), "a run holds no fixed value");
            let j = plan.cands[p];
            let mut logits = [0f32; RUN];
            let known = cursor.run_logits(j..j + (end - p), &mut logits);
            if known > 0 {
                *pos = p + known;
                for (i, logit) in logits[..known].iter().enumerate() {
                    let u: f64 = rng.random();
                    if is_set(u, logit + plan.code_logit_offset) {
                        cursor.set(j + i);
                        drawn.push((j + i) as u32);
                        *pos = p + i + 1;
                        break;
                    }
                }
                continue;
            }
        }
        // An exclusive category with no value fixed is drawn once, at its first position: one value, with
        // the weights of the plan's `CategoryDraw`, renormalised.
        if let Some((start, end)) = plan.category[p] {
            if p == start && !(start..end).any(|k| fixed_at(k) == Some(true)) {
                let mut weights = Vec::with_capacity(end - start);
                // Probability that a walk through the category has not set a value yet.
                let mut not_yet = 1.0f64;
                for k in (start..end).filter(|k| fixed_at(*k) != Some(false)) {
                    let Some(logit) = cursor.logit_given_unset(plan.cands[k], plan.cands[start]) else {
                        return Progress::Need(plan.cands[start]..plan.cands[end - 1] + 1);
                    };
                    let p = sigmoid(logit);
                    let factor = plan.category_factor.get(k).copied().unwrap_or(1.0);
                    match plan.category_draw {
                        CategoryDraw::Conditionals => weights.push((k, factor * p)),
                        CategoryDraw::Walk if plan.last_takes_rest.get(k) == Some(&true) => {
                            weights.push((k, factor * not_yet));
                        }
                        CategoryDraw::Walk => {
                            weights.push((k, factor * not_yet * p));
                            not_yet *= 1.0 - p;
                        }
                    }
                }
                if let Some(chosen) = categorical(&weights, rng) {
                    let j = plan.cands[chosen];
                    cursor.set(j);
                    drawn.push(j as u32);
                }
                *pos = end;
                continue;
            }
        }
        let j = plan.cands[p];
        match fixed_at(p) {
            Some(true) => {
                cursor.set(j);
                drawn.push(j as u32);
                *pos = plan.after_set(p);
                continue;
            }
            Some(false) => {}
            None => {
                let Some(logit) = cursor.logit(j) else {
                    return Progress::Need(j..j + 1);
                };
                let u: f64 = rng.random();
                if is_set(u, logit + plan.offset(p)) {
                    cursor.set(j);
                    drawn.push(j as u32);
                    *pos = plan.after_set(p);
                    continue;
                }
            }
        }
        *pos = p + 1;
    }
}

/// Draws one of `weights` (index, weight) with probability proportional to its weight; `None` when empty.
fn categorical(weights: &[(usize, f64)], rng: &mut ChaCha20Rng) -> Option<usize> {
    let total: f64 = weights.iter().map(|(_, p)| p).sum();
    let u: f64 = rng.random::<f64>() * total;
    let mut acc = 0.0;
    for (k, p) in weights {
        acc += p;
        if u < acc {
            return Some(*k);
        }
    }
    weights.last().map(|(k, _)| *k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// The fixture model's encoding.
    fn fixture_encoding() -> Encoding {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tiny-model");
        halo_core::manifest::Manifest::read(&dir)
            .expect("fixture manifest")
            .encoding
    }

    /// The draw's shortcut decides as the exact comparison does: at draws on either side of the sigmoid by
    /// one ulp (where a bound below the sigmoid would say "not set"), at the bound's own powers of two, and
    /// at random draws, over logits from -200 to 5 and the edge values.
    #[test]
    fn a_draw_decides_as_the_exact_sigmoid_comparison() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let mut logits: Vec<f32> = (0..20_000).map(|i| -200.0 + i as f32 * 0.01025).collect();
        logits.extend([
            f32::NEG_INFINITY,
            f32::NAN,
            -1.0,
            -1.0001,
            -0.9999,
            f32::MIN,
            -88.7,
            -103.9,
            0.0,
        ]);
        let mut checked = 0;
        for &x in &logits {
            let p = sigmoid(x);
            let mut draws = vec![
                p,
                p.next_down(),
                p.next_up(),
                0.0,
                rng.random(),
                rng.random::<f64>() * p * 4.0,
            ];
            draws.extend((-60..=0).map(|k| 2f64.powi(k)));
            for u in draws.into_iter().filter(|u| (0.0..1.0).contains(u)) {
                assert_eq!(is_set(u, x), u < p, "logit {x}, draw {u:e}, sigmoid {p:e}");
                checked += 1;
            }
        }
        assert!(checked > 1_000_000);
    }

    /// Logits that do not depend on the codes set (enough for one category's draw).
    struct Fixed(Vec<f32>);

    impl Cursor for Fixed {
        fn logit(&mut self, j: usize) -> Option<f32> {
            self.0.get(j).copied()
        }
        fn set(&mut self, _: usize) {}
    }

    /// Shares of each value of a three-value category (candidates 0..3, then the end code 3) over 40,000
    /// walks, with the end code never drawn, each value's weight multiplied by `factor` (empty: 1).
    fn shares(draw: CategoryDraw, logits: &[f32; 3], factor: &[f64]) -> Vec<f64> {
        shares_of(draw, logits, factor, Vec::new())
    }

    fn shares_of(draw: CategoryDraw, logits: &[f32; 3], factor: &[f64], last_takes_rest: Vec<bool>) -> Vec<f64> {
        let plan = VisitPlan {
            cands: vec![0, 1, 2, 3],
            category: vec![Some((0, 3)), Some((0, 3)), Some((0, 3)), None],
            forced: false,
            category_draw: draw,
            code_logit_offset: 0.0,
            category_factor: factor.to_vec(),
            last_takes_rest,
            run_end: Vec::new(),
        };
        let mut cursor = Fixed(vec![logits[0], logits[1], logits[2], -100.0]);
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let n = 40_000;
        let mut counts = [0usize; 3];
        for _ in 0..n {
            let (mut pos, mut drawn) = (0, Vec::new());
            assert_eq!(
                walk(&mut pos, &plan, None, &mut cursor, &mut drawn, &mut rng),
                Progress::Done
            );
            assert_eq!(drawn.len(), 1, "exactly one value of the category");
            counts[drawn[0] as usize] += 1;
        }
        counts.iter().map(|&c| c as f64 / n as f64).collect()
    }

    #[test]
    fn a_category_is_drawn_by_its_plan_rule() {
        let logits = [-1.0f32, 0.0, 2.0];
        let p: Vec<f64> = logits.iter().map(|&l| sigmoid(l)).collect();
        let total: f64 = p.iter().sum();
        let conditionals: Vec<f64> = p.iter().map(|x| x / total).collect();
        let first = [p[0], (1.0 - p[0]) * p[1], (1.0 - p[0]) * (1.0 - p[1]) * p[2]];
        let walked: f64 = first.iter().sum();
        let walk: Vec<f64> = first.iter().map(|x| x / walked).collect();
        // The two rules differ enough for 40,000 draws to tell them apart (standard error < 0.0025).
        assert!((conditionals[0] - walk[0]).abs() > 0.05, "{conditionals:?} {walk:?}");
        for (draw, expected) in [(CategoryDraw::Conditionals, &conditionals), (CategoryDraw::Walk, &walk)] {
            let got = shares(draw, &logits, &[]);
            for (g, e) in got.iter().zip(expected.iter()) {
                assert!((g - e).abs() < 0.01, "{draw:?}: shares {got:?}, expected {expected:?}");
            }
        }
    }

    #[test]
    fn a_chained_category_gives_its_last_value_the_rest() {
        // The last value's own sigmoid (0.05) would make it rare; chained, it takes what the others leave.
        let logits = [-1.0f32, 0.0, (0.05f32 / 0.95).ln()];
        let p: Vec<f64> = logits.iter().map(|&l| sigmoid(l)).collect();
        let expected = [p[0], (1.0 - p[0]) * p[1], (1.0 - p[0]) * (1.0 - p[1])];
        let got = shares_of(CategoryDraw::Walk, &logits, &[], vec![false, false, true, false]);
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 0.01, "shares {got:?}, expected {expected:?}");
        }
        let unchained = shares(CategoryDraw::Walk, &logits, &[]);
        assert!(unchained[2] < expected[2] - 0.1, "{unchained:?} against {expected:?}");
    }

    #[test]
    fn only_visit_types_of_format_6_on_are_chained() {
        let enc = fixture_encoding();
        let plan_of = |format| VisitPlan::codes(&enc, 1, format, None);
        for (format, chained) in [(5, false), (VISIT_TYPE_CHAIN_FORMAT, true)] {
            let plan = plan_of(format);
            let chained_values: Vec<usize> = (0..plan.cands.len())
                .filter(|&k| plan.last_takes_rest.get(k) == Some(&true))
                .map(|k| plan.cands[k])
                .collect();
            let last_type = enc
                .visit_groups
                .iter()
                .find(|g| g.name == VisitGroup::VISIT_TYPE)
                .map(|g| g.first + g.len - 1);
            assert_eq!(
                chained_values,
                last_type.filter(|_| chained).into_iter().collect::<Vec<_>>(),
                "format {format}"
            );
        }
    }

    #[test]
    fn the_label_plan_weighs_demographic_values_by_the_calibration() {
        let enc = fixture_encoding();
        assert!(!enc.demographic_categories.is_empty(), "the fixture has demographics");
        let weights: Vec<Vec<f32>> = enc
            .demographic_categories
            .iter()
            .map(|c| (0..c.len).map(|v| v as f32 / 4.0).collect())
            .collect();
        let calibration = SamplingCalibration {
            demographic_log_weights: weights.clone(),
            ..Default::default()
        };
        assert!(VisitPlan::labels(&enc, None).category_factor.is_empty());
        let plan = VisitPlan::labels(&enc, Some(&calibration));
        let mut expected = vec![1.0; enc.label_vocab_size];
        for (c, w) in enc.demographic_categories.iter().zip(&weights) {
            for (v, w) in w.iter().enumerate() {
                expected[c.first + v] = f64::from(*w).exp();
            }
        }
        assert_eq!(plan.category_factor, expected);
        // A calibration of another encoding (a category of another size) leaves the draw as the model gives it.
        let mismatched = SamplingCalibration {
            demographic_log_weights: weights.iter().map(|w| vec![0.5; w.len() + 1]).collect(),
            ..Default::default()
        };
        assert!(VisitPlan::labels(&enc, Some(&mismatched)).category_factor.is_empty());
    }

    #[test]
    fn calibration_factors_reweight_a_category() {
        let logits = [-1.0f32, 0.0, 2.0];
        let p: Vec<f64> = logits.iter().map(|&l| sigmoid(l)).collect();
        let walk = [p[0], (1.0 - p[0]) * p[1], (1.0 - p[0]) * (1.0 - p[1]) * p[2]];
        // Value 0 counts three times, value 2 not at all (the end code's factor does not matter).
        let factor = [3.0, 1.0, 0.0, 1.0];
        let weighted = [3.0 * walk[0], walk[1], 0.0];
        let total: f64 = weighted.iter().sum();
        let got = shares(CategoryDraw::Walk, &logits, &factor);
        for (g, w) in got.iter().zip(weighted) {
            assert!(
                (g - w / total).abs() < 0.01,
                "shares {got:?}, expected {weighted:?} / {total}"
            );
        }
        assert_eq!(got[2], 0.0);
    }

    #[test]
    fn the_calibration_offset_moves_codes_drawn_on_their_own_only() {
        let plan = VisitPlan {
            cands: vec![0, 1, 2, 3, 4],
            category: vec![Some((0, 2)), Some((0, 2)), None, None, None],
            forced: false,
            category_draw: CategoryDraw::Walk,
            code_logit_offset: 0.5,
            category_factor: Vec::new(),
            last_takes_rest: Vec::new(),
            run_end: Vec::new(),
        };
        // Category values and the end code (last candidate) get nothing; the codes drawn on their own do.
        assert_eq!((plan.offset(0), plan.offset(1), plan.offset(4)), (0.0, 0.0, 0.0));
        assert_eq!((plan.offset(2), plan.offset(3)), (0.5, 0.5));
        // And they, only they, form a run.
        assert_eq!(plan.runs(), vec![0, 1, 4, 4, 4]);
    }

    /// [`Fixed`] logits given a run at a time.
    struct FixedRuns(Vec<f32>);

    impl Cursor for FixedRuns {
        fn logit(&mut self, j: usize) -> Option<f32> {
            self.0.get(j).copied()
        }
        fn run_logits(&mut self, codes: Range<usize>, logits: &mut [f32; RUN]) -> usize {
            let end = codes.end.min(codes.start + RUN).min(self.0.len());
            logits[..end - codes.start].copy_from_slice(&self.0[codes.start..end]);
            end - codes.start
        }
        fn set(&mut self, _: usize) {}
    }

    /// A walk through the fixture's later visits draws the same codes, and leaves its random stream at the same
    /// place, with the runs' logits given at once as with every logit given one by one (runs end at categories,
    /// at gaps in the candidates' indices and at the end code; codes set inside runs).
    #[test]
    fn a_run_draws_as_one_code_at_a_time() {
        let enc = fixture_encoding();
        let plan = VisitPlan::codes(&enc, 1, VISIT_TYPE_CHAIN_FORMAT, None);
        let runs = (0..plan.cands.len()).filter(|&p| plan.run_end[p] > p).count();
        assert!(
            runs > plan.cands.len() / 2,
            "{runs} of {} positions in runs",
            plan.cands.len()
        );
        let mut logit_rng = ChaCha20Rng::seed_from_u64(3);
        let v = enc.end_index() + 1;
        let mut set = 0;
        for stream in 0..200 {
            // Most codes unlikely, some likely, as in a visit.
            let logits: Vec<f32> = (0..v)
                .map(|_| {
                    if logit_rng.random::<f64>() < 0.05 {
                        1.0
                    } else {
                        -4.0 - 4.0 * logit_rng.random::<f32>()
                    }
                })
                .collect();
            let walked = |cursor: &mut dyn FnMut(&mut usize, &mut Vec<u32>, &mut ChaCha20Rng) -> Progress| {
                let mut rng = ChaCha20Rng::seed_from_u64(stream);
                let (mut pos, mut drawn) = (0, Vec::new());
                assert_eq!(cursor(&mut pos, &mut drawn, &mut rng), Progress::Done);
                (drawn, rng.random::<u64>())
            };
            let one_by_one =
                walked(&mut |pos, drawn, rng| walk(pos, &plan, None, &mut Fixed(logits.clone()), drawn, rng));
            let in_runs =
                walked(&mut |pos, drawn, rng| walk(pos, &plan, None, &mut FixedRuns(logits.clone()), drawn, rng));
            assert_eq!(one_by_one, in_runs, "stream {stream}");
            set += one_by_one.0.len();
        }
        assert!(set > 400, "{set} codes set");
    }
}
