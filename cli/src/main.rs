//! `halo`: train HALO on patient records, test it, export it for the sampler, sign and package it for a
//! site, evaluate synthetic data. One file per subcommand; the work is done by the libraries.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod args;
mod elf;
mod evaluate;
mod export;
mod keygen;
mod package;
mod prepare;
mod site_readme;
mod test;
mod train;

#[derive(Parser)]
#[command(
    name = "halo",
    version,
    about = "HALO: train a hierarchical autoregressive model of patient records, export it, evaluate synthetic data."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read records (OMOP CDM CSV folder, MEDS folder, or JSONL) once, streaming, into a corpus on disk that
    /// `halo train --corpus` memory-maps: the split, the encoding and the encoded records.
    Prepare(prepare::PrepareCmd),
    /// Train HALO on records (OMOP CDM CSV folder, MEDS folder, or JSONL) into a checkpoint folder.
    Train(train::TrainCmd),
    /// Score a checkpoint on its test split: prints JSON with bce, f1 and perplexity.
    Test(test::TestCmd),
    /// Write a checkpoint as an ONNX model directory for `halo-sample`.
    Export(export::ExportCmd),
    /// Write a key pair for signing model directories (`halo export --sign`), in minisign's format.
    Keygen(keygen::KeygenCmd),
    /// Write the archive a partner site receives: halo-sample with its ONNX Runtime library, the model
    /// directory, SITE.md, bundle.json and SHA256SUMS.
    Package(package::PackageCmd),
    /// Compare synthetic records with real ones: fidelity, privacy and utility report.
    Evaluate(evaluate::EvaluateCmd),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // SIGINT, SIGTERM, SIGHUP: every output is written under a temporary name and renamed when complete, so
    // removing the temporaries leaves things as they were before the command (a training run keeps its last
    // saved epoch). A SIGKILL leaves them; the next run into the same place removes them.
    let _ = ctrlc::set_handler(|| {
        let n = halo_core::fsutil::remove_temporaries();
        eprintln!("halo: interrupted; {n} temporary file(s) or folder(s) removed, nothing half-written is left");
        // _exit, not exit: the main thread may be inside libtorch, whose static destructors (run by exit)
        // can then crash the process, which would end by a signal instead of the documented status 130.
        // SAFETY: _exit only ends the process; the temporaries are already removed.
        unsafe { libc::_exit(130) }
    });
    let result = match cli.command {
        Command::Prepare(cmd) => prepare::run(cmd),
        Command::Train(cmd) => train::run(cmd),
        Command::Test(cmd) => test::run(cmd),
        Command::Export(cmd) => export::run(cmd),
        Command::Keygen(cmd) => keygen::run(cmd),
        Command::Package(cmd) => package::run(cmd),
        Command::Evaluate(cmd) => evaluate::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("halo: error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
