//! `halo prepare --dp-epsilon`: the corpus's vocabulary and shares come from noisy counts, the corpus
//! records what they spent in privacy.json (the ledger DP-SGD composes on top of), the same seed gives the
//! same corpus byte for byte, and a delta above 1 / records is refused.

mod common;

use common::{fixture, halo, stderr};
use halo_core::privacy::PrivacyLedger;
use std::path::Path;

fn prepare(out: &Path, extra: &[&str]) -> std::process::Output {
    let data = fixture("synthea-60.jsonl");
    let mut args = vec![
        "prepare",
        "--data",
        &data,
        "--out",
        out.to_str().unwrap(),
        "--min-patients",
        "1",
    ];
    args.extend(extra);
    halo(&args)
}

#[test]
fn a_dp_corpus_records_its_ledger_and_the_same_seed_gives_the_same_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let dp = ["--dp-epsilon", "100", "--dp-statistics-share", "0.5", "--seed", "4"];
    let (a, b, exact) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("exact"));
    for out in [&a, &b] {
        let o = prepare(out, &dp);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("statistics fitted with differential privacy: epsilon 50.00 at delta 1e-5"),
            "{}",
            stderr(&o)
        );
    }
    let mut names: Vec<String> = std::fs::read_dir(&a)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.contains(&"privacy.json".to_string()), "{names:?}");
    for name in &names {
        assert_eq!(
            std::fs::read(a.join(name)).unwrap(),
            std::fs::read(b.join(name)).unwrap(),
            "{name} differs between two runs of the same seed"
        );
    }
    let ledger = PrivacyLedger::read_in(&a).unwrap().expect("privacy.json");
    let names: Vec<&str> = ledger.mechanisms.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        ["vocabulary", "gap shares", "visit type shares", "codes per visit"]
    );
    assert!(
        ledger.total_epsilon <= 50.0 && ledger.total_epsilon > 49.9,
        "{}",
        ledger.total_epsilon
    );
    assert_eq!(ledger.total_epsilon, ledger.rdp().epsilon(ledger.rdp_delta()).0);

    // Without DP: no ledger, and (with --min-patients 1) a larger vocabulary than the noisy threshold admits.
    assert!(prepare(&exact, &["--seed", "4"]).status.success());
    assert!(!exact.join("privacy.json").exists());
    let vocabulary = |dir: &Path| {
        let e: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("encoding.json")).unwrap()).unwrap();
        e["code_vocab_size"].as_u64().unwrap()
    };
    assert!(
        vocabulary(&a) < vocabulary(&exact),
        "{} vs {}",
        vocabulary(&a),
        vocabulary(&exact)
    );

    // A delta above 1 / records (60) is refused before anything is written.
    let refused = dir.path().join("refused");
    let o = prepare(&refused, &["--dp-epsilon", "8", "--dp-delta", "0.05"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("delta 0.05") && stderr(&o).contains("--dp-delta"),
        "{}",
        stderr(&o)
    );
    assert!(!refused.exists());
    // What is not yet released privately is refused, not fitted from exact counts.
    let o = prepare(&refused, &["--dp-epsilon", "8", "--visit-size-buckets", "4"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--visit-size-buckets"), "{}", stderr(&o));
}

/// `--public-codes` under DP: the vocabulary's codes are the list's, seen or not, whatever the noisy counts
/// would keep; the ledger says so; the list's path is written nowhere; a bad line is named.
#[test]
fn under_dp_a_public_code_list_is_the_vocabulary_and_its_path_stays_out() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("planted-list-path-4f9c.txt");
    std::fs::write(&list, "# public\nMEAS/72514-3\nMEAS/8302-2\nNEVER/seen\n").unwrap();
    let out = dir.path().join("corpus");
    // At epsilon 1 the noisy counts of 60 patients would keep no code.
    let o = prepare(&out, &["--dp-epsilon", "1", "--public-codes", list.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let encoding: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("encoding.json")).unwrap()).unwrap();
    let mut codes: Vec<&str> = encoding["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "code")
        .map(|t| t["code"].as_str().unwrap())
        .collect();
    codes.sort();
    assert_eq!(codes, ["MEAS/72514-3", "MEAS/8302-2", "NEVER/seen"]);
    assert_eq!(encoding["options"]["public_codes"]["count"], 3);
    let ledger = PrivacyLedger::read_in(&out).unwrap().expect("privacy.json");
    assert!(
        ledger.mechanisms[0].covers.contains("codes come from a public list"),
        "{ledger:?}"
    );
    for entry in std::fs::read_dir(&out).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains("planted-list-path-4f9c"),
                "{} names the list's path",
                path.display()
            );
        }
    }
    std::fs::write(&list, "MEAS/72514-3\nMEAS 8302-2\n").unwrap();
    let o = prepare(
        &dir.path().join("refused"),
        &["--dp-epsilon", "1", "--public-codes", list.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("planted-list-path-4f9c.txt:2: `MEAS 8302-2`: expected one code per line"),
        "{}",
        stderr(&o)
    );
}
