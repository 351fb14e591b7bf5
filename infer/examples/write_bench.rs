//! How fast each output format writes, and how large it is, apart from sampling:
//!
//! ```text
//! cargo run --release -p halo-infer --example write_bench -- MODEL_DIR [RECORDS] [REPEATS]
//! ```
//! Samples RECORDS records (default 2,000, seed 1) once, then writes them REPEATS times (default 1; record
//! numbers continue, so REPEATS x RECORDS distinct rows) as JSONL, MEDS and OMOP into a temporary folder,
//! timing each writer, and prints records/s and MB per 1,000 records. With a large REPEATS (e.g. 500 for
//! 1,000,000 records) run it under `/usr/bin/time -v` to read the OMOP writer's peak memory: JSONL and
//! OMOP stream, MEDS holds its records until the end, so give `--only omop` or `--only jsonl` then.

use halo_infer::output::{Output, OutputFormat};
use halo_infer::runtime::{self, SessionOptions};
use halo_infer::{generate, Model, Plan, Sampled};
use std::path::{Path, PathBuf};
use std::time::Instant;

fn size_of(path: &Path) -> u64 {
    if path.is_file() {
        return std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    }
    std::fs::read_dir(path)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| size_of(&e.path())).sum())
        .unwrap_or(0)
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let only = args.iter().position(|a| a == "--only").map(|i| {
        let f = args.remove(i + 1);
        args.remove(i);
        f
    });
    if args.is_empty() {
        eprintln!("usage: write_bench MODEL_DIR [RECORDS] [REPEATS] [--only jsonl|meds|omop]");
        std::process::exit(2);
    }
    let model_dir = PathBuf::from(&args[0]);
    let records: u64 = args.get(1).map(|s| s.parse().expect("RECORDS")).unwrap_or(2_000);
    let repeats: u64 = args.get(2).map(|s| s.parse().expect("REPEATS")).unwrap_or(1);
    let rt = runtime::init(None).expect("ONNX Runtime");
    let mut model = Model::load(&model_dir, rt, &SessionOptions::default()).expect("model");
    let t = Instant::now();
    let plan = Plan {
        seed: 1,
        records: 0..records,
        batch_size: 256,
        conditions: None,
    };
    let mut sampled: Vec<Sampled> = Vec::new();
    generate(&mut model, &plan, |batch| {
        sampled.extend(batch);
        Ok(())
    })
    .expect("sampling");
    let encoding = model.manifest.encoding.clone();
    drop(model);
    eprintln!("sampled {records} records in {:.1} s", t.elapsed().as_secs_f64());

    let tmp = tempfile::tempdir().expect("temporary folder");
    let total = records * repeats;
    println!("format  records  seconds  records/s  MB/1000 records");
    for (name, format, out) in [
        ("jsonl", OutputFormat::Jsonl, tmp.path().join("s.jsonl")),
        ("meds", OutputFormat::Meds, tmp.path().join("meds")),
        ("omop", OutputFormat::Omop, tmp.path().join("omop")),
    ] {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let cohort = (format == OutputFormat::Omop).then(|| halo_core::omop_write::OmopCohort {
            records: 0..total,
            cohort_end: total,
            source: halo_core::omop_write::CdmSource {
                description: "write_bench".into(),
                etl_reference: "write_bench".into(),
                release_date: chrono::NaiveDate::from_ymd_opt(2026, 12, 3).unwrap(),
            },
        });
        let t = Instant::now();
        let mut output = Output::create(&out, format, cohort, Some(&encoding)).expect("output");
        for r in 0..repeats {
            let batch: Vec<Sampled> = sampled
                .iter()
                .map(|s| {
                    let mut s = s.clone();
                    s.raw.index += r * records;
                    s.patient.id = s.raw.index.to_string();
                    s
                })
                .collect();
            output.write(batch).expect("write");
        }
        output.finish().expect("finish");
        let secs = t.elapsed().as_secs_f64();
        let mb = size_of(&out) as f64 / 1e6;
        println!(
            "{name:<6}  {total:>7}  {secs:>7.2}  {:>9.0}  {:>15.3}",
            total as f64 / secs,
            mb / total as f64 * 1000.0
        );
    }
}
