//! Exact ancestral sampling of HALO's factorisation, batched.
//!
//! A record is the sequence `[start visit, label visit, visit_1, ...]`. The visit transformer (one step
//! per visit, with a key/value cache) turns the visits so far into a history vector; the code head gives,
//! from the history and the codes of the current visit set so far, the logit of every code, where the
//! logit of code `j` depends only on codes `< j`. Codes of a visit are therefore drawn in vocabulary
//! order: from the current logits, walk `j = pos..` drawing `u_j ~ U(0,1)` from the record's own
//! random stream until the first `j` with `u_j < sigmoid(logit_j)`; set code `j`, continue at `j + 1`
//! with fresh logits (`walk.rs`). A record whose walk reaches the end of the visit's allowed codes
//! has finished the visit. How the logits are computed, densely or incrementally, is
//! `code_module.rs`'s business.
//!
//! Every random number a record uses comes from its own ChaCha20 stream, keyed by the seed and the
//! record's global index, so a record does not depend on the batch size, the thread count or how the
//! records are split into shards (on the CPU; see the crate documentation about CUDA).

use crate::code_module;
use crate::conditions::{Conditions, Forced};
use crate::decode::{Calendar, FirstVisitDates};
use crate::error::{Error, Result};
use crate::model::{KvCache, Model, Seen, SeenCodes};
use crate::walk::{VisitPlan, WalkInputs};
use halo_core::encoding::{Encoding, VisitGroup};
use halo_core::manifest::{Manifest, SamplingCalibration, FIRST_VISIT_DATES_FORMAT};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// The random stream of record `index` under `seed`.
pub fn record_rng(seed: u64, index: u64) -> ChaCha20Rng {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    rng.set_stream(index);
    rng
}

/// A sampled record as vocabulary indices, before decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// Global record index.
    pub index: u64,
    /// Label visit: the label codes (vocabulary indices) set, ascending.
    pub labels: Vec<u32>,
    /// Real visits: the codes set (vocabulary indices, ascending); the last visit of a record that
    /// ended by itself carries the end code.
    pub visits: Vec<Vec<u32>>,
    /// The stream its dates are drawn from, at its start, for an encoding with the calendar group (the sampler
    /// dates each visit as it is sampled, with `decode::Calendar`); `None`: the dates come from the
    /// record's own stream after its visits, as before the group.
    pub dates: Option<ChaCha20Rng>,
}

/// Counters of one or more batches, for benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SampleStats {
    pub batches: usize,
    pub records: usize,
    /// Code-module runs that give logits: dense passes, or incremental blocks.
    pub head_passes: usize,
    /// Visit-transformer step runs.
    pub steps: usize,
    /// Multiply-adds spent in the code module (graphs and column updates), summed over rows.
    pub code_module_macs: u64,
    /// Records sampled again because their codes did not give a derived label its fixed value.
    pub rejected: usize,
    /// With `CodeModule::Compared`: the largest |incremental - dense| logit difference seen.
    pub max_dense_difference: f64,
}

impl SampleStats {
    /// Adds another run's counts (the largest dense difference of the two).
    pub fn absorb(&mut self, other: &SampleStats) {
        self.batches += other.batches;
        self.records += other.records;
        self.head_passes += other.head_passes;
        self.steps += other.steps;
        self.code_module_macs += other.code_module_macs;
        self.rejected += other.rejected;
        self.max_dense_difference = self.max_dense_difference.max(other.max_dense_difference);
    }
}

/// One record while its batch runs.
pub(crate) struct Row {
    index: u64,
    /// 0, or how many times the record was sampled again (see [`sample_batch`]).
    attempt: u32,
    pub rng: ChaCha20Rng,
    /// The label visit's forced values (conditions), by label-local index.
    pub forced: Option<Forced>,
    /// The next visit's forced values, by candidate position: its calendar code.
    visit_forced: Option<Forced>,
    /// With the calendar group: the date stream at its start (for decoding), and the calendar dating the
    /// visits sampled so far with the stream where it now is.
    dates: Option<ChaCha20Rng>,
    calendar: Option<(Calendar, ChaCha20Rng)>,
    labels: Vec<u32>,
    /// What the record's labels add to the logits of its visits (models with a label bias).
    label_bias: Option<Vec<f32>>,
    /// The calendar and age buckets its first visit may hold (format 10 on).
    first_dates: Option<FirstVisitDates>,
    visits: Vec<Vec<u32>>,
}

/// Where a record's date stream starts in its own stream: far beyond any draw of its sampling, so the two never
/// meet (a record draws a few thousand numbers).
const DATE_STREAM_WORD: u128 = 1 << 64;

impl Row {
    /// A record about to be sampled (attempt `attempt`, see [`sample_batch`]) from stream `rng`; `dated`: the
    /// encoding has the calendar group, so its visits are dated as they are sampled.
    fn new(index: u64, attempt: u32, rng: ChaCha20Rng, forced: Option<Forced>, dated: bool) -> Row {
        let dates = dated.then(|| {
            let mut d = rng.clone();
            d.set_word_pos(DATE_STREAM_WORD);
            d
        });
        Row {
            index,
            attempt,
            rng,
            forced,
            visit_forced: None,
            dates,
            calendar: None,
            labels: Vec::new(),
            label_bias: None,
            first_dates: None,
            visits: Vec::new(),
        }
    }

    /// What the walk of `plan` reads from the row: the forced values (the conditions on the label visit, the
    /// calendar code on the other visits), the label bias (not on the label visit) and the random stream.
    pub fn walk_inputs(&mut self, plan: &VisitPlan) -> WalkInputs<'_> {
        let (forced, bias) = match plan.forced {
            true => (self.forced.as_ref(), None),
            false => (self.visit_forced.as_ref(), self.label_bias.as_deref()),
        };
        let first_visit = !plan.forced && self.visits.is_empty();
        WalkInputs {
            forced,
            bias,
            dates: self.first_dates.as_ref().filter(|_| first_visit),
            rng: &mut self.rng,
        }
    }

    /// Dates the visit just sampled (the first: draws the birth too) and forces the next visit's calendar
    /// code, at candidate positions `calendar` of the later visits' plan, to the bucket of its year.
    fn date_last_visit(&mut self, enc: &Encoding, calendar: &std::ops::Range<usize>) {
        let (Some(start), Some(codes)) = (&self.dates, self.visits.last()) else {
            return;
        };
        let (cal, stream) = self.calendar.get_or_insert_with(|| {
            let mut stream = start.clone();
            (Calendar::born(enc, &self.labels, &mut stream), stream)
        });
        let Some((_, time)) = cal.visit(enc, codes, stream) else {
            return;
        };
        let bucket = enc.calendar_bucket(halo_core::time::calendar_year(time));
        let forced = self.visit_forced.get_or_insert_with(Vec::new);
        forced.clear();
        forced.resize(calendar.end, None);
        for (k, slot) in forced.iter_mut().enumerate().skip(calendar.start) {
            *slot = Some(k - calendar.start == bucket);
        }
    }
}

/// Free heap bytes above which a finished batch returns them to the system (see
/// [`crate::heap::release_freed_above`]).
const HEAP_TRIM_THRESHOLD: usize = 64 << 20;

/// Samples a record may take to meet its conditions on derived labels before sampling gives up.
pub const MAX_ATTEMPTS: u32 = 1000;

/// The random stream of attempt `attempt` of record `index` under `seed`: attempt 0 is [`record_rng`];
/// a retry (a record whose codes did not give a derived label the value its conditions fix) has a key of
/// its own, so that retries never replay another seed's records.
pub fn attempt_rng(seed: u64, index: u64, attempt: u32) -> ChaCha20Rng {
    if attempt == 0 {
        return record_rng(seed, index);
    }
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..12].copy_from_slice(&attempt.to_le_bytes());
    key[16..].copy_from_slice(b"halo-sample-retr");
    let mut rng = ChaCha20Rng::from_seed(key);
    rng.set_stream(index);
    rng
}

/// What a batch is sampled under besides the model: the seed, the conditions and the sampling calibration.
#[derive(Debug, Clone, Copy)]
pub struct Sampling<'a> {
    pub seed: u64,
    pub conditions: Option<&'a Conditions>,
    /// The calibration to sample under (a model directory's own is `manifest.calibration`); `None`: none.
    pub calibration: Option<&'a SamplingCalibration>,
}

/// Samples records `indices` (global indices) as one batch. Returns each record with its random
/// stream positioned after sampling (decoding draws from it next), in index order.
///
/// Labels derived from codes ([`Encoding::derived_labels`]) are set from each record's sampled codes.
/// Where the conditions fix such a label, a record whose codes give it the other value is sampled again
/// (rejection sampling: the accepted records follow the model's distribution given the condition), with
/// the same forced labels and the stream of its next attempt; [`SampleStats::rejected`] counts them.
///
/// The records run in tiles of at most [`Model::tile_rows`] rows, one after the other; a record does not
/// depend on which.
pub fn sample_batch(
    model: &mut Model,
    sampling: &Sampling,
    indices: std::ops::Range<u64>,
    stats: &mut SampleStats,
) -> Result<Vec<(RawRecord, ChaCha20Rng)>> {
    let mut out = Vec::with_capacity(indices.end.saturating_sub(indices.start) as usize);
    let tile = model.tile_rows().max(1) as u64;
    let mut start = indices.start;
    while start < indices.end {
        let end = indices.end.min(start.saturating_add(tile));
        out.extend(sample_tile(model, sampling, start..end, stats)?);
        start = end;
    }
    if !out.is_empty() {
        stats.batches += 1;
    }
    // The batch's buffers (of many sizes, as rows finish) are free now: when they add up to much, give
    // them back to the system instead of letting them fragment the heap over a long run.
    crate::heap::release_freed_above(HEAP_TRIM_THRESHOLD);
    Ok(out)
}

/// [`sample_batch`] for one tile of records.
fn sample_tile(
    model: &mut Model,
    sampling: &Sampling,
    indices: std::ops::Range<u64>,
    stats: &mut SampleStats,
) -> Result<Vec<(RawRecord, ChaCha20Rng)>> {
    let (seed, conditions) = (sampling.seed, sampling.conditions);
    let plans = VisitPlans::new(&model.manifest, sampling.calibration);
    let dated = plans.calendar.is_some();
    let mut rows: Vec<Row> = indices
        .map(|index| {
            let mut rng = record_rng(seed, index);
            let forced = conditions.map(|c| c.for_record(index, &mut rng));
            Row::new(index, 0, rng, forced, dated)
        })
        .collect();
    let mut out: Vec<(RawRecord, ChaCha20Rng)> = Vec::with_capacity(rows.len());
    if rows.is_empty() {
        return Ok(out);
    }
    stats.records += rows.len();
    while !rows.is_empty() {
        let finished = sample_rows(model, &plans, std::mem::take(&mut rows), stats)?;
        let enc = &model.manifest.encoding;
        for mut row in finished {
            row.labels = enc.with_derived_labels(&row.labels, &row.visits);
            if let Some(label) = unmet_derived_label(enc, &row) {
                stats.rejected += 1;
                if row.attempt + 1 >= MAX_ATTEMPTS {
                    return Err(Error::Condition {
                        source_name: conditions.map_or_else(String::new, |c| c.source.clone()),
                        message: format!(
                            "record {}: none of {MAX_ATTEMPTS} samples had codes that give `{}` the value the \
                             condition fixes (the label is derived from codes, and this model rarely samples them \
                             together with the other conditions)",
                            row.index,
                            enc.tokens[enc.code_vocab_size + label]
                        ),
                    });
                }
                let attempt = row.attempt + 1;
                rows.push(Row::new(
                    row.index,
                    attempt,
                    attempt_rng(seed, row.index, attempt),
                    row.forced,
                    dated,
                ));
                continue;
            }
            out.push((
                RawRecord {
                    index: row.index,
                    labels: row.labels,
                    visits: row.visits,
                    dates: row.dates,
                },
                row.rng,
            ));
        }
    }
    out.sort_by_key(|(r, _)| r.index);
    Ok(out)
}

/// A derived label (label-local index) that the row's conditions fix to the value its codes do not give.
fn unmet_derived_label(enc: &Encoding, row: &Row) -> Option<usize> {
    let forced = row.forced.as_ref()?;
    enc.derived_labels
        .iter()
        .map(|d| d.label)
        .find(|&label| forced[label].is_some_and(|v| v != row.labels.contains(&((enc.code_vocab_size + label) as u32))))
}

/// The plans of a record's visits (which codes each may hold, how categories are drawn, the calibration).
struct VisitPlans {
    labels: VisitPlan,
    first: VisitPlan,
    later: VisitPlan,
    /// The calendar group's candidate positions in `later`, where the encoding has the group.
    calendar: Option<std::ops::Range<usize>>,
    /// The calibration, for the weights of the first visit's calendar buckets per birth decade.
    calibration: Option<SamplingCalibration>,
}

impl VisitPlans {
    fn new(manifest: &Manifest, calibration: Option<&SamplingCalibration>) -> VisitPlans {
        let enc = &manifest.encoding;
        // The first visit and the later ones differ only in which visit groups apply.
        let later = VisitPlan::codes(enc, 1, manifest.format_version, calibration);
        let calendar = enc
            .visit_groups
            .iter()
            .find(|g| g.name == VisitGroup::CALENDAR)
            .map(|g| {
                let start = later.cands.partition_point(|&j| j < g.first);
                start..start + g.len
            });
        VisitPlans {
            labels: VisitPlan::labels(enc, calibration),
            first: VisitPlan::codes(enc, 0, manifest.format_version, calibration),
            later,
            calendar,
            calibration: calibration.cloned(),
        }
    }

    /// Visit `t` (1 = the first real visit).
    fn visit(&self, t: usize) -> &VisitPlan {
        if t == 1 {
            &self.first
        } else {
            &self.later
        }
    }
}

/// Runs rows from their start visit to their end, as one batch whose rows leave as they finish. Returns
/// the rows with their label visit and visits filled in, in the order they finished.
fn sample_rows(model: &mut Model, plans: &VisitPlans, rows: Vec<Row>, stats: &mut SampleStats) -> Result<Vec<Row>> {
    let enc = &model.manifest.encoding;
    let end = enc.end_index() as u32;
    // Visits a window holds, and the record's limit: with windows (EncodingOptions::window_stride) a record
    // that fills its window goes on from its last `max_visits - stride` visits, up to the encoding's limit.
    let max_visits = model.config().n_ctx - 2;
    let stride = enc.options.window_stride.min(max_visits);
    let limit = if stride == 0 {
        max_visits
    } else {
        enc.sampled_visit_limit()
    };

    let mut batch = Batch::start(model, rows, stats)?;
    let labels = batch_visit(&mut batch, model, &plans.labels, stats)?;
    for (row, labels) in batch.rows.iter_mut().zip(labels) {
        row.label_bias = model.record_label_bias(&labels);
        if model.manifest.format_version >= FIRST_VISIT_DATES_FORMAT {
            row.first_dates = FirstVisitDates::of(&model.manifest.encoding, &labels, plans.calibration.as_ref());
        }
        row.labels = labels;
    }
    batch.step(model, StepVisit::Labels, stats)?;
    let mut finished = Vec::new();
    for t in 1..=limit {
        let codes = batch_visit(&mut batch, model, plans.visit(t), stats)?;
        finished.extend(batch.add_visits(codes, |codes| codes.last() == Some(&end) || t == limit)?);
        if batch.rows.is_empty() {
            break;
        }
        if let Some(calendar) = &plans.calendar {
            let enc = &model.manifest.encoding;
            for row in &mut batch.rows {
                row.date_last_visit(enc, calendar);
            }
        }
        if batch.past_len - 1 == max_visits {
            // The window is full: continue from the record's last visits.
            batch.rewindow(model, max_visits - stride, stats)?;
        } else {
            batch.step(model, StepVisit::FromLast(0), stats)?;
        }
    }
    Ok(finished)
}

/// Samples one visit for every row of `batch` with the model's code module; returns each row's codes,
/// ascending.
fn batch_visit(
    batch: &mut Batch,
    model: &mut Model,
    plan: &VisitPlan,
    stats: &mut SampleStats,
) -> Result<Vec<Vec<u32>>> {
    let mut drawn = vec![Vec::new(); batch.rows.len()];
    let (rows, history) = (&mut batch.rows[..], &batch.history[..]);
    if model.native().is_some() {
        code_module::sample_visit_native(model, plan, rows, history, &mut drawn, stats)?;
    } else {
        // The graphs of format 4 and before read the visit so far multi-hot.
        let mut visits = vec![0f32; rows.len() * model.config().total_vocab_size];
        match model.is_incremental() {
            true => code_module::sample_visit_incremental(model, plan, rows, history, &mut visits, &mut drawn, stats)?,
            false => code_module::sample_visit_dense(model, plan, rows, history, &mut visits, &mut drawn, stats)?,
        }
    }
    drawn.iter_mut().for_each(|codes| codes.sort_unstable());
    Ok(drawn)
}

/// Which visit of each row a step feeds the visit transformer.
#[derive(Debug, Clone, Copy)]
enum StepVisit {
    /// The start visit (the start code alone).
    Start,
    /// The label visit.
    Labels,
    /// The visit `back` visits before the row's last (0: the last).
    FromLast(usize),
}

/// The rows of a batch between visits: each record so far, the codes each has seen, the visit transformer's
/// key/value cache and its last history.
struct Batch {
    rows: Vec<Row>,
    /// The codes of each row's visits so far.
    seen: SeenCodes,
    /// [n, E]: a format 8 model's seen-code embedding, the rows of each row's codes as they first appeared
    /// (empty otherwise).
    seen_embedded: Vec<f32>,
    /// [n, E]: the history after the last step.
    history: Vec<f32>,
    past: KvCache,
    past_len: usize,
    /// The cache's values per row and position (heads x head size).
    cache_position: usize,
}

impl Batch {
    /// Runs the start visit (position 0, empty cache) for `rows`.
    fn start(model: &mut Model, rows: Vec<Row>, stats: &mut SampleStats) -> Result<Batch> {
        let (n, v) = (rows.len(), model.config().total_vocab_size);
        let mut batch = Batch {
            rows,
            seen: SeenCodes::new(n, v),
            seen_embedded: Vec::new(),
            history: Vec::new(),
            past: model.empty_cache(),
            past_len: 0,
            cache_position: model.config().n_head * model.config().head_dim(),
        };
        batch.step(model, StepVisit::Start, stats)?;
        Ok(batch)
    }

    /// Feeds each row's `visit` (its codes, ascending) to the visit transformer: the cache grows by one
    /// position and `history` follows.
    fn step(&mut self, model: &mut Model, visit: StepVisit, stats: &mut SampleStats) -> Result<()> {
        let start = [model.manifest.encoding.start_index() as u32];
        let visits: Vec<&[u32]> = self
            .rows
            .iter()
            .map(|row| match visit {
                StepVisit::Start => &start[..],
                StepVisit::Labels => &row.labels,
                StepVisit::FromLast(back) => &row.visits[row.visits.len() - 1 - back],
            })
            .collect();
        // A format 8 model's seen-code embedding grows by the codes this visit shows first.
        let embedded = model.add_newly_seen(&visits, &self.seen, &mut self.seen_embedded);
        self.seen.add(&visits);
        let seen = match embedded {
            true => Seen::Embedded(&self.seen_embedded),
            false => Seen::Codes(&self.seen),
        };
        self.past = model.step(&visits, seen, &self.past, self.past_len, &mut self.history)?;
        self.past_len += 1;
        stats.steps += 1;
        Ok(())
    }

    /// Adds each row's sampled visit to its record; rows whose record is `finished` (given the visit's codes)
    /// leave the batch, with their slices of every buffer and of the cache, and are returned.
    fn add_visits(&mut self, codes: Vec<Vec<u32>>, finished: impl Fn(&[u32]) -> bool) -> Result<Vec<Row>> {
        let mut keep = Vec::with_capacity(codes.len());
        let mut done = Vec::new();
        let mut kept = Vec::with_capacity(codes.len());
        for (mut row, codes) in std::mem::take(&mut self.rows).into_iter().zip(codes) {
            let leaves = finished(&codes);
            row.visits.push(codes);
            keep.push(!leaves);
            if leaves {
                done.push(row);
            } else {
                kept.push(row);
            }
        }
        self.rows = kept;
        if !done.is_empty() && !self.rows.is_empty() {
            let e = self.history.len() / keep.len();
            keep_rows(&mut self.history, e, &keep);
            self.seen.keep_rows(&keep);
            if !self.seen_embedded.is_empty() {
                keep_rows(&mut self.seen_embedded, e, &keep);
            }
            self.past.keep_rows(&keep, self.cache_position * self.past_len)?;
        }
        Ok(done)
    }

    /// A new window: the start visit, each row's label visit and its last `keep` visits, run through the
    /// visit transformer from an empty cache, as a training window that begins there is.
    fn rewindow(&mut self, model: &mut Model, keep: usize, stats: &mut SampleStats) -> Result<()> {
        self.seen.clear();
        self.seen_embedded.iter_mut().for_each(|x| *x = 0.0);
        self.past = model.empty_cache();
        self.past_len = 0;
        self.step(model, StepVisit::Start, stats)?;
        self.step(model, StepVisit::Labels, stats)?;
        for back in (0..keep).rev() {
            self.step(model, StepVisit::FromLast(back), stats)?;
        }
        Ok(())
    }
}

/// Keeps rows (and their slices of a row-major buffer of `width` per row) where `keep` is true.
pub(crate) fn keep_rows<T: Copy>(buf: &mut Vec<T>, width: usize, keep: &[bool]) {
    let mut w = 0;
    for (r, &k) in keep.iter().enumerate() {
        if k {
            if w != r {
                buf.copy_within(r * width..(r + 1) * width, w * width);
            }
            w += 1;
        }
    }
    buf.truncate(w * width);
}
