//! Checkpoint folders with random weights, for the sampler benchmarks (`halo-sample bench` on a paper-size
//! model, scripts/bench-sampler.sh) and tests: a model of any size without training one.

use crate::error::{ExportError, Result};
use halo_core::config::ModelConfig;
use halo_core::encoding::Encoding;
use halo_core::fsutil;
use halo_core::manifest::{checkpoint, TrainingSummary};
use rand::{Rng, SeedableRng};
use safetensors::tensor::{Dtype, TensorView};
use std::path::Path;

/// Writes a checkpoint folder with random weights: normal(0, 0.02) matrices and biases drawn the same
/// way, LayerNorm weight 1 and bias 0, from a ChaCha stream seeded with `seed` (so the same arguments
/// give the same files). `code_bias[j]`, when given, becomes the output bias of code j (column E-1+j of
/// `ehr_head.auto2.bias`, or `ehr_head.bias[j]` for a coarse model), which shapes how many codes a
/// random model samples per visit.
pub fn write_random_checkpoint(
    dir: &Path,
    config: &ModelConfig,
    encoding: &Encoding,
    seed: u64,
    code_bias: Option<&[f32]>,
) -> Result<()> {
    config.validate(&dir.join(checkpoint::CONFIG))?;
    if encoding.vocab_size() != config.total_vocab_size {
        return Err(ExportError::Invalid(format!(
            "encoding has {} tokens but the config's total_vocab_size is {}",
            encoding.vocab_size(),
            config.total_vocab_size
        )));
    }
    if let Some(bias) = code_bias {
        if bias.len() > config.total_vocab_size {
            return Err(ExportError::Invalid(format!(
                "code_bias has {} entries, more than the vocabulary's {}",
                bias.len(),
                config.total_vocab_size
            )));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| ExportError::io(dir, e))?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, shape) in config.parameter_shapes() {
        let n: usize = shape.iter().product();
        let mut data: Vec<f32> = if name.contains(".ln_") {
            vec![if name.ends_with(".weight") { 1.0 } else { 0.0 }; n]
        } else {
            normal_samples(&mut rng, n, 0.02)
        };
        if let Some(bias) = code_bias {
            if name == "ehr_head.auto2.bias" {
                let first = config.logit_rows().start;
                data[first..first + bias.len()].copy_from_slice(bias);
            } else if name == "ehr_head.bias" {
                data[..bias.len()].copy_from_slice(bias);
            }
        }
        let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        tensors.push((name, shape, bytes));
    }
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            let view = TensorView::new(Dtype::F32, shape.clone(), bytes).expect("sizes match");
            (name.clone(), view)
        })
        .collect();
    let weights_path = dir.join(checkpoint::WEIGHTS);
    let bytes = safetensors::serialize(views, None).map_err(|e| ExportError::Weights {
        path: weights_path.clone(),
        message: e.to_string(),
    })?;
    fsutil::write_atomic(&weights_path, &bytes)?;
    fsutil::write_json_atomic(&dir.join(checkpoint::CONFIG), config)?;
    fsutil::write_json_atomic(&dir.join(checkpoint::ENCODING), encoding)?;
    let training = TrainingSummary {
        source: format!("random weights (seed {seed})"),
        ..Default::default()
    };
    fsutil::write_json_atomic(&dir.join(checkpoint::TRAINING), &training)?;
    // No data, so an empty split: the folder is then a complete checkpoint for `halo test` and friends.
    let split = halo_core::split::SplitAssignment {
        source: halo_core::split::SplitSource::RandomWeights,
        seed,
        train: vec![],
        val: vec![],
        test: vec![],
    };
    fsutil::write_json_atomic(&dir.join(checkpoint::SPLIT), &split)?;
    Ok(())
}

/// `n` draws from normal(0, std) by the Box-Muller transform.
fn normal_samples(rng: &mut impl Rng, n: usize, std: f64) -> Vec<f32> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt() * std;
        let theta = std::f64::consts::TAU * u2;
        out.push((r * theta.cos()) as f32);
        out.push((r * theta.sin()) as f32);
    }
    out.truncate(n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_samples_have_the_requested_spread() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let x = normal_samples(&mut rng, 100_001, 0.02);
        assert_eq!(x.len(), 100_001);
        let mean = x.iter().map(|v| *v as f64).sum::<f64>() / x.len() as f64;
        let var = x.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / x.len() as f64;
        assert!(mean.abs() < 5e-4, "mean {mean}");
        assert!((var.sqrt() - 0.02).abs() < 5e-4, "std {}", var.sqrt());
    }
}
