//! Running the `halo` and `halo-sample` commands as a user does, on small real records.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn halo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_halo"))
        .args(args)
        .output()
        .expect("run halo")
}

pub fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
        .display()
        .to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The `halo train` command the tests run: a tiny model on the CPU, `batch_size` records a step.
pub fn train_command(data: &str, out: &Path, batch_size: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_halo"));
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

/// `halo-sample`, built next to `halo` by the workspace build (`cargo test --workspace` builds both).
pub fn halo_sample(args: &[&str]) -> Output {
    let exe = Path::new(env!("CARGO_BIN_EXE_halo")).with_file_name("halo-sample");
    assert!(
        exe.is_file(),
        "{} missing: build it first (cargo build --release -p halo-infer, or cargo test --workspace)",
        exe.display()
    );
    Command::new(exe).args(args).output().expect("run halo-sample")
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
