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
use crate::error::{Error, Result};
use crate::model::{KvCache, Model};
use crate::walk::VisitPlan;
use halo_core::encoding::Encoding;
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

/// One record while its batch runs.
pub(crate) struct Row {
    index: u64,
    /// 0, or how many times the record was sampled again (see [`sample_batch`]).
    attempt: u32,
    pub rng: ChaCha20Rng,
    pub forced: Option<Forced>,
    labels: Vec<u32>,
    visits: Vec<Vec<u32>>,
}

impl Row {
    /// A record about to be sampled (attempt `attempt`, see [`sample_batch`]) from stream `rng`.
    fn new(index: u64, attempt: u32, rng: ChaCha20Rng, forced: Option<Forced>) -> Row {
        Row {
            index,
            attempt,
            rng,
            forced,
            labels: Vec::new(),
            visits: Vec::new(),
        }
    }
}

/// Samples one visit for every row, with the code module the model runs. `visits` [n, V] must be zero
/// on entry; it holds the sampled visits on return, and `drawn[r]` the set codes of row `r` in sampling
/// order.
fn sample_visit(
    model: &mut Model,
    plan: &VisitPlan,
    rows: &mut [Row],
    history: &[f32],
    visits: &mut [f32],
    drawn: &mut [Vec<u32>],
    stats: &mut SampleStats,
) -> Result<()> {
    if model.native().is_some() {
        code_module::sample_visit_native(model, plan, rows, history, visits, drawn, stats)
    } else if model.is_incremental() {
        code_module::sample_visit_incremental(model, plan, rows, history, visits, drawn, stats)
    } else {
        code_module::sample_visit_dense(model, plan, rows, history, visits, drawn, stats)
    }
}

/// Free heap bytes above which a finished batch returns them to the system (see
/// [`crate::heap::release_freed_above`]).
const HEAP_TRIM_THRESHOLD: usize = 64 << 20;

/// Keeps rows (and their slices of row-major buffers) where `keep` is true.
fn compact_rows(buf: &mut Vec<f32>, width: usize, keep: &[bool]) {
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

/// Keeps batch rows of a key/value cache [blocks, n, row] laid out block-major.
fn compact_cache(past: &[f32], blocks: usize, n: usize, row: usize, keep: &[bool]) -> Vec<f32> {
    let kept = keep.iter().filter(|k| **k).count();
    let mut out = Vec::with_capacity(blocks * kept * row);
    for b in 0..blocks {
        let base = b * n * row;
        for (r, &k) in keep.iter().enumerate() {
            if k {
                out.extend_from_slice(&past[base + r * row..base + (r + 1) * row]);
            }
        }
    }
    out
}

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

/// Samples records `indices` (global indices) as one batch. Returns each record with its random
/// stream positioned after sampling (decoding draws from it next), in index order.
///
/// Labels derived from codes ([`Encoding::derived_labels`]) are set from each record's sampled codes.
/// Where the conditions fix such a label, a record whose codes give it the other value is sampled again
/// (rejection sampling: the accepted records follow the model's distribution given the condition), with
/// the same forced labels and the stream of its next attempt; [`SampleStats::rejected`] counts them.
pub fn sample_batch(
    model: &mut Model,
    seed: u64,
    indices: std::ops::Range<u64>,
    conditions: Option<&Conditions>,
    stats: &mut SampleStats,
) -> Result<Vec<(RawRecord, ChaCha20Rng)>> {
    let mut rows: Vec<Row> = indices
        .map(|index| {
            let mut rng = record_rng(seed, index);
            let forced = conditions.map(|c| c.for_record(index, &mut rng));
            Row::new(index, 0, rng, forced)
        })
        .collect();
    let mut out: Vec<(RawRecord, ChaCha20Rng)> = Vec::with_capacity(rows.len());
    if rows.is_empty() {
        return Ok(out);
    }
    stats.batches += 1;
    stats.records += rows.len();
    while !rows.is_empty() {
        let finished = sample_rows(model, std::mem::take(&mut rows), stats)?;
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
                ));
                continue;
            }
            out.push((
                RawRecord {
                    index: row.index,
                    labels: row.labels,
                    visits: row.visits,
                },
                row.rng,
            ));
        }
    }
    out.sort_by_key(|(r, _)| r.index);
    // The batch's buffers (of many sizes, as rows finish) are free now: when they add up to much, give
    // them back to the system instead of letting them fragment the heap over a long run.
    crate::heap::release_freed_above(HEAP_TRIM_THRESHOLD);
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

/// Runs rows from their start visit to their end, as one batch whose rows leave as they finish. Returns
/// the rows with their label visit and visits filled in, in the order they finished.
fn sample_rows(model: &mut Model, mut rows: Vec<Row>, stats: &mut SampleStats) -> Result<Vec<Row>> {
    let enc = &model.manifest.encoding;
    // The plans and indices are taken from the encoding here, so that it is not copied for every batch.
    let label_plan = VisitPlan::labels(enc);
    // The first visit and the later ones differ only in which visit groups apply.
    let calibration = model.manifest.calibration.as_ref();
    let (first_plan, later_plan) = (
        VisitPlan::codes(enc, 0, calibration),
        VisitPlan::codes(enc, 1, calibration),
    );
    let (start, end) = (enc.start_index(), enc.end_index() as u32);
    let cfg = model.config().clone();
    let (v, e) = (cfg.total_vocab_size, cfg.n_embd);
    let (l, h, hd) = (cfg.n_layer, cfg.n_head, cfg.head_dim());
    // Visits a window holds, and the record's limit: with windows (EncodingOptions::window_stride) a record
    // that fills its window goes on from its last `max_visits - stride` visits, up to the encoding's limit.
    let max_visits = cfg.n_ctx - 2;
    let stride = enc.options.window_stride.min(max_visits);
    let limit = match stride {
        0 => max_visits,
        _ => enc.sampled_visit_limit(),
    };
    let mut n = rows.len();
    let mut out: Vec<Row> = Vec::with_capacity(n);

    // Start visit at position 0 with an empty cache.
    let mut visits = vec![0f32; n * v];
    for r in 0..n {
        visits[r * v + start] = 1.0;
    }
    // The codes each record has seen so far, the start visit's on; kept only for models that read them.
    let seen_codes = cfg.seen_codes;
    let mut seen = if seen_codes { visits.clone() } else { Vec::new() };
    let mut history = Vec::new();
    let mut past = model.step(&visits, &seen, &KvCache::Host(Vec::new()), n, 0, &mut history)?;
    stats.steps += 1;
    let mut past_len = 1;

    let mut drawn: Vec<Vec<u32>> = vec![Vec::new(); n];

    // Label visit.
    visits.iter_mut().for_each(|x| *x = 0.0);
    sample_visit(model, &label_plan, &mut rows, &history, &mut visits, &mut drawn, stats)?;
    for (row, d) in rows.iter_mut().zip(&drawn) {
        let mut codes = d.clone();
        codes.sort_unstable();
        row.labels = codes;
    }
    add_seen(&mut seen, &visits);
    past = model.step(&visits, &seen, &past, n, past_len, &mut history)?;
    stats.steps += 1;
    past_len += 1;

    for t in 1..=limit {
        visits.iter_mut().for_each(|x| *x = 0.0);
        let plan = if t == 1 { &first_plan } else { &later_plan };
        sample_visit(model, plan, &mut rows, &history, &mut visits, &mut drawn, stats)?;
        let mut keep = vec![true; n];
        for r in 0..n {
            let mut codes = drawn[r].clone();
            codes.sort_unstable();
            let ended = codes.last() == Some(&end);
            rows[r].visits.push(codes);
            keep[r] = !(ended || t == limit);
        }
        // Finished records leave the batch.
        let mut kept_rows = Vec::with_capacity(n);
        for (row, &k) in std::mem::take(&mut rows).into_iter().zip(&keep) {
            if k {
                kept_rows.push(row);
            } else {
                out.push(row);
            }
        }
        rows = kept_rows;
        if rows.is_empty() {
            break;
        }
        if rows.len() != n {
            compact_rows(&mut history, e, &keep);
            compact_rows(&mut visits, v, &keep);
            if seen_codes {
                compact_rows(&mut seen, v, &keep);
            }
            past = KvCache::Host(compact_cache(past.data()?, l * 2, n, h * past_len * hd, &keep));
            drawn.truncate(rows.len());
            n = rows.len();
        }
        if past_len - 1 == max_visits {
            // The window is full: continue from the record's last visits.
            (past, past_len) = continue_window(model, &rows, max_visits - stride, start, &mut history, stats)?;
            continue;
        }
        add_seen(&mut seen, &visits);
        past = model.step(&visits, &seen, &past, n, past_len, &mut history)?;
        stats.steps += 1;
        past_len += 1;
    }
    Ok(out)
}

/// Adds the codes of `visits` (rows of multi-hot visits) to `seen` (the same rows' codes seen so far);
/// nothing when `seen` is empty (a model without `seen_codes`).
fn add_seen(seen: &mut [f32], visits: &[f32]) {
    for (s, &x) in seen.iter_mut().zip(visits) {
        *s = s.max(x);
    }
}

/// A new window for `rows`: the start visit, each row's label visit and its last `keep` visits, run through
/// the visit transformer from an empty cache as a training window that begins there is. Returns the cache
/// and its length, with `history` after the last visit.
fn continue_window(
    model: &mut Model,
    rows: &[Row],
    keep: usize,
    start: usize,
    history: &mut Vec<f32>,
    stats: &mut SampleStats,
) -> Result<(KvCache, usize)> {
    let (n, v) = (rows.len(), model.config().total_vocab_size);
    let mut visits = vec![0f32; n * v];
    let mut seen = if model.config().seen_codes {
        vec![0f32; n * v]
    } else {
        Vec::new()
    };
    let mut past = KvCache::Host(Vec::new());
    for position in 0..keep + 2 {
        visits.iter_mut().for_each(|x| *x = 0.0);
        for (r, row) in rows.iter().enumerate() {
            let codes: &[u32] = match position {
                0 => &[start as u32],
                1 => &row.labels,
                p => &row.visits[row.visits.len() - keep + p - 2],
            };
            for &c in codes {
                visits[r * v + c as usize] = 1.0;
            }
        }
        add_seen(&mut seen, &visits);
        past = model.step(&visits, &seen, &past, n, position, history)?;
        stats.steps += 1;
    }
    Ok((past, keep + 2))
}
