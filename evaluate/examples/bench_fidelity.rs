//! Benchmark of the fidelity metrics at the paper's scale: a seeded generator makes real and synthetic
//! records over 6,900 codes (about 1.3 visits of about 15 codes per record, code frequencies Zipf-like), then
//! the code counting, R² and plot sampling are timed, and the process's peak memory is printed.
//!
//!     cargo run --release -p halo-evaluate --example bench_fidelity -- [SYNTHETIC_RECORDS] [REAL_RECORDS] [THREADS] [full]
//!
//! Defaults: 1,000,000 synthetic records, 1,000,000 real records (80% training, 20% test), 2 threads.
//! With `full`, the whole `evaluate` (fidelity, privacy with default sample caps) is timed afterwards too.

use halo_core::record::{Patient, Visit};
use halo_core::split::SplitAssignment;
use halo_evaluate::corpus::{Corpus, Interner};
use halo_evaluate::fidelity;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

const CODES: usize = 6900;

/// Records drawn from a Zipf-like code distribution; `shift` rotates which codes are frequent, so that the
/// "synthetic" data differs a little from the "real" one.
fn generate(n: usize, seed: u64, shift: usize, names: &[String]) -> Vec<Patient> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Cumulative weights 1 / (rank + 10).
    let mut cdf = Vec::with_capacity(CODES);
    let mut total = 0.0;
    for rank in 0..CODES {
        total += 1.0 / (rank as f64 + 10.0);
        cdf.push(total);
    }
    let mut codes = Vec::new();
    (0..n)
        .map(|i| {
            // 1 visit, plus more with probability 0.23 each: mean 1 / (1 - 0.23) = 1.3.
            let mut n_visits = 1;
            while n_visits < 20 && rng.random::<f64>() < 0.23 {
                n_visits += 1;
            }
            let mut day = 0.0;
            let visits = (0..n_visits)
                .map(|t| {
                    // 8..=22 distinct codes: mean 15.
                    let k = rng.random_range(8..=22);
                    codes.clear();
                    while codes.len() < k {
                        let u = rng.random::<f64>() * total;
                        let rank = cdf.partition_point(|&c| c < u).min(CODES - 1);
                        let code = (rank + shift) % CODES;
                        if !codes.contains(&code) {
                            codes.push(code);
                        }
                    }
                    if t > 0 {
                        day += rng.random_range(1.0..120.0f64).floor();
                    }
                    Visit {
                        day: Some(day),
                        codes: codes.iter().map(|&c| names[c].clone()).collect(),
                        ..Visit::default()
                    }
                })
                .collect();
            Patient {
                id: format!("p{i}"),
                visits,
                ..Patient::default()
            }
        })
        .collect()
}

/// CPU seconds (user + system) this process has used so far, from /proc/self/stat (in USER_HZ = 100 ticks).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0.0)).collect();
    if f.len() > 13 {
        (f[11] + f[12]) / 100.0
    } else {
        f64::NAN
    }
}

/// A memory figure of /proc/self/status (`VmHWM` = peak resident, `VmRSS` = resident now) in MiB.
fn memory_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() {
    let full = std::env::args().any(|a| a == "full");
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter(|a| a != "full")
        .map(|a| a.replace('_', "").parse().expect("arguments are numbers"))
        .collect();
    let n_syn = args.first().copied().unwrap_or(1_000_000);
    let n_real = args.get(1).copied().unwrap_or(1_000_000);
    let threads = args.get(2).copied().unwrap_or(2);
    let names: Vec<String> = (0..CODES).map(|c| format!("ICD/{c:05}")).collect();

    let t = Instant::now();
    let real = generate(n_real, 1, 0, &names);
    let synthetic = generate(n_syn, 2, 3, &names);
    let n_train = n_real * 4 / 5;
    println!(
        "generated {} real ({} train, {} test) and {} synthetic records in {:.1} s (not part of the timing)",
        n_real,
        n_train,
        n_real - n_train,
        n_syn,
        t.elapsed().as_secs_f64()
    );
    if let Some(m) = memory_mib("VmRSS:") {
        println!("resident after generating: {m:.0} MiB");
    }

    let start = Instant::now();
    let cpu_start = cpu_seconds();
    let mut interner = Interner::default();
    let train = Corpus::build(&real[..n_train], &mut interner);
    let test = Corpus::build(&real[n_train..], &mut interner);
    let syn = Corpus::build(&synthetic, &mut interner);
    let t_intern = start.elapsed().as_secs_f64();
    println!(
        "interning: {t_intern:.2} s ({} codes; {} + {} + {} visits, {:.2} visits/record, {:.1} codes/visit)",
        interner.len(),
        train.n_visits(),
        test.n_visits(),
        syn.n_visits(),
        syn.n_visits() as f64 / syn.len() as f64,
        syn.n_codes() as f64 / syn.n_visits() as f64
    );

    let t = Instant::now();
    let cpu = cpu_seconds();
    let bound = interner.len() as u32;
    let counts = [
        fidelity::count_codes(&train, bound, threads),
        fidelity::count_codes(&test, bound, threads),
        fidelity::count_codes(&syn, bound, threads),
    ];
    let t_count = t.elapsed().as_secs_f64();
    for (name, c) in ["train", "test", "synthetic"].iter().zip(&counts) {
        println!(
            "  {name}: {} unigrams, {} same-visit pairs, {} consecutive pairs",
            c.unigrams.len(),
            c.same_visit.len(),
            c.consecutive.len()
        );
    }
    println!("counting: {t_count:.2} s ({:.2} CPU seconds)", cpu_seconds() - cpu);

    let t = Instant::now();
    let cpu = cpu_seconds();
    let names = fidelity::KeyNames {
        named: &|_, _| true,
        placeholder: "",
    };
    let comparisons = fidelity::code_probabilities(&counts[0], &counts[1], &counts[2], &interner, &names, 1000);
    let t_r2 = t.elapsed().as_secs_f64();
    println!(
        "R² and plot points (3 comparisons x 3 statistics x 2 levels): {t_r2:.2} s ({:.2} CPU seconds)",
        cpu_seconds() - cpu
    );
    for c in &comparisons {
        println!(
            "  {:>12} {:<24} R² synthetic vs train {:.4}, vs test {:.4}, ceiling {:.4}",
            c.level.title(),
            c.statistic.title(),
            c.r2_synthetic_vs_train.unwrap_or(f64::NAN),
            c.r2_synthetic_vs_test.unwrap_or(f64::NAN),
            c.r2_test_vs_train.unwrap_or(f64::NAN)
        );
    }
    let t = Instant::now();
    let _ = fidelity::shape_histograms([&train, &test, &syn]);
    let t_shape = t.elapsed().as_secs_f64();
    let total = start.elapsed().as_secs_f64();
    println!(
        "histograms: {t_shape:.2} s\nfidelity total (interning, counting, R², histograms): {total:.2} s wall, {:.2} CPU seconds, on {threads} threads",
        cpu_seconds() - cpu_start
    );
    if full {
        let split = SplitAssignment {
            source: halo_core::split::SplitSource::Seeded,
            seed: 0,
            train: real[..n_train].iter().map(|p| p.id.clone()).collect(),
            val: vec![],
            test: real[n_train..].iter().map(|p| p.id.clone()).collect(),
        };
        drop(counts);
        let t = Instant::now();
        let cpu = cpu_seconds();
        let options = halo_evaluate::EvalOptions {
            threads,
            ..Default::default()
        };
        let report = halo_evaluate::evaluate(&real, &split, &synthetic, &options).expect("evaluate");
        println!(
            "evaluate (everything): {:.2} s ({:.2} CPU seconds); dataset attack accuracy {:.3}, exact copies {}",
            t.elapsed().as_secs_f64(),
            cpu_seconds() - cpu,
            report
                .privacy
                .membership
                .dataset_attack
                .as_ref()
                .map_or(f64::NAN, |a| a.accuracy),
            report.privacy.exact_copies.synthetic_copies
        );
    }
    match memory_mib("VmHWM:") {
        // The records stay in memory throughout, as they do for a caller of `evaluate`.
        Some(m) => println!("peak memory (VmHWM, including the generated records): {m:.0} MiB"),
        None => println!("peak memory: /proc/self/status not readable"),
    }
}
