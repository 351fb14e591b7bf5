//! `halo-sample verify` and `halo-sample --version`: what a site runs first.

use super::{load_model, load_runtime, RuntimeArgs, TrustArgs, VerifyArgs};
use anyhow::Result;
use halo_infer::runtime::{self, Device};
use halo_infer::verify::SHOWN_MISMATCHES;
use std::path::Path;

/// `halo-sample verify`: each check on its own line (signature, sha256, records at each batch size), then
/// the verdict. Exit status 1 when a check fails.
pub fn verify(args: VerifyArgs) -> Result<bool> {
    use halo_core::manifest::SIGNATURE;
    use halo_infer::site;
    // Started from a site bundle's bin/: every file of the bundle first, before anything in it is used.
    if let Some(root) = std::env::current_exe().ok().as_deref().and_then(site::bundle_root_of) {
        match site::check_bundle(&root) {
            Ok(n) => println!("verify: bundle: all {n} files match {}", site::SUMS),
            Err(e) => {
                println!("verify: bundle: FAILED: {e:#}");
                println!("verify: FAILED (bundle)");
                return Ok(false);
            }
        }
    }
    match args.trust.check(&args.model) {
        Ok(Some(signed)) => println!("verify: signature: good ({})", signed.trusted_comment),
        Ok(None) if args.model.join(SIGNATURE).is_file() => {
            println!("verify: signature: not checked (the directory is signed: pass --trust PUBLIC_KEY to check it)")
        }
        Ok(None) => println!("verify: signature: not checked (the directory is not signed)"),
        Err(e) => {
            println!("verify: signature: FAILED: {e:#}");
            println!("verify: FAILED (signature)");
            return Ok(false);
        }
    }
    let manifest = halo_infer::model::read_manifest(&args.model)?;
    if let Err(e) = halo_infer::model::check_only_named_files(&args.model, &manifest) {
        println!("verify: contents: FAILED: {e:#}");
        println!("verify: FAILED (contents)");
        return Ok(false);
    }
    if let Err(e) = halo_infer::model::check_files(&args.model, &manifest) {
        println!("verify: sha256: FAILED: {e:#}");
        println!("verify: FAILED (sha256)");
        return Ok(false);
    }
    println!(
        "verify: sha256: all {} files match manifest.json, and the folder holds nothing else",
        manifest.files.all().len()
    );
    print_privacy("verify: privacy: ", &manifest);
    drop(manifest);
    let rt = load_runtime(&args.runtime)?;
    // One worker: the digest's few records are sampled at several batch sizes, one after the other.
    let one_worker = RuntimeArgs {
        workers: Some(args.runtime.workers.unwrap_or(1)),
        ..args.runtime.clone()
    };
    let mut models = load_model(&args.model, rt, Device::Cpu, &one_worker, usize::MAX)?;
    let outcome = halo_infer::verify::verify(&mut models[0])?;
    let (count, seed) = (outcome.expected.count, outcome.expected.seed);
    let mut failed = Vec::new();
    for check in &outcome.checks {
        let b = check.batch_size;
        if check.mismatches.is_empty() {
            println!("verify: records at batch size {b}: identical ({count} records at seed {seed})");
            continue;
        }
        failed.push(format!("records at batch size {b}"));
        println!(
            "verify: records at batch size {b}: DIFFERENT: {} of {count} records at seed {seed} differ from the \
             exporter's digest:",
            check.mismatches.len()
        );
        for m in check.mismatches.iter().take(SHOWN_MISMATCHES) {
            println!("  record {} differs {}", m.record, m.difference);
        }
        if check.mismatches.len() > SHOWN_MISMATCHES {
            println!(
                "  ... and {} more records differ",
                check.mismatches.len() - SHOWN_MISMATCHES
            );
        }
    }
    if failed.is_empty() {
        println!(
            "verify: identical: this machine reproduces the exporter's records (ONNX Runtime {})",
            rt.version
        );
        return Ok(true);
    }
    println!(
        "verify: DIFFERENT ({}; ONNX Runtime {} here): these records are not the exporter's",
        failed.join(", "),
        rt.version
    );
    Ok(false)
}

/// `halo-sample --version`: what a site reports when asking for help.
pub fn print_version(model: Option<&Path>, trust: &TrustArgs, runtime: &RuntimeArgs) -> Result<bool> {
    println!(
        "halo-sample {} (commit {})",
        halo_infer::TOOLKIT_VERSION,
        halo_infer::GIT_COMMIT
    );
    match runtime::init(runtime.ort_lib.as_deref()) {
        Ok(rt) => println!(
            "ONNX Runtime {} ({}, found via {})",
            rt.version,
            rt.library.display(),
            rt.source
        ),
        Err(e) => println!("ONNX Runtime: not loaded: {e}"),
    }
    if let Some(dir) = model {
        let manifest = dir.join(halo_core::manifest::MANIFEST);
        let digest = halo_infer::model::file_sha256(&manifest)?;
        let signature = match trust.check(dir)? {
            Some(signed) => format!("signed, signature good: {}", signed.trusted_comment),
            None => match halo_infer::trust::unchecked_comment(dir)? {
                Some(comment) => {
                    format!("signed: {comment}; signature not checked, add --trust PUBLIC_KEY to check it")
                }
                None => "not signed".to_string(),
            },
        };
        println!("model {}: manifest.json sha256 {digest} ({signature})", dir.display());
        print_privacy("model privacy: ", &halo_infer::model::read_manifest(dir)?);
    }
    Ok(true)
}

/// The manifest's privacy ledger: its total and one line per mechanism, or that the model was not trained
/// with differential privacy; each line after `prefix`.
fn print_privacy(prefix: &str, manifest: &halo_core::manifest::Manifest) {
    for line in halo_core::privacy::describe(manifest.privacy.as_ref()) {
        println!("{prefix}{line}");
    }
}
