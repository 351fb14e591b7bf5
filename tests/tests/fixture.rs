//! fixtures/tiny-model is what its documented command makes: scripts/make-fixture-model.sh, run again,
//! writes the same bytes.

mod common;

use std::path::Path;
use std::process::Command;

#[test]
fn fixture_model_regenerates_byte_for_byte() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("tiny-model");
    let run = Command::new(root.join("scripts/make-fixture-model.sh"))
        .arg(&out)
        .env("HALO_BIN", common::binary("halo"))
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let committed = root.join("fixtures/tiny-model");
    let mut names: Vec<_> = std::fs::read_dir(&committed)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    let mut regenerated: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    regenerated.sort();
    assert_eq!(names, regenerated);
    for name in names {
        let (a, b) = (
            std::fs::read(committed.join(&name)).unwrap(),
            std::fs::read(out.join(&name)).unwrap(),
        );
        assert!(a == b, "{} differs from the regenerated file", name.to_string_lossy());
    }
}
