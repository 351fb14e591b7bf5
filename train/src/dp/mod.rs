//! DP-SGD (Abadi et al. 2016, "Deep learning with differential privacy"): every record's gradient clipped
//! to norm C, summed, Gaussian noise of standard deviation sigma C added, records drawn by Poisson sampling.
//! The privacy unit is the record (the patient): with `--windows`, all windows of one record are one
//! gradient.
//!
//! Per-record norms cost no backward pass per record: the forward pass keeps each layer's input and output
//! on a [`Tape`]; one backward pass of the summed record losses gives every output's gradient, and each
//! parameter's per-record gradient norm follows from its layer's input and output gradient ([`ghost`]).
//! A second backward pass through the same graph, of sum_i c_i loss_i with c_i = min(1, C / norm_i), leaves
//! the clipped sum in the parameters' gradients.

pub mod ghost;
pub mod plan;
pub mod prior;
pub mod sampling;

use crate::data::Batch;
use crate::model::{Halo, Noise};
use std::cell::RefCell;
use tch::{Device, Kind, Reduction, Tensor};

/// How the rows of a kept tensor are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// [B, T, d]: a batch's sequences by visit position (the visit transformer).
    Sequence,
    /// [N, d]: the scored rows of a batch, in the order of `Batch::rows` (the code module).
    ScoredRows,
}

/// A parameter of a kept layer, and how its gradient follows from the gradient g of the layer's output.
#[derive(Debug)]
pub enum Part {
    /// A weight multiplying the input: gradient sum_s input_s ⊗ g_s. Masked (HALO's autoregressive layers):
    /// entry (output o, input i) is used where i <= o + offset, so only those entries have a gradient.
    Weight { input: Tensor, mask_offset: Option<i64> },
    /// A bias added to every row: gradient sum_s g_s.
    Bias,
    /// The position embedding (position t adds row t): row t of the gradient is g_t, summed over a record's
    /// windows.
    Position,
    /// An elementwise scale of `normalized` (a layer norm's weight): gradient sum_s g_s ⊙ normalized_s.
    Scale { normalized: Tensor },
}

impl Part {
    pub fn weight(input: &Tensor) -> Part {
        Part::Weight {
            input: input.shallow_clone(),
            mask_offset: None,
        }
    }
}

/// One layer's output and the parameters it applied.
#[derive(Debug)]
struct Site {
    output: Tensor,
    layout: Layout,
    parts: Vec<Part>,
}

/// What a forward pass keeps for the per-record gradient norms: every layer with parameters, in order.
#[derive(Debug, Default)]
pub struct Tape {
    sites: RefCell<Vec<Site>>,
}

impl Tape {
    pub fn keep(&self, output: &Tensor, layout: Layout, parts: Vec<Part>) {
        self.sites.borrow_mut().push(Site {
            output: output.shallow_clone(),
            layout,
            parts,
        });
    }
}

/// Which record each sequence of a batch belongs to (a record's windows are several sequences), and how
/// the sequences are regrouped into records: record r's windows side by side, [R, K * T, d].
pub struct Records {
    /// Per sequence (batch row): its record.
    record_of_sequence: Tensor,
    /// Per sequence: its row in [R * K] (record r's k-th window at r * K + k).
    slot: Tensor,
    pub count: i64,
    /// The most windows of one record in the batch.
    windows: i64,
}

impl Records {
    /// `record_of_sequence[b]`: the record (0..count) of batch row b.
    pub fn new(record_of_sequence: &[usize], device: Device) -> Records {
        let count = record_of_sequence.iter().max().map_or(0, |m| m + 1);
        let mut seen = vec![0i64; count];
        let mut slots = Vec::with_capacity(record_of_sequence.len());
        for &r in record_of_sequence {
            slots.push(r as i64);
            seen[r] += 1;
        }
        let windows = seen.iter().copied().max().unwrap_or(1);
        let mut taken = vec![0i64; count];
        for (slot, &r) in slots.iter_mut().zip(record_of_sequence) {
            *slot = *slot * windows + taken[r];
            taken[r] += 1;
        }
        let as_tensor = |v: Vec<i64>| Tensor::from_slice(&v).to_device(device);
        Records {
            record_of_sequence: as_tensor(record_of_sequence.iter().map(|&r| r as i64).collect()),
            slot: as_tensor(slots),
            count: count as i64,
            windows,
        }
    }

    /// [B, T, d] -> [R, K * T, d]: each record's windows one after the other, missing windows zero.
    fn group(&self, x: &Tensor) -> Tensor {
        let (_, t, d) = x.size3().expect("[B, T, d]");
        Tensor::zeros([self.count * self.windows, t, d], (x.kind(), x.device()))
            .index_copy(0, &self.slot, x)
            .view([self.count, self.windows * t, d])
    }
}

/// A batch's per-record losses and gradient norms (before clipping).
pub struct Clipped {
    /// Each record's loss (see [`record_losses`]) (one per record).
    pub losses: Tensor,
    /// Each record's gradient norm (one per record).
    pub norms: Tensor,
}

/// Each record's loss: its binary cross-entropy summed over its scored entries (every code of every scored
/// row of all its windows), one per record. Records are separable (nothing in the model mixes the rows of a batch), so
/// the gradient of the sum is the sum of the records' gradients. On this scale the demo's records have
/// gradient norms of 100 to 300, so the default bound C = 1 clips every record: each contributes its
/// gradient's direction, which measured best (see docs/dp-sgd.md); Adam makes the update independent of C
/// once every record is clipped.
pub fn record_losses(model: &Halo, batch: &Batch, records: &Records, noise: Noise, tape: Option<&Tape>) -> Tensor {
    let (b, t, v) = batch.visits.size3().expect("[B, T, V]");
    let logits = model.forward_batch_taped(batch, noise, tape);
    let targets = batch
        .visits
        .narrow(1, 1, t - 1)
        .reshape([b * (t - 1), v])
        .index_select(0, &batch.rows);
    let bce = logits.binary_cross_entropy_with_logits::<Tensor>(&targets, None, None, Reduction::None);
    let sequence_of_row = batch.rows.divide_scalar_mode(t - 1, "floor");
    let record_of_row = records.record_of_sequence.index_select(0, &sequence_of_row);
    let per_row = bce.sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
    Tensor::zeros([records.count], (Kind::Float, logits.device())).index_add(0, &record_of_row, &per_row)
}

/// Runs the batch forward and accumulates into the parameters' gradients the sum of the records'
/// gradients, each clipped to norm `max_norm` (the caller zeroes the gradients first). Two backward passes
/// through one forward pass, whatever the batch size.
pub fn clipped_backward(model: &Halo, batch: &Batch, records: &Records, noise: Noise, max_norm: f64) -> Clipped {
    let tape = Tape::default();
    let losses = record_losses(model, batch, records, noise, Some(&tape));
    let sites = tape.sites.into_inner();
    let outputs: Vec<&Tensor> = sites.iter().map(|s| &s.output).collect();
    // Records are separable, so the gradient of the summed loss w.r.t. a layer output holds, in each
    // record's rows, that record's own gradient. Not accumulated into the parameters.
    let grads = Tensor::run_backward(&[losses.sum(Kind::Float)], &outputs, true, false);
    let norms = tch::no_grad(|| {
        let mut squared = Tensor::zeros([records.count], (Kind::Float, losses.device()));
        for (site, grad) in sites.iter().zip(&grads) {
            if grad.defined() {
                squared += site_norm2(site, grad, batch, records);
            }
        }
        squared.sqrt()
    });
    let scale = tch::no_grad(|| ((&norms + 1e-12).reciprocal() * max_norm).clamp_max(1.0));
    (&losses * &scale).sum(Kind::Float).backward();
    Clipped {
        losses: losses.detach(),
        norms,
    }
}

/// The squared per-record gradient norm of the parameters of one site, [R].
fn site_norm2(site: &Site, grad: &Tensor, batch: &Batch, records: &Records) -> Tensor {
    let (b, t, _) = batch.visits.size3().expect("[B, T, V]");
    // To [R, S, d]: a record's rows (all its windows) along S.
    let grouped = |x: &Tensor| match site.layout {
        Layout::Sequence => records.group(x),
        Layout::ScoredRows => {
            let d = x.size()[1];
            let rows = Tensor::zeros([b * (t - 1), d], (x.kind(), x.device())).index_copy(0, &batch.rows, x);
            records.group(&rows.view([b, t - 1, d]))
        }
    };
    let g = grouped(grad);
    let mut squared = Tensor::zeros([records.count], (Kind::Float, grad.device()));
    for part in &site.parts {
        squared += match part {
            Part::Weight { input, mask_offset } => {
                let a = grouped(&input.detach());
                match mask_offset {
                    None => ghost::weight_norm2(&a, &g),
                    Some(offset) => ghost::masked_weight_norm2(&a, &g, *offset),
                }
            }
            Part::Bias => summed_rows_norm2(&g),
            Part::Scale { normalized } => summed_rows_norm2(&(&g * grouped(&normalized.detach()))),
            Part::Position => {
                let (r, _, d) = g.size3().expect("[R, S, d]");
                let per_window = grad.size()[1];
                g.view([r, records.windows, per_window, d])
                    .sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
                    .square()
                    .sum_dim_intlist([1i64, 2].as_slice(), false, Kind::Float)
            }
        };
    }
    squared
}

/// |sum_s x_s|^2 per record of [R, S, d].
fn summed_rows_norm2(x: &Tensor) -> Tensor {
    x.sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
        .square()
        .sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
}
