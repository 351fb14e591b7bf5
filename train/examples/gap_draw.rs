//! Teacher-forced gap-bucket distribution: for every later training visit (as encoded: the visits the
//! model saw), the model's distribution of the gap bucket given the true history, under the two ways
//! `halo-infer` can draw an exclusive group (`CategoryDraw`): the renormalised sigmoids of its logits, and
//! the walk's weights (each bucket's sigmoid times one minus those before it); averaged and compared with
//! the data. The gap group opens the vocabulary, so its logits given an empty visit are what training scored.
//!
//!     cargo run --release -p halo-train --example gap_draw -- CHECKPOINT DATA

mod common;

use anyhow::{Context, Result};
use halo_core::record::Split;
use halo_train::data;
use tch::{Device, Kind, Tensor};

fn main() -> Result<()> {
    let (ck, splits) = common::checkpoint_and_splits("gap_draw")?;
    let group = ck
        .encoding
        .visit_groups
        .iter()
        .find(|g| g.name == "gap")
        .context("no gap group")?;
    let (first, len) = (group.first, group.len);
    let v = ck.encoding.vocab_size() as i64;
    let _guard = tch::no_grad_guard();
    let s = splits.get(&Split::Train).context("no train split")?;
    let (mut data_hist, mut cat, mut haz) = (vec![0f64; len], vec![0f64; len], vec![0f64; len]);
    for chunk in s.patients.chunks(32) {
        let refs: Vec<_> = chunk.iter().collect();
        let batch = data::make_batch(&refs, &ck.encoding, Device::Cpu);
        let history = ck.model.transformer.forward(&batch.visits);
        let mut rows = Vec::new();
        for (i, p) in chunk.iter().enumerate() {
            // Visit t (1-based) is predicted from history position t; later visits are t >= 2.
            for t in 2..=p.visits.len() {
                rows.push(history.get(i as i64).get(t as i64));
                let bucket = p.visits[t - 1]
                    .iter()
                    .find(|&&c| (c as usize) >= first && (c as usize) < first + len);
                if let Some(&b) = bucket {
                    data_hist[b as usize - first] += 1.0;
                }
            }
        }
        if rows.is_empty() {
            continue;
        }
        let h = Tensor::stack(&rows, 0);
        let zeros = Tensor::zeros([h.size()[0], v], (Kind::Float, Device::Cpu));
        let logits = ck.model.head.forward(&h, &zeros).narrow(1, first as i64, len as i64);
        let p: Vec<Vec<f32>> = Vec::<Vec<f32>>::try_from(logits.sigmoid())?;
        for row in p {
            let total: f64 = row.iter().map(|&x| x as f64).sum();
            let mut survive = 1.0f64;
            let mut w = vec![0f64; len];
            for k in 0..len {
                w[k] = survive * row[k] as f64;
                survive *= 1.0 - row[k] as f64;
            }
            let wt: f64 = w.iter().sum();
            for k in 0..len {
                cat[k] += row[k] as f64 / total;
                haz[k] += w[k] / wt;
            }
        }
    }
    let norm = |x: &[f64]| {
        let t: f64 = x.iter().sum();
        x.iter().map(|v| v / t).collect::<Vec<_>>()
    };
    let (d, c, hz) = (norm(&data_hist), norm(&cat), norm(&haz));
    let tvd = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f64>() / 2.0;
    println!("bucket: data / renormalised sigmoids / hazard product");
    for k in 0..len {
        println!("{k:2}: {:.4} {:.4} {:.4}", d[k], c[k], hz[k]);
    }
    println!(
        "TVD vs data: renormalised {:.4}, hazard {:.4}",
        tvd(&d, &c),
        tvd(&d, &hz)
    );
    Ok(())
}
