//! Utility: a phenotype classifier (bidirectional LSTM over visit multi-hots, as in the paper) trained on
//! real or on synthetic records and tested on the same real records.

use halo_core::interner::Interner;
use halo_core::record::Patient;
use std::collections::HashMap;
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};

/// A record as the classifier reads it: visits of code ids.
pub type CodeSequence = Vec<Vec<i64>>;

/// Most recent visits a classifier sees per record.
const MAX_VISITS: usize = 24;

/// The record's most recent visits as ids of `codes` (codes it does not know are dropped).
pub fn encode_record(codes: &Interner, p: &Patient) -> CodeSequence {
    let skip = p.visits.len().saturating_sub(MAX_VISITS);
    p.visits
        .iter()
        .skip(skip)
        .map(|v| v.codes.iter().filter_map(|c| codes.get(c)).map(i64::from).collect())
        .collect()
}

/// Records with their class, for one part (train, validation or test) of a classifier run.
pub struct Labelled<'a> {
    pub records: Vec<&'a CodeSequence>,
    pub positive: Vec<bool>,
}

impl<'a> Labelled<'a> {
    /// The records and classes at `idx`.
    pub fn pick(records: &[&'a CodeSequence], positive: &[bool], idx: &[usize]) -> Labelled<'a> {
        Labelled {
            records: idx.iter().map(|i| records[*i]).collect(),
            positive: idx.iter().map(|i| positive[*i]).collect(),
        }
    }
}

/// At most this many epochs, stopping after PATIENCE epochs without a better validation loss.
const EPOCHS: usize = 10;
const PATIENCE: usize = 2;

/// One direction of an LSTM, written out with plain tensor ops (libtorch's fused CPU LSTM backward takes a
/// slow reference path on some machines).
struct LstmDirection {
    w_ih: Tensor,
    w_hh: Tensor,
    bias: Tensor,
    hidden: i64,
}

impl LstmDirection {
    fn new(p: nn::Path, input: i64, hidden: i64) -> LstmDirection {
        let bound = 1.0 / (hidden as f64).sqrt();
        let init = nn::Init::Uniform { lo: -bound, up: bound };
        LstmDirection {
            w_ih: p.var("w_ih", &[input, 4 * hidden], init),
            w_hh: p.var("w_hh", &[hidden, 4 * hidden], init),
            bias: p.var("bias", &[4 * hidden], init),
            hidden,
        }
    }

    /// x [B, T, I], mask [B, T] -> outputs [B, T, H]; padded steps leave the state unchanged.
    fn run(&self, x: &Tensor, mask: &Tensor, reverse: bool) -> Tensor {
        let (b, t, _) = x.size3().unwrap();
        let projected = x.matmul(&self.w_ih) + &self.bias;
        let mut h = Tensor::zeros([b, self.hidden], (Kind::Float, x.device()));
        let mut c = h.zeros_like();
        let mut outputs = Vec::with_capacity(t as usize);
        let steps: Vec<i64> = if reverse {
            (0..t).rev().collect()
        } else {
            (0..t).collect()
        };
        for step in steps {
            let gates = projected.select(1, step) + h.matmul(&self.w_hh);
            let g = gates.chunk(4, 1);
            let (i, f, cell, o) = (g[0].sigmoid(), g[1].sigmoid(), g[2].tanh(), g[3].sigmoid());
            let m = mask.select(1, step).unsqueeze(1);
            let c_new = f * &c + i * cell;
            let h_new = o * c_new.tanh();
            c = &m * c_new + (1.0 - &m) * &c;
            h = &m * h_new + (1.0 - &m) * &h;
            outputs.push((step, &h * &m));
        }
        outputs.sort_by_key(|(s, _)| *s);
        Tensor::stack(&outputs.into_iter().map(|(_, o)| o).collect::<Vec<_>>(), 1)
    }
}

struct Classifier {
    embed: nn::Linear,
    forward_lstm: LstmDirection,
    backward_lstm: LstmDirection,
    out: nn::Linear,
}

impl Classifier {
    fn new(p: &nn::Path, n_codes: i64) -> Classifier {
        let hidden = 64;
        Classifier {
            embed: nn::linear(p / "embed", n_codes, hidden, Default::default()),
            forward_lstm: LstmDirection::new(p / "lstm_fwd", hidden, hidden),
            backward_lstm: LstmDirection::new(p / "lstm_bwd", hidden, hidden),
            out: nn::linear(p / "out", 2 * hidden, 1, Default::default()),
        }
    }

    /// Logit per record: mean of the BiLSTM outputs over the record's visits.
    fn forward(&self, visits: &Tensor, mask: &Tensor) -> Tensor {
        let x = self.embed.forward(visits).relu();
        let out = Tensor::cat(
            &[
                self.forward_lstm.run(&x, mask, false),
                self.backward_lstm.run(&x, mask, true),
            ],
            2,
        );
        let steps = mask
            .sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
            .clamp_min(1.0)
            .unsqueeze(1);
        let pooled = out.sum_dim_intlist([1i64].as_slice(), false, Kind::Float) / steps;
        self.out.forward(&pooled).squeeze_dim(-1)
    }
}

fn batch(records: &[&CodeSequence], n_codes: i64, device: Device) -> (Tensor, Tensor) {
    let b = records.len() as i64;
    let t = records.iter().map(|r| r.len()).max().unwrap_or(1).max(1) as i64;
    let mut hot = Vec::new();
    let mut mask = vec![0f32; (b * t) as usize];
    for (i, r) in records.iter().enumerate() {
        for (j, v) in r.iter().enumerate() {
            mask[i * t as usize + j] = 1.0;
            hot.extend(v.iter().map(|c| ((i as i64 * t) + j as i64) * n_codes + c));
        }
    }
    let x = Tensor::zeros([b * t * n_codes], (Kind::Float, device))
        .index_fill(0, &Tensor::from_slice(&hot).to_device(device), 1.0)
        .view([b, t, n_codes]);
    (x, Tensor::from_slice(&mask).to_device(device).view([b, t]))
}

fn predict(model: &Classifier, records: &[&CodeSequence], n_codes: i64, device: Device) -> Vec<f64> {
    let _guard = tch::no_grad_guard();
    let mut out = Vec::with_capacity(records.len());
    for chunk in records.chunks(256) {
        let (x, m) = batch(chunk, n_codes, device);
        out.extend(
            Vec::<f64>::try_from(
                model
                    .forward(&x, &m)
                    .sigmoid()
                    .to_kind(Kind::Double)
                    .to_device(Device::Cpu),
            )
            .unwrap(),
        );
    }
    out
}

/// Trains on `train` with early stopping on the validation loss of `val`; returns the probability of the
/// positive class for each record of `test`.
pub fn train_and_predict(
    train: &Labelled,
    val: &Labelled,
    test: &[&CodeSequence],
    n_codes: usize,
    seed: u64,
    device: Device,
) -> Vec<f64> {
    tch::manual_seed(seed as i64);
    let n_codes = n_codes.max(1) as i64;
    let vs = nn::VarStore::new(device);
    let model = Classifier::new(&vs.root(), n_codes);
    let mut opt = nn::Adam::default().build(&vs, 1e-3).expect("optimizer");
    let mut best = (f64::INFINITY, vs.variables());
    let best_copy = |vs: &nn::VarStore| -> HashMap<String, Tensor> {
        vs.variables()
            .into_iter()
            .map(|(k, v)| (k, v.detach().copy()))
            .collect()
    };
    best.1 = best_copy(&vs);
    let mut order: Vec<usize> = (0..train.records.len()).collect();
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed);
    let targets =
        |y: &[bool]| Tensor::from_slice(&y.iter().map(|b| *b as i32 as f32).collect::<Vec<_>>()).to_device(device);
    let mut since_best = 0;
    for _epoch in 0..EPOCHS {
        rand::seq::SliceRandom::shuffle(order.as_mut_slice(), &mut rng);
        for chunk in order.chunks(64) {
            let recs: Vec<_> = chunk.iter().map(|i| train.records[*i]).collect();
            let ys: Vec<bool> = chunk.iter().map(|i| train.positive[*i]).collect();
            let (x, m) = batch(&recs, n_codes, device);
            let loss = model.forward(&x, &m).binary_cross_entropy_with_logits::<Tensor>(
                &targets(&ys),
                None,
                None,
                tch::Reduction::Mean,
            );
            opt.backward_step(&loss);
        }
        let p = predict(&model, &val.records, n_codes, device);
        let val_loss: f64 = p
            .iter()
            .zip(&val.positive)
            .map(|(p, y)| -(if *y { p.max(1e-7).ln() } else { (1.0 - p).max(1e-7).ln() }))
            .sum::<f64>()
            / p.len().max(1) as f64;
        if val_loss < best.0 {
            best = (val_loss, best_copy(&vs));
            since_best = 0;
        } else {
            since_best += 1;
            if since_best >= PATIENCE {
                break;
            }
        }
    }
    tch::no_grad(|| {
        for (name, mut var) in vs.variables() {
            var.copy_(&best.1[&name]);
        }
    });
    predict(&model, test, n_codes, device)
}
