//! `halo test`: a checkpoint's scores on its test split.

use crate::args::{DataArgs, TorchDevice};
use anyhow::Result;
use clap::Args;
use halo_train::test_split::score_test_split;
use halo_train::{checkpoint, data};
use std::path::PathBuf;

#[derive(Args)]
pub struct TestCmd {
    /// Checkpoint folder written by `halo train`.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Records to score [default: the training data]; the checkpoint's test split is scored, or every
    /// record when none of them belongs to it.
    #[arg(long)]
    data: Option<PathBuf>,
    #[command(flatten)]
    data_args: DataArgs,
    #[arg(long, default_value_t = 96)]
    batch_size: usize,
    #[arg(long, default_value = "auto")]
    device: TorchDevice,
}

pub fn run(cmd: TestCmd) -> Result<()> {
    let ck = checkpoint::load(&cmd.checkpoint, cmd.device.0)?;
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
