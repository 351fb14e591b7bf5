//! Record i depends only on the seed, i and the model: identical for any batch size, thread count
//! and shard split.

mod common;

use halo_infer::runtime::{self, Device, SessionOptions};
use halo_infer::{generate, record_line, Model, Plan, Sampled, Shard};
use std::path::Path;

fn load(dir: &Path, threads: usize) -> Model {
    let rt = runtime::init(None).unwrap();
    Model::load(
        dir,
        rt,
        &SessionOptions {
            device: Device::Cpu,
            threads: Some(threads),
        },
    )
    .unwrap()
}

fn sample(model: &mut Model, seed: u64, records: std::ops::Range<u64>, batch: usize) -> Vec<Sampled> {
    let mut out = Vec::new();
    generate(
        model,
        &Plan {
            seed,
            records,
            batch_size: batch,
            conditions: None,
        },
        |b| {
            out.extend(b);
            Ok(())
        },
    )
    .unwrap();
    out
}

fn jsonl(records: &[Sampled]) -> String {
    records
        .iter()
        .map(|s| String::from_utf8(record_line(&s.patient)).unwrap())
        .collect()
}

#[test]
fn same_records_for_any_batch_size_thread_count_and_shard_split() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = common::Spec::fixture();
    let enc = common::encoding(&spec);
    let bias = common::mimic_like_bias(&enc, 4.0, 2.5);
    let dir = common::build_model(tmp.path(), &spec, 11, Some(&bias), None);
    let mut model = load(&dir, 2);
    let count = 150;
    let reference = sample(&mut model, 5, 0..count, 64);
    assert_eq!(reference.len(), count as usize);
    let ids: Vec<String> = reference.iter().map(|s| s.patient.id.clone()).collect();
    assert_eq!(ids, (0..count).map(|i| i.to_string()).collect::<Vec<_>>());
    // The model produces varied records (not a degenerate constant output).
    let visits: std::collections::BTreeSet<usize> = reference.iter().map(|s| s.patient.visits.len()).collect();
    assert!(visits.len() > 2, "visit counts {visits:?}");

    let one = sample(&mut model, 5, 0..count, 1);
    assert_eq!(jsonl(&one), jsonl(&reference), "batch size 1 vs 64");

    let mut shards = Vec::new();
    for k in 0..3 {
        shards.extend(sample(&mut model, 5, Shard::new(k, 3).unwrap().records(count), 17));
    }
    assert_eq!(jsonl(&shards), jsonl(&reference), "3 shards vs one run");

    let mut single = load(&dir, 1);
    let threads1 = sample(&mut single, 5, 0..count, 64);
    assert_eq!(jsonl(&threads1), jsonl(&reference), "1 vs 2 threads");

    // Another seed gives other records; --start offsets indices.
    let other = sample(&mut model, 6, 0..count, 64);
    assert_ne!(jsonl(&other), jsonl(&reference));
    let tail = sample(&mut model, 5, 100..count, 64);
    assert_eq!(jsonl(&tail), jsonl(&reference[100..]));
}

#[test]
fn shard_ranges_cover_the_count_in_order() {
    let parts: Vec<_> = (0..4).map(|k| Shard::new(k, 4).unwrap().records(10)).collect();
    assert_eq!(parts, vec![0..3, 3..6, 6..9, 9..10]);
    assert_eq!(Shard::new(3, 4).unwrap().records(2), 2..2);
    assert!(Shard::new(4, 4).is_err());
    assert_eq!("1/4".parse::<Shard>(), Ok(Shard { index: 1, count: 4 }));
    assert!("4/4".parse::<Shard>().unwrap_err().contains("0 <= K < N"));
    assert!("1-4".parse::<Shard>().unwrap_err().contains("expected K/N"));
    assert!(Shard::new(0, 0).is_err());
}
