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
