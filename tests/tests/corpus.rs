//! `halo prepare` and `halo train --corpus`: the corpus path trains exactly what `--data` trains, and a
//! corpus that does not fit the run is refused with the file named.

mod common;

use common::{fixture, halo, halo_command, stderr};
use std::path::Path;

/// The fixture model's training, from `input` (`--data X` or `--corpus X`) into `out`.
fn train_from(input: [&str; 2], out: &Path) -> std::process::Output {
    halo_command()
        .args(["train", input[0], input[1], "--out", out.to_str().unwrap()])
        .args(["--device", "cpu", "--threads", "1", "--seed", "1", "--quiet"])
        .args(["--n-embd", "16", "--n-layer", "2", "--n-head", "2", "--n-ctx", "10"])
        .args([
            "--epochs",
            "3",
            "--batch-size",
            "8",
            "--lab-buckets",
            "3",
            "--min-patients",
            "1",
        ])
        .output()
        .unwrap()
}

fn prepare(out: &Path, extra: &[&str]) -> std::process::Output {
    let data = fixture("tiny-omop");
    let mut args = vec!["prepare", "--data", &data, "--out", out.to_str().unwrap()];
    args.extend([
        "--seed",
        "1",
        "--n-ctx",
        "10",
        "--lab-buckets",
        "3",
        "--min-patients",
        "1",
    ]);
    args.extend(extra);
    halo(&args)
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_prepared_corpus_trains_the_same_model_as_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let (corpus, from_data, from_corpus) = (dir.path().join("corpus"), dir.path().join("a"), dir.path().join("b"));
    let o = prepare(&corpus, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = train_from(["--data", &fixture("tiny-omop")], &from_data);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = train_from(["--corpus", corpus.to_str().unwrap()], &from_corpus);
    assert!(o.status.success(), "{}", stderr(&o));
    for name in [
        "weights.safetensors",
        "encoding.json",
        "split.json",
        "training.json",
        "label_spec.json",
    ] {
        assert!(
            read(&from_data.join(name)) == read(&from_corpus.join(name)),
            "{name} differs between --data and --corpus"
        );
    }
    // --data prepares into the checkpoint: the same corpus as `halo prepare` wrote.
    for name in [
        "train.tokens",
        "train.offsets",
        "val.tokens",
        "test.tokens",
        "corpus.json",
    ] {
        assert!(
            read(&corpus.join(name)) == read(&from_data.join("corpus").join(name)),
            "{name} differs"
        );
    }
    let info: serde_json::Value = serde_json::from_slice(&read(&corpus.join("corpus.json"))).unwrap();
    assert_eq!(info["splits"]["train"]["records"], 29, "{info}");
    assert_eq!(info["read_report"]["patients"], 40, "{info}");
}

#[test]
fn a_corpus_that_does_not_fit_the_run_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    assert!(prepare(&corpus, &[]).status.success());
    // Another context than the corpus was prepared for.
    let o = halo_command()
        .args(["train", "--corpus", corpus.to_str().unwrap(), "--out"])
        .arg(dir.path().join("other-context"))
        .args(["--device", "cpu", "--n-ctx", "12", "--epochs", "1", "--quiet"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("prepared for a context of 10") && err.contains("12"),
        "{err}"
    );
    assert!(
        !dir.path().join("other-context").exists(),
        "a refused run leaves no --out"
    );

    // A token file cut short (a copy that did not finish).
    let tokens = corpus.join("train.tokens");
    let bytes = read(&tokens);
    std::fs::write(&tokens, &bytes[..bytes.len() - 8]).unwrap();
    let o = train_from(["--corpus", corpus.to_str().unwrap()], &dir.path().join("damaged"));
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("train.tokens") && err.contains("damaged or half-written"),
        "{err}"
    );

    // Preparing into a folder that holds something.
    let o = prepare(&corpus, &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("already exists and is not empty"), "{}", stderr(&o));
}

#[test]
fn prepare_reports_each_stage_with_its_memory() {
    let dir = tempfile::tempdir().unwrap();
    let o = prepare(&dir.path().join("corpus"), &["--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let times: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = times["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["read", "split", "fit", "encode"]);
    assert_eq!(times["events"], 2218);
    // halo prepare runs halo-prepare, which does not load libtorch: its memory is the data's, far below the
    // ~380 MB a process with libtorch starts at.
    for stage in times["stages"].as_array().unwrap() {
        let mb = stage["peak_rss_mb"].as_f64().unwrap();
        assert!(mb > 0.0 && mb < 100.0, "{stage}");
    }
}

#[test]
fn halo_test_scores_the_prepared_corpus_as_it_scores_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    let o = train_from(["--data", &fixture("tiny-omop")], &ck);
    assert!(o.status.success(), "{}", stderr(&o));
    let test = |extra: &[&str]| {
        let mut args = vec!["test", "--checkpoint", ck.to_str().unwrap(), "--device", "cpu"];
        args.extend(extra);
        let o = halo(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let mut v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let data = v["data"].as_str().unwrap().to_string();
        v.as_object_mut().unwrap().remove("data");
        v.as_object_mut().unwrap().remove("scored");
        (v, data)
    };
    let (from_corpus, said) = test(&[]);
    assert!(said.starts_with("corpus "), "{said}");
    let (from_records, _) = test(&["--data", &fixture("tiny-omop")]);
    assert_eq!(from_corpus, from_records);
    assert_eq!(from_corpus["records"], 8, "the 8 test records: {from_corpus}");
}

/// A checkpoint from before corpora (no `corpus/`) resumes: its records are encoded with its own encoding
/// into `corpus/`, and the run continues to the uninterrupted run's weights.
#[test]
fn a_checkpoint_without_a_corpus_resumes_to_the_uninterrupted_result() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, resumed) = (dir.path().join("whole"), dir.path().join("resumed"));
    let data = fixture("tiny-omop");
    let run = |out: &Path, epochs: &str, extra: &[&str]| {
        let o = halo_command()
            .args(["train", "--data", &data, "--out", out.to_str().unwrap()])
            .args([
                "--device",
                "cpu",
                "--threads",
                "1",
                "--seed",
                "1",
                "--quiet",
                "--epochs",
                epochs,
            ])
            .args([
                "--n-embd",
                "16",
                "--n-layer",
                "1",
                "--n-head",
                "2",
                "--n-ctx",
                "10",
                "--min-patients",
                "1",
            ])
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        o
    };
    run(&whole, "2", &[]);
    run(&resumed, "1", &[]);
    std::fs::remove_dir_all(resumed.join("corpus")).unwrap();
    let o = run(&resumed, "2", &["--resume"]);
    assert!(stderr(&o).contains("a run from before corpora"), "{}", stderr(&o));
    assert!(resumed.join("corpus/corpus.json").is_file());
    for name in ["weights.safetensors", "last.safetensors"] {
        assert!(read(&whole.join(name)) == read(&resumed.join(name)), "{name} differs");
    }
}

/// `halo evaluate --checkpoint` scores the attacked records from the checkpoint's corpus when the real
/// records are the ones it was prepared from, with the figures encoding them again gives.
#[test]
fn evaluate_scores_the_attacked_records_from_the_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    let o = train_from(["--data", &fixture("tiny-omop")], &ck);
    assert!(o.status.success(), "{}", stderr(&o));
    // The real records stand in for synthetic ones: what is compared does not matter here.
    let synthetic = dir.path().join("synthetic.jsonl");
    let o = halo_command()
        .args(["export", "--checkpoint", ck.to_str().unwrap(), "--out"])
        .arg(dir.path().join("model"))
        .args(["--allow-small-cells", "--calibration-records", "0"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = common::halo_sample(&[
        "--model",
        dir.path().join("model").to_str().unwrap(),
        "--count",
        "20",
        "--seed",
        "1",
        "--out",
        synthetic.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let evaluate = |out: &str| {
        let o = halo_command()
            .args([
                "evaluate",
                "--real",
                &fixture("tiny-omop"),
                "--synthetic",
                synthetic.to_str().unwrap(),
            ])
            .args([
                "--checkpoint",
                ck.to_str().unwrap(),
                "--device",
                "cpu",
                "--no-utility",
                "--out",
            ])
            .arg(dir.path().join(out))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let report: serde_json::Value =
            serde_json::from_slice(&read(&dir.path().join(out).join("report.json"))).unwrap();
        (report["privacy"].clone(), stderr(&o))
    };
    let (from_corpus, said) = evaluate("a");
    assert!(
        said.contains("as the checkpoint's prepared corpus holds them"),
        "{said}"
    );
    std::fs::remove_dir_all(ck.join("corpus")).unwrap();
    let (encoded_again, said) = evaluate("b");
    assert!(!said.contains("prepared corpus"), "{said}");
    assert!(
        from_corpus.is_object() && from_corpus == encoded_again,
        "{from_corpus} vs {encoded_again}"
    );
}

#[test]
fn preparation_options_given_to_a_corpus_run_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    assert!(prepare(&corpus, &[]).status.success());
    let o = halo_command()
        .args(["train", "--corpus", corpus.to_str().unwrap(), "--out"])
        .arg(dir.path().join("ck"))
        .args([
            "--label-spec",
            "ccs-icd9",
            "--format",
            "omop",
            "--device",
            "cpu",
            "--n-ctx",
            "10",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("takes no --label-spec, --format"), "{err}");
    assert!(!dir.path().join("ck").exists());
}

#[test]
fn a_corpus_whose_sequences_are_garbled_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    assert!(prepare(&corpus, &[]).status.success());
    // Same length, garbled content: the second word of the first sequence (its label count) made huge.
    let tokens = corpus.join("val.tokens");
    let mut bytes = read(&tokens);
    bytes[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&tokens, &bytes).unwrap();
    let o = train_from(["--corpus", corpus.to_str().unwrap()], &dir.path().join("ck"));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("val.tokens") && err.contains("sequence 0 does not hold what its header says"),
        "{err}"
    );
}
