//! The walk through one visit's candidate codes, shared by both ways of running the code module.
//!
//! From the current position, draw `u ~ U(0,1)` for each candidate in vocabulary order until the first
//! `u < sigmoid(logit)`; set that code and continue after it. The walk reads logits through a [`Cursor`],
//! which knows which logits are valid under the codes set so far; when it reaches a code whose logit is
//! not known, it stops and says which logits it needs ([`Progress::Need`]). Random numbers are drawn only
//! once the logit is known, so a record's draws do not depend on how its logits were computed.

use crate::conditions::Forced;
use crate::decode::FirstVisitDates;
use halo_core::encoding::{Encoding, Token, VisitGroup};
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
    /// Per vocabulary index: the lab whose bucket it is ([`NO_LAB`] for other codes), where a visit holds at
    /// most one bucket of a lab ([`Encoding::lab_buckets_exclusive`]): the walk goes past a bucket whose lab
    /// the visit already holds, drawing nothing for it. Empty: labs are drawn as any code.
    pub lab_of: Vec<u32>,
}

/// [`VisitPlan::lab_of`] of a code that is no lab's bucket.
pub(crate) const NO_LAB: u32 = u32::MAX;

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
            lab_of: Vec::new(),
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
            lab_of: Vec::new(),
        };
        plan.run_end = plan.runs();
        if enc.lab_buckets_exclusive {
            plan.lab_of = labs_of(enc);
        }
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

    /// Whether vocabulary index `j` is a bucket of a lab that the visit's codes so far (`drawn`) hold a
    /// bucket of, where a visit holds at most one.
    fn lab_held(&self, j: usize, drawn: &[u32]) -> bool {
        match self.lab_of.get(j) {
            Some(&lab) if lab != NO_LAB => drawn.iter().any(|&d| self.lab_of.get(d as usize) == Some(&lab)),
            _ => false,
        }
    }
}

/// [`VisitPlan::lab_of`]: each lab's buckets numbered by their lab, by vocabulary index.
fn labs_of(enc: &Encoding) -> Vec<u32> {
    let mut labs: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
    enc.tokens
        .iter()
        .map(|t| match t {
            Token::Lab { code, .. } => {
                let next = labs.len() as u32;
                *labs.entry(code.as_str()).or_insert(next)
            }
            _ => NO_LAB,
        })
        .collect()
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

/// What a row's walk reads besides the logits: its forced values (by label-local index on the label visit,
/// by candidate position on another visit), the label bias added to each logit (by vocabulary index), and its
/// random stream.
pub(crate) struct WalkInputs<'a> {
    pub forced: Option<&'a Forced>,
    pub bias: Option<&'a [f32]>,
    /// On a record's first visit (manifest format 10 on): the calendar and age buckets its birth years
    /// allow; a bucket no date meets is left out of its group's draw.
    pub dates: Option<&'a FirstVisitDates>,
    pub rng: &'a mut ChaCha20Rng,
}

/// Advances one row's walk from `*pos` (a candidate position of `plan`) as far as the known logits allow,
/// pushing every code it sets onto `drawn`.
pub(crate) fn walk(
    pos: &mut usize,
    plan: &VisitPlan,
    inputs: WalkInputs,
    cursor: &mut impl Cursor,
    drawn: &mut Vec<u32>,
) -> Progress {
    let WalkInputs {
        forced,
        bias,
        dates,
        rng,
    } = inputs;
    // The label bias comes after the cursor's sum (a model without one: the cursor's logit as it is).
    let biased = |j: usize, logit: f32| bias.map_or(logit, |b| logit + b[j]);
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
                    if plan.lab_held(j + i, drawn) {
                        continue;
                    }
                    let u: f64 = rng.random();
                    if is_set(u, biased(j + i, *logit) + plan.code_logit_offset) {
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
                let allowed =
                    |k: usize| fixed_at(k) != Some(false) && dates.is_none_or(|d| d.allows(plan.cands[k], drawn));
                let factor = |k: usize| {
                    plan.category_factor.get(k).copied().unwrap_or(1.0) * dates.map_or(1.0, |d| d.factor(plan.cands[k]))
                };
                let probability = |k: usize| {
                    let logit = cursor.logit_given_unset(plan.cands[k], plan.cands[start])?;
                    Some(sigmoid(biased(plan.cands[k], logit)))
                };
                let Some(weights) = category_weights(plan, start..end, allowed, probability, factor) else {
                    return Progress::Need(plan.cands[start]..plan.cands[end - 1] + 1);
                };
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
            None if plan.lab_held(j, drawn) => {}
            None => {
                let Some(logit) = cursor.logit(j) else {
                    return Progress::Need(j..j + 1);
                };
                let u: f64 = rng.random();
                if is_set(u, biased(j, logit) + plan.offset(p)) {
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

/// The weights (candidate position, weight) of the values at `positions` of an exclusive category that
/// `allowed` lets through, under the plan's [`CategoryDraw`], from each value's `probability` (its sigmoid
/// given none of the category set) times its `factor`; `None` when a probability is not known yet.
fn category_weights(
    plan: &VisitPlan,
    positions: Range<usize>,
    allowed: impl Fn(usize) -> bool,
    mut probability: impl FnMut(usize) -> Option<f64>,
    factor: impl Fn(usize) -> f64,
) -> Option<Vec<(usize, f64)>> {
    let mut weights = Vec::with_capacity(positions.len());
    // Probability that a walk through the category has not set a value yet.
    let mut not_yet = 1.0f64;
    for k in positions.filter(|&k| allowed(k)) {
        let p = probability(k)?;
        match plan.category_draw {
            CategoryDraw::Conditionals => weights.push((k, factor(k) * p)),
            CategoryDraw::Walk if plan.last_takes_rest.get(k) == Some(&true) => weights.push((k, factor(k) * not_yet)),
            CategoryDraw::Walk => {
                weights.push((k, factor(k) * not_yet * p));
                not_yet *= 1.0 - p;
            }
        }
    }
    Some(weights)
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
mod tests;
