//! The exported graphs against an independent numpy implementation of HALO, run in ONNX Runtime
//! (tests/python/halo_reference.py; needs the workspace's .venv from scripts/setup.sh).

mod common;

use common::*;
use halo_export::{export, ExportOptions, Precision};

#[test]
fn fine_model_matches_the_numpy_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let (ck, out) = (tmp.path().join("ck"), tmp.path().join("model"));
    tiny_checkpoint_for_reference(&ck, false, 1);
    let m = export(&ck, &out, &ExportOptions::default()).unwrap();
    assert_eq!(m.precision, Precision::Fp32);
    let text = reference_check(&ck, &out, &[]);
    println!("{text}");
    // Every size combination ran (batch 1 and 7; 1, 5 and n_ctx visits).
    assert!(text.contains("batch 7, 6 visits"), "{text}");
    assert!(text.contains("flipping visit code 9"), "{text}");
}

/// The embedding of the codes seen so far: a CumSum in the full graph and the `seen` input of the step graph
/// against numpy's running maximum.
#[test]
fn seen_codes_model_matches_the_numpy_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let (ck, out) = (tmp.path().join("ck"), tmp.path().join("model"));
    tiny_seen_codes_checkpoint_for_reference(&ck, 5);
    let m = export(&ck, &out, &ExportOptions::default()).unwrap();
    assert!(m.model.seen_codes);
    let text = reference_check(&ck, &out, &[]);
    assert!(text.contains("batch 7, 6 visits"), "{text}");
}

#[test]
fn coarse_model_matches_the_numpy_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let (ck, out) = (tmp.path().join("ck"), tmp.path().join("model"));
    tiny_checkpoint_for_reference(&ck, true, 2);
    export(&ck, &out, &ExportOptions::default()).unwrap();
    let text = reference_check(&ck, &out, &[]);
    assert!(text.contains("coarse head ignores visit code"), "{text}");
}

#[test]
fn fp16_export_stays_close_to_the_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let ck = tmp.path().join("ck");
    tiny_checkpoint_for_reference(&ck, false, 3);
    let fp32 = tmp.path().join("fp32");
    let fp16 = tmp.path().join("fp16");
    export(&ck, &fp32, &ExportOptions::default()).unwrap();
    let opts = ExportOptions {
        precision: Precision::Fp16,
        ..Default::default()
    };
    let m = export(&ck, &fp16, &opts).unwrap();
    assert_eq!(m.precision, Precision::Fp16);
    let size = |dir: &std::path::Path| std::fs::metadata(dir.join("code_head.onnx")).unwrap().len();
    assert!(
        size(&fp16) < size(&fp32) * 3 / 4,
        "fp16 code head {} bytes vs fp32 {}",
        size(&fp16),
        size(&fp32)
    );
    let text = reference_check(
        &ck,
        &fp16,
        &["--tol-logits", "5e-4", "--tol-probs", "1e-4", "--tol-history", "5e-3"],
    );
    println!("{text}");
}

#[test]
fn external_weights_load_and_match_the_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let (ck, out) = (tmp.path().join("ck"), tmp.path().join("model"));
    tiny_checkpoint_for_reference(&ck, false, 4);
    let opts = ExportOptions {
        external_data_threshold: 1000,
        ..Default::default()
    };
    export(&ck, &out, &opts).unwrap();
    let files = listing(&out);
    for f in [
        "code_head.onnx.data",
        "visit_transformer.onnx.data",
        "visit_transformer_step.onnx.data",
    ] {
        assert!(files.contains(&f.to_string()), "{files:?}");
    }
    // The manifest carries each weights file's checksum.
    let m = halo_core::manifest::Manifest::read(&out).unwrap();
    for graph in [
        &m.files.visit_transformer,
        &m.files.visit_transformer_step,
        &m.files.code_head,
    ] {
        let data = graph.external_data.as_ref().expect("external data listed");
        assert_eq!(data.name, format!("{}.data", graph.name));
        let bytes = std::fs::read(out.join(&data.name)).unwrap();
        assert_eq!(data.sha256, halo_core::manifest::sha256_hex(&bytes));
    }
    reference_check(&ck, &out, &[]);
}
