//! Reads a data set and prints its report with the time taken; with a second path, also writes it as MEDS
//! there and reads that back (timed).
//!
//! `cargo run --release -p halo-core --example read_dataset -- data/synthea1k-omop [/tmp/meds-out]`

use halo_core::{meds, read_dataset, ReadOptions};
use std::path::PathBuf;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let input = PathBuf::from(args.next().ok_or("usage: read_dataset <input> [meds-out]")?);
    let options = ReadOptions::default();
    let t = Instant::now();
    let ds = read_dataset(&input, None, &options)?;
    println!(
        "read {} in {:.3} s: {} patients kept",
        input.display(),
        t.elapsed().as_secs_f64(),
        ds.patients.len()
    );
    println!("{}", serde_json::to_string_pretty(&ds.report)?);
    if let Some(out) = args.next().map(PathBuf::from) {
        let t = Instant::now();
        meds::write_meds(&out, &ds.patients, 1000)?;
        println!("wrote MEDS {} in {:.3} s", out.display(), t.elapsed().as_secs_f64());
        let t = Instant::now();
        let back = meds::read_meds(
            &out,
            &ReadOptions {
                meds_visit_window_seconds: Some(0),
                ..Default::default()
            },
        )?;
        println!(
            "read MEDS back (window 0 s) in {:.3} s: {} patients, {} visits (were {})",
            t.elapsed().as_secs_f64(),
            back.patients.len(),
            back.report.visits,
            ds.report.visits
        );
    }
    Ok(())
}
