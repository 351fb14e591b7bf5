//! Bundles of codes that the data always draws together: for the training visits holding CODE, the codes
//! found beside it in at least 99% of them (its bundle) are listed in vocabulary order with the model's
//! teacher-forced probability of each given the visit's true earlier codes, and each visit is redrawn code by
//! code given its true history to count how often a bundle, once started, is drawn whole, and which of its
//! codes a redraw that had drawn three of them missed first. A model whose
//! teacher-forced probabilities sit near one while its redrawn bundles break drifts within a visit; one whose
//! probabilities fall short learnt the bundle loosely.
//!
//!     cargo run --release -p halo-train --example bundle -- CHECKPOINT DATA CODE [DRAWS]

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
    let (ck_dir, data_path, code) = match args.as_slice() {
        [c, d, k] | [c, d, k, _] => (PathBuf::from(c), PathBuf::from(d), k.clone()),
        _ => anyhow::bail!("usage: bundle CHECKPOINT DATA CODE [DRAWS]"),
    };
    let draws: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(4);
    let ck = checkpoint::load(&ck_dir, Device::Cpu)?;
    let dataset = data::read(&data_path, None, &ReadOptions::default()).context("reading the data")?;
    let (splits, _) = data::encode_splits(&dataset.patients, &ck.split, &ck.encoding, ck.spec.as_ref());
    let enc = &ck.encoding;
    let c = enc.code_vocab_size;
    let anchor = *enc
        .index()
        .get(code.as_str())
        .with_context(|| format!("{code} is not in the vocabulary"))?;
    let train = splits.get(&Split::Train).context("no train split")?;
    let mut beside = vec![0usize; c];
    let mut holding = 0usize;
    for p in &train.patients {
        for v in p.visits.iter().filter(|v| v.contains(&anchor)) {
            holding += 1;
            for &j in v.iter().filter(|&&j| (j as usize) < c) {
                beside[j as usize] += 1;
            }
        }
    }
    let bundle: Vec<usize> = (0..c).filter(|&j| beside[j] as f64 >= 0.99 * holding as f64).collect();
    println!(
        "{holding} training visits hold {code}; its bundle: {} codes",
        bundle.len()
    );
    let last = *bundle.last().context("the code is in no training visit")?;
    let module = common::CodeModuleRows::of(&ck)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let _guard = tch::no_grad_guard();
    let mut forced = vec![0f64; c];
    let mut visits = 0usize;
    // Per count of bundle codes drawn: how many redraws.
    let mut drawn_sizes = vec![0usize; bundle.len() + 1];
    let mut first_missed = vec![0usize; c];
    for chunk in train.patients.chunks(64) {
        let refs: Vec<_> = chunk.iter().collect();
        let batch = data::make_batch(&refs, enc, Device::Cpu);
        let history = ck.model.transformer.forward(&batch.visits);
        for (i, p) in chunk.iter().enumerate() {
            for t in 1..=p.visits.len() {
                let visit = &p.visits[t - 1];
                if !bundle.iter().all(|&j| visit.contains(&(j as u32))) {
                    continue;
                }
                visits += 1;
                let h = Vec::<f32>::try_from(history.get(i as i64).get(t as i64))?;
                let base = module.start(&h);
                let mut pre = base.clone();
                for (j, forced_j) in forced.iter_mut().enumerate().take(last + 1) {
                    if bundle.contains(&j) {
                        *forced_j += 1.0 / (1.0 + (-module.logit(&pre, j)).exp()) as f64;
                    }
                    if visit.contains(&(j as u32)) {
                        module.set(&mut pre, j);
                    }
                }
                for _ in 0..draws {
                    let mut pre = base.clone();
                    let mut n = 0;
                    let mut missed = None;
                    for j in 0..=last {
                        if rng.random::<f32>() < 1.0 / (1.0 + (-module.logit(&pre, j)).exp()) {
                            n += usize::from(bundle.contains(&j));
                            module.set(&mut pre, j);
                        } else if n >= 3 && missed.is_none() && bundle.contains(&j) {
                            missed = Some(j);
                        }
                    }
                    drawn_sizes[n] += 1;
                    if let Some(j) = missed {
                        first_missed[j] += 1;
                    }
                }
            }
        }
    }
    println!("{visits} training visits hold the whole bundle; teacher-forced probability of each, in code order:");
    for &j in &bundle {
        println!(
            "  {:>5} {:<32} {:.3} first missed {}",
            j,
            enc.tokens[j].to_string(),
            forced[j] / visits.max(1) as f64,
            first_missed[j]
        );
    }
    let started: usize = drawn_sizes[1..].iter().sum();
    println!(
        "redrawn given the true history ({draws} each): bundle started {started}, whole {}, codes drawn of those started: {:?}",
        drawn_sizes[bundle.len()],
        drawn_sizes
    );
    Ok(())
}
