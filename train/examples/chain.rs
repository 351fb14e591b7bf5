//! Within-visit sampling drift of a checkpoint's code module, in libtorch, apart from the sampler: each
//! training visit is sampled again, code by code (a Bernoulli per medical code, in vocabulary order, given
//! the true history and the codes drawn before it), and its size compared with the data's. Teacher-forced
//! sums of probabilities (example `calibration`) can match the data while this falls short: then the drift
//! comes from the chain of draws inside a visit. Exclusive groups (gap, age buckets) are drawn code by code
//! here too, unlike the sampler: exact for models without them (the records comparison of docs/records.md).
//!
//!     cargo run --release -p halo-train --example chain -- CHECKPOINT DATA [OFFSET]

mod common;

use anyhow::{Context, Result};
use halo_core::record::Split;
use halo_core::ReadOptions;
use halo_train::{checkpoint, data};
use rand::Rng;
use rand_chacha::rand_core::SeedableRng;
use std::path::PathBuf;
use tch::Device;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (ck_dir, data_path) = match args.as_slice() {
        [c, d] | [c, d, _] => (PathBuf::from(c), PathBuf::from(d)),
        _ => anyhow::bail!("usage: chain CHECKPOINT DATA [LOGIT_OFFSET]"),
    };
    let offset: f32 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(0.0);
    let ck = checkpoint::load(&ck_dir, Device::Cpu)?;
    let dataset = data::read(&data_path, None, &ReadOptions::default()).context("reading the data")?;
    let (splits, _) = data::encode_splits(&dataset.patients, &ck.split, &ck.encoding, ck.spec.as_ref());
    let module = common::CodeModuleRows::of(&ck)?;
    let c = ck.encoding.code_vocab_size;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let _guard = tch::no_grad_guard();
    let s = splits.get(&Split::Train).context("no train split")?;
    let (mut visits, mut actual, mut sampled) = (0f64, 0f64, 0f64);
    let (mut first_n, mut first_actual, mut first_sampled) = (0f64, 0f64, 0f64);
    for chunk in s.patients.chunks(64) {
        let refs: Vec<_> = chunk.iter().collect();
        let batch = data::make_batch(&refs, &ck.encoding, Device::Cpu);
        let history = ck.model.transformer.forward(&batch.visits);
        for (i, p) in chunk.iter().enumerate() {
            for t in 1..=p.visits.len() {
                let h = Vec::<f32>::try_from(history.get(i as i64).get(t as i64))?;
                let real = p.visits[t - 1].iter().filter(|&&x| (x as usize) < c).count();
                // Pre-activations of the first layer: history part, then add a column per drawn code.
                let mut pre = module.start(&h);
                let mut drawn = 0usize;
                for j in 0..c {
                    let logit = module.logit(&pre, j) + offset;
                    let p_j = 1.0 / (1.0 + (-logit).exp());
                    if rng.random::<f32>() < p_j {
                        drawn += 1;
                        module.set(&mut pre, j);
                    }
                }
                visits += 1.0;
                actual += real as f64;
                sampled += drawn as f64;
                if t == 1 {
                    first_n += 1.0;
                    first_actual += real as f64;
                    first_sampled += drawn as f64;
                }
            }
        }
    }
    println!(
        "train: {visits} visits; codes per visit: data {:.3}, drawn given the true history {:.3}; first visits: data {:.3}, drawn {:.3}",
        actual / visits,
        sampled / visits,
        first_actual / first_n,
        first_sampled / first_n
    );
    Ok(())
}
