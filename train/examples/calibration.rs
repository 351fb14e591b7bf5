//! Teacher-forced calibration of a checkpoint's code module: per visit, the number of codes the data has
//! against the sum of the model's probabilities given the true codes before each one; and the same for the
//! end code. Tells whether synthetic visits come out small because the model predicts too few codes (the
//! sums fall short here too) or because sampling drifts from the data (the sums match here).
//!
//!     cargo run --release -p halo-train --example calibration -- CHECKPOINT DATA

mod common;

use anyhow::Result;
use halo_core::record::Split;
use halo_train::model::Noise;
use halo_train::{data, score};
use tch::{Device, Kind};

fn main() -> Result<()> {
    let (ck, splits) = common::checkpoint_and_splits("calibration")?;
    let c = ck.encoding.code_vocab_size as i64;
    let end = ck.encoding.end_index() as i64;
    let _guard = tch::no_grad_guard();
    for split in [Split::Train, Split::Test] {
        let Some(s) = splits.get(&split) else { continue };
        let (mut visits, mut actual, mut expected, mut ends, mut end_p) = (0f64, 0f64, 0f64, 0f64, 0f64);
        for chunk in s.patients.chunks(64) {
            let refs: Vec<_> = chunk.iter().collect();
            let batch = data::make_batch(&refs, &ck.encoding, Device::Cpu);
            let (_, logits, targets) = score::scored_bce(&ck.model, &batch, Noise::NONE);
            let keep = score::visit_rows(chunk);
            let probs = logits.sigmoid().index_select(0, &keep);
            let targets = targets.index_select(0, &keep);
            visits += keep.size()[0] as f64;
            actual += targets.narrow(1, 0, c).sum(Kind::Double).double_value(&[]);
            expected += probs.narrow(1, 0, c).sum(Kind::Double).double_value(&[]);
            ends += targets.narrow(1, end, 1).sum(Kind::Double).double_value(&[]);
            end_p += probs.narrow(1, end, 1).sum(Kind::Double).double_value(&[]);
        }
        println!(
            "{split:?}: {visits} visits; codes per visit: data {:.3}, model (teacher-forced sum of probabilities) {:.3}; \
             end code per visit: data {:.4}, model {:.4}",
            actual / visits,
            expected / visits,
            ends / visits,
            end_p / visits
        );
    }
    Ok(())
}
