//! Utility: a phenotype classifier (bidirectional LSTM over visit multi-hots, as in the paper) trained on
//! real or on synthetic records and tested on the same real records.

use halo_evaluate::ClassifierScores;
use std::collections::HashMap;
use tch::nn::{self, Module, OptimizerConfig, RNN};
use tch::{Device, Kind, Tensor};

/// Records as visits of code ids, ready for the classifier.
pub struct CodeIndex {
    ids: HashMap<String, i64>,
}

/// Most recent visits a classifier sees per record.
const MAX_VISITS: usize = 48;

impl CodeIndex {
    pub fn new<'a>(codes: impl IntoIterator<Item = &'a str>) -> CodeIndex {
        let mut ids = HashMap::new();
        for c in codes {
            let n = ids.len() as i64;
            ids.entry(c.to_string()).or_insert(n);
        }
        CodeIndex { ids }
    }
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
    /// Visits of known code ids (unknown codes dropped), the most recent MAX_VISITS.
    pub fn encode(&self, p: &halo_core::record::Patient) -> Vec<Vec<i64>> {
        let skip = p.visits.len().saturating_sub(MAX_VISITS);
        p.visits.iter().skip(skip).map(|v| v.codes.iter().filter_map(|c| self.ids.get(c).copied()).collect()).collect()
    }
}

struct Classifier {
    embed: nn::Linear,
    lstm: nn::LSTM,
    out: nn::Linear,
}

impl Classifier {
    fn new(p: &nn::Path, n_codes: i64) -> Classifier {
        let hidden = 64;
        let cfg = nn::RNNConfig {
            bidirectional: true,
            batch_first: true,
            ..Default::default()
        };
        Classifier {
            embed: nn::linear(p / "embed", n_codes, hidden, Default::default()),
            lstm: nn::lstm(p / "lstm", hidden, hidden, cfg),
            out: nn::linear(p / "out", 2 * hidden, 1, Default::default()),
        }
    }

    /// Logit per record: mean of the BiLSTM outputs over the record's visits.
    fn forward(&self, visits: &Tensor, mask: &Tensor) -> Tensor {
        let (out, _) = self.lstm.seq(&self.embed.forward(visits).relu());
        let m = mask.unsqueeze(-1);
        let pooled = (out * &m).sum_dim_intlist([1i64].as_slice(), false, Kind::Float) / m.sum_dim_intlist([1i64].as_slice(), false, Kind::Float).clamp_min(1.0);
        self.out.forward(&pooled).squeeze_dim(-1)
    }
}

fn batch(records: &[&Vec<Vec<i64>>], n_codes: i64, device: Device) -> (Tensor, Tensor) {
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

fn predict(model: &Classifier, records: &[&Vec<Vec<i64>>], n_codes: i64, device: Device) -> Vec<f64> {
    let _guard = tch::no_grad_guard();
    let mut out = Vec::with_capacity(records.len());
    for chunk in records.chunks(256) {
        let (x, m) = batch(chunk, n_codes, device);
        out.extend(Vec::<f64>::try_from(model.forward(&x, &m).sigmoid().to_kind(Kind::Double).to_device(Device::Cpu)).unwrap());
    }
    out
}

/// Trains on (train, val) with early stopping on validation loss and scores on test.
pub fn train_and_score(
    train: (&[&Vec<Vec<i64>>], &[bool]),
    val: (&[&Vec<Vec<i64>>], &[bool]),
    test: (&[&Vec<Vec<i64>>], &[bool]),
    n_codes: usize,
    seed: u64,
    device: Device,
) -> ClassifierScores {
    tch::manual_seed(seed as i64);
    let n_codes = n_codes.max(1) as i64;
    let vs = nn::VarStore::new(device);
    let model = Classifier::new(&vs.root(), n_codes);
    let mut opt = nn::Adam::default().build(&vs, 1e-3).expect("optimizer");
    let mut best = (f64::INFINITY, vs.variables());
    let best_copy = |vs: &nn::VarStore| -> HashMap<String, Tensor> { vs.variables().into_iter().map(|(k, v)| (k, v.detach().copy())).collect() };
    best.1 = best_copy(&vs);
    let mut order: Vec<usize> = (0..train.0.len()).collect();
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed);
    let targets = |y: &[bool]| Tensor::from_slice(&y.iter().map(|b| *b as i32 as f32).collect::<Vec<_>>()).to_device(device);
    for _epoch in 0..15 {
        rand::seq::SliceRandom::shuffle(order.as_mut_slice(), &mut rng);
        for chunk in order.chunks(64) {
            let recs: Vec<_> = chunk.iter().map(|i| train.0[*i]).collect();
            let ys: Vec<bool> = chunk.iter().map(|i| train.1[*i]).collect();
            let (x, m) = batch(&recs, n_codes, device);
            let loss = model.forward(&x, &m).binary_cross_entropy_with_logits::<Tensor>(&targets(&ys), None, None, tch::Reduction::Mean);
            opt.backward_step(&loss);
        }
        let p = predict(&model, val.0, n_codes, device);
        let val_loss: f64 = p.iter().zip(val.1).map(|(p, y)| -(if *y { p.max(1e-7).ln() } else { (1.0 - p).max(1e-7).ln() })).sum::<f64>() / p.len().max(1) as f64;
        if val_loss < best.0 {
            best = (val_loss, best_copy(&vs));
        }
    }
    tch::no_grad(|| {
        for (name, mut var) in vs.variables() {
            var.copy_(&best.1[&name]);
        }
    });
    let scores = predict(&model, test.0, n_codes, device);
    ClassifierScores::from_scores(test.1, &scores, 0.5)
}
