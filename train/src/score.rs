//! Likelihood-based metrics of a model on encoded patients, as the paper and the reference
//! test_model.py define them.

use crate::data::{make_batch, Batch};
use crate::model::{Halo, Noise};
use halo_core::corpus::Sequences;
use halo_core::encoding::{EncodedPatient, Encoding};
use tch::{Device, Kind, Reduction, Tensor};

/// Indices, among the scored rows of a batch of `patients` ([`scored_bce`]'s order: per record its label
/// visit, then its visits), of the rows that predict a real visit.
pub fn visit_rows(patients: &[EncodedPatient]) -> Tensor {
    let mut keep = Vec::new();
    let mut row = 0i64;
    for p in patients {
        keep.extend((row + 1)..=(row + p.visits.len() as i64));
        row += p.visits.len() as i64 + 1;
    }
    Tensor::from_slice(&keep)
}

/// Elementwise binary cross-entropy of the scored rows (label visit and real visits), with their logits and
/// targets: three [N, V] tensors, rows in the order of `batch.rows`.
/// `noise` only in training.
pub fn scored_bce(model: &Halo, batch: &Batch, noise: Noise) -> (Tensor, Tensor, Tensor) {
    let (b, t, v) = batch.visits.size3().unwrap();
    let logits = model.forward_batch_with_noise(batch, noise);
    let targets = batch
        .visits
        .narrow(1, 1, t - 1)
        .reshape([b * (t - 1), v])
        .index_select(0, &batch.rows);
    let bce = logits.binary_cross_entropy_with_logits::<Tensor>(&targets, None, None, Reduction::None);
    (bce, logits, targets)
}

/// Mean BCE over the scored entries (scored rows x every code): the training loss, with `noise`.
pub fn loss(model: &Halo, batch: &Batch, noise: Noise) -> Tensor {
    let (bce, _, _) = scored_bce(model, batch, noise);
    bce.mean(Kind::Float)
}

/// Sums over a set of patients; see `Scores` for the derived figures.
#[derive(Debug, Default, Clone)]
pub struct Sums {
    pub log_likelihood: f64,
    pub scored_entries: f64,
    pub present_codes: f64,
    pub scored_visits: f64,
    pub true_pos: f64,
    pub false_pos: f64,
    pub false_neg: f64,
    /// Log-likelihood of each patient, in input order.
    pub per_record: Vec<f64>,
}

#[derive(Debug, serde::Serialize)]
pub struct Scores {
    pub records: usize,
    /// Mean binary cross-entropy over every code of every scored visit.
    pub bce: f64,
    /// F1 of thresholding every code's probability at 0.5.
    pub f1: f64,
    pub precision: f64,
    pub recall: f64,
    /// exp(-log-likelihood / present codes).
    pub perplexity: f64,
    /// exp(-log-likelihood / scored visits).
    pub perplexity_per_visit: f64,
    pub log_likelihood: f64,
    pub log_likelihood_per_visit: f64,
    pub present_codes: f64,
    pub scored_visits: f64,
}

impl Sums {
    pub fn scores(&self) -> Scores {
        let precision = self.true_pos / (self.true_pos + self.false_pos).max(1.0);
        let recall = self.true_pos / (self.true_pos + self.false_neg).max(1.0);
        Scores {
            records: self.per_record.len(),
            bce: -self.log_likelihood / self.scored_entries.max(1.0),
            f1: if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            },
            precision,
            recall,
            perplexity: (-self.log_likelihood / self.present_codes.max(1.0)).exp(),
            perplexity_per_visit: (-self.log_likelihood / self.scored_visits.max(1.0)).exp(),
            log_likelihood: self.log_likelihood,
            log_likelihood_per_visit: self.log_likelihood / self.scored_visits.max(1.0),
            present_codes: self.present_codes,
            scored_visits: self.scored_visits,
        }
    }
}

/// Scores patients with the exact per-code conditionals: every code position of the label visit and of
/// every real visit counts, present or absent; padding does not.
pub fn score(
    model: &Halo,
    patients: &[EncodedPatient],
    encoding: &Encoding,
    batch_size: usize,
    device: Device,
) -> Sums {
    let _guard = tch::no_grad_guard();
    let mut sums = Sums::default();
    for chunk in patients.chunks(batch_size.max(1)) {
        let refs: Vec<&EncodedPatient> = chunk.iter().collect();
        sums.add_batch(model, &refs, encoding, device);
    }
    sums
}

/// [`score`] over a corpus split, decoding one batch at a time.
pub fn score_sequences(
    model: &Halo,
    sequences: &Sequences,
    encoding: &Encoding,
    batch_size: usize,
    device: Device,
) -> Sums {
    let _guard = tch::no_grad_guard();
    let mut sums = Sums::default();
    let batch_size = batch_size.max(1);
    for start in (0..sequences.len()).step_by(batch_size) {
        let chunk: Vec<EncodedPatient> = (start..(start + batch_size).min(sequences.len()))
            .map(|i| sequences.get(i))
            .collect();
        let refs: Vec<&EncodedPatient> = chunk.iter().collect();
        sums.add_batch(model, &refs, encoding, device);
    }
    sums
}

impl Sums {
    fn add_batch(&mut self, model: &Halo, chunk: &[&EncodedPatient], encoding: &Encoding, device: Device) {
        let v = encoding.vocab_size() as f64;
        let batch = make_batch(chunk, encoding, device);
        let per_row = batch.visits.size()[1] - 1;
        let (bce, logits, targets) = scored_bce(model, &batch, Noise::NONE);
        let rows = &batch.rows;
        let record_of_row = rows.divide_scalar_mode(per_row, "floor");
        let per_record = Tensor::zeros([chunk.len() as i64], (Kind::Double, device)).index_add(
            0,
            &record_of_row,
            &bce.sum_dim_intlist([1i64].as_slice(), false, Kind::Double),
        );
        let per_record = Vec::<f64>::try_from(per_record.to_device(Device::Cpu)).unwrap();
        self.per_record.extend(per_record.iter().map(|x| -x));
        self.log_likelihood -= per_record.iter().sum::<f64>();
        let n_rows = rows.size()[0] as f64;
        self.scored_visits += n_rows;
        self.scored_entries += n_rows * v;
        let present = targets.sum(Kind::Double).double_value(&[]);
        self.present_codes += present;
        let predicted = logits.gt(0.0).to_kind(Kind::Float);
        let tp = (&predicted * &targets).sum(Kind::Double).double_value(&[]);
        self.true_pos += tp;
        self.false_pos += predicted.sum(Kind::Double).double_value(&[]) - tp;
        self.false_neg += present - tp;
    }
}
