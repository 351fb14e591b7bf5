//! Records longer than one window (`EncodingOptions::window_stride`): the sampler continues a record that
//! fills its window from its last visits, up to the encoding's limit, with the same visit groups and the same
//! records at every batch size.

mod common;

use halo_core::encoding::Token;
use halo_infer::runtime::{self, Device, SessionOptions};
use halo_infer::sampler::{sample_batch, SampleStats, Sampling};
use halo_infer::Model;

#[test]
fn records_go_on_past_a_full_window_up_to_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = common::Spec::fixture();
    spec.n_ctx = 6;
    spec.visit_groups = true;
    let mut enc = common::encoding(&spec);
    assert!(spec.gap_buckets > 0 && spec.age_buckets > 0);
    // Windows of 4 visits, one every 2; records of at most 12 visits.
    enc.options.window_stride = 2;
    enc.record_visit_limit = 12;
    let cfg = common::config(&spec, &enc);
    let ck = tmp.path().join("checkpoint");
    let dir = tmp.path().join("model");
    // Long records: the end code is rare.
    let bias = common::mimic_like_bias(&enc, 4.0, 30.0);
    halo_export::write_random_checkpoint(&ck, &cfg, &enc, 3, Some(&bias)).unwrap();
    halo_export::export(&ck, &dir, &halo_export::ExportOptions::default()).unwrap();

    let rt = runtime::init(None).unwrap();
    let options = SessionOptions {
        device: Device::Cpu,
        threads: Some(1),
    };
    let mut model = Model::load(&dir, rt, &options).unwrap();
    let n = 64u64;
    let mut stats = SampleStats::default();
    let sampling = Sampling {
        seed: 5,
        conditions: None,
        calibration: None,
    };
    let together = sample_batch(&mut model, &sampling, 0..n, &mut stats).unwrap();
    let mut alone = Vec::new();
    for i in 0..n {
        alone.extend(sample_batch(&mut model, &sampling, i..i + 1, &mut SampleStats::default()).unwrap());
    }
    assert!(
        together.iter().zip(&alone).all(|(a, b)| a.0 == b.0),
        "records depend on the batch"
    );

    let lengths: Vec<usize> = together.iter().map(|(r, _)| r.visits.len()).collect();
    assert!(
        lengths.iter().all(|&l| l <= 12),
        "a record exceeds the limit: {lengths:?}"
    );
    assert!(
        lengths.iter().filter(|&&l| l > 6).count() >= 8,
        "few records continued past their first window: {lengths:?}"
    );
    let end = enc.end_index() as u32;
    let time_codes = |visit: &[u32], gap: bool| {
        visit
            .iter()
            .filter(|&&c| match enc.tokens[c as usize] {
                Token::Gap { .. } => gap,
                Token::Age { .. } => !gap,
                _ => false,
            })
            .count()
    };
    for (record, _) in &together {
        // Exactly one age on the first visit, one gap on every later one, across window boundaries too.
        assert_eq!(time_codes(&record.visits[0], false), 1);
        assert_eq!(time_codes(&record.visits[0], true), 0);
        for visit in &record.visits[1..] {
            assert_eq!(time_codes(visit, true), 1, "record {}", record.index);
            assert_eq!(time_codes(visit, false), 0, "record {}", record.index);
        }
        // Only a record's last visit may end it; one below the limit does.
        let ends = record.visits.iter().filter(|v| v.contains(&end)).count();
        let last_ends = record.visits.last().unwrap().contains(&end);
        assert_eq!(ends, usize::from(last_ends));
        assert!(
            last_ends || record.visits.len() == 12,
            "record {} stopped early",
            record.index
        );
    }
    // Each continuation re-runs the start visit, the label visit and the 2 visits kept.
    assert!(stats.steps > 2 + 12);
}
