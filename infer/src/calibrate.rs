//! Fitting the manifest's sampling calibration (`halo_core::manifest::SamplingCalibration`): the logit
//! offset of the codes drawn on their own, under which sampled visits hold as many codes as the training
//! visits did, and the gap buckets' weights, under which the sampled gap histogram is the training one.
//! `halo export` runs it before the verify digest, which is then sampled with it.
//!
//! Each round samples the same records at the same seed (so that neighbouring settings see the same random
//! numbers) and moves both: the offset by a secant step on the log of the mean visit size (it grows with the
//! offset), each gap weight by the ratio of the bucket's training share to its sampled share (iterative
//! proportional fitting). The round closest to both targets is kept.

use crate::error::{Error, Result};
use crate::model::Model;
use crate::{generate, Plan};
use halo_core::buckets::total_variation;
use halo_core::encoding::{Token, VisitGroup};
use halo_core::manifest::SamplingCalibration;

/// The offset's and the gap log-weights' range; a model needing more is not fixed by a calibration.
const LIMIT: f32 = 2.0;
/// Relative error of the mean codes per visit, and total variation of the gap histogram, at which the
/// search stops.
const TOLERANCE: f64 = 0.005;
/// Rounds at most (each samples `records` records).
const MAX_ROUNDS: usize = 8;

/// A fitted value as the manifest keeps it: 3 decimals. Another CPU may round a logit differently and so
/// flip a rare draw of the calibration sample; that moves the fit far less than this, so the same
/// checkpoint gives the same manifest (and the fixture regenerates byte for byte).
fn round_param(x: f32) -> f32 {
    (x * 1000.0).round() / 1000.0
}

/// A measured figure as the manifest reports it: 4 decimals.
fn round_figure(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// What one round measured.
#[derive(Debug, Clone)]
pub struct Round {
    pub code_logit_offset: f32,
    pub gap_log_weights: Vec<f32>,
    pub codes_per_visit: f64,
    /// Total variation from the training gap histogram (`None` without one).
    pub gap_tvd: Option<f64>,
    /// Sampled share of each gap bucket.
    gap_shares: Vec<f64>,
}

impl Round {
    /// Distance from the targets: the larger of the relative visit-size error and the gap TVD.
    fn distance(&self, target: f64) -> f64 {
        (self.codes_per_visit / target - 1.0)
            .abs()
            .max(self.gap_tvd.unwrap_or(0.0))
    }
}

/// Samples records `0..records` at the calibration seed with `offset` and `gap_log_weights` and measures
/// them. Visits are counted as decoding keeps them (a visit with only time codes or the end code is left
/// out), every code but the end code, as the training summary counts its encoded visits; a kept visit after
/// the record's first kept one adds its gap bucket to the histogram.
fn measure(model: &mut Model, offset: f32, gap_log_weights: &[f32], records: usize) -> Result<Round> {
    let enc = &model.manifest.encoding;
    let end = enc.end_index() as u32;
    let kept: Vec<bool> = enc
        .tokens
        .iter()
        .map(|t| matches!(t, Token::Code { .. } | Token::Lab { .. }))
        .collect();
    let gap = enc
        .visit_groups
        .iter()
        .find(|g| g.name == VisitGroup::GAP)
        .map(|g| g.range());
    let target_shares = model.manifest.training.gap_bucket_shares.clone();
    model.manifest.calibration = Some(SamplingCalibration {
        code_logit_offset: offset,
        gap_log_weights: gap_log_weights.to_vec(),
        uncalibrated_gap_tvd: None,
        calibrated_gap_tvd: None,
        target_codes_per_visit: model.manifest.training.mean_codes_per_visit,
        uncalibrated_codes_per_visit: 0.0,
        calibrated_codes_per_visit: 0.0,
        records,
    });
    let (mut visits, mut codes) = (0usize, 0usize);
    let mut gaps = vec![0usize; gap.as_ref().map_or(0, |g| g.len())];
    let plan = Plan {
        seed: SamplingCalibration::SEED,
        records: 0..records as u64,
        batch_size: records.clamp(1, 256),
        conditions: None,
    };
    generate(model, &plan, |batch| {
        for s in &batch {
            let mut first = true;
            for visit in s.raw.visits.iter().filter(|v| v.iter().any(|&c| kept[c as usize])) {
                visits += 1;
                codes += visit.iter().filter(|&&c| c != end).count();
                if let (false, Some(g)) = (first, &gap) {
                    if let Some(&c) = visit.iter().find(|&&c| g.contains(&(c as usize))) {
                        gaps[c as usize - g.start] += 1;
                    }
                }
                first = false;
            }
        }
        Ok(())
    })?;
    let total: usize = gaps.iter().sum();
    let gap_shares: Vec<f64> = gaps.iter().map(|&g| g as f64 / total.max(1) as f64).collect();
    let gap_tvd =
        (target_shares.len() == gap_shares.len() && total > 0).then(|| total_variation(&target_shares, &gap_shares));
    Ok(Round {
        code_logit_offset: offset,
        gap_log_weights: gap_log_weights.to_vec(),
        codes_per_visit: round_figure(codes as f64 / visits.max(1) as f64),
        gap_tvd: gap_tvd.map(round_figure),
        gap_shares,
    })
}

/// Fits the calibration on `records` sampled records a round and leaves it in `model.manifest.calibration`;
/// `progress` hears each round.
pub fn calibrate(model: &mut Model, records: usize, progress: &mut dyn FnMut(&Round)) -> Result<SamplingCalibration> {
    let target = model.manifest.training.mean_codes_per_visit;
    if records == 0 || target.is_nan() || target <= 0.0 {
        return Err(Error::Invalid(format!(
            "calibration needs records to sample (got {records}) and the training visits' mean size in the \
             manifest (training.mean_codes_per_visit = {target})"
        )));
    }
    let target_shares = model.manifest.training.gap_bucket_shares.clone();
    let mut round = measure(model, 0.0, &[], records)?;
    progress(&round);
    let uncalibrated = round.clone();
    let mut best = round.clone();
    // The previous round's (offset, log error), for the secant.
    let mut previous: Option<(f32, f64)> = None;
    for _ in 1..MAX_ROUNDS {
        if round.distance(target) < TOLERANCE || round.codes_per_visit == 0.0 {
            break;
        }
        let error = (round.codes_per_visit / target).ln();
        // A factor e^-error on rare codes' odds moves the mean by about that factor; later rounds take the
        // slope they measured, within bounds (the gap weights move the mean too).
        let slope = match previous {
            Some((o0, e0)) if round.code_logit_offset != o0 => {
                ((error - e0) / f64::from(round.code_logit_offset - o0)).clamp(0.2, 5.0)
            }
            _ => 1.0,
        };
        let offset = round_param((round.code_logit_offset - (error / slope) as f32).clamp(-LIMIT, LIMIT));
        let mut weights = round.gap_log_weights.clone();
        if round.gap_tvd.is_some() {
            weights.resize(target_shares.len(), 0.0);
            for ((w, t), s) in weights.iter_mut().zip(&target_shares).zip(&round.gap_shares) {
                // A small floor so that an empty bucket moves by a bounded step.
                *w = round_param((*w + ((t + 1e-4) / (s + 1e-4)).ln() as f32).clamp(-LIMIT, LIMIT));
            }
        }
        previous = Some((round.code_logit_offset, error));
        round = measure(model, offset, &weights, records)?;
        progress(&round);
        if round.distance(target) < best.distance(target) {
            best = round.clone();
        }
    }
    let calibration = SamplingCalibration {
        code_logit_offset: best.code_logit_offset,
        gap_log_weights: best.gap_log_weights.clone(),
        uncalibrated_gap_tvd: uncalibrated.gap_tvd,
        calibrated_gap_tvd: best.gap_tvd,
        target_codes_per_visit: target,
        uncalibrated_codes_per_visit: uncalibrated.codes_per_visit,
        calibrated_codes_per_visit: best.codes_per_visit,
        records,
    };
    model.manifest.calibration = Some(calibration.clone());
    Ok(calibration)
}
