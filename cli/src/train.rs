//! `halo train`: records to a checkpoint folder.

use crate::args::{parse_learning_rate, DataArgs, EncodingArgs, TorchDevice};
use anyhow::{bail, Result};
use clap::Args;
use halo_core::config::Preset;
use halo_train::train;
use std::path::PathBuf;

#[derive(Args)]
pub struct TrainCmd {
    /// Records to train on: an OMOP CDM CSV folder, a MEDS folder, or a JSONL file (prepared into the
    /// checkpoint's corpus/ first, as `halo prepare` would).
    #[arg(long, required_unless_present = "corpus", conflicts_with = "corpus")]
    data: Option<PathBuf>,
    /// A corpus written by `halo prepare`: training memory-maps it (the records' encoding, split and label
    /// spec are the corpus's; --preset / --n-ctx must give its context).
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Checkpoint folder to write (must be new or empty, unless --resume).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    data_args: DataArgs,
    /// Model size: small (n_embd 128, 2 layers, 4 heads, lr 1e-3) or paper (768, 12, 12, lr 1e-4).
    #[arg(long, default_value = "small")]
    preset: Preset,
    /// Training epochs.
    #[arg(long, default_value_t = 50)]
    epochs: usize,
    /// Adam learning rate [default: the preset's].
    #[arg(long, value_parser = parse_learning_rate)]
    lr: Option<f64>,
    /// Records per batch.
    #[arg(long, default_value_t = 48)]
    batch_size: usize,
    /// Seed of the split, the initial weights, the batch order and the code order.
    #[arg(long, default_value_t = halo_core::split::DEFAULT_SEED)]
    seed: u64,
    /// Continue the run in --out from its last finished epoch (weights, optimizer state, epoch).
    #[arg(long)]
    resume: bool,
    /// cpu, cuda or auto (CUDA when available).
    #[arg(long, default_value = "auto")]
    device: TorchDevice,
    #[command(flatten)]
    encoding: EncodingArgs,
    /// Override the preset's embedding width.
    #[arg(long)]
    n_embd: Option<usize>,
    /// Override the preset's number of transformer layers.
    #[arg(long)]
    n_layer: Option<usize>,
    /// Override the preset's number of attention heads.
    #[arg(long)]
    n_head: Option<usize>,
    /// Override the context: n_ctx - 2 visits a window (longer records are cut to their most recent visits,
    /// or with --windows learnt in overlapping windows).
    #[arg(long)]
    n_ctx: Option<usize>,
    /// Train the HALO-Coarse ablation (no code-level module).
    #[arg(long)]
    coarse: bool,
    /// Leave out the embedding of the codes seen so far in a record, which the visit transformer adds to each
    /// visit's own (a diagnosis recorded once stays in view at every later visit): the reference HALO's
    /// architecture, for like-for-like comparisons. On the demo, with the seen codes a first eGFR test after
    /// no hypertension diagnosis comes in 0.8% of visits (data 0.7%) instead of 1.5%, and the hypertension
    /// utility AUROC of three samples is 0.84-0.95 instead of 0.74-0.86.
    #[arg(long)]
    no_seen_codes: bool,
    /// Leave out the label bias: a learnt bias per value of the record's labels (sex, race, ethnicity, birth
    /// decade, phenotype labels) on every visit's code logits, the sex's started at each code's log-odds among
    /// the records of that sex, so that codes only one sex holds stay with it (the visit groups' codes keep
    /// none). On by default, and off with --dp-epsilon (its gradients are not clipped per record). On the
    /// demo, persons holding a code no training person of their sex holds: 28-32% without it, 0.6-1.9% with it
    /// (docs/records.md, "The label bias").
    #[arg(long)]
    no_label_bias: bool,
    /// The label bias, which is now the default (kept for the scripts of earlier versions, where it was off
    /// unless asked for).
    #[arg(long, hide = true, conflicts_with_all = ["no_label_bias", "dp_epsilon"])]
    label_bias: bool,
    /// Dropout in training, a guard against memorizing single records: on the visit embeddings, the
    /// transformer's attention and MLP branches and the code module's hidden layer
    #[arg(long, default_value_t = halo_train::train::DEFAULT_DROPOUT, value_parser = probability)]
    dropout: f64,
    /// Probability that each code of a training visit is hidden from the code module's input (the visit so
    /// far, which each code is conditioned on), not from its targets: the module learns to go on from a visit
    /// with codes missing, as a sampled one has. For dense (inpatient-size) visits, whose sampled size
    /// otherwise drifts below the data's (docs/records.md, "Dense visits")
    #[arg(long, default_value_t = halo_train::train::DEFAULT_PREFIX_DROPOUT, value_parser = probability)]
    prefix_dropout: f64,
    /// Decoupled (AdamW) weight decay of the weight matrices, a guard against memorizing single records
    #[arg(long, default_value_t = halo_train::train::DEFAULT_WEIGHT_DECAY, value_parser = non_negative)]
    weight_decay: f64,
    /// Initialise the code module's output biases as the reference does (uniform) instead of from each
    /// code's log-odds in the training split; for like-for-like comparisons with the reference
    #[arg(long)]
    reference_init: bool,
    /// Train with differential privacy (DP-SGD): every training record (a patient, all its windows) is
    /// covered by (epsilon, delta)-DP. Each step draws each record with probability batch-size / records,
    /// clips each record's gradient to --dp-max-grad-norm and adds Gaussian noise set so that the planned
    /// --epochs spend at most this epsilon; the last epoch's weights are kept (docs/privacy.md)
    #[arg(long, value_parser = positive)]
    dp_epsilon: Option<f64>,
    /// delta of the guarantee [default: min(1e-5, 1 / training records)]
    #[arg(long, requires = "dp_epsilon", value_parser = probability_above_zero)]
    dp_delta: Option<f64>,
    /// Bound of each record's gradient norm under --dp-epsilon (its loss: binary cross-entropy summed over
    /// every code of its visits; on the demo data the default clips every record, which measured best)
    #[arg(long, requires = "dp_epsilon", value_parser = positive)]
    dp_max_grad_norm: Option<f64>,
    /// CPU threads for libtorch [default: libtorch's choice, all cores]. With 1, a CPU run gives the same
    /// bytes on every run on the same machine (used to regenerate fixtures/tiny-model); at most 4 per core
    #[arg(long, value_parser = halo_core::threads::parse_thread_count)]
    threads: Option<usize>,
    /// No per-epoch lines on stderr.
    #[arg(long)]
    quiet: bool,
}

fn probability(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if (0.0..1.0).contains(&p) => Ok(p),
        _ => Err(format!("`{s}`: expected a probability in [0, 1)")),
    }
}

fn positive(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x > 0.0 && x.is_finite() => Ok(x),
        _ => Err(format!("`{s}`: expected a number > 0")),
    }
}

fn probability_above_zero(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if p > 0.0 && p < 1.0 => Ok(p),
        _ => Err(format!("`{s}`: expected a probability in (0, 1)")),
    }
}

fn non_negative(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(w) if w >= 0.0 && w.is_finite() => Ok(w),
        _ => Err(format!("`{s}`: expected a number >= 0")),
    }
}

pub fn run(cmd: TrainCmd) -> Result<()> {
    if let Some(n) = cmd.threads {
        tch::set_num_threads(n as i32);
    }
    if cmd.batch_size == 0 || cmd.epochs == 0 {
        bail!("--batch-size and --epochs must be at least 1");
    }
    if cmd.corpus.is_some() {
        // How records are read, split and labelled was settled when the corpus was prepared.
        let given: Vec<&str> = [
            ("--label-spec", cmd.encoding.label_spec.is_some()),
            ("--split-file", cmd.encoding.split_file.is_some()),
            ("--format", cmd.data_args.format.is_some()),
            ("--meds-visit-window", cmd.data_args.meds_visit_window.is_some()),
        ]
        .into_iter()
        .filter_map(|(flag, set)| set.then_some(flag))
        .collect();
        if !given.is_empty() {
            bail!(
                "`halo train --corpus` takes no {}: the corpus was prepared with its own (give them to `halo prepare`)",
                given.join(", ")
            );
        }
    }
    let input = match (cmd.data, cmd.corpus) {
        (Some(data), _) => train::TrainInput::Data(data),
        (None, Some(corpus)) => train::TrainInput::Corpus(corpus),
        (None, None) => bail!("give --data (records) or --corpus (a prepared corpus)"),
    };
    let mut encoding = cmd.encoding.options(cmd.seed)?;
    if let (train::TrainInput::Data(_), Some(epsilon)) = (&input, cmd.dp_epsilon) {
        // From records, the corpus's statistics (vocabulary, shares) are fitted under the same budget: they
        // spend --dp-statistics-share of it, DP-SGD the rest (a corpus is prepared with its own).
        let delta = cmd.dp_delta.unwrap_or(halo_prepare::args::DEFAULT_DP_DELTA);
        encoding.dp = Some(cmd.encoding.dp_statistics(epsilon, delta, cmd.seed));
    }
    let args = train::TrainArgs {
        input,
        out: cmd.out,
        format: cmd.data_args.format,
        read: cmd.data_args.read_options(),
        label_spec: cmd.encoding.label_spec.clone(),
        split_file: cmd.encoding.split_file.clone(),
        epochs: cmd.epochs,
        resume: cmd.resume,
        device: cmd.device.0,
        quiet: cmd.quiet,
        settings: train::TrainSettings {
            preset: cmd.preset,
            lr: cmd.lr,
            batch_size: cmd.batch_size,
            seed: cmd.seed,
            n_embd: cmd.n_embd,
            n_layer: cmd.n_layer,
            n_head: cmd.n_head,
            n_ctx: cmd.n_ctx,
            coarse: cmd.coarse,
            seen_codes: !cmd.no_seen_codes,
            label_bias: !cmd.no_label_bias,
            dropout: cmd.dropout,
            prefix_dropout: cmd.prefix_dropout,
            weight_decay: cmd.weight_decay,
            reference_init: cmd.reference_init,
            encoding,
            dp: cmd.dp_epsilon.map(|epsilon| train::DpSettings {
                epsilon,
                delta: cmd.dp_delta,
                max_grad_norm: cmd.dp_max_grad_norm.unwrap_or(train::DEFAULT_MAX_GRAD_NORM),
            }),
        },
    };
    train::run(&args)
}
