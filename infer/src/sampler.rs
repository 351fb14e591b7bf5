//! Exact ancestral sampling of HALO's factorisation, batched.
//!
//! A record is the sequence `[start visit, label visit, visit_1, ...]`. The visit transformer (one step
//! per visit, with a key/value cache) turns the visits so far into a history vector; the code head gives,
//! from the history and the codes of the current visit set so far, the logit of every code, where the
//! logit of code `j` depends only on codes `< j`. Codes of a visit are therefore drawn in vocabulary
//! order: from the current logits, walk `j = pos..` drawing `u_j ~ U(0,1)` from the record's own
//! random stream until the first `j` with `u_j < sigmoid(logit_j)`; set code `j`, continue at `j + 1`
//! with fresh logits (one code-head pass serves every record of the batch that needs one). A record
//! whose walk reaches the end of the visit's allowed codes has finished the visit.
//!
//! Every random number a record uses comes from its own ChaCha20 stream, keyed by the seed and the
//! record's global index, so a record does not depend on the batch size, the thread count or how the
//! records are split into shards (on the CPU; see the crate documentation about CUDA).

use crate::conditions::{Conditions, Forced};
use crate::error::Result;
use crate::model::Model;
use halo_core::encoding::Encoding;
use rand::{Rng, SeedableRng};
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SampleStats {
    pub batches: usize,
    pub records: usize,
    /// Code-head runs.
    pub head_passes: usize,
    /// Visit-transformer step runs.
    pub steps: usize,
}

/// Which codes a visit may hold, in sampling order.
struct VisitPlan {
    /// Candidate vocabulary indices in order.
    cands: Vec<usize>,
    /// For each candidate position: the half-open range of positions of its exclusive category.
    category: Vec<Option<(usize, usize)>>,
    /// Position offset of the forced-value table (label visit: candidate position = label-local index).
    forced: bool,
}

impl VisitPlan {
    fn labels(enc: &Encoding) -> VisitPlan {
        let c = enc.code_vocab_size;
        let n = enc.label_vocab_size;
        let mut category = vec![None; n];
        for cat in &enc.demographic_categories {
            let range = (cat.first, (cat.first + cat.len).min(n));
            for slot in category.iter_mut().take(range.1).skip(range.0) {
                *slot = Some(range);
            }
        }
        VisitPlan {
            cands: (c..c + n).collect(),
            category,
            forced: true,
        }
    }

    fn codes(enc: &Encoding) -> VisitPlan {
        let mut cands: Vec<usize> = (0..enc.code_vocab_size).collect();
        cands.push(enc.end_index());
        VisitPlan {
            category: vec![None; cands.len()],
            cands,
            forced: false,
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

/// One record while its batch runs.
struct Row {
    index: u64,
    rng: ChaCha20Rng,
    forced: Option<Forced>,
    labels: Vec<u32>,
    visits: Vec<Vec<u32>>,
}

/// Walk state of one row within the current visit.
#[derive(Clone, Copy)]
struct Walk {
    pos: usize,
    /// The visit changed since the logits were computed (or none were computed yet).
    stale: bool,
    done: bool,
}

#[inline]
fn sigmoid(x: f32) -> f64 {
    1.0 / (1.0 + (-(x as f64)).exp())
}

/// Advances one row's walk as far as the current logits allow. `logits` is `None` before the first
/// pass of a visit (only forced codes can be set then). Returns whether the row needs another pass.
#[allow(clippy::too_many_arguments)]
fn walk(
    w: &mut Walk,
    plan: &VisitPlan,
    forced: Option<&Forced>,
    logits: Option<&[f32]>,
    visit: &mut [f32],
    drawn: &mut Vec<u32>,
    rng: &mut ChaCha20Rng,
    coarse: bool,
) -> bool {
    loop {
        let pos = w.pos;
        if pos >= plan.cands.len() {
            w.done = true;
            return false;
        }
        let fixed_at = |k: usize| if plan.forced { forced.and_then(|f| f[k]) } else { None };
        // An exclusive category (sex, race, ...) with no value fixed is drawn once, at its first position:
        // one value, with probabilities the category's conditionals of this pass renormalised. Each value's
        // logit then conditions on the same prefix; walking the values one by one would instead lean on
        // "earlier values of the category were not drawn", a dependence the code module carries through a
        // single hidden unit and learns poorly (measured on Synthea: 64% F walking, 49% in the data).
        if let Some((start, end)) = plan.category[pos] {
            if pos == start && !(start..end).any(|k| fixed_at(k) == Some(true)) {
                let Some(logits) = logits.filter(|_| !w.stale) else {
                    return true;
                };
                let weights: Vec<(usize, f64)> = (start..end)
                    .filter(|k| fixed_at(*k) != Some(false))
                    .map(|k| (k, sigmoid(logits[plan.cands[k]])))
                    .collect();
                if let Some(chosen) = categorical(&weights, rng) {
                    let j = plan.cands[chosen];
                    visit[j] = 1.0;
                    drawn.push(j as u32);
                    w.stale = !coarse;
                }
                w.pos = end;
                continue;
            }
        }
        let j = plan.cands[pos];
        match fixed_at(pos) {
            Some(true) => {
                visit[j] = 1.0;
                drawn.push(j as u32);
                w.stale = true;
                w.pos = plan.after_set(pos);
                continue;
            }
            Some(false) => {}
            None => {
                let Some(logits) = logits.filter(|_| !w.stale) else {
                    return true;
                };
                let u: f64 = rng.random();
                if u < sigmoid(logits[j]) {
                    visit[j] = 1.0;
                    drawn.push(j as u32);
                    w.stale = !coarse;
                    w.pos = plan.after_set(pos);
                    continue;
                }
            }
        }
        w.pos = pos + 1;
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

/// Samples one visit for every row. `visits` [n, V] must be zero on entry; it holds the sampled visits
/// on return, and `drawn[r]` the set codes of row `r` in sampling order.
fn sample_visit(
    model: &mut Model,
    plan: &VisitPlan,
    rows: &mut [Row],
    history: &[f32],
    visits: &mut [f32],
    drawn: &mut [Vec<u32>],
    stats: &mut SampleStats,
) -> Result<()> {
    let (e, v) = (model.config().n_embd, model.config().total_vocab_size);
    let coarse = model.config().coarse;
    let n = rows.len();
    let mut walks = vec![
        Walk {
            pos: 0,
            stale: true,
            done: false,
        };
        n
    ];
    let mut pending: Vec<usize> = Vec::with_capacity(n);
    for r in 0..n {
        drawn[r].clear();
        let row = &mut rows[r];
        if walk(
            &mut walks[r],
            plan,
            row.forced.as_ref(),
            None,
            &mut visits[r * v..(r + 1) * v],
            &mut drawn[r],
            &mut row.rng,
            coarse,
        ) {
            pending.push(r);
        }
    }
    let mut hist_buf: Vec<f32> = Vec::new();
    let mut visit_buf: Vec<f32> = Vec::new();
    let mut logits: Vec<f32> = Vec::new();
    while !pending.is_empty() {
        let m = pending.len();
        let (hist_in, visit_in): (&[f32], &[f32]) = if m == n {
            (history, visits)
        } else {
            hist_buf.clear();
            visit_buf.clear();
            for &r in &pending {
                hist_buf.extend_from_slice(&history[r * e..(r + 1) * e]);
                visit_buf.extend_from_slice(&visits[r * v..(r + 1) * v]);
            }
            (&hist_buf, &visit_buf)
        };
        model.head(hist_in, visit_in, m, &mut logits)?;
        stats.head_passes += 1;
        let mut next = Vec::with_capacity(m);
        for (k, &r) in pending.iter().enumerate() {
            let row = &mut rows[r];
            walks[r].stale = false;
            if walk(
                &mut walks[r],
                plan,
                row.forced.as_ref(),
                Some(&logits[k * v..(k + 1) * v]),
                &mut visits[r * v..(r + 1) * v],
                &mut drawn[r],
                &mut row.rng,
                coarse,
            ) {
                next.push(r);
            }
        }
        pending = next;
    }
    Ok(())
}

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

/// Samples records `indices` (global indices) as one batch. Returns each record with its random
/// stream positioned after sampling (decoding draws from it next), in index order.
pub fn sample_batch(
    model: &mut Model,
    seed: u64,
    indices: std::ops::Range<u64>,
    conditions: Option<&Conditions>,
    stats: &mut SampleStats,
) -> Result<Vec<(RawRecord, ChaCha20Rng)>> {
    let enc = model.manifest.encoding.clone();
    let cfg = model.config().clone();
    let (v, e) = (cfg.total_vocab_size, cfg.n_embd);
    let (l, h, hd) = (cfg.n_layer, cfg.n_head, cfg.head_dim());
    let max_visits = cfg.n_ctx - 2;
    let label_plan = VisitPlan::labels(&enc);
    let code_plan = VisitPlan::codes(&enc);
    let end = enc.end_index() as u32;

    let mut rows: Vec<Row> = indices
        .clone()
        .map(|index| {
            let mut rng = record_rng(seed, index);
            let forced = conditions.map(|c| c.for_record(index, &mut rng));
            Row {
                index,
                rng,
                forced,
                labels: Vec::new(),
                visits: Vec::new(),
            }
        })
        .collect();
    let mut n = rows.len();
    let mut out: Vec<(RawRecord, ChaCha20Rng)> = Vec::with_capacity(n);
    if n == 0 {
        return Ok(out);
    }
    stats.batches += 1;
    stats.records += n;

    // Start visit at position 0 with an empty cache.
    let mut visits = vec![0f32; n * v];
    for r in 0..n {
        visits[r * v + enc.start_index()] = 1.0;
    }
    let mut history = Vec::new();
    let mut past = Vec::new();
    let mut present = Vec::new();
    model.step(&visits, &[], n, 0, &mut history, &mut present)?;
    stats.steps += 1;
    std::mem::swap(&mut past, &mut present);
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
    model.step(&visits, &past, n, past_len, &mut history, &mut present)?;
    stats.steps += 1;
    std::mem::swap(&mut past, &mut present);
    past_len += 1;

    for t in 1..=max_visits {
        visits.iter_mut().for_each(|x| *x = 0.0);
        sample_visit(model, &code_plan, &mut rows, &history, &mut visits, &mut drawn, stats)?;
        let mut keep = vec![true; n];
        for r in 0..n {
            let mut codes = drawn[r].clone();
            codes.sort_unstable();
            let ended = codes.last() == Some(&end);
            rows[r].visits.push(codes);
            keep[r] = !(ended || t == max_visits);
        }
        // Finished records leave the batch.
        let mut kept_rows = Vec::with_capacity(n);
        for (row, &k) in std::mem::take(&mut rows).into_iter().zip(&keep) {
            if k {
                kept_rows.push(row);
            } else {
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
        rows = kept_rows;
        if rows.is_empty() {
            break;
        }
        if rows.len() != n {
            compact_rows(&mut history, e, &keep);
            compact_rows(&mut visits, v, &keep);
            past = compact_cache(&past, l * 2, n, h * past_len * hd, &keep);
            drawn.truncate(rows.len());
            n = rows.len();
        }
        model.step(&visits, &past, n, past_len, &mut history, &mut present)?;
        stats.steps += 1;
        std::mem::swap(&mut past, &mut present);
        past_len += 1;
    }
    out.sort_by_key(|(r, _)| r.index);
    Ok(out)
}
