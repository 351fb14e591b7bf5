//! The output-bias initialisation under differential privacy: each code's log-odds (as
//! `crate::data::prior_logits`) from noisy sums, a Gaussian mechanism the run's plan accounts for.

use halo_core::corpus::Sequences;
use halo_core::encoding::Encoding;
use tch::{Device, Kind, Tensor};

/// Bound of the L2 norm of one record's rates in [`noisy_prior_logits`]. A bound of 1 shrank almost every
/// record (on the demo the norms' median is 2.2, the 90th percentile 2.9), and the codes of records with
/// many codes most: visit unigram R² 0.885 at noise multiplier 2, against 0.904 with 3 (docs/dp-sgd.md).
pub const PRIOR_CLIP_NORM: f64 = 3.0;

/// Each vocabulary entry's log-odds over the scored rows: record r contributes its rates x_r,j (the share
/// of its scored rows, over all its windows, that hold entry j), clipped to L2 norm [`PRIOR_CLIP_NORM`], so
/// that adding or removing a record moves the sum by at most that; the sum gets Gaussian noise of standard
/// deviation `noise_multiplier` times the bound, drawn after `tch::manual_seed(seed)`. The rate is the noisy
/// sum over the number of records, kept within [0.5 / records, 1 - 0.5 / records] (the half count of
/// `prior_logits`).
pub fn noisy_prior_logits(
    train: &Sequences,
    records: &[Vec<usize>],
    encoding: &Encoding,
    noise_multiplier: f64,
    seed: i64,
) -> Tensor {
    let v = encoding.vocab_size();
    let mut sum = vec![0f64; v];
    let mut counts = vec![0f64; v];
    for sequences in records {
        counts.iter_mut().for_each(|c| *c = 0.0);
        let mut rows = 0f64;
        for &i in sequences {
            let p = train.get(i);
            rows += (p.visits.len() + 1) as f64;
            for c in p.labels.iter().chain(p.visits.iter().flatten()) {
                counts[*c as usize] += 1.0;
            }
            if !p.continues {
                counts[encoding.end_index()] += 1.0;
            }
        }
        let norm = counts.iter().map(|c| (c / rows).powi(2)).sum::<f64>().sqrt();
        let scale = 1.0 / rows / (norm / PRIOR_CLIP_NORM).max(1.0);
        for (s, c) in sum.iter_mut().zip(&counts) {
            *s += c * scale;
        }
    }
    tch::manual_seed(seed);
    let noise = Vec::<f64>::try_from(
        Tensor::randn([v as i64], (Kind::Double, Device::Cpu)) * (noise_multiplier * PRIOR_CLIP_NORM),
    )
    .expect("a vector");
    let n = records.len().max(1) as f64;
    let logits: Vec<f32> = sum
        .iter()
        .zip(&noise)
        .map(|(s, z)| {
            let p = ((s + z) / n).clamp(0.5 / n, 1.0 - 0.5 / n);
            (p / (1.0 - p)).ln() as f32
        })
        .collect();
    Tensor::from_slice(&logits)
}
