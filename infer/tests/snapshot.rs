//! Pins the JSONL output of the fixture model (fixtures/tiny-model) at a fixed seed, so that any change
//! to sampling or decoding shows up as a reviewed snapshot change.

use halo_infer::runtime::{self, Device, SessionOptions};
use halo_infer::{generate, record_line, Model, Plan};
use std::path::Path;

#[test]
fn fixture_model_output_at_seed_42() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tiny-model");
    let rt = runtime::init(None).unwrap();
    let mut model = Model::load(
        &dir,
        rt,
        &SessionOptions {
            device: Device::Cpu,
            threads: Some(1),
        },
    )
    .unwrap();
    let mut text = String::new();
    generate(
        &mut model,
        &Plan {
            seed: 42,
            records: 0..8,
            batch_size: 8,
            conditions: None,
        },
        |batch| {
            for s in batch {
                text.push_str(&String::from_utf8(record_line(&s.patient)).unwrap());
            }
            Ok(())
        },
    )
    .unwrap();
    insta::assert_snapshot!(text);
}
