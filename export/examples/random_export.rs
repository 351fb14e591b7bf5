//! Writes a random checkpoint and exports it, printing file sizes and times (a benchmark, not a test).
//!
//! cargo run --release -p halo-export --example random_export -- [--codes 6900] [--labels 81]
//!     [--embd 768] [--layers 12] [--heads 12] [--n-ctx 48] [--fp16] [--dir DIR]
//!
//! Defaults are the paper's model size (vocabulary 6,984). DIR (default: a temporary folder, removed at
//! the end) receives `checkpoint/` and `model/`. With `--checkpoint CK`, exports that checkpoint folder
//! instead of writing a random one.

use halo_core::config::{ModelConfig, Preset};
use halo_core::encoding::Encoding;
use halo_export::{export, write_random_checkpoint, ExportOptions, Precision};
use std::path::{Path, PathBuf};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut codes, mut labels, mut embd, mut layers, mut heads, mut n_ctx) = (6900, 81, 768, 12, 12, 48);
    let mut precision = Precision::Fp32;
    let mut dir: Option<PathBuf> = None;
    let mut given: Option<PathBuf> = None;
    while let Some(a) = args.next() {
        let mut num = || -> usize {
            args.next()
                .and_then(|v| v.parse().ok())
                .expect("a number after the flag")
        };
        match a.as_str() {
            "--codes" => codes = num(),
            "--labels" => labels = num(),
            "--embd" => embd = num(),
            "--layers" => layers = num(),
            "--heads" => heads = num(),
            "--n-ctx" => n_ctx = num(),
            "--fp16" => precision = Precision::Fp16,
            "--checkpoint" => given = Some(PathBuf::from(args.next().expect("a folder after --checkpoint"))),
            "--dir" => dir = Some(PathBuf::from(args.next().expect("a folder after --dir"))),
            other => panic!("unknown argument {other}"),
        }
    }
    let mut config = ModelConfig::new(Preset::Paper, codes, labels);
    (config.n_embd, config.n_layer, config.n_head, config.n_ctx) = (embd, layers, heads, n_ctx);
    config.n_positions = n_ctx + 8;
    let encoding = encoding_for(&config);
    let tmp = tempfile::tempdir().expect("temporary folder");
    let dir = dir.unwrap_or_else(|| tmp.path().to_path_buf());
    let (ck, out) = (
        given.clone().unwrap_or_else(|| dir.join("checkpoint")),
        dir.join("model"),
    );

    let t = Instant::now();
    if given.is_none() {
        write_random_checkpoint(&ck, &config, &encoding, 1, None).expect("random checkpoint");
        println!(
            "random checkpoint: V {} E {} layers {} heads {} n_ctx {}: {:.2} s",
            config.total_vocab_size,
            embd,
            layers,
            heads,
            n_ctx,
            t.elapsed().as_secs_f64(),
        );
    }
    println!("  weights.safetensors: {}", size(&ck.join("weights.safetensors")));
    let opts = ExportOptions {
        precision,
        overwrite: true,
        ..Default::default()
    };
    let t = Instant::now();
    export(&ck, &out, &opts).expect("export");
    println!("export ({}): {:.2} s", precision.as_str(), t.elapsed().as_secs_f64());
    let mut names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in names {
        println!("  {n}: {}", size(&out.join(&n)));
    }
}

fn size(path: &Path) -> String {
    let n = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    format!("{n} bytes ({:.1} MB)", n as f64 / 1e6)
}

fn encoding_for(c: &ModelConfig) -> Encoding {
    let codes = (0..c.code_vocab_size).map(|i| format!("code/{i}")).collect();
    let labels = (0..c.label_vocab_size).map(|i| format!("label{i}")).collect();
    Encoding::plain(codes, labels, c.n_ctx - 2)
}
