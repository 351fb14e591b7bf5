//! Whether a checkpoint conditions the codes that only one sex holds on the sex, teacher-forced: per sex, the
//! model's expected number of such codes a visit (codes held by at least 10 training persons of the other sex
//! and none of this one), on the training visits with the record's true sex and with it swapped. A model that
//! leaves the sex to the transformer gives men a small share of every visit's prenatal codes, which over a
//! record's visits (and the codes that follow one) hands half the synthetic men a women-only code
//! (docs/records.md, "The label bias").
//!
//!     cargo run --release -p halo-train --example sex_conditioning -- CHECKPOINT DATA

mod common;

use anyhow::{Context, Result};
use halo_core::record::Split;
use halo_train::model::Noise;
use halo_train::{data, score};
use tch::{Device, Kind, Tensor};

fn main() -> Result<()> {
    let (ck, splits) = common::checkpoint_and_splits("sex_conditioning")?;
    let c = ck.encoding.code_vocab_size;
    let sex = ck
        .encoding
        .demographic_categories
        .iter()
        .find(|cat| cat.name == "sex" && cat.len == 2)
        .context("the encoding has no sex category of two values")?;
    let values = [(c + sex.first) as u32, (c + sex.first + 1) as u32];
    let train = &splits[&Split::Train].patients;
    // Per sex value, the training persons holding each code.
    let mut holders = [vec![0usize; c], vec![0usize; c]];
    for p in train {
        let Some(s) = values.iter().position(|v| p.labels.contains(v)) else {
            continue;
        };
        let mut held = vec![false; c];
        for &code in p.visits.iter().flatten().filter(|&&x| (x as usize) < c) {
            held[code as usize] = true;
        }
        for (j, _) in held.iter().enumerate().filter(|(_, h)| **h) {
            holders[s][j] += 1;
        }
    }
    let _guard = tch::no_grad_guard();
    for s in 0..2 {
        let other = 1 - s;
        let foreign: Vec<i64> = (0..c)
            .filter(|&j| holders[other][j] >= 10 && holders[s][j] == 0)
            .map(|j| j as i64)
            .collect();
        let foreign = Tensor::from_slice(&foreign);
        let group: Vec<_> = train
            .iter()
            .filter(|p| p.labels.contains(&values[s]))
            .cloned()
            .collect();
        let swapped: Vec<_> = group
            .iter()
            .cloned()
            .map(|mut p| {
                p.labels
                    .iter_mut()
                    .filter(|l| **l == values[s])
                    .for_each(|l| *l = values[other]);
                p
            })
            .collect();
        for (name, records) in [("true sex", &group), ("sex swapped", &swapped)] {
            let (mut visits, mut expected) = (0f64, 0f64);
            for chunk in records.chunks(64) {
                let refs: Vec<_> = chunk.iter().collect();
                let batch = data::make_batch(&refs, &ck.encoding, Device::Cpu);
                let (_, logits, _) = score::scored_bce(&ck.model, &batch, Noise::NONE);
                let keep = score::visit_rows(chunk);
                let probs = logits.index_select(0, &keep).index_select(1, &foreign).sigmoid();
                visits += keep.size()[0] as f64;
                expected += probs.sum(Kind::Double).double_value(&[]);
            }
            println!(
                "sex {}: {} codes its persons never hold; its {visits} visits, {name}: model {:.4} such codes a \
                 visit (the data: none)",
                ["first", "second"][s],
                foreign.size()[0],
                expected / visits
            );
        }
    }
    Ok(())
}
