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
    let key_line = common::key_line(Path::new(&public));
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

/// Standard base64 (with padding), enough to rewrite a public key line.
fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in text.trim().bytes().filter(|c| *c != b'=') {
        bits = bits << 6 | ALPHABET.iter().position(|a| *a == c).unwrap() as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let v = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(v >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn sha256_of(path: &Path) -> String {
    halo_core::manifest::sha256_hex(&std::fs::read(path).unwrap())
}

#[test]
fn a_signature_names_the_model_and_its_version_and_an_unchecked_one_is_said_so() {
    let tmp = tempfile::tempdir().unwrap();
    let ck = quick_checkpoint(tmp.path());
    let (public, secret) = keygen(tmp.path(), "site");
    let quick = ["--verify-count", "5", "--calibration-records", "0"];
    // The same checkpoint exported twice: version 1 under the folder's name, version 2 named.
    let (v1, v2) = (tmp.path().join("renal-v1"), tmp.path().join("v2"));
    let o = common::halo_command()
        .args([
            "export",
            "--checkpoint",
            ck.to_str().unwrap(),
            "--out",
            v1.to_str().unwrap(),
            "--sign",
            &secret,
        ])
        .args(quick)
        .env("SOURCE_DATE_EPOCH", "1000000000")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let mut args = vec![
        "--sign",
        &secret,
        "--model-name",
        "renal cohort",
        "--model-version",
        "2",
    ];
    args.extend(quick);
    let o = export(&ck, &v2, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("as model renal cohort version 2"), "{}", stderr(&o));

    for (dir, named) in [
        (
            &v1,
            "halo model renal-v1 version 1, exported 2001-09-09T01:46:40Z, manifest.json sha256 ",
        ),
        (&v2, "halo model renal cohort version 2, exported "),
    ] {
        let m = dir.to_str().unwrap();
        let manifest_sha = sha256_of(&dir.join("manifest.json"));
        let o = halo_sample(&["verify", "--model", m, "--trust", &public, "--quiet"]);
        let out = stdout(&o);
        assert!(o.status.success(), "{out}");
        let line = out.lines().find(|l| l.starts_with("verify: signature: good")).unwrap();
        assert!(line.contains(named) && line.contains(&manifest_sha), "{line}");
        // --version names the model too: unchecked without --trust (and says so), good with it.
        let o = halo_sample(&["--version", "--model", m]);
        let out = stdout(&o);
        assert!(
            out.contains(named) && out.contains("signature not checked, add --trust PUBLIC_KEY"),
            "{out}"
        );
        let o = halo_sample(&["--version", "--model", m, "--trust", &public]);
        assert!(
            stdout(&o).contains(&format!("signature good: {named}")),
            "{}",
            stdout(&o)
        );

        // Sampling a signed folder without --trust warns that the signature was not checked.
        let records = tmp
            .path()
            .join(format!("{}.jsonl", dir.file_name().unwrap().to_str().unwrap()));
        let r = records.to_str().unwrap();
        let o = halo_sample(&["--model", m, "--count", "2", "--seed", "1", "--out", r, "--quiet"]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("halo-sample: warning:")
                && stderr(&o).contains("its signature was not checked: pass --trust PUBLIC_KEY"),
            "{}",
            stderr(&o)
        );
        std::fs::remove_file(&records).unwrap();
        let o = halo_sample(&[
            "--model", m, "--count", "2", "--seed", "1", "--out", r, "--trust", &public,
        ]);
        assert!(o.status.success() && !stderr(&o).contains("warning"), "{}", stderr(&o));
    }
    // An unsigned folder gets no such warning; --model-name without --sign is refused.
    let records = tmp.path().join("unsigned.jsonl");
    let o = halo_sample(&[
        "--model",
        &common::fixture("tiny-model"),
        "--count",
        "2",
        "--seed",
        "1",
        "--out",
        records.to_str().unwrap(),
    ]);
    assert!(o.status.success() && !stderr(&o).contains("warning"), "{}", stderr(&o));
    let o = export(&ck, &tmp.path().join("x"), &["--model-version", "3"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--sign"), "{}", stderr(&o));
}

#[test]
fn trust_and_public_key_messages_say_what_is_wrong_and_name_their_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let ck = quick_checkpoint(tmp.path());
    let (public, secret) = keygen(tmp.path(), "ours");
    let (other, _) = keygen(tmp.path(), "theirs");
    let model = tmp.path().join("model");
    let o = export(
        &ck,
        &model,
        &["--sign", &secret, "--verify-count", "5", "--calibration-records", "0"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let m = model.to_str().unwrap();

    // Another key given our key id: the key is blamed, not the manifest.
    let (ours, theirs) = (
        base64_decode(&common::key_line(Path::new(&public))),
        base64_decode(&common::key_line(Path::new(&other))),
    );
    assert_eq!(ours.len(), 42);
    let mut forged = theirs.clone();
    forged[2..10].copy_from_slice(&ours[2..10]);
    let forged = base64_encode(&forged);
    assert_eq!(base64_encode(&ours), common::key_line(Path::new(&public)));
    let o = halo_sample(&["verify", "--model", m, "--trust", &forged, "--quiet"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("is not a signature by the key given to --trust") && !out.contains("changed after signing"),
        "{out}"
    );

    // A missing file, a binary file, a text file that is no key, and a key line that does not decode.
    let missing = tmp.path().join("nowhere.pub");
    let binary = tmp.path().join("binary.pub");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x81]).unwrap();
    let text = tmp.path().join("text.pub");
    std::fs::write(&text, "hello\nworld\n").unwrap();
    for (key, says) in [
        (missing.to_str().unwrap(), "no such file"),
        (
            binary.to_str().unwrap(),
            "not a minisign public key file (it is not text",
        ),
        (text.to_str().unwrap(), "not a minisign public key file"),
        ("RWQnotakey", "not a valid minisign public key"),
    ] {
        let o = halo_sample(&["verify", "--model", m, "--trust", key, "--quiet"]);
        let out = stdout(&o);
        assert_eq!(o.status.code(), Some(1), "{key}: {out}");
        let line = out.lines().find(|l| l.contains("signature: FAILED")).unwrap();
        assert!(line.contains(&format!("--trust {key}: {says}")), "{line}");
        assert!(!line.contains("neither"), "{line}");
        // Said once: no part of the message repeats.
        let after = line.split_once(": ").unwrap().1;
        let words: Vec<&str> = after.split(": ").collect();
        let unique: std::collections::HashSet<&&str> = words.iter().collect();
        assert_eq!(words.len(), unique.len(), "{line}");
    }

    // halo package names its own flag.
    let archive = tmp.path().join("b.tar.gz");
    for (key, says) in [
        (missing.to_str().unwrap(), "--public-key"),
        (other.as_str(), "another key than the one given to --public-key"),
    ] {
        let o = common::halo(&[
            "package",
            "--model",
            m,
            "--out",
            archive.to_str().unwrap(),
            "--public-key",
            key,
        ]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(
            stderr(&o).contains(says) && !stderr(&o).contains("--trust"),
            "{}",
            stderr(&o)
        );
    }
}
