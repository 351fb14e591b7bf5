//! The code-level module on the sampler's own kernel (model directory format 5, `code_module.f32`, laid
//! out as [`NativeCodeModule`] says).
//!
//! Per row and visit: auto1's pre-activations start from the history (one column per history input) and
//! take one more column for each code set. The logit of code j reads hidden units 0 ..= E - 1 + j, and
//! unit E - 1 + j depends on codes < j only; so once the walk is at code j, every unit up to E - 1 + j is
//! final. Codes go in blocks of 64: the rows that reach a block start it together, summing the units
//! final at its first code from the block's weight panel (read once for four rows, `start_block`); units
//! inside the block are added row by row as the walk passes them (`fold_to`). Each weight is used once
//! per visit, against one block run per set code for format 4's ONNX Runtime blocks.
//!
//! Every logit is one sequence of fused multiply-adds in unit order (`f32::mul_add`, correctly rounded on
//! any CPU), element-wise over the codes of a block: the vector width never changes the order, so the same
//! records come out on every CPU (on one without FMA instructions, slowly).
//!
//! Inside an exclusive category (gap, age, visit type, ...) the walk needs the logits of all its values
//! given that none is set yet: those are summed aside (`logit_given_unset`), without folding units that
//! depend on the category's own codes.

use crate::error::{Error, Result};
use crate::walk::Cursor;
use halo_core::manifest::NativeCodeModule;

const BLOCK: usize = NativeCodeModule::BLOCK;

/// The weights of `code_module.f32`: its values, read once, and where its four parts start (one allocation:
/// at paper size a part is over 100 MiB).
pub struct NativeHead {
    pub layout: NativeCodeModule,
    values: Vec<f32>,
    /// Offsets of the parts (auto1's bias, auto1's weights, auto2's panels, the logits' bias) and the end.
    parts: [usize; 5],
    panel_offsets: Vec<usize>,
}

impl NativeHead {
    /// From the file's values.
    pub fn from_values(layout: NativeCodeModule, values: Vec<f32>) -> Result<NativeHead> {
        if values.len() != layout.values() {
            return Err(Error::Invalid(format!(
                "code module: {} values, expected {}",
                values.len(),
                layout.values()
            )));
        }
        let [a, b, c, d] = layout.part_lengths();
        let head = NativeHead {
            layout,
            values,
            parts: [0, a, a + b, a + b + c, a + b + c + d],
            panel_offsets: layout.panel_offsets(),
        };
        head.check_masked_zero()?;
        Ok(head)
    }

    /// The panels hold zero where the mask cuts (the file's contract): a run's logits are folded ahead
    /// (`NativeCursor::run_logits`), which adds those entries to the earlier codes' sums.
    fn check_masked_zero(&self) -> Result<()> {
        let (e, v) = (self.layout.n_embd, self.layout.vocab);
        for b in 0..self.layout.blocks() {
            let first = b * BLOCK;
            for (h, row) in self.panel(b).iter().enumerate() {
                let cut = |k: usize| first + k >= v || h >= e + first + k;
                let bad = row.iter().enumerate().any(|(k, w)| cut(k) && *w != 0.0);
                if bad {
                    return Err(Error::Invalid(format!(
                        "code module: block {b}, hidden unit {h} has a nonzero weight where the mask cuts \
                         (not a file halo export wrote)"
                    )));
                }
            }
        }
        Ok(())
    }

    fn part(&self, i: usize) -> &[f32] {
        &self.values[self.parts[i]..self.parts[i + 1]]
    }

    fn bias1(&self) -> &[f32] {
        self.part(0)
    }

    fn columns(&self) -> &[f32] {
        self.part(1)
    }

    fn panels(&self) -> &[f32] {
        self.part(2)
    }

    fn bias2(&self, j: usize) -> f32 {
        self.part(3)[j]
    }

    /// Panel `k` of the history inputs' weights: E rows of BLOCK units.
    fn history_panel(&self, k: usize) -> &[[f32; BLOCK]] {
        let e = self.layout.n_embd;
        let (rows, _) = self.columns()[k * e * BLOCK..(k + 1) * e * BLOCK].as_chunks::<BLOCK>();
        rows
    }

    /// Column of visit input `i` (E <= i < H), rows i..H.
    fn column(&self, i: usize) -> &[f32] {
        let at = self.layout.column_offset(i);
        &self.columns()[at..at + self.layout.hidden() - i]
    }

    /// Block `b`'s panel: one row of BLOCK codes per unit.
    fn panel(&self, b: usize) -> &[[f32; BLOCK]] {
        let values = &self.panels()[self.panel_offsets[b]..self.panel_offsets[b + 1]];
        let (rows, rest) = values.as_chunks::<BLOCK>();
        debug_assert!(rest.is_empty());
        rows
    }

    /// Multiply-adds of a visit start (history columns).
    pub fn start_macs(&self) -> u64 {
        self.layout.column_offset(self.layout.n_embd) as u64
    }

    /// All V logits of one row from scratch: `history` (E values), `visit` (V values) (the codes set). The reference
    /// the walk's logits equal bit for bit (tests).
    pub fn logits(&self, history: &[f32], visit: &[f32]) -> Vec<f32> {
        let mut row = RowState::new(self);
        row.start(self, history);
        for (k, _) in visit.iter().enumerate().filter(|(_, x)| **x != 0.0) {
            add_column(&mut row.pre, self, self.layout.n_embd + k);
        }
        (0..self.layout.vocab)
            .map(|j| row.logit_from_scratch(self, j))
            .collect()
    }
}

/// `pre[i..] += column i` (a set code: the weights are added as they are).
fn add_column(pre: &mut [f32], head: &NativeHead, i: usize) {
    add_to(&mut pre[i..], head.column(i));
}

/// Runs `$body` compiled for the widest vector unit the CPU has (the same operations in the same order on
/// each: fused multiply-adds element by element).
macro_rules! widest {
    ($vis:vis $name:ident ($($arg:ident: $ty:ty),*) $body:block) => {
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn portable($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) { portable($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) { portable($($arg),*) }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the features the function is compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: as above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            portable($($arg),*)
        }
    };
    // A kernel that keeps four rows' sums of `$lanes` values each in vector registers: each CPU gets the
    // width its registers hold (AVX-512's 32 registers take four rows of 64; AVX2's 16 registers of 8 lanes
    // would spill them to the stack on every multiply-add, so four rows of 16 at a time). Each sum is the
    // same sequence of fused multiply-adds at any width.
    // `$at` is the kernel at a given width, for the tests that compare the widths.
    ($vis:vis $name:ident, $at:ident<const $lanes:ident>($($arg:ident: $ty:ty),*) $body:block) => {
        #[inline(always)]
        fn $at<const $lanes: usize>($($arg: $ty),*) $body
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) { $at::<64>($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) { $at::<16>($($arg),*) }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the features the function is compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: as above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $at::<8>($($arg),*)
        }
    };
}

widest!(add_history, add_history_at<const LANES>(rows: &mut [&mut RowState], head: &NativeHead, history: &[f32]) {
    // One panel of units at a time, every tile of four rows through it while it is in the cache, `LANES`
    // units of it per pass: the sums stay in registers, each weight is read once for four rows. Every unit
    // adds its history inputs in input order, whichever rows it is computed with.
    let e = head.layout.n_embd;
    let hidden = head.layout.hidden();
    let tiled = rows.len() / 4 * 4;
    for k in 0..head.layout.history_panels() {
        let panel_units = k * BLOCK..((k + 1) * BLOCK).min(hidden);
        for (tile, x) in rows[..tiled].chunks_exact_mut(4).zip(history.chunks_exact(4 * e)) {
            let [r0, r1, r2, r3] = tile else { unreachable!("tiles of four") };
            let (x0, x1, x2, x3) = (&x[..e], &x[e..2 * e], &x[2 * e..3 * e], &x[3 * e..]);
            for first in (0..panel_units.len()).step_by(LANES) {
                let units = panel_units.start + first..(panel_units.start + first + LANES).min(panel_units.end);
                let n = units.len();
                let (mut s0, mut s1, mut s2, mut s3) = ([0f32; LANES], [0f32; LANES], [0f32; LANES], [0f32; LANES]);
                s0[..n].copy_from_slice(&r0.pre[units.clone()]);
                s1[..n].copy_from_slice(&r1.pre[units.clone()]);
                s2[..n].copy_from_slice(&r2.pre[units.clone()]);
                s3[..n].copy_from_slice(&r3.pre[units.clone()]);
                for (i, w) in head.history_panel(k).iter().enumerate() {
                    let w: &[f32; LANES] = w[first..first + LANES].try_into().expect("lanes inside the panel");
                    let (a0, a1, a2, a3) = (x0[i], x1[i], x2[i], x3[i]);
                    for k in 0..LANES {
                        s0[k] = a0.mul_add(w[k], s0[k]);
                        s1[k] = a1.mul_add(w[k], s1[k]);
                        s2[k] = a2.mul_add(w[k], s2[k]);
                        s3[k] = a3.mul_add(w[k], s3[k]);
                    }
                }
                r0.pre[units.clone()].copy_from_slice(&s0[..n]);
                r1.pre[units.clone()].copy_from_slice(&s1[..n]);
                r2.pre[units.clone()].copy_from_slice(&s2[..n]);
                r3.pre[units].copy_from_slice(&s3[..n]);
            }
        }
    }
    for (row, x) in rows[tiled..].iter_mut().zip(history[tiled * e..].chunks_exact(e)) {
        for k in 0..head.layout.history_panels() {
            let units = k * BLOCK..((k + 1) * BLOCK).min(hidden);
            let mut s = [0f32; BLOCK];
            s[..units.len()].copy_from_slice(&row.pre[units.clone()]);
            for (a, w) in x.iter().zip(head.history_panel(k)) {
                for k in 0..BLOCK {
                    s[k] = a.mul_add(w[k], s[k]);
                }
            }
            row.pre[units.clone()].copy_from_slice(&s[..units.len()]);
        }
    }
});

widest!(pub(crate) add_to(out: &mut [f32], values: &[f32]) {
    // Element by element, each sum rounded as IEEE 754 says at any vector width.
    for (o, v) in out.iter_mut().zip(values) {
        *o += v;
    }
});

/// Starts a visit for `rows`: pre-activations from each row's history (`history` [rows, E]), no block.
pub(crate) fn start_rows(head: &NativeHead, rows: &mut [&mut RowState], history: &[f32]) {
    for row in rows.iter_mut() {
        row.pre.copy_from_slice(head.bias1());
        row.codes = 0..0;
        row.folded = 0;
        row.before_run = None;
        row.aside = None;
        row.macs += head.start_macs();
    }
    add_history(rows, head, history);
}

/// One row's state while it walks a visit: pre-activations, and the partial sums of its current block of
/// logits with how many hidden units they hold.
pub(crate) struct RowState {
    pre: Vec<f32>,
    /// The current block and its codes.
    block: usize,
    codes: std::ops::Range<usize>,
    sums: [f32; BLOCK],
    folded: usize,
    /// The block's sums and `folded` before a run's logits folded ahead ([`Cursor::run_logits`]): a code
    /// set inside the run changes the units after it, which are folded again from here.
    before_run: Option<([f32; BLOCK], usize)>,
    /// A later block's sums from scratch of its first lanes (block, lanes, sums), for an exclusive category's
    /// values past the current block ([`RowState::aside_logit`]); valid until a code is set.
    aside: Option<(usize, usize, [f32; BLOCK])>,
    /// Multiply-adds spent (columns and units).
    pub macs: u64,
}

impl RowState {
    pub fn new(head: &NativeHead) -> RowState {
        RowState {
            pre: vec![0.0; head.layout.hidden()],
            block: 0,
            codes: 0..0,
            sums: [0.0; BLOCK],
            folded: 0,
            before_run: None,
            aside: None,
            macs: 0,
        }
    }

    /// The visit's start: pre-activations from the history, no block.
    pub fn start(&mut self, head: &NativeHead, history: &[f32]) {
        start_rows(head, &mut [self], history);
    }

    /// Adds hidden units `folded..end` to the block's sums. A unit whose ReLU is zero adds zero exactly, so it
    /// is not tested for (a branch that went either way at random).
    fn fold_to(&mut self, head: &NativeHead, end: usize) {
        if self.folded < end {
            let units = self.folded..end;
            fold_units(&mut self.sums, &self.pre[units.clone()], &head.panel(self.block)[units]);
            self.macs += ((end - self.folded) * BLOCK) as u64;
            self.folded = end;
        }
    }

    /// The logit of code `j`, past the current block, given the codes set so far: the sums of its block's
    /// first lanes (codes) up to its own, sixteen at a time, from scratch in unit order, kept for the category's
    /// other values. A code's units past E - 1 + j are masked to zero in the panel, so its sum is the one
    /// [`Self::logit_from_scratch`] gives, however many units the lanes were folded over.
    fn aside_logit(&mut self, head: &NativeHead, j: usize) -> f32 {
        let (b, lane) = (j / BLOCK, j % BLOCK);
        let sums = match self.aside {
            Some((block, lanes, sums)) if block == b && lane < lanes => sums,
            _ => {
                let lanes = (lane + 1).next_multiple_of(16).min(BLOCK);
                let units = head.layout.n_embd + b * BLOCK + lanes - 1;
                let panel = &head.panel(b)[..units.min(head.panel(b).len())];
                let mut sums = [0f32; BLOCK];
                fold_lanes(&mut sums, lanes, &self.pre[..panel.len()], panel);
                self.macs += (panel.len() * lanes) as u64;
                self.aside = Some((b, lanes, sums));
                sums
            }
        };
        sums[lane] + head.bias2(j)
    }

    /// The logit of code `j` from scratch, every unit up to E - 1 + j in order (the reference the walk's
    /// logits equal).
    fn logit_from_scratch(&self, head: &NativeHead, j: usize) -> f32 {
        let panel = head.panel(j / BLOCK);
        let mut sum = 0f32;
        for (h, w) in panel.iter().enumerate().take(head.layout.n_embd + j) {
            let a = self.pre[h];
            if a > 0.0 {
                sum = a.mul_add(w[j % BLOCK], sum);
            }
        }
        sum + head.bias2(j)
    }
}

widest!(fold_units(sums: &mut [f32; BLOCK], pre: &[f32], panel: &[[f32; BLOCK]]) {
    for (a, w) in pre.iter().zip(panel) {
        let a = a.max(0.0);
        for (s, w) in sums.iter_mut().zip(w) {
            *s = a.mul_add(*w, *s);
        }
    }
});

widest!(fold_lanes(sums: &mut [f32; BLOCK], lanes: usize, pre: &[f32], panel: &[[f32; BLOCK]]) {
    // `fold_units` over the first `lanes` codes only (a multiple of 16).
    for (a, w) in pre.iter().zip(panel) {
        let a = a.max(0.0);
        for (s, w) in sums[..lanes].iter_mut().zip(&w[..lanes]) {
            *s = a.mul_add(*w, *s);
        }
    }
});

/// Starts block `b` for `rows` (all at a code of the block, so the units below E + first code are final
/// for each): each row's sums of those units, in unit order, four rows at a time so that each unit's
/// weights are read once for four rows. A zero ReLU adds zero exactly, so it is not tested for (no branch).
pub(crate) fn start_block(head: &NativeHead, rows: &mut [&mut RowState], b: usize) {
    let codes = head.layout.block_codes(b);
    let units = head.layout.n_embd + codes.start;
    start_block_sums(head.panel(b), units, rows);
    for row in rows.iter_mut() {
        row.block = b;
        row.codes = codes.clone();
        row.folded = units;
        row.before_run = None;
        row.macs += (units * BLOCK) as u64;
    }
}

widest!(start_block_sums, start_block_sums_at<const LANES>(panel: &[[f32; BLOCK]], units: usize, rows: &mut [&mut RowState]) {
    // Tiles of four rows, whose sums stay in registers, `LANES` codes of the block at a time; the units in
    // parts of `UNITS` (a part of the panel, 16 KiB, stays in the L1 cache while every tile goes through
    // it; the sums go on from where the part before left them, so each is the same sequence of fused
    // multiply-adds). A tile's ReLUs for a part are taken once, interleaved (unit h of rows 0-3 at 4h..).
    const UNITS: usize = 64;
    let tiled = rows.len() / 4 * 4;
    for start in (0..units).step_by(UNITS) {
        let part = start..(start + UNITS).min(units);
        for tile in rows[..tiled].chunks_exact_mut(4) {
            let [r0, r1, r2, r3] = tile else { unreachable!("tiles of four") };
            let mut relu = [0f32; 4 * UNITS];
            for (h, a) in part.clone().zip(relu.chunks_exact_mut(4)) {
                a.copy_from_slice(&[r0.pre[h].max(0.0), r1.pre[h].max(0.0), r2.pre[h].max(0.0), r3.pre[h].max(0.0)]);
            }
            for first in (0..BLOCK).step_by(LANES) {
                let (mut s0, mut s1, mut s2, mut s3) = ([0f32; LANES], [0f32; LANES], [0f32; LANES], [0f32; LANES]);
                if start > 0 {
                    s0.copy_from_slice(&r0.sums[first..first + LANES]);
                    s1.copy_from_slice(&r1.sums[first..first + LANES]);
                    s2.copy_from_slice(&r2.sums[first..first + LANES]);
                    s3.copy_from_slice(&r3.sums[first..first + LANES]);
                }
                for (a, w) in relu.chunks_exact(4).zip(&panel[part.clone()]) {
                    let w: &[f32; LANES] = w[first..first + LANES].try_into().expect("lanes inside the block");
                    for k in 0..LANES {
                        s0[k] = a[0].mul_add(w[k], s0[k]);
                        s1[k] = a[1].mul_add(w[k], s1[k]);
                        s2[k] = a[2].mul_add(w[k], s2[k]);
                        s3[k] = a[3].mul_add(w[k], s3[k]);
                    }
                }
                r0.sums[first..first + LANES].copy_from_slice(&s0);
                r1.sums[first..first + LANES].copy_from_slice(&s1);
                r2.sums[first..first + LANES].copy_from_slice(&s2);
                r3.sums[first..first + LANES].copy_from_slice(&s3);
            }
        }
    }
    for row in rows[tiled..].iter_mut() {
        // A row alone reads each unit's weights for itself: skipping the zero ReLUs saves reading theirs.
        let mut s = [0f32; BLOCK];
        for (h, w) in panel[..units].iter().enumerate() {
            let a = row.pre[h];
            if a > 0.0 {
                for k in 0..BLOCK {
                    s[k] = a.mul_add(w[k], s[k]);
                }
            }
        }
        row.sums = s;
    }
});

/// The walk's view of a row on the native kernel: the logits of its block, and of an exclusive category's
/// values past it.
pub(crate) struct NativeCursor<'a> {
    pub head: &'a NativeHead,
    pub row: &'a mut RowState,
    /// With a comparison: every logit read, (code, logit, codes set before it).
    pub reads: Option<&'a mut Vec<(usize, f32, usize)>>,
    pub set_count: usize,
}

impl NativeCursor<'_> {
    fn read(&mut self, j: usize, logit: f32) -> f32 {
        if let Some(reads) = self.reads.as_deref_mut() {
            reads.push((j, logit, self.set_count));
        }
        logit
    }
}

impl Cursor for NativeCursor<'_> {
    fn logit(&mut self, j: usize) -> Option<f32> {
        if !self.row.codes.contains(&j) {
            return None;
        }
        self.row.fold_to(self.head, self.head.layout.n_embd + j);
        let logit = self.row.sums[j % BLOCK] + self.head.bias2(j);
        Some(self.read(j, logit))
    }

    fn logit_given_unset(&mut self, j: usize, first: usize) -> Option<f32> {
        if !self.row.codes.contains(&first) {
            return None;
        }
        if !self.row.codes.contains(&j) {
            let logit = self.row.aside_logit(self.head, j);
            return Some(self.read(j, logit));
        }
        // Units up to E - 1 + first are final; the rest, up to E - 1 + j, are added aside in unit order
        // (the order folding would add them in, so the logit is the one a fold would give).
        let e = self.head.layout.n_embd;
        self.row.fold_to(self.head, e + first);
        let panel = self.head.panel(self.row.block);
        let mut sum = self.row.sums[j % BLOCK];
        for (a, w) in self.row.pre[e + first..e + j].iter().zip(&panel[e + first..e + j]) {
            if *a > 0.0 {
                sum = a.mul_add(w[j % BLOCK], sum);
            }
        }
        let logit = sum + self.head.bias2(j);
        Some(self.read(j, logit))
    }

    fn run_logits(&mut self, codes: std::ops::Range<usize>, logits: &mut [f32; crate::walk::RUN]) -> usize {
        // With a comparison every logit is read one by one (and recorded).
        if self.reads.is_some() || !self.row.codes.contains(&codes.start) {
            return 0;
        }
        let end = codes.end.min(self.row.codes.end).min(codes.start + crate::walk::RUN);
        // Each code's sum takes the units it reads in unit order, as one by one; the units past them are
        // masked to zero in its column of the panel (the file's contract), so folding the whole run first
        // adds exact zeros to the earlier codes' sums.
        self.row.before_run = Some((self.row.sums, self.row.folded));
        self.row.fold_to(self.head, self.head.layout.n_embd + end - 1);
        for (logit, j) in logits.iter_mut().zip(codes.start..end) {
            *logit = self.row.sums[j % BLOCK] + self.head.bias2(j);
        }
        end - codes.start
    }

    fn set(&mut self, j: usize) {
        let e = self.head.layout.n_embd;
        if self.row.folded > e + j {
            // Set inside a run: back to before the run, then the units the code does not change.
            let (sums, folded) = self.row.before_run.take().expect("a run folded ahead");
            (self.row.sums, self.row.folded) = (sums, folded);
            self.row.fold_to(self.head, e + j);
        }
        self.row.before_run = None;
        self.row.aside = None;
        debug_assert!(self.row.folded <= e + j, "a folded unit would change");
        add_column(&mut self.row.pre, self.head, e + j);
        self.row.macs += (self.head.layout.hidden() - e - j) as u64;
        self.set_count += 1;
    }
}

#[cfg(test)]
mod tests;
