//! The sampler's JSONL output is valid training input: `halo train` reads it back as the very records
//! that were sampled (codes, day offsets, lab values, demographics and labels).

mod common;

use halo_infer::runtime::{self, Device, SessionOptions};
use halo_infer::{generate, record_line, Model, Plan};
use std::path::Path;

#[test]
fn sampled_jsonl_reads_back_as_the_sampled_records_and_trains() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let rt = runtime::init(None).unwrap();
    let options = SessionOptions {
        device: Device::Cpu,
        threads: Some(1),
    };
    let mut model = Model::load(&root.join("fixtures/tiny-model"), rt, &options).unwrap();
    let plan = Plan {
        seed: 3,
        records: 0..60,
        batch_size: 16,
        conditions: None,
    };
    let (mut sampled, mut bytes) = (Vec::new(), Vec::new());
    generate(&mut model, &plan, |batch| {
        for s in batch {
            bytes.extend(record_line(&s.patient));
            sampled.push(s.patient);
        }
        Ok(())
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("synthetic.jsonl");
    std::fs::write(&file, &bytes).unwrap();

    // The reader `halo train` uses gives back exactly the sampled records.
    let read = halo_core::read_dataset(&file, None, &Default::default()).unwrap();
    let with_visits: Vec<_> = sampled.iter().filter(|p| !p.visits.is_empty()).cloned().collect();
    assert_eq!(read.patients.len(), with_visits.len());
    for (got, want) in read.patients.iter().zip(&with_visits) {
        assert_eq!(got, want, "record {} changed on the way back", want.id);
    }
    assert_eq!(read.report.patients_without_visits, sampled.len() - with_visits.len());
    assert!(
        sampled.iter().any(|p| p.visits.iter().any(|v| !v.labs.is_empty())),
        "the fixture should produce lab values, or this test checks less than it claims"
    );
    assert!(sampled.iter().any(|p| !p.demographics.is_empty()));

    // And `halo train` trains on them, with every sampled code in its vocabulary.
    let out = dir.path().join("ckpt");
    let status = common::halo_command()
        .args([
            "train",
            "--data",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args([
            "--device",
            "cpu",
            "--quiet",
            "--epochs",
            "1",
            "--n-embd",
            "16",
            "--n-layer",
            "1",
        ])
        // Every sampled code must come back, however rare: no small-cell rule here.
        .args(["--n-head", "2", "--min-patients", "1"])
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let training: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("training.json")).unwrap()).unwrap();
    assert_eq!(training["records"], with_visits.len());
    let encoding = std::fs::read_to_string(out.join("encoding.json")).unwrap();
    for code in with_visits.iter().flat_map(|p| &p.visits).flat_map(|v| &v.codes) {
        assert!(
            encoding.contains(&format!("\"{code}\"")),
            "{code} missing from the vocabulary"
        );
    }
}
