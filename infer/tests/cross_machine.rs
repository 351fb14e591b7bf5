//! What a partner site may expect on a CPU other than the exporter's: the same records.
//!
//! Measured (2026-12-06): the demo's model exported on an AMD EPYC with AVX2 and FMA but no AVX-512 samples
//! the same 2,000 records at seed 7 on an AMD EPYC with AVX-512, and random models of the demo's width
//! (n_embd 128) and of the paper's (n_embd 768, 12 layers, 6,904 codes) sample the same records with ONNX
//! Runtime's AVX-512 kernels and, under `qemu-x86_64 -cpu Haswell`, with its AVX2 kernels. These tests keep
//! it so on whatever CPU runs them: the records of a random small model (built by pure Rust code, so the same
//! weights everywhere) against their pinned digest, and, where the shared cross-machine files are present,
//! the demo model's records against the other machine's.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn sha256_of(path: &Path) -> String {
    halo_infer::model::file_sha256(path).unwrap()
}

/// Records per thousand that differ between two JSONL files of the same records.
fn differing_per_thousand(a: &Path, b: &Path) -> f64 {
    let (a, b) = (std::fs::read_to_string(a).unwrap(), std::fs::read_to_string(b).unwrap());
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count() + a.len().abs_diff(b.len());
    1000.0 * differ as f64 / a.len().max(b.len()).max(1) as f64
}

fn sample(model: &Path, count: u64, seed: u64, out: &Path) {
    let o = Command::new(env!("CARGO_BIN_EXE_halo-sample"))
        .args([
            "--model",
            model.to_str().unwrap(),
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ])
        .args(["--count", &count.to_string(), "--seed", &seed.to_string()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// sha256 of the 1,000 records at seed 7 of the random `small` model below, as sampled on AMD EPYC CPUs
/// with AVX-512 and (emulated) AVX2 only. A deliberate change of the random checkpoints, the exporter or the
/// sampler changes it too: then re-pin it here, and say so in the commit.
const SMALL_MODEL_RECORDS_SHA256: &str = "354e0c1d04b58606b7f69b8015aedef2206a8e86d4f144fd293d9f9caf622fab";

#[test]
fn a_random_model_of_the_demos_width_samples_the_pinned_records_on_this_cpu() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = common::Spec::small();
    let enc = common::encoding(&spec);
    let bias = common::mimic_like_bias(&enc, 15.0, 1.3);
    let model = common::build_model(tmp.path(), &spec, 0, Some(&bias), None);
    let out = tmp.path().join("records.jsonl");
    sample(&model, 1000, 7, &out);
    let digest = sha256_of(&out);
    assert_eq!(
        digest, SMALL_MODEL_RECORDS_SHA256,
        "this CPU samples other records than the pinned ones: a site on such a CPU would not reproduce an \
         exporter's records (or the sampler, exporter or random checkpoints changed: re-pin)"
    );
}

/// `../shared/cross-machine` beside the repository, or `HALO_CROSS_MACHINE_DIR`: the demo's model exported
/// on another CPU, its public key and the records that machine sampled.
fn shared_cross_machine() -> Option<PathBuf> {
    let dir = std::env::var_os("HALO_CROSS_MACHINE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/cross-machine"));
    dir.join("demo-model-avx2.tar.gz").is_file().then_some(dir)
}

#[test]
fn the_demo_model_exported_on_an_avx2_machine_samples_that_machines_records_here() {
    let Some(shared) = shared_cross_machine() else {
        eprintln!("no shared cross-machine files (../shared/cross-machine or HALO_CROSS_MACHINE_DIR): skipped");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let untar = Command::new("tar")
        .arg("-xzf")
        .arg(shared.join("demo-model-avx2.tar.gz"))
        .arg("-C")
        .arg(tmp.path())
        .status()
        .unwrap();
    assert!(untar.success());
    let model = tmp.path().join("demo-model");
    let key = shared.join("demo-model.pub");
    let verify = Command::new(env!("CARGO_BIN_EXE_halo-sample"))
        .args([
            "verify",
            "--model",
            model.to_str().unwrap(),
            "--trust",
            key.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(report.contains("verify: identical"), "{report}");

    let here = tmp.path().join("here.jsonl");
    sample(&model, 2000, 7, &here);
    let there = tmp.path().join("there.jsonl");
    let unzip = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "gzip -dc '{}' > '{}'",
            shared.join("records-seed7.jsonl.gz").display(),
            there.display()
        ))
        .status()
        .unwrap();
    assert!(unzip.success());
    assert!(
        sha256_of(&here) == sha256_of(&there),
        "{:.1} records per thousand differ from the exporting machine's",
        differing_per_thousand(&here, &there)
    );
}
