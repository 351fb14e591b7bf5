//! The argument layer of `halo`: values are parsed into their types by clap, so a wrong keyword fails before
//! any work with a message that lists the choices (exit code 2, clap's usage error).

use std::process::{Command, Output};

fn halo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_halo"))
        .args(args)
        .output()
        .expect("run halo")
}

#[test]
fn unknown_keywords_are_refused_with_the_choices() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("ck");
    let out = out.to_str().unwrap();
    let train = |extra: &[&str]| {
        let mut args = vec!["train", "--data", "nowhere.jsonl", "--out", out];
        args.extend(extra);
        halo(&args)
    };
    let cases: [(Output, &str); 6] = [
        (
            train(&["--preset", "tiny"]),
            "unknown preset `tiny` (expected small, paper)",
        ),
        (
            train(&["--device", "tpu"]),
            "unknown device `tpu` (expected cpu, cuda, auto)",
        ),
        (
            train(&["--code-order", "random"]),
            "unknown code order `random` (expected shuffled, frequency, lexical)",
        ),
        (
            train(&["--format", "xml"]),
            "unknown format `xml` (expected omop, meds, jsonl)",
        ),
        (train(&["--lr", "0"]), "`0` is not a learning rate"),
        (
            halo(&["export", "--checkpoint", "ck", "--out", out, "--precision", "fp8"]),
            "unknown precision `fp8` (expected fp32, fp16)",
        ),
    ];
    for (o, expected) in cases {
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(expected), "expected `{expected}` in: {err}");
    }
    assert!(!tmp.path().join("ck").exists());
}

#[test]
fn every_subcommand_documents_itself() {
    for sub in ["train", "test", "export", "keygen", "package", "evaluate"] {
        let o = halo(&[sub, "--help"]);
        assert!(o.status.success(), "{sub}");
        assert!(String::from_utf8_lossy(&o.stdout).contains("Usage: halo"), "{sub}");
    }
}
