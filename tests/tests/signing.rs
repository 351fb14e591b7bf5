//! Signed model directories: `halo keygen`, `halo export --sign`, and `halo-sample --trust` refusing a
//! directory whose manifest was changed after signing, signed by another key, or not signed; a failing
//! finishing step (verify digest, signature) leaves no model directory.

mod common;

use common::{export, halo_sample, quick_checkpoint, stderr};
use std::path::Path;

/// A key pair in `dir` as path strings.
fn keygen(dir: &Path, name: &str) -> (String, String) {
    let (public, secret) = common::keygen(dir, name);
    (
        public.to_str().unwrap().to_string(),
        secret.to_str().unwrap().to_string(),
    )
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn a_signed_model_verifies_and_any_change_to_its_manifest_is_refused_under_trust() {
    let tmp = tempfile::tempdir().unwrap();
    let ck = quick_checkpoint(tmp.path());
    let (public, secret) = keygen(tmp.path(), "site");
    let model = tmp.path().join("model");
    let o = export(&ck, &model, &["--sign", &secret, "--verify-count", "20"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(model.join("manifest.json.minisig").is_file());
    let m = model.to_str().unwrap();

    let o = halo_sample(&["verify", "--model", m, "--trust", &public, "--quiet"]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(out.contains("verify: signature: good"), "{out}");
    for b in [1, 20, 256] {
        assert!(out.contains(&format!("records at batch size {b}: identical")), "{out}");
    }
    // The key itself (its base64 line) is accepted too.
    let key_line = std::fs::read_to_string(&public)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    let o = halo_sample(&["verify", "--model", m, "--trust", &key_line, "--quiet"]);
    assert!(o.status.success(), "{}", stdout(&o));

    // A manifest changed after signing, every sha256 still matching its file: refused by the signature,
    // before any sampling, by verify and by sampling.
    let path = model.join("manifest.json");
    let mut manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    manifest["verify"]["records"][0] = "0".repeat(64).into();
    std::fs::write(&path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
    let o = halo_sample(&["verify", "--model", m, "--trust", &public, "--quiet"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("signature: FAILED") && out.contains("changed after signing") && !out.contains("records at"),
        "{out}"
    );
    let records = tmp.path().join("records.jsonl");
    let o = halo_sample(&[
        "--model",
        m,
        "--count",
        "5",
        "--seed",
        "1",
        "--out",
        records.to_str().unwrap(),
        "--trust",
        &public,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("changed after signing"), "{}", stderr(&o));
    assert!(!records.exists());
    // Without --trust the same directory is sampled (its sha256s match) and verify says what it checked.
    let o = halo_sample(&["verify", "--model", m, "--quiet"]);
    let out = stdout(&o);
    assert!(out.contains("signature: not checked (the directory is signed"), "{out}");
    assert!(out.contains("verify: sha256: all"), "{out}");
    assert!(out.contains("record 0 differs"), "{out}");
}

#[test]
fn another_key_or_no_signature_is_refused_and_a_failed_finish_leaves_no_model() {
    let tmp = tempfile::tempdir().unwrap();
    let ck = quick_checkpoint(tmp.path());
    let (_, secret) = keygen(tmp.path(), "ours");
    let (other_public, _) = keygen(tmp.path(), "theirs");
    let signed = tmp.path().join("signed");
    assert!(export(&ck, &signed, &["--sign", &secret, "--verify-count", "5"])
        .status
        .success());
    let o = halo_sample(&["verify", "--model", signed.to_str().unwrap(), "--trust", &other_public]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("another key"), "{}", stdout(&o));

    let unsigned = tmp.path().join("unsigned");
    assert!(export(&ck, &unsigned, &["--verify-count", "5"]).status.success());
    let o = halo_sample(&[
        "verify",
        "--model",
        unsigned.to_str().unwrap(),
        "--trust",
        &other_public,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("not signed"), "{}", stdout(&o));

    // A key that does not open fails before the export; a finish step that fails (no ONNX Runtime library
    // to sample the calibration and the verify digest) leaves no model directory behind, and no temporary one.
    let out = tmp.path().join("out");
    let o = export(&ck, &out, &["--sign", tmp.path().join("missing.key").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("missing.key"), "{}", stderr(&o));
    let o = common::halo_command()
        .args([
            "export",
            "--checkpoint",
            ck.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .env("ORT_DYLIB_PATH", tmp.path().join("no-such-library.so"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("loading ONNX Runtime"), "{}", stderr(&o));
    let left: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("out"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
