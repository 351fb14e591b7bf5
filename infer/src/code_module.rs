//! Sampling one visit for every row of a batch, with the code module run densely or incrementally.
//!
//! Dense (`code_head.onnx`): every pass computes all V logits of every row that needs logits, from its
//! history and visit; a set code makes all of the row's logits stale.
//!
//! Incremental (`code_head_start.onnx`, `code_head_block.onnx`, the auto1 columns): a row keeps auto1's
//! pre-activations, computed from the history at the visit's start and updated by one column when a code
//! is set, and asks only for the logits its walk reaches, one block of codes at a time (one graph per
//! block, whose weights ONNX Runtime keeps packed); rows that need the same block share one run. The logit of code j
//! reads hidden units up to E - 1 + j, which depend on codes < j only: setting code k leaves the logits of
//! codes <= k valid, so no logit is ever recomputed for a code the walk has passed.

use crate::error::Result;
use crate::model::Model;
use crate::sampler::{Row, SampleStats};
use crate::walk::{walk, Cursor, Progress, VisitPlan};
use std::collections::BTreeMap;
use std::ops::Range;

/// Dense: the row's logits of the last pass, while no code was set since.
struct DenseCursor<'a> {
    logits: Option<&'a [f32]>,
    visit: &'a mut [f32],
    coarse: bool,
}

impl Cursor for DenseCursor<'_> {
    fn logit(&self, j: usize) -> Option<f32> {
        self.logits.map(|l| l[j])
    }
    fn set(&mut self, j: usize) {
        self.visit[j] = 1.0;
        // HALO-Coarse logits do not depend on the visit.
        if !self.coarse {
            self.logits = None;
        }
    }
}

/// Multiply-adds of one dense pass for one row.
pub fn dense_macs(model: &Model) -> u64 {
    let c = model.config();
    if c.coarse {
        (c.n_embd * c.total_vocab_size) as u64
    } else {
        let (d, h, v) = (c.head_width(), c.head_hidden_used(), c.total_vocab_size);
        (d * h + h * v) as u64
    }
}

/// Samples one visit for every row with the dense code head. `visits` [n, V] must be zero on entry; it
/// holds the sampled visits on return, and `drawn[r]` the set codes of row `r` in sampling order.
pub(crate) fn sample_visit_dense(
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
    let pass_macs = dense_macs(model);
    let n = rows.len();
    let mut pos = vec![0usize; n];
    let mut pending: Vec<usize> = Vec::with_capacity(n);
    for r in 0..n {
        drawn[r].clear();
        let row = &mut rows[r];
        let mut cursor = DenseCursor {
            logits: None,
            visit: &mut visits[r * v..(r + 1) * v],
            coarse,
        };
        if walk(
            &mut pos[r],
            plan,
            row.forced.as_ref(),
            &mut cursor,
            &mut drawn[r],
            &mut row.rng,
        ) != Progress::Done
        {
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
            gather_rows(&mut hist_buf, history, e, &pending);
            gather_rows(&mut visit_buf, visits, v, &pending);
            (&hist_buf, &visit_buf)
        };
        model.head(hist_in, visit_in, m, &mut logits)?;
        stats.head_passes += 1;
        stats.code_module_macs += pass_macs * m as u64;
        let mut next = Vec::with_capacity(m);
        for (k, &r) in pending.iter().enumerate() {
            let row = &mut rows[r];
            let mut cursor = DenseCursor {
                logits: Some(&logits[k * v..(k + 1) * v]),
                visit: &mut visits[r * v..(r + 1) * v],
                coarse,
            };
            if walk(
                &mut pos[r],
                plan,
                row.forced.as_ref(),
                &mut cursor,
                &mut drawn[r],
                &mut row.rng,
            ) != Progress::Done
            {
                next.push(r);
            }
        }
        pending = next;
    }
    Ok(())
}

/// Copies rows `rows` (of width `width`) of `src` into `buf`, in that order.
fn gather_rows(buf: &mut Vec<f32>, src: &[f32], width: usize, rows: &[usize]) {
    buf.clear();
    for &r in rows {
        buf.extend_from_slice(&src[r * width..(r + 1) * width]);
    }
}

/// Incremental: the row's pre-activations and the logits it has of the current visit.
struct BlockCursor<'a> {
    /// Logits of vocabulary indices `known` (from `first` on; no set code has touched them).
    logits: &'a [f32],
    first: usize,
    known: Range<usize>,
    visit: &'a mut [f32],
    /// auto1 pre-activations [H] of this row.
    pre: &'a mut [f32],
    model: &'a Model,
    n_embd: usize,
    /// Multiply-adds of the column updates.
    macs: u64,
}

impl Cursor for BlockCursor<'_> {
    fn logit(&self, j: usize) -> Option<f32> {
        self.known.contains(&j).then(|| self.logits[j - self.first])
    }
    fn set(&mut self, j: usize) {
        self.visit[j] = 1.0;
        let column = self.model.column(j);
        for (p, w) in self.pre[self.n_embd + j..].iter_mut().zip(column) {
            *p += w;
        }
        self.macs += column.len() as u64;
        // Logits of codes <= j do not read code j.
        self.known.end = self.known.end.min(j + 1);
    }
}

/// A row's logits of the current visit: consecutive blocks, and how many of the blocks it asked for are
/// still to come.
#[derive(Clone, Default)]
struct Known {
    first: usize,
    end: usize,
    logits: Vec<f32>,
    waiting: usize,
}

/// The rows of a batch while the incremental code module samples their visit.
struct Walkers<'a> {
    rows: &'a mut [Row],
    visits: &'a mut [f32],
    drawn: &'a mut [Vec<u32>],
    /// auto1 pre-activations [n, H].
    pre: Vec<f32>,
    pos: Vec<usize>,
    known: Vec<Known>,
    block_len: usize,
}

impl Walkers<'_> {
    /// Walks row `r` as far as its logits allow; returns the blocks it needs next (indices), if any.
    fn advance(&mut self, model: &Model, plan: &VisitPlan, r: usize, stats: &mut SampleStats) -> Option<Range<usize>> {
        let c = model.config();
        let (e, hidden) = (c.n_embd, c.head_hidden_used());
        let v = c.total_vocab_size;
        let row = &mut self.rows[r];
        let k = &self.known[r];
        let mut cursor = BlockCursor {
            logits: &k.logits,
            first: k.first,
            known: k.first..k.end,
            visit: &mut self.visits[r * v..(r + 1) * v],
            pre: &mut self.pre[r * hidden..(r + 1) * hidden],
            model,
            n_embd: e,
            macs: 0,
        };
        let progress = walk(
            &mut self.pos[r],
            plan,
            row.forced.as_ref(),
            &mut cursor,
            &mut self.drawn[r],
            &mut row.rng,
        );
        stats.code_module_macs += cursor.macs;
        match progress {
            Progress::Done => None,
            // An exclusive category may span a block border: then it needs two blocks.
            Progress::Need(need) => Some(need.start / self.block_len..(need.end - 1) / self.block_len + 1),
        }
    }

    /// Block `b`'s logits `logits` (first code `first`) arrived for row `r`; returns whether the row has
    /// all the blocks it asked for.
    fn receive(&mut self, r: usize, first: usize, logits: &[f32]) -> bool {
        let k = &mut self.known[r];
        if k.end != first {
            // The first block of a new request.
            k.first = first;
            k.logits.clear();
        }
        k.logits.extend_from_slice(logits);
        k.end = first + logits.len();
        k.waiting -= 1;
        k.waiting == 0
    }
}

/// Samples one visit for every row with the incremental code module; same contract as
/// [`sample_visit_dense`]. Blocks are run in vocabulary order, each for all the rows that need it (a row
/// that sets a code in a block needs it again, with its new pre-activations, before moving on), so rows
/// share as many runs as they can. With [`crate::model::CodeModule::Compared`], every block is also computed
/// densely and the largest absolute difference is kept in `stats.max_dense_difference`.
pub(crate) fn sample_visit_incremental(
    model: &mut Model,
    plan: &VisitPlan,
    rows: &mut [Row],
    history: &[f32],
    visits: &mut [f32],
    drawn: &mut [Vec<u32>],
    stats: &mut SampleStats,
) -> Result<()> {
    let c = model.config();
    let (e, v, hidden) = (c.n_embd, c.total_vocab_size, c.head_hidden_used());
    let block_len = model.block_len();
    let n = rows.len();
    let mut pre = Vec::new();
    model.head_start(history, n, &mut pre)?;
    stats.code_module_macs += (n * e * hidden) as u64;
    drawn.iter_mut().for_each(Vec::clear);
    let mut w = Walkers {
        rows,
        visits,
        drawn,
        pre,
        pos: vec![0; n],
        known: vec![Known::default(); n],
        block_len,
    };

    // Rows by the block they need next.
    let mut needs: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let ask = |w: &mut Walkers, needs: &mut BTreeMap<usize, Vec<usize>>, r: usize, blocks: Range<usize>| {
        w.known[r].waiting = blocks.len();
        w.known[r].end = usize::MAX;
        for b in blocks {
            needs.entry(b).or_default().push(r);
        }
    };
    for r in 0..n {
        if let Some(blocks) = w.advance(model, plan, r, stats) {
            ask(&mut w, &mut needs, r, blocks);
        }
    }
    let mut buf: Vec<f32> = Vec::new();
    let mut logits: Vec<f32> = Vec::new();
    let mut dense = DenseCheck::default();
    while let Some((b, group)) = needs.pop_first() {
        let codes = b * block_len..((b + 1) * block_len).min(v);
        // Code j's logit reads hidden units 0 ..= E - 1 + j.
        let prefix = e + codes.end - 1;
        buf.clear();
        for &r in &group {
            buf.extend_from_slice(&w.pre[r * hidden..r * hidden + prefix]);
        }
        let m = group.len();
        model.head_block(&buf, m, b, &mut logits)?;
        stats.head_passes += 1;
        stats.code_module_macs += (m * prefix * codes.len()) as u64;
        if model.compares_dense() {
            let diff = dense.difference(model, history, w.visits, &group, &logits, codes.clone())?;
            stats.max_dense_difference = stats.max_dense_difference.max(diff);
        }
        let width = codes.len();
        for (i, &r) in group.iter().enumerate() {
            if w.receive(r, codes.start, &logits[i * width..(i + 1) * width]) {
                if let Some(blocks) = w.advance(model, plan, r, stats) {
                    ask(&mut w, &mut needs, r, blocks);
                }
            }
        }
    }
    Ok(())
}

/// Buffers for comparing a block with the dense code head.
#[derive(Default)]
struct DenseCheck {
    hist: Vec<f32>,
    visit: Vec<f32>,
    logits: Vec<f32>,
}

impl DenseCheck {
    /// Largest |block logit - dense logit| over the group's rows and the block's codes.
    fn difference(
        &mut self,
        model: &mut Model,
        history: &[f32],
        visits: &[f32],
        group: &[usize],
        block: &[f32],
        codes: Range<usize>,
    ) -> Result<f64> {
        let (e, v) = (model.config().n_embd, model.config().total_vocab_size);
        gather_rows(&mut self.hist, history, e, group);
        gather_rows(&mut self.visit, visits, v, group);
        model.head(&self.hist, &self.visit, group.len(), &mut self.logits)?;
        let width = codes.len();
        let mut worst = 0f64;
        for i in 0..group.len() {
            for (k, j) in codes.clone().enumerate() {
                let d = (block[i * width + k] as f64 - self.logits[i * v + j] as f64).abs();
                worst = worst.max(d);
            }
        }
        Ok(worst)
    }
}
