//! Fitting the manifest's sampling calibration (`halo_core::manifest::SamplingCalibration`): the one logit
//! offset, added to every code drawn on its own, under which sampled visits hold as many codes as the
//! training visits did. `halo export` runs it before the verify digest, which is then sampled with it.
//!
//! Mean codes per visit grows with the offset, so the search is a secant on the log of that mean, every
//! evaluation sampling the same records at the same seed (so neighbouring offsets see the same random
//! numbers and the mean moves smoothly).

use crate::error::{Error, Result};
use crate::model::Model;
use crate::{generate, Plan};
use halo_core::encoding::Token;
use halo_core::manifest::SamplingCalibration;

/// The offset's search range; a model needing more is not fixed by an offset.
const OFFSET_LIMIT: f32 = 2.0;
/// Relative error of the mean codes per visit at which the search stops.
const TOLERANCE: f64 = 0.005;
/// Evaluations of the offset at most (each samples `records` records).
const MAX_ROUNDS: usize = 6;

/// Mean codes per visit of records `0..records` at the calibration seed, sampled with `offset`.
fn codes_per_visit(model: &mut Model, offset: f32, records: usize) -> Result<f64> {
    let target = model.manifest.training.mean_codes_per_visit;
    model.manifest.calibration = Some(SamplingCalibration {
        code_logit_offset: offset,
        target_codes_per_visit: target,
        uncalibrated_codes_per_visit: 0.0,
        calibrated_codes_per_visit: 0.0,
        records,
    });
    let enc = &model.manifest.encoding;
    let end = enc.end_index() as u32;
    // Visits as decoding keeps them (a visit with only time codes or the end code is left out), every
    // code but the end code counted, as the training summary counts its encoded visits.
    let kept: Vec<bool> = enc
        .tokens
        .iter()
        .map(|t| matches!(t, Token::Code { .. } | Token::Lab { .. }))
        .collect();
    let (mut visits, mut codes) = (0usize, 0usize);
    let plan = Plan {
        seed: SamplingCalibration::SEED,
        records: 0..records as u64,
        batch_size: records.clamp(1, 256),
        conditions: None,
    };
    generate(model, &plan, |batch| {
        for visit in batch.iter().flat_map(|s| &s.raw.visits) {
            if visit.iter().any(|&c| kept[c as usize]) {
                visits += 1;
                codes += visit.iter().filter(|&&c| c != end).count();
            }
        }
        Ok(())
    })?;
    Ok(codes as f64 / visits.max(1) as f64)
}

/// Fits the offset on `records` sampled records and leaves it in `model.manifest.calibration`; `progress`
/// hears each evaluation (offset, mean codes per visit).
pub fn calibrate(model: &mut Model, records: usize, progress: &mut dyn FnMut(f32, f64)) -> Result<SamplingCalibration> {
    let target = model.manifest.training.mean_codes_per_visit;
    if records == 0 || target.is_nan() || target <= 0.0 {
        return Err(Error::Invalid(format!(
            "calibration needs records to sample (got {records}) and the training visits' mean size in the \
             manifest (training.mean_codes_per_visit = {target})"
        )));
    }
    let mut evaluate = |model: &mut Model, offset: f32| -> Result<(f32, f64, f64)> {
        let mean = codes_per_visit(model, offset, records)?;
        progress(offset, mean);
        // The log error: an offset moves rare codes' probabilities by a factor, so log mean is closer to linear.
        Ok((offset, mean, (mean / target).ln()))
    };
    let first = evaluate(model, 0.0)?;
    let mut best = first;
    let (mut previous, mut current) = (None, first);
    for _ in 1..MAX_ROUNDS {
        if current.2.abs() < TOLERANCE || current.1 == 0.0 {
            break;
        }
        let next = match previous {
            // Without a slope yet: a factor e^-err on rare codes' odds moves the mean by about that factor.
            None => current.0 - current.2 as f32,
            Some((o0, _, e0)) if current.2 != e0 => {
                let (o1, e1) = (current.0, current.2);
                o1 - (e1 * f64::from(o1 - o0) / (e1 - e0)) as f32
            }
            Some(_) => break,
        }
        .clamp(-OFFSET_LIMIT, OFFSET_LIMIT);
        if next == current.0 {
            break;
        }
        previous = Some(current);
        current = evaluate(model, next)?;
        if current.2.abs() < best.2.abs() {
            best = current;
        }
    }
    let calibration = SamplingCalibration {
        code_logit_offset: best.0,
        target_codes_per_visit: target,
        uncalibrated_codes_per_visit: first.1,
        calibrated_codes_per_visit: best.1,
        records,
    };
    model.manifest.calibration = Some(calibration.clone());
    Ok(calibration)
}
