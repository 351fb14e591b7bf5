//! The shipped fixture model directory, checked by clients we did not write: the onnx package's full checker
//! and the Python onnxruntime package, from the set-up's virtualenv (tests/python/check_model_dir.py).

use std::path::Path;
use std::process::Command;

#[test]
fn fixture_model_passes_onnx_checker_and_runs_in_python_onnxruntime() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} missing: run scripts/setup.sh first",
        python.display()
    );
    let out = Command::new(&python)
        .arg(root.join("tests/python/check_model_dir.py"))
        .arg(root.join("fixtures/tiny-model"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("full_check passed") && text.trim_end().ends_with("ok"),
        "{text}"
    );
}
