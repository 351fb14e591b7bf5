//! The privacy ledger from the checkpoint to the site: `halo export` copies a run's `privacy.json` into the
//! manifest (so the signature covers it), and `halo-sample verify`, `halo-sample --version --model`, SITE.md
//! and bundle.json show the total and every mechanism; a model without a ledger says "not trained with
//! differential privacy" in the same places, and a manifest whose ledger claims less than its mechanisms
//! give is refused.

mod common;

use common::{export, fixture_model_copy, halo_sample, package_unsigned_and_unpack, quick_checkpoint, stderr};
use halo_core::manifest::Manifest;
use halo_core::privacy::{Mechanism, PrivacyLedger};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn a_ledger_travels_from_the_checkpoint_to_the_manifest_verify_version_and_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let ck = quick_checkpoint(tmp.path());
    // What a DP run leaves in its checkpoint: the data's statistics and DP-SGD on top.
    let delta = 1e-5;
    let ledger = PrivacyLedger::new(
        vec![Mechanism::gaussian(
            "vocabulary",
            "which codes enter the vocabulary",
            30.0,
            4.0,
            1,
            delta,
        )],
        delta,
    )
    .with(Mechanism::dp_sgd(1.1, 16.0 / 48.0, 30, 1.0, delta));
    ledger.write_in(&ck).unwrap();
    let model = tmp.path().join("model");
    let o = export(&ck, &model, &["--verify-count", "5", "--calibration-records", "0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(Manifest::read(&model).unwrap().privacy, Some(ledger.clone()));

    let headline = format!(
        "trained with differential privacy: epsilon {:.2} at delta 1e-5 for each patient, 2 mechanisms",
        ledger.total_epsilon
    );
    let m = model.to_str().unwrap();
    let o = halo_sample(&["verify", "--model", m, "--quiet"]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(out.contains(&format!("verify: privacy: {headline}")), "{out}");
    assert!(
        out.contains("verify: privacy:   vocabulary (which codes enter the vocabulary): epsilon alone"),
        "{out}"
    );
    assert!(
        out.contains("verify: privacy:   DP-SGD (") && out.contains("30 steps"),
        "{out}"
    );
    let o = halo_sample(&["--version", "--model", m]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(out.contains(&format!("model privacy: {headline}")), "{out}");
    assert_eq!(out.matches("model privacy: ").count(), 3, "{out}");

    let (_, root) = package_unsigned_and_unpack(&model, tmp.path());
    let site_md = std::fs::read_to_string(root.join("SITE.md")).unwrap();
    assert!(
        site_md.contains(&format!(
            "the model was trained with differential privacy, epsilon {:.2} at delta 1e-5",
            ledger.total_epsilon
        )),
        "{site_md}"
    );
    assert!(
        site_md.contains("- DP-SGD (") && site_md.contains("- vocabulary ("),
        "{site_md}"
    );
    let bundle: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("bundle.json")).unwrap()).unwrap();
    let lines = bundle["privacy"].as_array().unwrap();
    assert_eq!(lines.len(), 3, "{bundle}");
    assert!(lines[0].as_str().unwrap().starts_with(&headline), "{bundle}");

    // The evaluation report of the model's records states the guarantee (report.json, report.html, summary).
    let (report, logs) = evaluate_with_model(tmp.path(), &model);
    let lines = report["model_privacy"].as_array().unwrap();
    assert_eq!(lines.len(), 3, "{report}");
    assert!(lines[0].as_str().unwrap().starts_with(&headline));
    assert!(logs.contains(&format!("model: {headline}")), "{logs}");
    let html = std::fs::read_to_string(tmp.path().join("report/report.html")).unwrap();
    assert!(html.contains("<h3>Guarantee</h3><p>The model was trained with differential privacy"));

    // A ledger edited to claim less than its mechanisms give: the manifest is refused.
    let path = model.join("manifest.json");
    let mut manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    manifest["privacy"]["total_epsilon"] = 0.5.into();
    std::fs::write(&path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
    let o = halo_sample(&["verify", "--model", m, "--quiet"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("privacy.total_epsilon") || stderr(&o).contains("total_epsilon"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_model_without_a_ledger_says_it_was_not_trained_with_differential_privacy() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixture_model_copy(tmp.path(), "model");
    assert_eq!(Manifest::read(&model).unwrap().privacy, None);
    let m = model.to_str().unwrap();
    let o = halo_sample(&["verify", "--model", m, "--quiet"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("verify: privacy: not trained with differential privacy\n"),
        "{}",
        stdout(&o)
    );
    let o = halo_sample(&["--version", "--model", m]);
    assert!(
        stdout(&o).contains("model privacy: not trained with differential privacy\n"),
        "{}",
        stdout(&o)
    );
    // The fixture's manifest (written before the ledger existed) has no `privacy` key, and one written
    // without a ledger still has none: old model directories keep their bytes.
    let text = std::fs::read_to_string(model.join("manifest.json")).unwrap();
    assert!(!text.contains("\"privacy\""));
    let manifest = Manifest::read(&model).unwrap();
    assert!(!serde_json::to_string(&manifest).unwrap().contains("\"privacy\""));

    let (_, root) = package_unsigned_and_unpack(&model, tmp.path());
    let site_md = std::fs::read_to_string(root.join("SITE.md")).unwrap();
    assert!(
        site_md.contains("Differential privacy: none, the model was not trained with differential privacy"),
        "{site_md}"
    );
    let bundle: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("bundle.json")).unwrap()).unwrap();
    assert_eq!(
        bundle["privacy"],
        serde_json::json!(["not trained with differential privacy"])
    );
    let (report, logs) = evaluate_with_model(tmp.path(), &model);
    assert_eq!(
        report["model_privacy"],
        serde_json::json!(["not trained with differential privacy"])
    );
    assert!(
        logs.contains("model: not trained with differential privacy\n"),
        "{logs}"
    );
}

/// `halo evaluate --model` of the 60 fixture records against themselves into `dir/report`: report.json
/// and the command's standard error.
fn evaluate_with_model(dir: &std::path::Path, model: &std::path::Path) -> (serde_json::Value, String) {
    let records = common::fixture("synthea-60.jsonl");
    let out = dir.join("report");
    let o = common::halo_command()
        .args(["evaluate", "--real", &records, "--synthetic", &records, "--out"])
        .arg(&out)
        .arg("--model")
        .arg(model)
        .args(["--device", "cpu", "--no-utility", "--min-patients", "1"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let report = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    (report, stderr(&o))
}
