//! Sampling across machines (docs/scale-out.md): shards written by separate processes into separate MEDS
//! folders merge into one MEDS data set by moving files only, equal record for record to one run, and valid
//! under the MEDS project's own schemas.

use std::path::{Path, PathBuf};
use std::process::Command;

const EPOCH: &str = "1796256000";

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn sample(out: &Path, extra: &[&str]) -> Command {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tiny-model");
    let mut c = Command::new(env!("CARGO_BIN_EXE_halo-sample"));
    c.args([
        "--model",
        model.to_str().unwrap(),
        "--count",
        "45",
        "--seed",
        "9",
        "--format",
        "meds",
        "--quiet",
    ])
    .arg("--out")
    .arg(out)
    .args(extra)
    .env("SOURCE_DATE_EPOCH", EPOCH);
    c
}

#[test]
fn three_shard_processes_merge_by_moving_files_into_one_valid_meds_data_set() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole");
    assert!(sample(&whole, &[]).status().unwrap().success());

    // Three processes at once, as three machines would run them.
    let shards: Vec<PathBuf> = (0..3).map(|k| tmp.path().join(format!("shard{k}"))).collect();
    let children: Vec<_> = shards
        .iter()
        .enumerate()
        .map(|(k, dir)| sample(dir, &["--shard", &format!("{k}/3")]).spawn().unwrap())
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }

    // metadata/ is the same in every shard; data file names never collide.
    for dir in &shards[1..] {
        for f in ["codes.parquet", "dataset.json"] {
            assert_eq!(
                std::fs::read(dir.join("metadata").join(f)).unwrap(),
                std::fs::read(shards[0].join("metadata").join(f)).unwrap(),
                "{f} differs between shards"
            );
        }
    }
    // Merged by the script docs/scale-out.md gives users: files moved, never rewritten.
    let merged = tmp.path().join("merged");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let o = Command::new("/bin/sh")
        .arg(root.join("deploy/merge-meds-shards.sh"))
        .arg(&merged)
        .args(&shards)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        file_names(&merged.join("data")),
        vec!["000000000000.parquet", "000000000015.parquet", "000000000030.parquet"]
    );

    let options = halo_core::ReadOptions::default();
    let one = halo_core::meds::read_meds(&whole, &options).unwrap();
    let joined = halo_core::meds::read_meds(&merged, &options).unwrap();
    assert_eq!(one.patients.len(), 45);
    assert!(one.patients == joined.patients, "the merged shards differ from one run");

    let python = root.join(".venv/bin/python");
    let o = Command::new(&python)
        .arg(root.join("tests/python/check_meds.py"))
        .arg(&merged)
        .output()
        .expect("run .venv/bin/python (scripts/setup.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success() && text.contains("meds validation passed"), "{text}");
    assert!(text.contains("45 subjects"), "{text}");
}
