//! Running the `halo` and `halo-sample` commands as a user does, on small real records.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A workspace binary (`halo`, `halo-sample`) of the profile these tests were built with, built first if
/// it is missing or older than its sources: `cargo test -p halo-tests` alone does not build binaries.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    let test_exe = std::env::current_exe().expect("test executable");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let profile_dir = test_exe.parent().and_then(Path::parent).expect("target/<profile>/deps");
    BUILT.call_once(|| {
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev",
            Some(other) => other,
            None => "release",
        };
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--workspace", "--bins", "--profile", profile])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build of halo and halo-sample failed");
    });
    let exe = profile_dir.join(name);
    assert!(exe.is_file(), "{} missing after cargo build", exe.display());
    exe
}

/// The `halo` command, ready for arguments.
pub fn halo_command() -> Command {
    Command::new(binary("halo"))
}

pub fn halo(args: &[&str]) -> Output {
    halo_command().args(args).output().expect("run halo")
}

pub fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
        .display()
        .to_string()
}

/// A copy of the fixture model (fixtures/tiny-model, unsigned, with a verify digest of 100 records) at
/// `dir/<name>`.
pub fn fixture_model_copy(dir: &Path, name: &str) -> PathBuf {
    let copy = dir.join(name);
    std::fs::create_dir(&copy).unwrap();
    for e in std::fs::read_dir(fixture("tiny-model")).unwrap() {
        let path = e.unwrap().path();
        std::fs::copy(&path, copy.join(path.file_name().unwrap())).unwrap();
    }
    copy
}

/// Replaces the verify digest's record digests at `records` in `model`'s (unsigned) manifest.json by others
/// of the same form: the manifest stays consistent (every file's sha256 matches, as many digests as
/// records), and only re-sampling the records finds the change.
pub fn tamper_verify_digest(model: &Path, records: &[usize]) {
    let path = model.join("manifest.json");
    let mut manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for &i in records {
        manifest["verify"]["records"][i] = format!("{:064x}", i + 1).into();
    }
    std::fs::write(&path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The `halo train` command the tests run: a tiny model on the CPU, `batch_size` records a step.
pub fn train_command(data: &str, out: &Path, batch_size: &str, extra: &[&str]) -> Command {
    let mut c = halo_command();
    c.args([
        "train",
        "--data",
        data,
        "--out",
        out.to_str().unwrap(),
        "--device",
        "cpu",
        "--quiet",
    ])
    .args([
        "--n-embd",
        "16",
        "--n-layer",
        "1",
        "--n-head",
        "2",
        "--batch-size",
        batch_size,
    ])
    .args(extra);
    c
}

pub fn train(data: &str, out: &Path, extra: &[&str]) -> Output {
    train_command(data, out, "16", extra).output().expect("run halo")
}

pub fn export(ck: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "export",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    halo(&args)
}

pub fn halo_sample(args: &[&str]) -> Output {
    Command::new(binary("halo-sample"))
        .args(args)
        .output()
        .expect("run halo-sample")
}

/// A checkpoint trained for one epoch on the 60 Synthea records, in `dir/ck`.
pub fn quick_checkpoint(dir: &Path) -> PathBuf {
    let ck = dir.join("ck");
    let o = train(&fixture("synthea-60.jsonl"), &ck, &["--epochs", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    ck
}

/// `halo keygen --no-password` writing `dir/<name>.pub` and `dir/<name>.key`; returns (public, secret).
pub fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (public, secret) = (dir.join(format!("{name}.pub")), dir.join(format!("{name}.key")));
    let o = halo(&[
        "keygen",
        "--public-key",
        public.to_str().unwrap(),
        "--secret-key",
        secret.to_str().unwrap(),
        "--no-password",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    (public, secret)
}

/// Unpacks a site bundle archive into `into` (an existing folder) with the system's tar, as a site does;
/// returns the bundle's root folder (the archive's one top-level folder).
pub fn unpack_bundle(archive: &Path, into: &Path) -> PathBuf {
    let o = Command::new("/bin/tar")
        .arg("-xzf")
        .arg(archive)
        .arg("-C")
        .arg(into)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::read_dir(into).unwrap().next().unwrap().unwrap().path()
}

/// The base64 line of a minisign public key file (what SITE.md prints and `--trust` accepts).
pub fn key_line(public: &Path) -> String {
    std::fs::read_to_string(public)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string()
}

/// `halo package` of an unsigned `model` into `dir/bundle.tar.gz`, unpacked into `dir/site`: the command's
/// output and the bundle's root folder.
pub fn package_unsigned_and_unpack(model: &Path, dir: &Path) -> (Output, PathBuf) {
    let archive = dir.join("bundle.tar.gz");
    let o = halo(&[
        "package",
        "--model",
        model.to_str().unwrap(),
        "--out",
        archive.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let site = dir.join("site");
    std::fs::create_dir(&site).unwrap();
    let root = unpack_bundle(&archive, &site);
    (o, root)
}
