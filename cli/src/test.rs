//! `halo test`: a checkpoint's scores on its test split.

use crate::args::{DataArgs, TorchDevice};
use anyhow::Result;
use clap::Args;
use halo_train::test_split::{score_test_corpus, score_test_split};
use halo_train::{checkpoint, data};
use std::path::PathBuf;

#[derive(Args)]
pub struct TestCmd {
    /// Checkpoint folder written by `halo train`.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Records to score [default: the checkpoint's prepared corpus, else the training data]; the
    /// checkpoint's test split is scored, or every record when none of them belongs to it.
    #[arg(long, conflicts_with = "corpus")]
    data: Option<PathBuf>,
    /// A corpus written by `halo prepare` (the one a `halo train --corpus` run was trained from): its test
    /// split is scored without reading records.
    #[arg(long)]
    corpus: Option<PathBuf>,
    #[command(flatten)]
    data_args: DataArgs,
    #[arg(long, default_value_t = 96)]
    batch_size: usize,
    #[arg(long, default_value = "auto")]
    device: TorchDevice,
}

pub fn run(cmd: TestCmd) -> Result<()> {
    let ck = checkpoint::load(&cmd.checkpoint, cmd.device.0)?;
    let own_corpus = cmd.checkpoint.join(halo_train::train::CORPUS_DIR);
    let corpus = match (&cmd.data, cmd.corpus) {
        (None, Some(dir)) => Some(dir),
        (None, None) if own_corpus.join(halo_core::corpus::INFO).is_file() => Some(own_corpus),
        _ => None,
    };
    if let Some(dir) = corpus {
        let corpus = halo_core::corpus::Corpus::open(&dir)?;
        let digest = &corpus.info.data_digest;
        let split: halo_core::split::SplitAssignment =
            halo_core::fsutil::read_json(&dir.join(halo_core::manifest::checkpoint::SPLIT), "split")?;
        anyhow::ensure!(
            split == ck.split,
            "{}: this corpus's split is not the checkpoint's (prepared for another run); give --data instead",
            dir.display()
        );
        let report = score_test_corpus(&ck, &corpus, cmd.batch_size, cmd.device.0);
        let mut out = serde_json::to_value(report)?;
        out["data"] = format!(
            "corpus {} (records digest {})",
            dir.display(),
            &digest[..digest.len().min(16)]
        )
        .into();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let data_path = match cmd.data {
        Some(p) => p,
        None => PathBuf::from(&ck.training.source),
    };
    let dataset = data::read(&data_path, cmd.data_args.format, &cmd.data_args.read_options())?;
    let report = score_test_split(&ck, &dataset.patients, cmd.batch_size, cmd.device.0);
    // Through a JSON value, whose keys print in sorted order.
    let mut out = serde_json::to_value(report)?;
    out["data"] = data_path.display().to_string().into();
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
