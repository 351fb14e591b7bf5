//! The incremental code module gives the dense code module's logits at every step of sampling (every logit
//! a walk reads, in every visit of every record of a batch, is recomputed densely and compared), and the
//! same records: exactly for format 4's ONNX Runtime blocks, all but a few for format 5's native kernel.
//!
//! The paper-size check builds a 1.5 GB model and takes minutes; run it with
//! `HALO_PAPER_CHECK=1 cargo test --release -p halo-infer --test incremental -- --nocapture`.

mod common;

use halo_infer::runtime::{self, Device, SessionOptions};
use halo_infer::{generate, CodeModule, Model, Plan, SampleStats};
use std::path::Path;

/// Samples records 0..count at `seed` in batches of `batch`; returns their JSONL lines and the counters.
fn sample(dir: &Path, code_module: CodeModule, count: u64, batch: usize) -> (Vec<u8>, SampleStats) {
    let rt = runtime::init(None).unwrap();
    let options = SessionOptions {
        device: Device::Cpu,
        threads: Some(2),
    };
    let mut model = Model::load_with(dir, rt, &options, code_module).unwrap();
    let mut lines = Vec::new();
    let stats = generate(
        &mut model,
        &Plan {
            seed: 11,
            records: 0..count,
            batch_size: batch,
            conditions: None,
        },
        |records| {
            for s in &records {
                lines.extend(halo_infer::record_line(&s.patient));
            }
            Ok(())
        },
    )
    .unwrap();
    (lines, stats)
}

/// Compares the incremental blocks with the dense logits over `count` records and checks that both paths
/// write the same records; returns the counters of both.
fn check(dir: &Path, count: u64, batch: usize, tolerance: f64) -> (SampleStats, SampleStats) {
    let (compared, stats) = sample(dir, CodeModule::Compared, count, batch);
    eprintln!(
        "{}: {} blocks over {count} records, largest |incremental - dense| logit difference {:.2e}",
        dir.display(),
        stats.head_passes,
        stats.max_dense_difference
    );
    assert!(stats.head_passes > 0);
    assert!(
        stats.max_dense_difference <= tolerance,
        "incremental logits differ from the dense ones by {:.2e} (> {tolerance:.0e})",
        stats.max_dense_difference
    );
    let (dense, dense_stats) = sample(dir, CodeModule::Dense, count, batch);
    let native = halo_core::manifest::Manifest::read(dir)
        .unwrap()
        .files
        .code_module
        .is_some();
    if native {
        // The native kernel sums in another order than ONNX Runtime: a record differs where a uniform
        // number falls between two roundings of a probability (about 1e-7 apart), rarely.
        let lines = |b: &[u8]| b.split(|c| *c == b'\n').map(<[u8]>::to_vec).collect::<Vec<_>>();
        let (a, b) = (lines(&compared), lines(&dense));
        assert_eq!(a.len(), b.len());
        let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        assert!(
            differ * 50 <= a.len(),
            "{differ} of {} records differ between the native and the dense code module",
            a.len()
        );
    } else {
        assert!(
            compared == dense,
            "the incremental and the dense path wrote different records"
        );
    }
    (stats, dense_stats)
}

#[test]
fn the_fixture_model_gives_the_dense_logits_at_every_block() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
    check(&fixtures.join("tiny-model"), 200, 64, 1e-5);
    // Format 4's ONNX Runtime blocks: the dense path's records exactly.
    check(&fixtures.join("tiny-model-v4"), 200, 64, 1e-5);
}

#[test]
fn a_wide_random_model_gives_the_dense_logits_at_every_block() {
    // Several blocks per visit, exclusive categories, labs, gaps; weights scaled up so that codes depend on
    // each other.
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = common::Spec::fixture();
    spec.codes = 700;
    spec.n_embd = 64;
    spec.n_ctx = 12;
    let enc = common::encoding(&spec);
    let bias = common::mimic_like_bias(&enc, 12.0, 4.0);
    let dir = common::build_model(tmp.path(), &spec, 8, Some(&bias), Some(3.0));
    let (incremental, dense) = check(&dir, 96, 32, 1e-5);
    // The point of it: far less arithmetic for the same records.
    assert!(
        incremental.code_module_macs * 5 < dense.code_module_macs,
        "incremental {} vs dense {} multiply-adds",
        incremental.code_module_macs,
        dense.code_module_macs
    );
}

#[test]
fn a_paper_size_random_model_gives_the_dense_logits_at_every_block() {
    if std::env::var_os("HALO_PAPER_CHECK").is_none() {
        eprintln!("skipped: set HALO_PAPER_CHECK=1 to run the paper-size check");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let spec = common::Spec::paper();
    let enc = common::encoding(&spec);
    let bias = common::mimic_like_bias(&enc, 15.0, 1.3);
    let dir = common::build_model(tmp.path(), &spec, 0, Some(&bias), None);
    check(&dir, 32, 16, 1e-5);
}

#[test]
fn visit_groups_give_one_gap_on_every_later_visit_and_one_age_on_the_first() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = common::Spec::fixture();
    spec.visit_groups = true;
    let enc = common::encoding(&spec);
    let bias = common::mimic_like_bias(&enc, 4.0, 2.5);
    let dir = common::build_model(tmp.path(), &spec, 5, Some(&bias), None);
    // Both code modules agree (the groups' categorical draws need whole groups of logits, across blocks).
    check(&dir, 200, 64, 1e-5);

    let rt = runtime::init(None).unwrap();
    let mut model = Model::load(&dir, rt, &SessionOptions::default()).unwrap();
    let (gap, age) = (
        0..spec.gap_buckets,
        spec.gap_buckets..spec.gap_buckets + spec.age_buckets,
    );
    let end = enc.end_index() as u32;
    let mut later_visits = 0;
    generate(
        &mut model,
        &Plan {
            seed: 3,
            records: 0..10_000,
            batch_size: 256,
            conditions: None,
        },
        |records| {
            for s in &records {
                for (t, visit) in s.raw.visits.iter().enumerate() {
                    // A visit holding only the end code closes the record and has no time.
                    if visit == &[end] {
                        continue;
                    }
                    let count =
                        |r: &std::ops::Range<usize>| visit.iter().filter(|&&c| r.contains(&(c as usize))).count();
                    let (gaps, ages) = (count(&gap), count(&age));
                    if t == 0 {
                        assert_eq!((gaps, ages), (0, 1), "record {} first visit {visit:?}", s.raw.index);
                    } else {
                        assert_eq!((gaps, ages), (1, 0), "record {} visit {t} {visit:?}", s.raw.index);
                        later_visits += 1;
                    }
                }
            }
            Ok(())
        },
    )
    .unwrap();
    assert!(later_visits > 5_000, "{later_visits}");
}
