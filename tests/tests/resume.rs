//! `halo train --resume` after a kill at any point, including during the first epoch; refused, naming what
//! differs, when the data or a setting changed; a failed start leaves no --out.

mod common;

use common::{fixture, stderr, train};
use std::path::Path;
use std::process::Command;

/// A run slow enough to be killed inside an epoch: one record a step (2 epochs unless `extra` says).
fn slow_train(out: &Path, extra: &[&str]) -> Command {
    let epochs: &[&str] = if extra.contains(&"--epochs") {
        &[]
    } else {
        &["--epochs", "2"]
    };
    let mut c = common::train_command(&fixture("synthea-60.jsonl"), out, "1", epochs);
    c.args(extra);
    c
}

fn epochs_done(dir: &Path) -> u64 {
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("train_state.json")).unwrap()).unwrap();
    state["epochs_done"].as_u64().unwrap()
}

#[test]
fn a_run_killed_in_its_first_epoch_resumes_to_the_uninterrupted_result() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, killed) = (dir.path().join("whole"), dir.path().join("killed"));
    assert!(slow_train(&whole, &[]).output().unwrap().status.success());

    let mut child = slow_train(&killed, &[])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The run appears with its epoch-0 state before the first step; kill it right then, inside epoch 1.
    let started = std::time::Instant::now();
    while !killed.join("last.safetensors").exists() && started.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(epochs_done(&killed), 0, "the kill was meant to land in epoch 1");

    let o = slow_train(&killed, &["--resume"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("resuming after epoch 0"), "{}", stderr(&o));
    let read = |d: &Path| std::fs::read(d.join("last.safetensors")).unwrap();
    assert!(
        read(&whole) == read(&killed),
        "resumed weights differ from the uninterrupted run's"
    );
    assert_eq!(
        std::fs::read_to_string(killed.join("log.jsonl"))
            .unwrap()
            .lines()
            .count(),
        2
    );
}

#[test]
fn resume_refuses_other_data_or_settings_and_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    let data = fixture("synthea-60.jsonl");
    assert!(train(&data, &ck, &["--epochs", "1"]).status.success());
    let state_before = std::fs::read(ck.join("train_state.json")).unwrap();

    let fewer = dir.path().join("fewer.jsonl");
    let text = std::fs::read_to_string(&data).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&fewer, lines[..lines.len() - 1].join("\n") + "\n").unwrap();
    for (data, extra, named) in [
        (data.as_str(), vec!["--lr", "0.01"], "lr: was"),
        (data.as_str(), vec!["--seed", "5"], "seed: was"),
        (fewer.to_str().unwrap(), vec![], "data_digest: was"),
    ] {
        let mut args = vec!["--epochs", "2", "--resume"];
        args.extend(extra);
        let o = train(data, &ck, &args);
        assert_eq!(o.status.code(), Some(1), "{named}");
        assert!(stderr(&o).contains(named), "{named}: {}", stderr(&o));
        assert_eq!(std::fs::read(ck.join("train_state.json")).unwrap(), state_before);
    }
    // The same data and settings continue.
    let o = train(&data, &ck, &["--epochs", "2", "--resume"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_run_that_fails_before_training_leaves_no_out_folder() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"id\": \"1\", \"visits\": [\n").unwrap();
    let out = dir.path().join("ck");
    let o = train(bad.to_str().unwrap(), &out, &[]);
    assert_eq!(o.status.code(), Some(1));
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("bad.jsonl")], "{}", stderr(&o));
}

#[test]
fn sigterm_during_training_removes_temporaries_and_the_run_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ck");
    let child = slow_train(&out, &["--epochs", "3"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !out.join("log.jsonl").is_file() && started.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let hidden: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .chain(std::fs::read_dir(dir.path()).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");
    let o = slow_train(&out, &["--epochs", "3", "--resume"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(epochs_done(&out), 3);
}

/// DP-SGD on a corpus of records in windows (a record is several sequences, one privacy unit): one record
/// a step, so that a kill lands inside the run.
fn private_train(corpus: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = common::halo_command();
    c.args([
        "train",
        "--corpus",
        corpus.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
    .args([
        "--device",
        "cpu",
        "--quiet",
        "--n-embd",
        "16",
        "--n-layer",
        "1",
        "--n-head",
        "2",
    ])
    .args(["--batch-size", "1", "--n-ctx", "8"])
    .args(extra);
    c
}

/// With differential privacy (records in windows): a run killed between epochs resumes to the uninterrupted
/// run's bytes (batches and noise seeded by seed and step), and a resume that changes a DP setting or the
/// planned epochs is refused, naming it.
#[test]
fn a_private_run_resumes_exactly_and_refuses_other_privacy_settings() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, killed) = (dir.path().join("whole"), dir.path().join("killed"));
    let corpus = dir.path().join("corpus");
    let o = common::halo(&[
        "prepare",
        "--data",
        &fixture("synthea-60.jsonl"),
        "--out",
        corpus.to_str().unwrap(),
        "--windows",
        "--n-ctx",
        "8",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let private = ["--dp-epsilon", "8", "--epochs", "3"];
    let o = private_train(&corpus, &whole, &private).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(whole.join("train_state.json")).unwrap()).unwrap();
    let plan = &state["privacy"];
    assert!(plan["epsilon"].as_f64().unwrap() <= 8.0, "{plan}");
    assert!(plan["noise_multiplier"].as_f64().unwrap() > 0.0, "{plan}");
    assert_eq!(state["settings"]["dp"]["epsilon"], 8.0);
    // The label bias, on by default, is left out under DP (its gradients are not clipped per record).
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(whole.join("config.json")).unwrap()).unwrap();
    assert!(!config["label_bias"].as_bool().unwrap_or(false), "{config}");
    // The shipped weights are the last epoch's, whatever the validation loss did.
    assert_eq!(state["best_epoch"], 3);
    let last: std::collections::HashMap<String, tch::Tensor> =
        tch::Tensor::read_safetensors(whole.join("last.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    let shipped = tch::Tensor::read_safetensors(whole.join("weights.safetensors")).unwrap();
    assert!(shipped.len() > 10);
    for (name, t) in &shipped {
        assert!(t.equal(&last[name]), "{name} differs from the last epoch's");
    }
    // Some records were split into windows: more sequences than records.
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(corpus.join("corpus.json")).unwrap()).unwrap();
    let train = &info["splits"]["train"];
    assert!(train["sequences"].as_u64() > train["records"].as_u64(), "{train}");
    assert_eq!(plan["records"].as_u64(), train["records"].as_u64());
    // The ledger in the checkpoint states the plan (output-bias initialisation and DP-SGD), and export signs
    // it into the manifest.
    let ledger = halo_core::privacy::PrivacyLedger::read(&whole.join("privacy.json")).unwrap();
    let names: Vec<&str> = ledger.mechanisms.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["output biases", "DP-SGD"]);
    assert!((ledger.total_epsilon - plan["epsilon"].as_f64().unwrap()).abs() < 1e-9);
    assert_eq!(Some(ledger.mechanisms[1].count), plan["planned_steps"].as_u64());
    let model = dir.path().join("model");
    let o = common::export(&whole, &model, &["--verify-count", "5", "--calibration-records", "0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        halo_core::manifest::Manifest::read(&model).unwrap().privacy,
        Some(ledger)
    );

    let child = private_train(&corpus, &killed, &private)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !killed.join("log.jsonl").is_file() && started.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    child.wait_with_output().unwrap();
    assert!(
        epochs_done(&killed) < 3,
        "the kill was meant to land before the last epoch"
    );
    let mut resumed: Vec<&str> = private.to_vec();
    resumed.push("--resume");
    let o = private_train(&corpus, &killed, &resumed).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let read = |d: &Path| std::fs::read(d.join("last.safetensors")).unwrap();
    assert!(
        read(&whole) == read(&killed),
        "resumed weights differ from the uninterrupted run's"
    );

    let state_before = std::fs::read(killed.join("train_state.json")).unwrap();
    let swap = |flag: &str, value: &str| -> Vec<String> {
        let mut args: Vec<String> = resumed.iter().map(|s| s.to_string()).collect();
        let at = args.iter().position(|a| a == flag).unwrap();
        args[at + 1] = value.to_string();
        args
    };
    let mut without: Vec<String> = resumed.iter().map(|s| s.to_string()).collect();
    without.drain(0..2);
    let mut other_bound = resumed.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    other_bound.extend(["--dp-max-grad-norm".to_string(), "2".to_string()]);
    for (args, named) in [
        (swap("--dp-epsilon", "3"), "dp.epsilon: was 8.0, now 3.0"),
        (other_bound, "dp.max_grad_norm: was 1.0, now 2.0"),
        (without, "dp.epsilon: was 8.0, now not set"),
        (swap("--epochs", "4"), "epochs: was 3, now 4"),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = private_train(&corpus, &killed, &args).output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{named}: {}", stderr(&o));
        assert!(stderr(&o).contains(named), "{named}: {}", stderr(&o));
        assert_eq!(std::fs::read(killed.join("train_state.json")).unwrap(), state_before);
    }
}

/// From records, `halo train --dp-epsilon` prepares the corpus with DP statistics too: the checkpoint's
/// ledger holds the corpus's mechanisms and the run's, and the whole stays within epsilon.
#[test]
fn a_private_run_from_records_spends_one_budget_on_statistics_and_training() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    let o = train(
        &fixture("synthea-60.jsonl"),
        &ck,
        &["--dp-epsilon", "8", "--epochs", "1"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let corpus = halo_core::privacy::PrivacyLedger::read(&ck.join("corpus/privacy.json")).unwrap();
    let ledger = halo_core::privacy::PrivacyLedger::read(&ck.join("privacy.json")).unwrap();
    assert!(!corpus.mechanisms.is_empty());
    assert_eq!(ledger.mechanisms.len(), corpus.mechanisms.len() + 2);
    for (ours, theirs) in ledger.mechanisms.iter().zip(&corpus.mechanisms) {
        assert_eq!(ours.name, theirs.name);
    }
    assert!(ledger.total_epsilon <= 8.0 && ledger.total_epsilon > 7.9, "{ledger:?}");
}
