//! `halo train` and `halo test` as a user runs them: real training runs on small real records.

mod common;

use common::{export, fixture, halo, stderr, train};
use std::path::{Path, PathBuf};

fn json(path: PathBuf) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn a_resumed_run_ends_exactly_where_an_uninterrupted_one_does() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, split) = (dir.path().join("whole"), dir.path().join("split"));
    let data = fixture("synthea-60.jsonl");
    // With dropout and weight decay, whose random masks and decay must continue exactly too.
    let regularized = ["--dropout", "0.2", "--weight-decay", "0.1"];
    let with = |extra: &[&'static str]| [extra, &regularized[..]].concat();
    assert!(train(&data, &whole, &with(&["--epochs", "3"])).status.success());
    // "Killed" after two epochs, then resumed to three.
    let first = train(&data, &split, &with(&["--epochs", "2"]));
    assert!(first.status.success(), "{}", stderr(&first));
    let resumed = train(&data, &split, &with(&["--epochs", "3", "--resume"]));
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert!(stderr(&resumed).contains("resuming after epoch 2"));
    assert_eq!(json(split.join("train_state.json"))["epochs_done"], 3);
    let read = |p: &Path| std::fs::read(p.join("last.safetensors")).unwrap();
    assert!(
        read(&whole) == read(&split),
        "resumed weights differ from the uninterrupted run's"
    );
    let log = std::fs::read_to_string(split.join("log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 3);
}

#[test]
fn test_prints_the_metrics_of_the_test_split() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    let out = train(&fixture("synthea-60.jsonl"), &ck, &["--epochs", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let split = json(ck.join("split.json"));
    assert_eq!(split["source"], "seeded");
    assert_eq!(split["test"].as_array().unwrap().len(), 12);
    assert_eq!(split["val"].as_array().unwrap().len(), 5);
    assert_eq!(split["train"].as_array().unwrap().len(), 43);
    let out = halo(&["test", "--checkpoint", ck.to_str().unwrap(), "--device", "cpu"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(m["records"], 12);
    assert_eq!(m["scored"], "test split");
    let (ppl, bce, f1) = (
        m["perplexity"].as_f64().unwrap(),
        m["bce"].as_f64().unwrap(),
        m["f1"].as_f64().unwrap(),
    );
    assert!(
        ppl > 1.0 && ppl.is_finite() && bce > 0.0 && (0.0..=1.0).contains(&f1),
        "{m}"
    );
}

#[test]
fn given_labels_and_splits_shape_the_vocabulary_label_visit_and_split() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("r.jsonl");
    let mut lines = String::new();
    for i in 0..12 {
        let split = ["train", "train", "val", "test"][i % 4];
        let label = if i % 2 == 0 {
            "{\"diabetes\":1,\"asthma\":0}"
        } else {
            "[\"asthma\"]"
        };
        lines.push_str(&format!(
            "{{\"id\":\"p{i}\",\"split\":\"{split}\",\"labels\":{label},\"visits\":[{{\"codes\":[\"X{}\",\"Y\"]}},{{\"codes\":[\"Z\"]}}]}}\n",
            i % 3
        ));
    }
    std::fs::write(&data, lines).unwrap();
    let ck = dir.path().join("ck");
    let out = train(
        data.to_str().unwrap(),
        &ck,
        // X0, X1, X2 are each held by 4 of the 12 persons: kept at --min-patients 4 (at the boundary).
        &["--epochs", "1", "--code-order", "lexical", "--min-patients", "4"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let enc = json(ck.join("encoding.json"));
    let tokens: Vec<String> = enc["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            t.get("code")
                .or(t.get("name"))
                .map(|s| s.as_str().unwrap().to_string())
                .unwrap_or(t["kind"].as_str().unwrap().into())
        })
        .collect();
    // No dates, no demographics: codes as given (lexical order), the given labels (first seen; a label map's
    // names in lexical order), then start/end/pad.
    assert_eq!(
        tokens,
        ["X0", "X1", "X2", "Y", "Z", "asthma", "diabetes", "start", "end", "pad"]
    );
    assert_eq!(enc["labels_given"], true);
    let split = json(ck.join("split.json"));
    assert_eq!(split["source"], "given");
    assert_eq!(split["train"], serde_json::json!(["p0", "p1", "p4", "p5", "p8", "p9"]));
    assert_eq!(split["val"], serde_json::json!(["p2", "p6", "p10"]));
    assert_eq!(split["test"], serde_json::json!(["p3", "p7", "p11"]));
}

#[test]
fn bad_inputs_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("ck");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "not json",
            "{\"id\":1,\"visits\":[{\"codes\":[\"a\"]}]}\nnot json\n".into(),
            ":2: not JSON",
        ),
        (
            "unknown split",
            "{\"id\":1,\"split\":\"dev\",\"visits\":[{\"codes\":[\"a\"]}]}\n".into(),
            ":1: unknown split `dev`",
        ),
        (
            "label not 0/1",
            "{\"id\":1,\"labels\":{\"x\":2},\"visits\":[{\"codes\":[\"a\"]}]}\n".into(),
            ":1: label `x` is 2; expected 0 or 1",
        ),
    ];
    for (what, text, expected) in cases {
        let data = dir.path().join("bad.jsonl");
        std::fs::write(&data, text).unwrap();
        let out = train(data.to_str().unwrap(), &out_dir, &["--epochs", "1"]);
        assert!(!out.status.success(), "{what}: should fail");
        assert!(stderr(&out).contains(expected), "{what}: {}", stderr(&out));
    }
    let out = train("/nonexistent/records.jsonl", &out_dir, &[]);
    assert!(
        stderr(&out).contains("/nonexistent/records.jsonl: no such file or folder"),
        "{}",
        stderr(&out)
    );
    let out = halo(&["test", "--checkpoint", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not a checkpoint folder") && stderr(&out).contains("but config.json is missing"),
        "{}",
        stderr(&out)
    );
    // An existing, non-empty output folder is not overwritten.
    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::write(out_dir.join("keep.txt"), "x").unwrap();
    let out = train(&fixture("synthea-60.jsonl"), &out_dir, &["--epochs", "1"]);
    assert!(stderr(&out).contains("exists and is not empty"), "{}", stderr(&out));
    assert!(out_dir.join("keep.txt").is_file());
}

#[test]
fn records_without_visits_are_counted_not_trained_on() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("r.jsonl");
    let mut text = String::from("{\"id\":\"empty\",\"visits\":[]}\n");
    for l in std::fs::read_to_string(fixture("synthea-60.jsonl"))
        .unwrap()
        .lines()
        .take(20)
    {
        text.push_str(l);
        text.push('\n');
    }
    std::fs::write(&data, text).unwrap();
    let out = train(data.to_str().unwrap(), &dir.path().join("ck"), &["--epochs", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("\"patients_without_visits\":1"),
        "{}",
        stderr(&out)
    );
}

/// `halo export` of checkpoint `ck` into `out`, with `extra` flags.
/// Asserts that no file of `dir` contains any of `needles`.
fn assert_nowhere_in(dir: &Path, needles: &[&str]) {
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        for needle in needles {
            let n = needle.as_bytes();
            assert!(
                !bytes.windows(n.len()).any(|w| w == n),
                "{} holds `{needle}`",
                path.display()
            );
        }
    }
}

#[test]
fn the_model_directory_holds_no_path_of_the_training_data() {
    let dir = tempfile::tempdir().unwrap();
    // The data under a folder whose name would be found if any path travelled.
    let planted = dir.path().join("PLANTED_site_path_7f3a");
    std::fs::create_dir(&planted).unwrap();
    let data = planted.join("records.jsonl");
    std::fs::copy(fixture("synthea-60.jsonl"), &data).unwrap();
    let ck = dir.path().join("ck");
    let o = train(data.to_str().unwrap(), &ck, &["--epochs", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The checkpoint keeps it (for `halo test`); the model directory must not.
    assert!(std::fs::read_to_string(ck.join("training.json"))
        .unwrap()
        .contains("PLANTED_site_path_7f3a"));
    let model = dir.path().join("model");
    let o = export(&ck, &model, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_nowhere_in(&model, &["PLANTED_site_path_7f3a"]);
}

#[test]
fn export_replaces_a_previous_model_only_with_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    let o = train(&fixture("synthea-60.jsonl"), &ck, &["--epochs", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let model = dir.path().join("model");
    assert!(export(&ck, &model, &[]).status.success());
    let before = std::fs::read(model.join("manifest.json")).unwrap();
    // The refusal names the flag that exists.
    let o = export(&ck, &model, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("pass --overwrite to replace it"), "{}", stderr(&o));
    let o = export(&ck, &model, &["--overwrite"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(model.join("manifest.json")).unwrap(),
        before,
        "the same checkpoint, the same model"
    );
}

/// Whether `x` has at most 3 significant digits (a rounded edge, not a patient's exact value).
fn is_coarse(x: f64) -> bool {
    x == 0.0 || format!("{x:.2e}").parse::<f64>().unwrap() == x
}

#[test]
fn rare_values_stay_on_the_training_machine() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("omop");
    std::fs::create_dir(&data).unwrap();
    for e in std::fs::read_dir(fixture("tiny-omop")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), data.join(e.file_name())).unwrap();
    }
    // Planted: a free-text source value in one event of one patient (visit 5 of person 1).
    let conditions = data.join("CONDITION_OCCURRENCE.csv");
    let mut text = std::fs::read_to_string(&conditions).unwrap();
    text.push_str("999001,1,0,2011-08-19,2011-08-19 00:00:00,,,32020,0,,,5,0,\"John Smith MRN 555-12-3456\",0,\n");
    std::fs::write(&conditions, text).unwrap();
    // Planted: one patient's extreme values of a lab 40 persons have (weight, 3025315), high and low.
    let measurements = data.join("MEASUREMENT.csv");
    let mut text = std::fs::read_to_string(&measurements).unwrap();
    for (id, value) in [(999101, "987654.321"), (999102, "-123456.7")] {
        text.push_str(&format!(
            "{id},1,3025315,2018-08-31,2018-08-31 00:00:00,2018-08-31,5001,0,{value},0,0,,,0,3,0,29463-7,3025315,,,,,\n"
        ));
    }
    std::fs::write(&measurements, text).unwrap();
    let planted_edges = ["987654", "988000", "123456", "123000"];
    // Planted: a visit type only one patient has (visit 5 of person 1, an outpatient visit in the fixture).
    let visits = data.join("VISIT_OCCURRENCE.csv");
    let text = std::fs::read_to_string(&visits).unwrap();
    let planted_type = "2000000123";
    std::fs::write(
        &visits,
        text.replacen("\n5,1,9202,", &format!("\n5,1,{planted_type},"), 1),
    )
    .unwrap();

    // With the rule off, the string and the extremes would ship: the test can see them.
    let ck_all = dir.path().join("ck-all");
    let o = train(
        data.to_str().unwrap(),
        &ck_all,
        &["--epochs", "1", "--min-patients", "1"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let encoding_all = std::fs::read_to_string(ck_all.join("encoding.json")).unwrap();
    assert!(encoding_all.contains("555-12-3456"));
    assert!(encoding_all.contains("987654.321") && encoding_all.contains("-123456.7"));
    assert!(encoding_all.contains(&format!("\"value\": \"{planted_type}\"")));
    // ... and export refuses such a model unless told.
    let refused = dir.path().join("refused");
    let o = export(&ck_all, &refused, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("trained with --min-patients 1"), "{}", stderr(&o));
    assert!(!refused.exists());

    // The default rule (10 patients).
    let ck = dir.path().join("ck");
    let o = train(data.to_str().unwrap(), &ck, &["--epochs", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("small-cell rule (--min-patients 10): left out"),
        "{}",
        stderr(&o)
    );
    let mut logs = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    let training = json(ck.join("training.json"));
    assert!(training["left_out"]["codes"].as_u64().unwrap() > 0, "{training}");
    // The planted type, and the fixture's inpatient and emergency types (fewer than 10 of its 40 persons).
    assert_eq!(training["left_out"]["visit_types"], 3, "{training}");
    let model = dir.path().join("model");
    let o = export(&ck, &model, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    logs.push_str(&format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o)));
    let needles = [&["John Smith", "555-12-3456", planted_type][..], &planted_edges].concat();
    assert_nowhere_in(&model, &needles);
    // Nor in the site bundle, nor in what the commands printed.
    let (o, bundle) = common::package_unsigned_and_unpack(&model, dir.path());
    logs.push_str(&format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o)));
    let bundle_files = halo_infer::site::files_under(&bundle).unwrap();
    assert!(bundle_files.len() > 10, "{bundle_files:?}");
    // (bin/ holds the sampler and ONNX Runtime, built without the data; digits like 123456 are in them.)
    for file in bundle_files
        .iter()
        .filter(|f| !f.parent().is_some_and(|p| p.ends_with("bin")))
    {
        let bytes = std::fs::read(file).unwrap();
        for needle in &needles {
            let n = needle.as_bytes();
            assert!(
                !bytes.windows(n.len()).any(|w| w == n),
                "{} holds `{needle}`",
                file.display()
            );
        }
    }
    for needle in &needles {
        assert!(!logs.contains(needle), "the logs hold `{needle}`:\n{logs}");
    }
    // The synthetic values of the planted lab stay within the other patients' range.
    let records = dir.path().join("synthetic.jsonl");
    let o = common::halo_sample(&[
        "--model",
        model.to_str().unwrap(),
        "--count",
        "400",
        "--seed",
        "1",
        "--out",
        records.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let values: Vec<f64> = std::fs::read_to_string(&records)
        .unwrap()
        .lines()
        .flat_map(|l| {
            let r: serde_json::Value = serde_json::from_str(l).unwrap();
            let visits = r["visits"].as_array().cloned().unwrap_or_default();
            visits
                .into_iter()
                .flat_map(|v| v["labs"].as_array().cloned().unwrap_or_default())
        })
        .filter(|lab| lab["code"].as_str().is_some_and(|c| c.ends_with("3025315")))
        .map(|lab| lab["value"].as_f64().unwrap())
        .collect();
    assert!(values.len() > 20, "{} sampled values of the planted lab", values.len());
    assert!(values.iter().all(|v| v.abs() < 1e4), "{values:?}");
    // No bucket edge taken from the data is one patient's exact value: the closing edges of gaps and ages
    // (the others are fixed steps) and every lab edge.
    let manifest = json(model.join("manifest.json"));
    let enc = &manifest["encoding"];
    let mut edges: Vec<f64> = Vec::new();
    for key in ["gap_edges_days", "age_edges_years"] {
        edges.push(enc[key].as_array().unwrap().last().unwrap().as_f64().unwrap());
    }
    for lab in enc["lab_edges"].as_object().unwrap().values() {
        edges.extend(lab.as_array().unwrap().iter().map(|e| e.as_f64().unwrap()));
    }
    assert!(edges.len() > 6);
    assert!(edges.iter().all(|&e| is_coarse(e)), "{edges:?}");
    // ... and none is the planted extremes of one patient (the outer lab edges are top-coded).
    assert!(edges.iter().all(|e| e.abs() < 1e4), "{edges:?}");
    // Every code left in the vocabulary is held by at least 10 of the 40 persons.
    let dataset = halo_core::read_dataset(&data, None, &halo_core::ReadOptions::default()).unwrap();
    for t in enc["tokens"].as_array().unwrap().iter().filter(|t| t["kind"] == "code") {
        let code = t["code"].as_str().unwrap();
        let n = dataset
            .patients
            .iter()
            .filter(|p| p.all_codes().any(|c| c == code))
            .count();
        assert!(n >= 10, "{code}: {n} patients");
    }
}

#[test]
fn a_learning_rate_that_is_not_one_is_refused_and_divergence_stops_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixture("synthea-60.jsonl");
    for bad in ["nan", "inf", "0", "-1e-3"] {
        let lr = format!("--lr={bad}");
        let o = train(&data, &dir.path().join(format!("ck-{bad}")), &["--epochs", "1", &lr]);
        assert_eq!(o.status.code(), Some(2), "--lr {bad}: {}", stderr(&o));
        assert!(stderr(&o).contains("not a learning rate"), "{}", stderr(&o));
    }
    let ck = dir.path().join("ck");
    let o = train(&data, &ck, &["--epochs", "3", "--lr", "1e9"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("training diverged at epoch"), "{}", stderr(&o));
    // Whatever was saved holds finite numbers only (no NaN weights to resume from).
    for name in ["weights.safetensors", "last.safetensors"] {
        let path = ck.join(name);
        if let Ok(bytes) = std::fs::read(&path) {
            let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            for (tname, t) in tensors.tensors() {
                if t.dtype() == safetensors::Dtype::F32 {
                    assert!(
                        t.data()
                            .chunks(4)
                            .all(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]).is_finite()),
                        "{name}: {tname} holds non-finite values"
                    );
                }
            }
        }
    }
}

/// Waits until a file in `dir` whose name starts with `prefix` exists.
fn wait_for(dir: &Path, prefix: &str) -> bool {
    let started = std::time::Instant::now();
    while started.elapsed().as_secs() < 120 {
        let found = std::fs::read_dir(dir)
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().starts_with(prefix));
        if found {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    false
}

#[test]
fn an_interrupted_export_leaves_nothing_and_a_killed_ones_leftovers_are_swept() {
    let dir = tempfile::tempdir().unwrap();
    let ck = common::quick_checkpoint(dir.path());
    let model = dir.path().join("model");
    let child = common::halo_command()
        .args([
            "export",
            "--checkpoint",
            ck.to_str().unwrap(),
            "--out",
            model.to_str().unwrap(),
        ])
        .args(["--verify-count", "100000"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_for(dir.path(), ".model."), "no temporary folder appeared");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(stderr(&o).contains("interrupted"), "{}", stderr(&o));
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["ck".to_string()], "left behind: {names:?}");

    // A SIGKILLed export's folder (its process gone) is removed by the next export to the same place.
    let stale = dir.path().join(".model.4194305.export.tmp");
    std::fs::create_dir(&stale).unwrap();
    let o = export(&ck, &model, &["--verify-count", "5"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stale.exists());
    assert!(stderr(&o).contains("removed 1 temporary folder"), "{}", stderr(&o));
}

#[test]
fn given_labels_that_partition_the_records_are_sampled_as_one_group() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    // synthea-60.jsonl gives GENDER/F and GENDER/M, exactly one of them in every record.
    let o = train(
        &fixture("synthea-60.jsonl"),
        &ck,
        &["--epochs", "2", "--min-patients", "1"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("sampled as exclusive groups: GENDER"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        json(ck.join("training.json"))["exclusive_label_groups"],
        serde_json::json!(["GENDER"])
    );
    let model = dir.path().join("model");
    let o = export(&ck, &model, &["--allow-small-cells", "--verify-count", "5"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = dir.path().join("s.jsonl");
    let o = common::halo_sample(&[
        "--model",
        model.to_str().unwrap(),
        "--count",
        "300",
        "--seed",
        "2",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&out).unwrap();
    for line in text.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        let (f, m) = (r["labels"]["GENDER/F"].as_bool(), r["labels"]["GENDER/M"].as_bool());
        assert!(
            matches!((f, m), (Some(true), Some(false)) | (Some(false), Some(true))),
            "{line}"
        );
    }
}

#[test]
fn an_export_killed_outright_is_swept_by_the_next_export_into_the_same_folder() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    let o = train(&fixture("synthea-60.jsonl"), &ck, &["--epochs", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let models = dir.path().join("models");
    std::fs::create_dir(&models).unwrap();
    let temporaries = || -> Vec<PathBuf> {
        std::fs::read_dir(&models)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(".export.tmp"))
            .collect()
    };
    // Killed (SIGKILL: no handler runs) while it writes its temporary folder.
    let mut child = common::halo_command()
        .args(["export", "--checkpoint", ck.to_str().unwrap(), "--out"])
        .arg(models.join("first"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while temporaries().is_empty() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the export ended before it could be killed"
        );
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(temporaries().len(), 1, "the killed export left its temporary folder");
    // The next export, of another model directory beside it, removes it.
    let o = export(&ck, &models.join("second"), &["--calibration-records", "0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("removed 1 temporary folder"), "{}", stderr(&o));
    assert!(temporaries().is_empty(), "{:?}", temporaries());
    assert!(!models.join("first").exists() && models.join("second").join("manifest.json").is_file());
}
