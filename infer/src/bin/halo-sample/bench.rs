//! `halo-sample bench`: records per second, code-module arithmetic and peak memory at several batch sizes,
//! for each code module the model directory has.

use super::{load_runtime, BenchArgs};
use anyhow::{bail, Result};
use halo_infer::runtime::{self, Device, Parallelism, Runtime, SessionOptions};
use halo_infer::{generate_on, CodeModule, Model, Plan, SampleStats};
use std::path::Path;
use std::time::Instant;

/// Peak resident memory of this process (VmHWM), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Resets the peak resident memory to the current one (Linux: `5` into /proc/self/clear_refs).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

pub fn bench(args: BenchArgs) -> Result<()> {
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    if args.batch_sizes.is_empty() || args.batch_sizes.contains(&0) {
        bail!("--batch-sizes: expected positive numbers, e.g. 1,64,256");
    }
    let device = args.device;
    let rt = load_runtime(&args.runtime)?;
    let manifest = halo_infer::model::read_manifest(&args.model)?;
    let c = manifest.model.clone();
    println!(
        "model: {} | format {} | codes {} | labels {} | n_embd {} | layers {} | heads {} | n_ctx {}",
        args.model.display(),
        manifest.format_version,
        c.code_vocab_size,
        c.label_vocab_size,
        c.n_embd,
        c.n_layer,
        c.n_head,
        c.n_ctx,
    );
    // The incremental path: the native kernel (format 5) or ONNX Runtime blocks (2 to 4).
    let incremental = if manifest.files.code_module.is_some() {
        Some("native")
    } else {
        manifest.files.code_head_incremental.as_ref().map(|_| "incremental")
    };
    let mut paths = Vec::new();
    if !args.no_dense {
        paths.push((CodeModule::Dense, "dense"));
    }
    match incremental {
        Some(name) => paths.push((CodeModule::Incremental, name)),
        None => println!("(no incremental code module in this model directory: dense path only)"),
    }
    drop(manifest);
    print_header();
    // Per code module, the records of its first batch size; every batch size must give the same.
    let mut records_of: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut identical = true;
    for (path, name) in paths {
        let mut first_records: Option<Vec<u8>> = None;
        // Loaded again when a batch size takes other default workers or threads (as `halo-sample` would).
        let mut loaded_with: Option<(Parallelism, Vec<Model>)> = None;
        for &b in &args.batch_sizes {
            let parallelism = runtime::parallelism_for(c.n_embd, b, args.runtime.workers, args.runtime.threads);
            if loaded_with.as_ref().map(|(p, _)| *p) != Some(parallelism) {
                // The previous sessions go first, so that two loads never sit in memory together.
                drop(loaded_with.take());
                let models = load(&args.model, rt, device, path, parallelism, name)?;
                loaded_with = Some((parallelism, models));
            }
            let (parallelism, models) = loaded_with.as_mut().expect("loaded above");
            let (workers, threads) = (models.len(), parallelism.threads);
            let reset = reset_peak_rss();
            let run = measure(models, args.seed, args.count, b)?;
            let peak = peak_rss_kib()
                .map(|k| format!("{}{}", k / 1024, if reset { "" } else { "*" }))
                .unwrap_or_else(|| "?".into());
            let (count, stats) = (args.count as f64, &run.stats);
            println!(
                "{:>12} {:>6} {:>7} {:>7} {:>8} {:>9.2} {:>10.1} {:>14.1} {:>12.1} {:>12.2} {:>12.2} {:>9}",
                name,
                b,
                workers,
                threads,
                args.count,
                run.seconds,
                count / run.seconds.max(1e-9),
                stats.code_module_macs as f64 / 1e6 / count,
                stats.head_passes as f64 / stats.batches.max(1) as f64,
                run.visits as f64 / count,
                run.codes as f64 / run.visits.max(1) as f64,
                peak
            );
            let lines = run.lines;
            match &first_records {
                None => first_records = Some(lines),
                Some(first) => identical &= *first == lines,
            }
        }
        records_of.extend(first_records.map(|r| (name, r)));
    }
    println!(
        "records identical across batch sizes, workers and threads: {}",
        if identical { "yes" } else { "NO" }
    );
    if let [(a, ra), (b, rb)] = &records_of[..] {
        compare_code_modules((a, ra), (b, rb), args.count);
    }
    Ok(())
}

/// Loads `parallelism.workers` copies of the model for the code module `path`, saying how long it took and the
/// peak memory of loading.
fn load(
    dir: &Path,
    rt: &Runtime,
    device: Device,
    path: CodeModule,
    parallelism: Parallelism,
    name: &str,
) -> Result<Vec<Model>> {
    let reset = reset_peak_rss();
    let loaded = Instant::now();
    let options = SessionOptions {
        device,
        threads: Some(parallelism.threads),
    };
    let models = Model::load_workers(dir, rt, &options, path, parallelism.workers)?;
    let load_mib = peak_rss_kib().map(|k| k / 1024).unwrap_or(0);
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    println!(
        "{name:>12} loaded in {:.2} s ({} worker{} of {} thread{}), peak {load_mib}{} MiB",
        loaded.elapsed().as_secs_f64(),
        models.len(),
        plural(models.len()),
        parallelism.threads,
        plural(parallelism.threads),
        if reset { "" } else { "*" }
    );
    Ok(models)
}

/// One timed run: records `0..count` at `seed` in batches of `batch_size`.
struct Run {
    seconds: f64,
    stats: SampleStats,
    visits: usize,
    /// Codes a visit holds, the end code left out.
    codes: usize,
    /// The records' JSONL lines, to compare runs.
    lines: Vec<u8>,
}

fn measure(models: &mut [Model], seed: u64, count: u64, batch_size: usize) -> Result<Run> {
    let started = Instant::now();
    let (mut visits, mut codes) = (0usize, 0usize);
    let end = models[0].manifest.encoding.end_index() as u32;
    let calibration = models[0].manifest.calibration.clone();
    let mut lines: Vec<u8> = Vec::new();
    let plan = Plan {
        seed,
        records: 0..count,
        batch_size,
        conditions: None,
    };
    let stats = generate_on(models, &plan, calibration.as_ref(), |batch| {
        for s in &batch {
            visits += s.raw.visits.len();
            codes += s
                .raw
                .visits
                .iter()
                .map(|v| v.iter().filter(|c| **c != end).count())
                .sum::<usize>();
            lines.extend(halo_infer::record_line(&s.patient));
        }
        Ok(())
    })?;
    Ok(Run {
        seconds: started.elapsed().as_secs_f64(),
        stats,
        visits,
        codes,
        lines,
    })
}

/// How many records two code modules wrote alike.
fn compare_code_modules((a, ra): (&str, &[u8]), (b, rb): (&str, &[u8]), count: u64) {
    // Format 4's blocks and the dense head run on ONNX Runtime and agree record for record; the native
    // kernel sums in another order, so a draw whose uniform number falls between two roundings of its
    // probability may differ.
    let (la, lb): (Vec<&[u8]>, Vec<&[u8]>) = (ra.split(|c| *c == b'\n').collect(), rb.split(|c| *c == b'\n').collect());
    let same = la.iter().zip(&lb).filter(|(x, y)| x == y).count().saturating_sub(1);
    println!("records identical between {a} and {b}: {same} of {count}");
}

fn print_header() {
    println!(
        "{:>12} {:>6} {:>7} {:>7} {:>8} {:>9} {:>10} {:>14} {:>12} {:>12} {:>12} {:>9}",
        "code module",
        "batch",
        "workers",
        "threads",
        "records",
        "seconds",
        "records/s",
        "head MMAC/rec",
        "runs/batch",
        "visits/rec",
        "codes/visit",
        "peak MiB"
    );
}
