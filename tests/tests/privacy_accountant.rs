//! halo's RDP accountant (halo_core::privacy) against Google's `dp-accounting` package, from the set-up's
//! virtualenv (tests/python/check_accountant.py): a grid of Poisson-subsampled Gaussian mechanisms (sample
//! rate, noise multiplier, steps, delta), plain Gaussian mechanisms and compositions of both must agree
//! within 1%.

use halo_core::privacy::Rdp;
use std::path::Path;
use std::process::Command;

#[test]
fn accountant_agrees_with_dp_accounting_within_one_percent() {
    let mut cases = Vec::new();
    let mut add = |events: Vec<serde_json::Value>, rdp: Rdp, delta: f64| {
        let (epsilon, _) = rdp.epsilon(delta);
        cases.push(serde_json::json!({ "events": events, "delta": delta, "epsilon": epsilon }));
    };
    let poisson = |q: f64, sigma: f64, count: u64| serde_json::json!({ "kind": "poisson_gaussian", "q": q, "sigma": sigma, "count": count });
    let gaussian = |sigma: f64, count: u64| serde_json::json!({ "kind": "gaussian", "sigma": sigma, "count": count });
    for q in [0.001, 0.01, 48.0 / 807.0, 0.25] {
        for sigma in [0.6, 1.0, 2.0, 8.0] {
            for steps in [1, 336, 10_000] {
                for delta in [1e-5, 1e-8] {
                    add(
                        vec![poisson(q, sigma, steps)],
                        Rdp::subsampled_gaussian(q, sigma, steps),
                        delta,
                    );
                }
            }
        }
    }
    for sigma in [0.8, 3.0, 40.0] {
        for count in [1, 5, 200] {
            add(vec![gaussian(sigma, count)], Rdp::gaussian(sigma, count), 1e-5);
        }
    }
    // What a DP run releases: the data's statistics (Gaussian), then DP-SGD on top.
    let (q, sigma, steps) = (48.0 / 807.0, 1.1, 336);
    add(
        vec![gaussian(12.0, 3), poisson(q, sigma, steps)],
        Rdp::gaussian(12.0, 3).compose(&Rdp::subsampled_gaussian(q, sigma, steps)),
        1e-5,
    );

    let dir = tempfile::tempdir().unwrap();
    let cases_path = dir.path().join("cases.json");
    std::fs::write(&cases_path, serde_json::to_string_pretty(&cases).unwrap()).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} missing: run scripts/setup.sh first",
        python.display()
    );
    let out = Command::new(&python)
        .arg(root.join("tests/python/check_accountant.py"))
        .arg(&cases_path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.trim_end().ends_with("ok"), "{text}");
    eprintln!("{text}");
}
