//! The verify digest: reproduced by an intact model directory, refused when an ONNX file changed, and
//! reported record by record (with the first differing visit) when the digest does not match.

mod common;

use halo_core::manifest::Manifest;
use halo_infer::runtime::{self, Device, SessionOptions};
use halo_infer::verify::{self, Difference};
use halo_infer::Model;
use std::path::{Path, PathBuf};

fn model_dir(tmp: &Path) -> PathBuf {
    let spec = common::Spec::fixture();
    let enc = common::encoding(&spec);
    let bias = common::mimic_like_bias(&enc, 4.0, 2.5);
    let dir = common::build_model(tmp, &spec, 5, Some(&bias), None);
    common::add_verify(&dir, 3, 12);
    dir
}

fn load(dir: &Path) -> halo_infer::Result<Model> {
    let rt = runtime::init(None).unwrap();
    Model::load(
        dir,
        rt,
        &SessionOptions {
            device: Device::Cpu,
            threads: None,
        },
    )
}

#[test]
fn verify_passes_on_an_intact_model_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_dir(tmp.path());
    let m = Manifest::read(&dir).unwrap();
    let digest = m.verify.as_ref().unwrap();
    assert_eq!((digest.seed, digest.count, digest.records.len()), (3, 12, 12));
    assert_eq!(digest.visits.len(), 12);
    assert!(digest.visits.iter().all(|v| v.len() >= 2), "label visit + visits");
    let mut model = load(&dir).unwrap();
    let outcome = verify::verify(&mut model).unwrap();
    assert!(outcome.identical(), "{:?}", outcome.checks);
    // Sampled at three batch sizes; the digest is that of the records' JSONL lines.
    let sizes: Vec<usize> = outcome.checks.iter().map(|c| c.batch_size).collect();
    assert_eq!(sizes, vec![12, 1, 256]);
    assert!(outcome.checks.iter().all(|c| c.actual == *digest));
}

#[test]
fn verify_refuses_an_altered_weight_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_dir(tmp.path());
    let path = dir.join("code_head.onnx");
    let mut bytes = std::fs::read(&path).unwrap();
    // Find the weights of the code head's output bias (the code biases given to the checkpoint,
    // stored as little-endian f32 in the graph) and change one byte of them.
    let enc = common::encoding(&common::Spec::fixture());
    let bias = common::mimic_like_bias(&enc, 4.0, 2.5);
    let pattern: Vec<u8> = bias[..3].iter().flat_map(|b| b.to_le_bytes()).collect();
    let i = bytes
        .windows(pattern.len())
        .position(|w| w == pattern.as_slice())
        .expect("bias weights in code_head.onnx");
    bytes[i + 1] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let err = load(&dir).err().expect("refused").to_string();
    assert!(
        err.contains("code_head.onnx") && err.contains("does not match") && err.contains("sha256"),
        "{err}"
    );
}

#[test]
fn an_altered_external_weights_file_is_refused() {
    // A model exported with its weights beside the graphs (as past protobuf's 2 GB limit).
    let tmp = tempfile::tempdir().unwrap();
    let spec = common::Spec::fixture();
    let enc = common::encoding(&spec);
    let ck = tmp.path().join("checkpoint");
    halo_export::write_random_checkpoint(&ck, &common::config(&spec, &enc), &enc, 8, None).unwrap();
    let dir = tmp.path().join("model");
    let opts = halo_export::ExportOptions {
        external_data_threshold: 1000,
        ..Default::default()
    };
    halo_export::export(&ck, &dir, &opts).unwrap();
    assert!(load(&dir).is_ok());
    let data = dir.join("code_head.onnx.data");
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&data, &bytes).unwrap();
    let err = load(&dir).err().expect("refused").to_string();
    assert!(
        err.contains("code_head.onnx.data") && err.contains("files.code_head.external_data.sha256"),
        "{err}"
    );
}

#[test]
fn verify_reports_records_that_differ_from_the_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_dir(tmp.path());
    let mut m = Manifest::read(&dir).unwrap();
    let d = m.verify.as_mut().unwrap();
    // Record 2: its digest and the digest of its first visit altered; record 5: only its line.
    d.records[2] = "0".repeat(64);
    d.visits[2][1] = "0".repeat(16);
    d.records[5] = "f".repeat(64);
    halo_export::write_manifest(&dir, &m).unwrap();
    let mut model = load(&dir).unwrap();
    let outcome = verify::verify(&mut model).unwrap();
    assert!(!outcome.identical());
    let found: Vec<(usize, Difference)> = outcome.checks[0]
        .mismatches
        .iter()
        .map(|m| (m.record, m.difference.clone()))
        .collect();
    assert_eq!(found, vec![(2, Difference::Visit(1)), (5, Difference::Decoding)]);
}

#[test]
fn digests_compare_visit_by_visit() {
    use halo_core::manifest::VerifyDigest;
    let d = |records: &[&str], visits: &[&[&str]]| VerifyDigest {
        seed: 0,
        count: records.len(),
        records: records.iter().map(|s| s.to_string()).collect(),
        visits: visits
            .iter()
            .map(|v| v.iter().map(|s| s.to_string()).collect())
            .collect(),
    };
    let expected = d(&["a", "b", "c"], &[&["l", "1"], &["l", "1", "2"], &["l", "1"]]);
    let actual = d(&["x", "b", "y"], &[&["L", "1"], &["l", "1", "2"], &["l", "1", "2"]]);
    let m = verify::compare(&expected, &actual);
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].difference, Difference::LabelVisit);
    assert_eq!(m[1].difference, Difference::VisitCount { expected: 1, actual: 2 });
}

/// Model directories of format version 1 (three graphs, no incremental code module) keep working: the
/// sampler falls back to the dense code head and `verify` passes (fixtures/tiny-model-v1 is an earlier
/// fixtures/tiny-model, exported before format 2 and before encodings had visit groups). On the format 4
/// fixture read without its groups, the dense code head that a format 1 directory runs and the incremental
/// one give the same records (format 4: ONNX Runtime blocks).
#[test]
fn a_format_1_model_directory_verifies_and_dense_and_incremental_paths_agree() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
    let (old, new) = (fixtures.join("tiny-model-v1"), fixtures.join("tiny-model-v4"));
    let old_manifest = Manifest::read(&old).unwrap();
    let new_manifest = Manifest::read(&new).unwrap();
    assert_eq!(old_manifest.format_version, 1);
    assert!(old_manifest.files.code_head_incremental.is_none());
    assert!(new_manifest.files.code_head_incremental.is_some());

    let mut old_model = load(&old).unwrap();
    assert!(!old_model.is_incremental(), "format 1 has only the dense code head");
    let old_outcome = verify::verify(&mut old_model).unwrap();
    assert!(old_outcome.identical(), "{:?}", old_outcome.checks);

    let mut new_model = load(&new).unwrap();
    assert!(new_model.is_incremental());
    let new_outcome = verify::verify(&mut new_model).unwrap();
    assert!(new_outcome.identical(), "{:?}", new_outcome.checks);
    assert!(!new_manifest.encoding.visit_groups.is_empty());
    let tmp = tempfile::tempdir().unwrap();
    let ungrouped = tmp.path().join("tiny-model");
    std::fs::create_dir(&ungrouped).unwrap();
    for e in std::fs::read_dir(&new).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), ungrouped.join(e.file_name())).unwrap();
    }
    let mut m = new_manifest.clone();
    m.encoding.visit_groups.clear();
    halo_export::write_manifest(&ungrouped, &m).unwrap();
    let mut ungrouped_model = load(&ungrouped).unwrap();
    assert!(ungrouped_model.is_incremental());
    let rt = runtime::init(None).unwrap();
    let mut dense_model = Model::load_with(
        &ungrouped,
        rt,
        &SessionOptions::default(),
        halo_infer::CodeModule::Dense,
    )
    .unwrap();
    assert!(!dense_model.is_incremental());
    let expected = new_manifest.verify.as_ref().unwrap();
    assert_eq!(
        verify::digest_with(&mut ungrouped_model, expected.seed, expected.count).unwrap(),
        verify::digest_with(&mut dense_model, expected.seed, expected.count).unwrap(),
        "dense and incremental records differ"
    );
    // Asking for the incremental path on a format 1 directory is a clear error.
    let err = Model::load_with(
        &old,
        rt,
        &SessionOptions::default(),
        halo_infer::CodeModule::Incremental,
    )
    .err()
    .expect("refused")
    .to_string();
    assert!(err.contains("no incremental code module"), "{err}");
}

/// The error loading a test model whose manifest claims `format_version` `claimed` (it is written as the
/// version this toolkit writes).
fn load_error_claiming_format(claimed: u32) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_dir(tmp.path());
    assert!(
        Manifest::read(&dir).unwrap().model.seen_codes,
        "the test model embeds the codes seen"
    );
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let manifest = Manifest::read(&dir).unwrap();
    let written = format!(
        "\"format_version\": {}",
        halo_core::manifest::written_format(&manifest.model, &manifest.encoding)
    );
    let claimed = text.replacen(&written, &format!("\"format_version\": {claimed}"), 1);
    assert_ne!(text, claimed);
    std::fs::write(&path, claimed).unwrap();
    load(&dir).err().expect("refused").to_string()
}

/// A manifest from a newer toolkit is refused with a message that says so.
#[test]
fn a_manifest_of_a_newer_format_is_refused_clearly() {
    let err = load_error_claiming_format(99);
    assert!(err.contains("format_version") && err.contains("newer"), "{err}");
}

/// A model that embeds the codes seen so far needs format 3: a version 2 sampler would not feed the step graph's
/// `seen` input, so a manifest that claims version 2 for such a model is refused.
#[test]
fn a_seen_codes_model_claiming_format_2_is_refused() {
    let err = load_error_claiming_format(2);
    assert!(
        err.contains("model.seen_codes") && err.contains("format_version 3"),
        "{err}"
    );
}

/// The native code module's weights need format 5: a version 4 sampler would look for block graphs that a
/// format 5 directory does not have, so a manifest that claims version 4 for one is refused.
#[test]
fn a_native_code_module_claiming_format_4_is_refused() {
    let err = load_error_claiming_format(4);
    assert!(
        err.contains("files.code_module") && err.contains("format_version 5"),
        "{err}"
    );
}

/// One flipped bit in `code_module.f32` (the weights the native kernel reads) is caught by its sha256 on load.
#[test]
fn an_altered_code_module_byte_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_dir(tmp.path());
    let path = dir.join("code_module.f32");
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let err = load(&dir).err().expect("refused").to_string();
    assert!(
        err.contains("code_module.f32") && err.contains("does not match") && err.contains("sha256"),
        "{err}"
    );
}

/// The label bias's file and the model's flag come together: a manifest that names `files.label_bias` for a
/// model without `model.label_bias`, or claims the flag without the file, is refused naming the field.
#[test]
fn a_label_bias_file_without_the_flag_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_dir(tmp.path());
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
    manifest["model"]["label_bias"] = serde_json::Value::Bool(true);
    std::fs::write(&path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
    let err = load(&dir).err().expect("refused").to_string();
    assert!(
        err.contains("files.label_bias") && err.contains("absent for a model with model.label_bias"),
        "{err}"
    );
    manifest["model"]["label_bias"] = serde_json::Value::Bool(false);
    manifest["files"]["label_bias"] = serde_json::json!({"name": "label_bias.f32", "sha256": "00"});
    std::fs::write(&path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
    let err = load(&dir).err().expect("refused").to_string();
    assert!(
        err.contains("files.label_bias") && err.contains("present for a model without"),
        "{err}"
    );
}
