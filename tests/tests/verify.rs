//! `halo-sample verify` on a plain model directory: it refuses what the manifest does not name, and a
//! tampered verify digest is reported record by record for the first few, then counted.

mod common;

use common::{fixture_model_copy, halo_sample, stderr, tamper_verify_digest};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn verify_lists_five_differing_records_at_each_batch_size_and_counts_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixture_model_copy(tmp.path(), "model");
    tamper_verify_digest(&model, &[3, 10, 20, 30, 40, 50, 60]);
    let o = halo_sample(&["verify", "--model", model.to_str().unwrap(), "--quiet"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{}", stderr(&o));
    for b in [64, 1, 256] {
        assert!(
            out.contains(&format!("records at batch size {b}: DIFFERENT: 7 of 100 records")),
            "{out}"
        );
    }
    let listed: Vec<&str> = out.lines().filter(|l| l.starts_with("  record ")).collect();
    assert_eq!(listed.len(), 15, "{out}");
    for r in [3, 10, 20, 30, 40] {
        assert_eq!(
            listed
                .iter()
                .filter(|l| l.starts_with(&format!("  record {r} differs")))
                .count(),
            3,
            "{out}"
        );
    }
    assert!(
        !out.contains("record 50 differs") && !out.contains("record 60 differs"),
        "{out}"
    );
    assert_eq!(out.matches("  ... and 2 more records differ").count(), 3, "{out}");
}

#[test]
fn verify_refuses_what_the_manifest_of_a_plain_model_directory_does_not_name() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixture_model_copy(tmp.path(), "model");
    let m = model.to_str().unwrap();
    let o = halo_sample(&["verify", "--model", m, "--quiet"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("and the folder holds nothing else"),
        "{}",
        stdout(&o)
    );

    for (name, plant) in [
        (
            "notes.txt",
            &(|p: &std::path::Path| std::fs::write(p, "x").unwrap()) as &dyn Fn(&std::path::Path),
        ),
        ("old", &|p: &std::path::Path| std::fs::create_dir(p).unwrap()),
        ("hostname", &|p: &std::path::Path| {
            std::os::unix::fs::symlink("/etc/hostname", p).unwrap()
        }),
    ] {
        let path = model.join(name);
        plant(&path);
        let o = halo_sample(&["verify", "--model", m, "--quiet"]);
        let out = stdout(&o);
        assert_eq!(o.status.code(), Some(1), "{name}: {out}");
        assert!(
            out.contains("verify: contents: FAILED")
                && out.contains(&format!("`{name}`"))
                && !out.contains("records at"),
            "{name}: {out}"
        );
        if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir(&path).unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
    }
    // A file the manifest names, replaced by a symbolic link to an identical copy, is refused too.
    let graph = model.join("code_head.onnx");
    std::fs::rename(&graph, tmp.path().join("code_head.onnx")).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("code_head.onnx"), &graph).unwrap();
    let out = stdout(&halo_sample(&["verify", "--model", m, "--quiet"]));
    assert!(out.contains("`code_head.onnx` (a symbolic link)"), "{out}");
}
