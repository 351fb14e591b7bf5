//! Fitting the manifest's sampling calibration (`halo_core::manifest::SamplingCalibration`): the logit
//! offset of the codes drawn on their own, under which sampled visits hold as many codes as the training
//! visits did, the weights of the gap buckets, visit sizes and visit types, under which their sampled
//! histograms are the training ones, and the weights of the demographic values of the label visit, under which
//! the sampled patients' sex, race, ... and birth decades are shared as the training patients' are (the demo
//! model drew 58% men against 50.6% in the data, and the procedures held by women only came out rare). `halo export` runs it before the verify digest, which is then sampled with it.
//!
//! Each round samples the same records at the same seed (so that neighbouring settings see the same random
//! numbers) and moves all three: the offset by a secant step on the log of the mean visit size (it grows with
//! the offset), bounded per round, and each bucket weight by the ratio of the bucket's training share to its
//! sampled share (iterative proportional fitting). The round closest to the targets is kept.
//!
//! A round's work is bounded: it stops sampling once it has drawn [`CODE_BUDGET`] codes (records are
//! independent, so the records sampled so far are a fair sample of the round), which keeps a model whose
//! visits hold hundreds of codes, or an offset that makes them, from running for hours.

use crate::error::{Error, Result};
use crate::model::Model;
use crate::{generate_with, Plan, RawRecord};
use halo_core::buckets::total_variation;
use halo_core::encoding::{Token, VisitGroup};
use halo_core::manifest::{SamplingCalibration, FIRST_VISIT_DATES_FORMAT};
use std::ops::Range;

/// The offset's and the bucket log-weights' range; a model needing more is not fixed by a calibration.
const LIMIT: f32 = 2.0;
/// The most the offset moves in one round: a larger step can make every visit draw many times more codes
/// than the model's visits hold, a round far longer than the others, on models with thousands of codes.
const MAX_OFFSET_STEP: f32 = 0.75;
/// Relative error of the mean codes per visit, and total variation of each histogram, at which the search
/// stops.
const TOLERANCE: f64 = 0.005;
/// A calibration that ends further than this from the training visits' mean size (relative), or than
/// `CONVERGED_TVD` from a training histogram, did not converge, and `halo export` says so.
pub const CONVERGED_SIZE: f64 = 0.02;
pub const CONVERGED_TVD: f64 = 0.05;
/// Rounds at most.
const MAX_ROUNDS: usize = 8;
/// Codes drawn (every code of every visit) after which a round stops sampling records: the demo's 4,000
/// records draw about 0.9 million; 90-code visits reach it after about 1,000 records of 16 visits.
pub const CODE_BUDGET: usize = 1_500_000;

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

/// An exclusive visit group whose histogram the calibration fits (gap buckets, visit sizes).
#[derive(Debug, Clone)]
struct GroupTarget {
    /// Vocabulary indices of its codes.
    range: Range<usize>,
    /// Training share of each bucket.
    shares: Vec<f64>,
    /// Whether the record's first kept visit counts (the gap does not: it has none).
    first_visit: bool,
}

impl GroupTarget {
    fn of(model: &Model, name: &str, shares: &[f64], first_visit: bool) -> Option<GroupTarget> {
        let group = model.manifest.encoding.visit_groups.iter().find(|g| g.name == name)?;
        (group.len == shares.len() && !shares.is_empty()).then(|| GroupTarget {
            range: group.range(),
            shares: shares.to_vec(),
            first_visit,
        })
    }
}

/// What one round measured.
#[derive(Debug, Clone)]
pub struct Round {
    pub code_logit_offset: f32,
    /// Per fitted group ([`GROUPS`]): the log-weights of its values.
    pub log_weights: [Vec<f32>; 3],
    pub codes_per_visit: f64,
    /// Per fitted group: total variation from the training histogram (`None` without one).
    pub tvd: [Option<f64>; 3],
    /// Records sampled: all that were asked for, or fewer when the round reached [`CODE_BUDGET`].
    pub records: usize,
    /// Per fitted group: the sampled share of each value.
    shares: [Vec<f64>; 3],
    /// Per demographic category: the log-weights of its values (empty: none fitted).
    pub demographic_log_weights: Vec<Vec<f32>>,
    /// The largest total variation of a demographic category from its training shares (`None` without them).
    pub demographic_tvd: Option<f64>,
    /// Per demographic category: the sampled share of each value.
    demographic_shares: Vec<Vec<f64>>,
    /// Per birth decade: the log-weights of the first visit's calendar buckets (empty: none fitted).
    pub first_calendar_log_weights: Vec<Vec<f32>>,
    /// Mean over the birth decades of the first visits' calendar total variation (`None` without targets).
    pub first_calendar_tvd: Option<f64>,
    /// Per birth decade: the sampled share of each calendar bucket among its records' first visits.
    first_calendar_shares: Vec<Vec<f64>>,
}

/// The exclusive visit groups whose histograms the calibration fits, in the order of [`Round`]'s arrays.
pub const GROUPS: [&str; 3] = [VisitGroup::GAP, VisitGroup::SIZE, VisitGroup::VISIT_TYPE];

impl Round {
    /// Distance from the targets: the largest of the relative visit-size error and the histograms' TVDs. The
    /// first visits' calendar per birth decade is left out: a few hundred records a decade measure it only to
    /// about 0.05, which would decide every round; its weights move each round all the same.
    pub fn distance(&self, target: f64) -> f64 {
        self.tvd
            .iter()
            .chain(std::iter::once(&self.demographic_tvd))
            .flatten()
            .fold((self.codes_per_visit / target - 1.0).abs(), |d, t| d.max(*t))
    }
}

/// What the calibration tells its caller while it runs.
#[derive(Debug)]
pub enum Event<'a> {
    /// A batch of round `round` (0 = the model as it is) was sampled: `records` records and `codes` codes so
    /// far in this round.
    Sampled { round: usize, records: usize, codes: usize },
    /// Round `round` is measured.
    Measured { round: usize, measured: &'a Round },
}

/// Bucket log-weights one proportional-fitting step further: each moves by the log of its bucket's training
/// share over its sampled share.
fn fitted_weights(weights: &[f32], target: &[f64], sampled: &[f64]) -> Vec<f32> {
    let mut weights = weights.to_vec();
    weights.resize(target.len(), 0.0);
    for ((w, t), s) in weights.iter_mut().zip(target).zip(sampled) {
        // A small floor so that an empty bucket moves by a bounded step.
        *w = round_param((*w + ((t + 1e-4) / (s + 1e-4)).ln() as f32).clamp(-LIMIT, LIMIT));
    }
    weights
}

/// [`fitted_weights`] for a histogram of which only some buckets have a training share (`None`: a bucket of
/// fewer than `min_patients` records, whose weight stays).
fn fitted_partial_weights(weights: &[f32], target: &[Option<f64>], sampled: &[f64]) -> Vec<f32> {
    let mut weights = weights.to_vec();
    weights.resize(target.len(), 0.0);
    for ((w, t), s) in weights.iter_mut().zip(target).zip(sampled) {
        if let Some(t) = t {
            *w = round_param((*w + ((t + 1e-4) / (s + 1e-4)).ln() as f32).clamp(-LIMIT, LIMIT));
        }
    }
    weights
}

/// Total variation between a histogram with training shares for some buckets only and a sampled one: the
/// buckets with a share, and the rest pooled as one.
fn partial_total_variation(target: &[Option<f64>], sampled: &[f64]) -> f64 {
    let (mut sum, mut target_rest, mut sampled_rest) = (0.0, 1.0, 1.0);
    for (t, s) in target.iter().zip(sampled) {
        if let Some(t) = t {
            sum += (t - s).abs();
            target_rest -= t;
            sampled_rest -= s;
        }
    }
    0.5 * (sum + (target_rest - sampled_rest).abs())
}

/// The first visits' calendar buckets per birth decade that the calibration fits (format 10 on).
#[derive(Debug, Clone)]
struct FirstCalendarTarget {
    /// Vocabulary indices of the birth decades and of the calendar buckets.
    decades: Range<usize>,
    calendar: Range<usize>,
    /// Per decade, the training share of each bucket (`TrainingSummary::first_calendar_shares`).
    shares: Vec<Vec<Option<f64>>>,
}

impl FirstCalendarTarget {
    fn of(model: &Model) -> Option<FirstCalendarTarget> {
        let enc = &model.manifest.encoding;
        let shares = &model.manifest.training.first_calendar_shares;
        let decades = enc
            .demographic_categories
            .iter()
            .find(|c| c.name == halo_core::encoding::DemographicCategory::BirthYear.as_str())?;
        let calendar = enc
            .visit_groups
            .iter()
            .find(|g| g.name == VisitGroup::CALENDAR)?
            .range();
        let fits = model.manifest.format_version >= FIRST_VISIT_DATES_FORMAT
            && shares.len() == decades.len
            && shares.iter().all(|row| row.len() == calendar.len())
            && shares.iter().flatten().any(Option::is_some);
        let first = enc.code_vocab_size + decades.first;
        fits.then(|| FirstCalendarTarget {
            decades: first..first + decades.len,
            calendar,
            shares: shares.clone(),
        })
    }

    /// Counts a sampled record's first visit in `counts` (per decade, per calendar bucket).
    fn count(&self, raw: &RawRecord, counts: &mut [Vec<usize>]) {
        let decade = raw.labels.iter().find(|&&j| self.decades.contains(&(j as usize)));
        let bucket = raw
            .visits
            .first()
            .and_then(|v| v.iter().find(|&&c| self.calendar.contains(&(c as usize))));
        if let (Some(&d), Some(&b)) = (decade, bucket) {
            counts[d as usize - self.decades.start][b as usize - self.calendar.start] += 1;
        }
    }

    /// The mean over the decades with a target of [`partial_total_variation`] from `counts` (per decade, per
    /// bucket), weighted by their sampled records; `None` when no such decade was sampled.
    fn mean_tvd(&self, counts: &[Vec<usize>]) -> Option<f64> {
        let (mut sum, mut weight) = (0.0, 0usize);
        for (target, counts) in self.shares.iter().zip(counts) {
            let n: usize = counts.iter().sum();
            if n > 0 && target.iter().any(Option::is_some) {
                sum += n as f64 * partial_total_variation(target, &shares_of(counts));
                weight += n;
            }
        }
        (weight > 0).then(|| round_figure(sum / weight as f64))
    }
}

/// Samples records `0..records` (fewer once [`CODE_BUDGET`] codes are drawn) at the calibration seed under
/// `setting`'s offset and weights and measures them. Visits are counted as decoding keeps them (a visit with
/// only group codes or the end code is left out), every code but the end code, as the training summary counts
/// its encoded visits; each kept visit adds its buckets to the histograms.
fn measure(
    model: &mut Model,
    round: usize,
    setting: &Round,
    targets: &Targets,
    records: usize,
    events: &mut dyn FnMut(Event),
) -> Result<Round> {
    let Targets {
        groups,
        demographics,
        first_calendar,
    } = targets;
    let enc = &model.manifest.encoding;
    let end = enc.end_index() as u32;
    let kept: Vec<bool> = enc
        .tokens
        .iter()
        .map(|t| matches!(t, Token::Code { .. } | Token::Lab { .. }))
        .collect();
    let trial = setting.sampling(model.manifest.training.mean_codes_per_visit, records);
    let (mut visits, mut codes, mut drawn, mut sampled) = (0usize, 0usize, 0usize, 0usize);
    let mut counts: Vec<Vec<usize>> = groups
        .iter()
        .map(|g| vec![0; g.as_ref().map_or(0, |g| g.range.len())])
        .collect();
    let mut demographic_counts: Vec<Vec<usize>> = demographics.iter().map(|d| vec![0; d.range.len()]).collect();
    let mut first_calendar_counts: Vec<Vec<usize>> = first_calendar
        .iter()
        .flat_map(|f| (0..f.decades.len()).map(|_| vec![0; f.calendar.len()]))
        .collect();
    // One batch at a time, so that the round can stop at the budget: each record has its own random stream,
    // so the records are the same as in one run over the whole range.
    let batch_size = records.clamp(1, 256);
    while sampled < records && drawn < CODE_BUDGET {
        let plan = Plan {
            seed: SamplingCalibration::SEED,
            records: sampled as u64..(sampled + batch_size).min(records) as u64,
            batch_size,
            conditions: None,
        };
        generate_with(model, &plan, Some(&trial), |batch| {
            for s in &batch {
                for (d, counts) in demographics.iter().zip(&mut demographic_counts) {
                    if let Some(&j) = s.raw.labels.iter().find(|&&j| d.range.contains(&(j as usize))) {
                        counts[j as usize - d.range.start] += 1;
                    }
                }
                if let Some(f) = first_calendar {
                    f.count(&s.raw, &mut first_calendar_counts);
                }
                let (v, c) = count_visits(&s.raw, &kept, end, groups, &mut counts);
                visits += v;
                codes += c;
                drawn += s.raw.visits.iter().map(Vec::len).sum::<usize>();
            }
            sampled += batch.len();
            Ok(())
        })?;
        events(Event::Sampled {
            round,
            records: sampled,
            codes: drawn,
        });
    }
    let histogram = |group: &Option<GroupTarget>, counts: &[usize]| -> (Vec<f64>, Option<f64>) {
        let total: usize = counts.iter().sum();
        let shares = shares_of(counts);
        let tvd = group
            .as_ref()
            .filter(|_| total > 0)
            .map(|g| round_figure(total_variation(&g.shares, &shares)));
        (shares, tvd)
    };
    let measured: Vec<(Vec<f64>, Option<f64>)> = groups.iter().zip(&counts).map(|(g, c)| histogram(g, c)).collect();
    let demographic_shares: Vec<Vec<f64>> = demographic_counts.iter().map(|c| shares_of(c)).collect();
    let demographic_tvd = demographics
        .iter()
        .zip(&demographic_shares)
        .map(|(d, sampled)| round_figure(total_variation(&d.shares, sampled)))
        .reduce(f64::max);
    let first_calendar_shares: Vec<Vec<f64>> = first_calendar_counts.iter().map(|c| shares_of(c)).collect();
    let first_calendar_tvd = first_calendar.as_ref().and_then(|f| f.mean_tvd(&first_calendar_counts));
    Ok(Round {
        code_logit_offset: setting.code_logit_offset,
        log_weights: setting.log_weights.clone(),
        codes_per_visit: round_figure(codes as f64 / visits.max(1) as f64),
        tvd: [measured[0].1, measured[1].1, measured[2].1],
        records: sampled,
        shares: [measured[0].0.clone(), measured[1].0.clone(), measured[2].0.clone()],
        demographic_log_weights: setting.demographic_log_weights.clone(),
        demographic_tvd,
        demographic_shares,
        first_calendar_log_weights: setting.first_calendar_log_weights.clone(),
        first_calendar_tvd,
        first_calendar_shares,
    })
}

/// Counts a sampled record's visits as decoding keeps them (a visit holding a code or lab value of `kept`)
/// and each group's bucket on them in `counts`; returns the visits and their codes (every code but `end`).
fn count_visits(
    raw: &RawRecord,
    kept: &[bool],
    end: u32,
    groups: &[Option<GroupTarget>; 3],
    counts: &mut [Vec<usize>],
) -> (usize, usize) {
    let (mut visits, mut codes) = (0, 0);
    for visit in raw.visits.iter().filter(|v| v.iter().any(|&c| kept[c as usize])) {
        let first = visits == 0;
        visits += 1;
        codes += visit.iter().filter(|&&c| c != end).count();
        for (group, counts) in groups.iter().zip(counts.iter_mut()) {
            let Some(g) = group.as_ref().filter(|g| g.first_visit || !first) else {
                continue;
            };
            if let Some(&c) = visit.iter().find(|&&c| g.range.contains(&(c as usize))) {
                counts[c as usize - g.range.start] += 1;
            }
        }
    }
    (visits, codes)
}

impl Round {
    /// The calibration this round's settings sample under (its measured figures left out).
    fn sampling(&self, target_codes_per_visit: f64, records: usize) -> SamplingCalibration {
        SamplingCalibration {
            code_logit_offset: self.code_logit_offset,
            gap_log_weights: self.log_weights[0].clone(),
            size_log_weights: self.log_weights[1].clone(),
            visit_type_log_weights: self.log_weights[2].clone(),
            demographic_log_weights: self.demographic_log_weights.clone(),
            first_calendar_log_weights: self.first_calendar_log_weights.clone(),
            target_codes_per_visit,
            records,
            ..Default::default()
        }
    }

    /// The next round's settings: code offset `offset`, and each group's and demographic category's weights
    /// fitted to the shares this round measured (`start`: the settings nothing was fitted to).
    fn next(&self, offset: f32, start: &Round, targets: &Targets) -> Round {
        let Targets {
            groups,
            demographics,
            first_calendar,
        } = targets;
        let mut next = Round {
            code_logit_offset: offset,
            ..start.clone()
        };
        for (k, group) in groups.iter().enumerate() {
            if let Some(g) = group {
                next.log_weights[k] = fitted_weights(&self.log_weights[k], &g.shares, &self.shares[k]);
            }
        }
        next.demographic_log_weights = demographics
            .iter()
            .enumerate()
            .map(|(k, d)| {
                let current = self.demographic_log_weights.get(k).map_or(&[][..], Vec::as_slice);
                fitted_weights(current, &d.shares, &self.demographic_shares[k])
            })
            .collect();
        if let Some(f) = first_calendar {
            next.first_calendar_log_weights = f
                .shares
                .iter()
                .enumerate()
                .map(|(d, target)| {
                    let current = self.first_calendar_log_weights.get(d).map_or(&[][..], Vec::as_slice);
                    fitted_partial_weights(current, target, &self.first_calendar_shares[d])
                })
                .collect();
        }
        next
    }
}

/// Each count's share of their total (all 0 when the total is).
fn shares_of(counts: &[usize]) -> Vec<f64> {
    let total: usize = counts.iter().sum();
    counts.iter().map(|&n| n as f64 / total.max(1) as f64).collect()
}

/// What the calibration fits: the visit groups' histograms ([`GROUPS`]), the demographic categories' shares
/// and the first visits' calendar buckets per birth decade.
struct Targets {
    groups: [Option<GroupTarget>; 3],
    demographics: Vec<DemographicTarget>,
    first_calendar: Option<FirstCalendarTarget>,
}

/// A demographic category of the label visit whose shares the calibration fits.
#[derive(Debug, Clone)]
struct DemographicTarget {
    /// Vocabulary indices of its values.
    range: Range<usize>,
    /// Training share of each value.
    shares: Vec<f64>,
}

impl DemographicTarget {
    /// One per demographic category of the encoding, where the training summary has its shares; none when any
    /// is missing (a summary written before them, or under differential privacy).
    fn all(model: &Model) -> Vec<DemographicTarget> {
        let enc = &model.manifest.encoding;
        let shares = &model.manifest.training.demographic_shares;
        if shares.len() != enc.demographic_categories.len() {
            return Vec::new();
        }
        enc.demographic_categories
            .iter()
            .zip(shares)
            .map(|(c, s)| {
                let first = enc.code_vocab_size + c.first;
                (s.len() == c.len && s.iter().sum::<f64>() > 0.0).then(|| DemographicTarget {
                    range: first..first + c.len,
                    shares: s.clone(),
                })
            })
            .collect::<Option<Vec<_>>>()
            .unwrap_or_default()
    }
}

/// Fits the calibration on up to `records` sampled records a round and returns it (the model's manifest
/// is left as it is); `events` hears each batch and each round.
pub fn calibrate(model: &mut Model, records: usize, events: &mut dyn FnMut(Event)) -> Result<SamplingCalibration> {
    let target = model.manifest.training.mean_codes_per_visit;
    if records == 0 || target.is_nan() || target <= 0.0 {
        return Err(Error::Invalid(format!(
            "calibration needs records to sample (got {records}) and the training visits' mean size in the \
             manifest (training.mean_codes_per_visit = {target})"
        )));
    }
    let training = model.manifest.training.clone();
    let targets = Targets {
        groups: [
            GroupTarget::of(model, GROUPS[0], &training.gap_bucket_shares, false),
            GroupTarget::of(model, GROUPS[1], &training.visit_size_shares, true),
            GroupTarget::of(model, GROUPS[2], &training.visit_type_shares, true),
        ],
        demographics: DemographicTarget::all(model),
        first_calendar: FirstCalendarTarget::of(model),
    };
    let start = Round {
        code_logit_offset: 0.0,
        log_weights: Default::default(),
        codes_per_visit: 0.0,
        tvd: [None; 3],
        records: 0,
        shares: Default::default(),
        demographic_log_weights: Vec::new(),
        demographic_tvd: None,
        demographic_shares: Vec::new(),
        first_calendar_log_weights: Vec::new(),
        first_calendar_tvd: None,
        first_calendar_shares: Vec::new(),
    };
    let mut round = measure(model, 0, &start, &targets, records, events)?;
    events(Event::Measured {
        round: 0,
        measured: &round,
    });
    let uncalibrated = round.clone();
    let mut best = round.clone();
    // The previous round's (offset, log error), for the secant.
    let mut previous: Option<(f32, f64)> = None;
    for r in 1..MAX_ROUNDS {
        if round.distance(target) < TOLERANCE || round.codes_per_visit == 0.0 {
            break;
        }
        let error = (round.codes_per_visit / target).ln();
        // A factor e^-error on rare codes' odds moves the mean by about that factor; later rounds take the
        // slope they measured, within bounds (the bucket weights move the mean too).
        let slope = match previous {
            Some((o0, e0)) if round.code_logit_offset != o0 => {
                ((error - e0) / f64::from(round.code_logit_offset - o0)).clamp(0.2, 5.0)
            }
            _ => 1.0,
        };
        let step = (-(error / slope) as f32).clamp(-MAX_OFFSET_STEP, MAX_OFFSET_STEP);
        let offset = round_param((round.code_logit_offset + step).clamp(-LIMIT, LIMIT));
        if offset == round.code_logit_offset && error.abs() > TOLERANCE && offset.abs() == LIMIT {
            // Pinned at the limit and still short (or over): more rounds cannot help.
            break;
        }
        let next = round.next(offset, &start, &targets);
        previous = Some((round.code_logit_offset, error));
        round = measure(model, r, &next, &targets, records, events)?;
        events(Event::Measured {
            round: r,
            measured: &round,
        });
        if round.distance(target) < best.distance(target) {
            best = round.clone();
        }
    }
    let calibration = SamplingCalibration {
        uncalibrated_demographic_tvd: uncalibrated.demographic_tvd,
        calibrated_demographic_tvd: best.demographic_tvd,
        uncalibrated_first_calendar_tvd: uncalibrated.first_calendar_tvd,
        calibrated_first_calendar_tvd: best.first_calendar_tvd,
        uncalibrated_gap_tvd: uncalibrated.tvd[0],
        calibrated_gap_tvd: best.tvd[0],
        uncalibrated_size_tvd: uncalibrated.tvd[1],
        calibrated_size_tvd: best.tvd[1],
        uncalibrated_visit_type_tvd: uncalibrated.tvd[2],
        calibrated_visit_type_tvd: best.tvd[2],
        uncalibrated_codes_per_visit: uncalibrated.codes_per_visit,
        calibrated_codes_per_visit: best.codes_per_visit,
        ..best.sampling(target, records)
    };
    Ok(calibration)
}
