//! `halo-prepare`: what `halo prepare` runs (see the halo-prepare crate).

use clap::Parser;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "halo-prepare",
    version,
    about = "Read records (OMOP CDM CSV folder, MEDS folder, or JSONL) once, streaming, into a corpus that `halo \
             train --corpus` memory-maps: the split, the encoding and the encoded records."
)]
struct Cli {
    #[command(flatten)]
    cmd: halo_prepare::args::PrepareCmd,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // SIGINT, SIGTERM, SIGHUP: the corpus is written under a temporary name and renamed when complete;
    // removing the temporaries leaves things as they were.
    let _ = ctrlc::set_handler(|| {
        let n = halo_core::fsutil::remove_temporaries();
        eprintln!("halo prepare: interrupted; {n} temporary folder(s) removed, nothing half-written is left");
        std::process::exit(130);
    });
    match halo_prepare::args::run(cli.cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("halo prepare: error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
