//! Where a record starts in time, teacher-forced: per birth decade, the data's share of first visits in each
//! calendar bucket against the model's, from the walk's weights of the calendar group (each bucket's sigmoid
//! times one minus those before it, renormalised) given the true label visit, over the training split's
//! encoded records (first kept visits, as the model learnt them).
//!
//!     cargo run --release -p halo-train --example first_calendar -- CHECKPOINT DATA

mod common;

use anyhow::{Context, Result};
use halo_core::encoding::Token;
use halo_core::record::Split;
use halo_train::data;
use std::collections::BTreeMap;
use tch::Device;

fn main() -> Result<()> {
    let (ck, splits) = common::checkpoint_and_splits("first_calendar")?;
    let enc = &ck.encoding;
    let group = enc
        .visit_groups
        .iter()
        .find(|g| g.name == "calendar")
        .context("no calendar group")?;
    let decade_of = |labels: &[u32]| {
        labels.iter().find_map(|&l| match &enc.tokens[l as usize] {
            Token::Demographic { category, value } if category.is_birth_year() => Some(value.clone()),
            _ => None,
        })
    };
    let module = common::CodeModuleRows::of(&ck)?;
    // Per decade: records, the data's bucket counts, the model's expected counts.
    let mut tally: BTreeMap<String, (usize, Vec<f64>, Vec<f64>)> = BTreeMap::new();
    let _guard = tch::no_grad_guard();
    let s = splits.get(&Split::Train).context("no train split")?;
    for chunk in s.patients.chunks(64) {
        let refs: Vec<_> = chunk.iter().collect();
        let batch = data::make_batch(&refs, enc, Device::Cpu);
        let history = ck.model.transformer.forward(&batch.visits);
        for (i, p) in chunk.iter().enumerate() {
            let Some(decade) = decade_of(&p.labels) else { continue };
            let Some(first) = p.visits.first() else { continue };
            let h = Vec::<f32>::try_from(history.get(i as i64).get(1))?;
            // Nothing drawn yet: the first-layer pre-activations are the history's alone.
            let pre = module.start(&h);
            // Buckets the decade can meet at some age (as the sampler's format 10 draws them).
            let years = halo_core::record::BirthDecade::years_of(&decade).context("decade years")?;
            let ages = (enc.age_edges_years[0], *enc.age_edges_years.last().unwrap_or(&0.0));
            let meets = |k: usize| {
                let (lo, hi) = enc.calendar_bucket_years(k);
                (f64::from(*years.start()) + ages.0).max(lo) < (f64::from(*years.end()) + 1.0 + ages.1).min(hi)
            };
            let allowed: Vec<usize> = (0..group.len).filter(|&k| meets(k)).collect();
            let mut weights = vec![0.0; group.len];
            let mut rest = 1.0f64;
            for (i, &k) in allowed.iter().enumerate() {
                let p_j = 1.0 / (1.0 + (-f64::from(module.logit(&pre, group.first + k))).exp());
                // LAST_TAKES_REST=1: the last allowed bucket takes what the walk leaves.
                let last_rest = i + 1 == allowed.len() && std::env::var_os("LAST_TAKES_REST").is_some();
                weights[k] = if std::env::var_os("CONDITIONALS").is_some() {
                    p_j
                } else if last_rest {
                    rest
                } else {
                    rest * p_j
                };
                rest *= 1.0 - p_j;
            }
            let total: f64 = weights.iter().sum();
            let entry = tally
                .entry(decade)
                .or_insert_with(|| (0, vec![0.0; group.len], vec![0.0; group.len]));
            entry.0 += 1;
            if let Some(k) = first.iter().find_map(|&c| match enc.tokens[c as usize] {
                Token::Calendar { bucket } => Some(bucket),
                _ => None,
            }) {
                entry.1[k] += 1.0;
            }
            for (k, w) in weights.iter().enumerate() {
                entry.2[k] += w / total;
            }
        }
    }
    let mut weighted = (0.0, 0.0);
    for (decade, (n, data, model)) in &tally {
        let cells: Vec<String> = (0..group.len)
            .filter(|&k| data[k] + model[k] >= 0.02 * *n as f64)
            .map(|k| {
                let (lo, _) = enc.calendar_bucket_years(k);
                format!("{lo}:{:.2}/{:.2}", data[k] / *n as f64, model[k] / *n as f64)
            })
            .collect();
        let tvd: f64 = (0..group.len).map(|k| (data[k] - model[k]).abs()).sum::<f64>() / 2.0 / *n as f64;
        println!(
            "{decade} ({n} records, total variation {tvd:.3}) first visit's calendar bucket, data/model: {}",
            cells.join(" ")
        );
        weighted.0 += tvd * *n as f64;
        weighted.1 += *n as f64;
    }
    println!("total variation, mean over records: {:.3}", weighted.0 / weighted.1);
    Ok(())
}
