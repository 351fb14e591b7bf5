//! Pins the JSONL output of the fixture model (fixtures/tiny-model, trained on fixtures/tiny-omop) at seeds
//! 0, 1 and 42, so that any change to sampling or decoding shows up as a reviewed snapshot change. The same
//! text must come out for batch sizes 1 and 64 and for three shards concatenated. The same model exported in
//! format 4 (fixtures/tiny-model-v4: ONNX Runtime blocks for the code module, before the native kernel of
//! format 5) keeps the records it sampled then: its snapshots were made by the format 4 sampler.

use halo_infer::runtime::{self, Device, SessionOptions};
use halo_infer::{generate, record_line, Model, Plan, Shard};
use std::path::Path;

const RECORDS: u64 = 12;

fn sample(model: &mut Model, seed: u64, records: std::ops::Range<u64>, batch_size: usize) -> String {
    let mut text = String::new();
    let plan = Plan {
        seed,
        records,
        batch_size,
        conditions: None,
    };
    generate(model, &plan, |batch| {
        for s in batch {
            text.push_str(&String::from_utf8(record_line(&s.patient)).unwrap());
        }
        Ok(())
    })
    .unwrap();
    text
}

fn pinned(fixture: &str, seed: u64) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures").join(fixture);
    let rt = runtime::init(None).unwrap();
    let options = SessionOptions {
        device: Device::Cpu,
        threads: Some(1),
    };
    let mut model = Model::load(&dir, rt, &options).unwrap();
    let one_by_one = sample(&mut model, seed, 0..RECORDS, 1);
    assert_eq!(
        sample(&mut model, seed, 0..RECORDS, 64),
        one_by_one,
        "batch 64 vs 1, seed {seed}"
    );
    let sharded: String = (0..3)
        .map(|k| sample(&mut model, seed, Shard::new(k, 3).unwrap().records(RECORDS), 5))
        .collect();
    assert_eq!(sharded, one_by_one, "3 shards vs one run, seed {seed}");
    one_by_one
}

#[test]
fn fixture_model_output_at_seed_0() {
    insta::assert_snapshot!(pinned("tiny-model", 0));
}

#[test]
fn fixture_model_output_at_seed_1() {
    insta::assert_snapshot!(pinned("tiny-model", 1));
}

#[test]
fn fixture_model_output_at_seed_42() {
    insta::assert_snapshot!(pinned("tiny-model", 42));
}

#[test]
fn format_4_fixture_model_output_at_seed_0() {
    insta::assert_snapshot!(pinned("tiny-model-v4", 0));
}

#[test]
fn format_4_fixture_model_output_at_seed_1() {
    insta::assert_snapshot!(pinned("tiny-model-v4", 1));
}

#[test]
fn format_4_fixture_model_output_at_seed_42() {
    insta::assert_snapshot!(pinned("tiny-model-v4", 42));
}
