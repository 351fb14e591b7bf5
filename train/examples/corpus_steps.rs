//! Benchmark of training from a prepared corpus (`halo prepare`): batch assembly alone over a whole epoch
//! (batches/s), then the first training steps (assembly + forward + backward + Adam) with the process's
//! resident memory, to show that it does not grow with the data beyond the mapped corpus.
//!
//!     cargo run --release -p halo-train --example corpus_steps -- CORPUS [small|paper] [STEPS] [BATCH]
//!
//! Prints one JSON line. `scripts/bench-prepare.sh` runs it after `halo prepare`.

use anyhow::{Context, Result};
use halo_core::config::{ModelConfig, Preset};
use halo_core::corpus::Corpus;
use halo_core::encoding::Encoding;
use halo_core::fsutil::read_json;
use halo_train::model::{Halo, Noise};
use halo_train::optim::Adam;
use halo_train::{data, score};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::path::PathBuf;
use std::time::Instant;
use tch::{nn, Device};

/// (VmRSS, VmHWM, RssAnon) of this process in MB. RssAnon leaves out file pages, the mapped corpus among
/// them: what the process itself holds.
fn rss_mb() -> (f64, f64, f64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let get = |k: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (get("VmRSS:"), get("VmHWM:"), get("RssAnon:"))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(
        args.first()
            .context("usage: corpus_steps CORPUS [small|paper] [STEPS] [BATCH]")?,
    );
    let preset: Preset = args
        .get(1)
        .map_or("small", String::as_str)
        .parse()
        .map_err(anyhow::Error::msg)?;
    let steps: usize = args.get(2).map_or(Ok(100), |s| s.parse())?;
    let batch_size: usize = args.get(3).map_or(Ok(48), |s| s.parse())?;
    let (rss_start, _, anon_start) = rss_mb();
    let corpus = Corpus::open(&dir)?;
    let encoding: Encoding = read_json(&dir.join("encoding.json"), "encoding")?;
    let train = &corpus.train;
    let mut order: Vec<usize> = (0..train.len()).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(1));

    // Assembly alone, over one epoch.
    let started = Instant::now();
    let mut batches = 0usize;
    for chunk in order.chunks(batch_size) {
        let sequences: Vec<_> = chunk.iter().map(|&i| train.get(i)).collect();
        let refs: Vec<_> = sequences.iter().collect();
        std::hint::black_box(data::make_batch(&refs, &encoding, Device::Cpu));
        batches += 1;
    }
    let assembly_s = started.elapsed().as_secs_f64();
    let (rss_after_assembly, _, anon_after_assembly) = rss_mb();

    // The first training steps.
    tch::manual_seed(1);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut config = ModelConfig::new(preset, encoding.code_vocab_size, encoding.label_vocab_size);
    config.n_ctx = encoding.options.max_visits + 2;
    config.n_positions = config.n_positions.max(config.n_ctx);
    let model = Halo::load(&vs.root(), &config);
    let mut adam = Adam::new(&vs, preset.settings().learning_rate, 0.0);
    let mut rss_at = Vec::new();
    let started = Instant::now();
    for (step, chunk) in order.chunks(batch_size).take(steps).enumerate() {
        let sequences: Vec<_> = chunk.iter().map(|&i| train.get(i)).collect();
        let refs: Vec<_> = sequences.iter().collect();
        let batch = data::make_batch(&refs, &encoding, Device::Cpu);
        adam.zero_grad();
        let loss = score::loss(
            &model,
            &batch,
            Noise {
                dropout: 0.4,
                ..Noise::NONE
            },
        );
        loss.backward();
        adam.step();
        if [0, 9, 49, steps - 1].contains(&step) {
            let (rss, _, anon) = rss_mb();
            rss_at.push((step + 1, rss, anon));
        }
    }
    let steps_done = order.chunks(batch_size).take(steps).count();
    let step_s = started.elapsed().as_secs_f64() / steps_done.max(1) as f64;
    let corpus_mb = ["train", "val", "test"]
        .iter()
        .map(|s| std::fs::metadata(dir.join(format!("{s}.tokens"))).map_or(0, |m| m.len()))
        .sum::<u64>() as f64
        / 1e6;
    let epoch_steps_s = step_s * batches as f64;
    println!(
        "{}",
        serde_json::json!({
            "corpus": dir.display().to_string(),
            "preset": format!("{preset:?}").to_lowercase(),
            "train_sequences": train.len(),
            "corpus_tokens_mb": corpus_mb,
            "vocabulary": encoding.vocab_size(),
            "batch_size": batch_size,
            "assembly_batches_per_s": batches as f64 / assembly_s,
            "assembly_epoch_s": assembly_s,
            "step_s": step_s,
            "assembly_share_of_cpu_epoch": assembly_s / (assembly_s + epoch_steps_s),
            "rss_mb_start": rss_start,
            "anon_mb_start": anon_start,
            "rss_mb_after_assembly_epoch": rss_after_assembly,
            "anon_mb_after_assembly_epoch": anon_after_assembly,
            "step_rss_mb_anon_mb": rss_at,
            "peak_rss_mb": rss_mb().1,
        })
    );
    Ok(())
}
