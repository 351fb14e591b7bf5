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
    fn logit(&mut self, j: usize) -> Option<f32> {
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
        let inputs = row.walk_inputs(plan);
        if walk(&mut pos[r], plan, inputs, &mut cursor, &mut drawn[r]) != Progress::Done {
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
            let inputs = row.walk_inputs(plan);
            if walk(&mut pos[r], plan, inputs, &mut cursor, &mut drawn[r]) != Progress::Done {
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
    fn logit(&mut self, j: usize) -> Option<f32> {
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
        let inputs = row.walk_inputs(plan);
        let progress = walk(&mut self.pos[r], plan, inputs, &mut cursor, &mut self.drawn[r]);
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

/// Samples one visit for every row with the native kernel (`crate::native`): `drawn[r]` the set codes of row
/// `r` in sampling order (it keeps no multi-hot visit). Rows are split into contiguous parts, one per thread; a row's records do not
/// depend on the split. With [`crate::model::CodeModule::Compared`] (one thread), every logit a walk reads is
/// compared with the dense code head's under the same codes.
pub(crate) fn sample_visit_native(
    model: &mut Model,
    plan: &VisitPlan,
    rows: &mut [Row],
    history: &[f32],
    drawn: &mut [Vec<u32>],
    stats: &mut SampleStats,
) -> Result<()> {
    let e = model.config().n_embd;
    let n = rows.len();
    drawn.iter_mut().for_each(Vec::clear);
    if model.compares_dense() {
        return sample_visit_native_compared(model, plan, rows, history, drawn, stats);
    }
    if n == 0 {
        return Ok(());
    }
    let (head, threads) = model.native().expect("native code module loaded");
    let threads = threads.clamp(1, n.max(1));
    let per = n.div_ceil(threads);
    let macs: u64 = std::thread::scope(|scope| {
        let mut parts = rows
            .chunks_mut(per)
            .zip(drawn.chunks_mut(per))
            .zip(history.chunks(per * e));
        // The first part runs on this thread (with one thread, no thread is started at all).
        let ((rows, drawn), history) = parts.next().expect("a row at least");
        let others: Vec<_> = parts
            .map(|((rows, drawn), history)| scope.spawn(move || native_rows(head, plan, rows, history, drawn)))
            .collect();
        let here = native_rows(head, plan, rows, history, drawn);
        here + others
            .into_iter()
            .map(|h| h.join().expect("sampling thread"))
            .sum::<u64>()
    });
    stats.head_passes += 1;
    stats.code_module_macs += macs;
    Ok(())
}

/// Walks `rows` through one visit on the native kernel, block by block of codes: the rows that need a block
/// start it together, then walk as far as it goes. Returns the multiply-adds spent.
fn native_rows(
    head: &crate::native::NativeHead,
    plan: &VisitPlan,
    rows: &mut [Row],
    history: &[f32],
    drawn: &mut [Vec<u32>],
) -> u64 {
    use crate::native::{start_block, NativeCursor, RowState};
    let e = head.layout.n_embd;
    let mut states: Vec<RowState> = Vec::with_capacity(rows.len());
    let mut pos = vec![0usize; rows.len()];
    // Per row, the first code it needs next (None: done with the visit).
    let mut need: Vec<Option<usize>> = vec![None; rows.len()];
    let mut advance = |r: usize, state: &mut RowState, rows: &mut [Row], pos: &mut [usize]| {
        let row = &mut rows[r];
        let mut cursor = NativeCursor {
            head,
            row: state,
            reads: None,
            set_count: 0,
        };
        let inputs = row.walk_inputs(plan);
        match walk(&mut pos[r], plan, inputs, &mut cursor, &mut drawn[r]) {
            Progress::Done => None,
            Progress::Need(codes) => Some(codes.start),
        }
    };
    states.extend((0..rows.len()).map(|_| RowState::new(head)));
    crate::native::start_rows(
        head,
        &mut states.iter_mut().collect::<Vec<_>>(),
        &history[..rows.len() * e],
    );
    for (r, state) in states.iter_mut().enumerate() {
        need[r] = advance(r, state, rows, &mut pos);
    }
    for b in 0..head.layout.blocks() {
        let block = head.layout.block_codes(b);
        let mut group: Vec<(usize, &mut RowState)> = states
            .iter_mut()
            .enumerate()
            .filter(|(r, _)| need[*r].is_some_and(|j| block.contains(&j)))
            .collect();
        if group.is_empty() {
            continue;
        }
        let mut refs: Vec<&mut RowState> = group.iter_mut().map(|(_, s)| &mut **s).collect();
        start_block(head, &mut refs, b);
        for (r, state) in group {
            need[r] = advance(r, state, rows, &mut pos);
            debug_assert!(need[r].is_none_or(|j| j >= block.end));
        }
    }
    states.iter().map(|s| s.macs).sum()
}

/// [`sample_visit_native`] on one thread, each logit read compared with the dense code head's.
fn sample_visit_native_compared(
    model: &mut Model,
    plan: &VisitPlan,
    rows: &mut [Row],
    history: &[f32],
    drawn: &mut [Vec<u32>],
    stats: &mut SampleStats,
) -> Result<()> {
    let (e, v) = (model.config().n_embd, model.config().total_vocab_size);
    let mut reads = Vec::new();
    let mut prefix = vec![0f32; v];
    let mut logits = Vec::new();
    for (r, row) in rows.iter_mut().enumerate() {
        let (head, _) = model.native().expect("native code module loaded");
        let mut state = crate::native::RowState::new(head);
        state.start(head, &history[r * e..(r + 1) * e]);
        reads.clear();
        let mut pos = 0;
        let mut block: Option<usize> = None;
        loop {
            let mut cursor = crate::native::NativeCursor {
                head,
                row: &mut state,
                reads: Some(&mut reads),
                set_count: drawn[r].len(),
            };
            let inputs = row.walk_inputs(plan);
            match walk(&mut pos, plan, inputs, &mut cursor, &mut drawn[r]) {
                Progress::Done => break,
                Progress::Need(codes) => {
                    let b = codes.start / halo_core::manifest::NativeCodeModule::BLOCK;
                    assert!(block.is_none_or(|last| b > last), "the walk went back");
                    block = Some(b);
                    crate::native::start_block(head, &mut [&mut state], b);
                }
            }
        }
        stats.code_module_macs += state.macs;
        // One dense run per prefix of the codes set (in the order set), for the logits read under it.
        let mut done = 0;
        while done < reads.len() {
            let set = reads[done].2;
            prefix.iter_mut().for_each(|x| *x = 0.0);
            for &c in &drawn[r][..set] {
                prefix[c as usize] = 1.0;
            }
            model.head(&history[r * e..(r + 1) * e], &prefix, 1, &mut logits)?;
            while done < reads.len() && reads[done].2 == set {
                let (j, logit, _) = reads[done];
                let diff = (f64::from(logit) - f64::from(logits[j])).abs();
                stats.max_dense_difference = stats.max_dense_difference.max(diff);
                done += 1;
            }
        }
    }
    stats.head_passes += 1;
    Ok(())
}
