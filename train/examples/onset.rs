//! Onset of a code, teacher-forced: for the women of given birth decades, each visit is sampled again given
//! the record's true history (code by code, exclusive visit groups drawn as the sampler's walk draws them,
//! the calendar code kept as the data's), and the share of draws that hold CODE is summed over the visits
//! before the record's first holding one ("onset") and over the visits after ("repeat"), against the data's
//! counts. A model whose onset sums fall short here learnt too low a hazard; one whose sums match while its
//! synthetic records start the code too rarely drifts in sampling.
//!
//!     cargo run --release -p halo-train --example onset -- CHECKPOINT DATA CODE [DRAWS]
//!
//! With `SYNTHETIC=1`, DATA is sampled records (JSONL), all read as one split: the model's hazard on the
//! histories it drew itself.

mod common;

use anyhow::{Context, Result};
use halo_core::encoding::{Token, VisitGroup};
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
        _ => anyhow::bail!("usage: onset CHECKPOINT DATA CODE [DRAWS]"),
    };
    let draws: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(4);
    let ck = checkpoint::load(&ck_dir, Device::Cpu)?;
    let dataset = data::read(&data_path, None, &ReadOptions::default()).context("reading the data")?;
    // SYNTHETIC=1: DATA is sampled records, all read as one split (shown as "Test").
    let mut split = ck.split.clone();
    if std::env::var_os("SYNTHETIC").is_some() {
        split.train.clear();
        split.val.clear();
        split.test = dataset.patients.iter().map(|p| p.id.clone()).collect();
    }
    let (splits, _) = data::encode_splits(&dataset.patients, &split, &ck.encoding, ck.spec.as_ref());
    let enc = &ck.encoding;
    let c = enc.code_vocab_size;
    let target = *enc
        .index()
        .get(code.as_str())
        .with_context(|| format!("{code} is not in the vocabulary"))? as usize;
    let label = |cat: &str, value: &str| {
        enc.tokens.iter().position(
            |t| matches!(t, Token::Demographic { category, value: v } if category.as_str() == cat && v == value),
        )
    };
    let female = label("sex", "F").context("no sex F")? as u32;
    let module = common::CodeModuleRows::of(&ck)?;
    // Per code, the first code of the exclusive visit group it belongs to, and whether that is the calendar
    // (kept as the data's: the sampler sets it from the dates).
    let mut group_of = vec![None; c];
    for g in &enc.visit_groups {
        group_of[g.range()].fill(Some((g.first, g.name == VisitGroup::CALENDAR)));
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let _guard = tch::no_grad_guard();
    for split in [Split::Train, Split::Test] {
        let Some(s) = splits.get(&split) else { continue };
        for decade in ["1970-1979", "1980-1989", "1990-1999"] {
            let born = label("birth_year", decade).context("no decade")? as u32;
            let women: Vec<_> = s
                .patients
                .iter()
                .filter(|p| p.labels.contains(&female) && p.labels.contains(&born))
                .collect();
            // [onset, repeat]: visits, data's holders, model's expected holders.
            let mut tally = [[0f64; 3]; 2];
            let mut first_hit = 0usize;
            for chunk in women.chunks(64) {
                let batch = data::make_batch(chunk, enc, Device::Cpu);
                let history = ck.model.transformer.forward(&batch.visits);
                for (i, p) in chunk.iter().enumerate() {
                    let mut seen = false;
                    for t in 1..=p.visits.len() {
                        let visit = &p.visits[t - 1];
                        let holds = visit.contains(&(target as u32));
                        let h = Vec::<f32>::try_from(history.get(i as i64).get(t as i64))?;
                        let base = module.start(&h);
                        let mut hits = 0usize;
                        for _ in 0..draws {
                            let mut pre = base.clone();
                            let mut group_done = usize::MAX;
                            let mut drew = false;
                            for (j, group) in group_of.iter().enumerate().take(target + 1) {
                                let on = match *group {
                                    Some((_, true)) => visit.contains(&(j as u32)),
                                    Some((first, false)) if group_done == first => false,
                                    _ => rng.random::<f32>() < 1.0 / (1.0 + (-module.logit(&pre, j)).exp()),
                                };
                                if on {
                                    drew |= j == target;
                                    if let Some((first, _)) = *group {
                                        group_done = first;
                                    }
                                    module.set(&mut pre, j);
                                }
                            }
                            hits += usize::from(drew);
                        }
                        let k = usize::from(seen);
                        tally[k][0] += 1.0;
                        tally[k][1] += f64::from(u8::from(holds));
                        tally[k][2] += hits as f64 / draws as f64;
                        if holds && !seen && t == 1 {
                            first_hit += 1;
                        }
                        seen |= holds;
                    }
                }
            }
            println!(
                "{split:?} women born {decade}: {} persons; onset visits {} data {} model {:.1} (hazard {:.4} / {:.4}); \
                 repeat visits {} data {} model {:.1}; first visits holding it {first_hit}",
                women.len(),
                tally[0][0],
                tally[0][1],
                tally[0][2],
                tally[0][1] / tally[0][0].max(1.0),
                tally[0][2] / tally[0][0].max(1.0),
                tally[1][0],
                tally[1][1],
                tally[1][2],
            );
        }
    }
    Ok(())
}
