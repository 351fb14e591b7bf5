//! Builds a random HALO model directory (random weights shaped by code biases, exported to ONNX) for
//! benchmarks and fixtures:
//!
//! ```text
//! cargo run --release -p halo-infer --example make_random_model -- PRESET OUT_DIR [SEED] [CODES_PER_VISIT] [VISITS]
//! ```
//! PRESET: tiny (4 codes, 1 label, n_ctx 3), fixture (24 codes, every token kind, n_embd 16),
//! small (~760 codes, n_embd 128, 2 layers), paper (~6,900 codes, n_embd 768, 12 layers), icu (small's
//! dimensions with ~10,500 codes, like a MEDS export of ICU stays), dense (small's dimensions with ~2,500
//! codes, the export-time benchmark of scripts/bench-export.sh).
//! The biases give about CODES_PER_VISIT codes a visit (default 15) and VISITS visits a record
//! (default 1.3), like MIMIC-III. The checkpoint is written to OUT_DIR.checkpoint, the model to OUT_DIR,
//! and the manifest gets the verify digest of the first 16 records at seed 0 (as `halo export` does).

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: make_random_model PRESET OUT_DIR [SEED] [CODES_PER_VISIT] [VISITS]");
        std::process::exit(2);
    }
    let spec = common::Spec::preset(&args[0]).unwrap_or_else(|| {
        eprintln!("unknown preset {} (tiny, fixture, small, paper, icu, dense)", args[0]);
        std::process::exit(2);
    });
    let out = PathBuf::from(&args[1]);
    let seed: u64 = args.get(2).map(|s| s.parse().expect("SEED")).unwrap_or(0);
    let per_visit: f64 = args.get(3).map(|s| s.parse().expect("CODES_PER_VISIT")).unwrap_or(15.0);
    let visits: f64 = args.get(4).map(|s| s.parse().expect("VISITS")).unwrap_or(1.3);
    if out.exists() {
        eprintln!("{} exists; remove it first", out.display());
        std::process::exit(1);
    }
    let enc = common::encoding(&spec);
    let cfg = common::config(&spec, &enc);
    let bias = common::mimic_like_bias(&enc, per_visit, visits);
    let ck = PathBuf::from(format!("{}.checkpoint", out.display()));
    let t = std::time::Instant::now();
    halo_export::write_random_checkpoint(&ck, &cfg, &enc, seed, Some(&bias)).expect("checkpoint");
    halo_export::export(&ck, &out, &halo_export::ExportOptions::default()).expect("export");
    // HALO_KEEP_CHECKPOINT=1 keeps it, e.g. for the trainer's parity test at these dimensions.
    if std::env::var_os("HALO_KEEP_CHECKPOINT").is_none() {
        std::fs::remove_dir_all(&ck).ok();
    }
    common::add_verify(&out, 0, 16);
    eprintln!(
        "wrote {} ({} codes, {} labels, n_embd {}, {} layers, n_ctx {}) in {:.1} s",
        out.display(),
        cfg.code_vocab_size,
        cfg.label_vocab_size,
        cfg.n_embd,
        cfg.n_layer,
        cfg.n_ctx,
        t.elapsed().as_secs_f64()
    );
}
