//! `halo`: train HALO on patient records, test it, export it for the sampler, evaluate synthetic data.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use halo_core::config::Preset;
use halo_core::encoding::{CodeOrder, EncodingOptions};
use halo_core::record::Split;
use halo_core::{Format, ReadOptions};
use halo_train::{checkpoint, data, score, train};
use std::path::PathBuf;
use std::process::ExitCode;
use tch::Device;

mod cli;

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
    /// Train HALO on records (OMOP CDM CSV folder, MEDS folder, or JSONL) into a checkpoint folder.
    Train(TrainCmd),
    /// Score a checkpoint on its test split: prints JSON with bce, f1 and perplexity.
    Test(TestCmd),
    /// Write a checkpoint as an ONNX model directory for `halo-sample`.
    Export(cli::export::ExportCmd),
    /// Write a key pair for signing model directories (`halo export --sign`), in minisign's format.
    Keygen(cli::keygen::KeygenCmd),
    /// Write the archive a partner site receives: halo-sample with its ONNX Runtime library, the model
    /// directory, SITE.md, bundle.json and SHA256SUMS.
    Package(cli::package::PackageCmd),
    /// Compare synthetic records with real ones: fidelity, privacy and utility report.
    Evaluate(EvaluateCmd),
}

#[derive(Args)]
struct DataArgs {
    /// Input format: omop (CDM 5.4 CSV folder), meds (folder with data/*.parquet), jsonl. Detected when omitted.
    #[arg(long, value_parser = parse_format)]
    format: Option<Format>,
    /// MEDS: events within this many seconds of a visit's first event join it [default: same calendar day].
    #[arg(long)]
    meds_visit_window: Option<i64>,
    /// Years a visit or birth may fall in, FROM..TO; visits and births outside are dropped and counted (year
    /// 9999 is a data error, not a visit). The default admits MIMIC-IV's shifted dates.
    #[arg(long, value_name = "FROM..TO", default_value = "1800..2300", value_parser = parse_years)]
    plausible_years: (i32, i32),
    /// Largest magnitude of a lab value; larger ones are dropped and counted.
    #[arg(long, value_name = "X", default_value_t = 1e12, value_parser = parse_positive)]
    max_lab_value: f64,
}

impl DataArgs {
    fn read_options(&self) -> ReadOptions {
        ReadOptions {
            meds_visit_window_seconds: self.meds_visit_window,
            bounds: halo_core::bounds::Bounds {
                first_year: self.plausible_years.0,
                last_year: self.plausible_years.1,
                max_abs_lab_value: self.max_lab_value,
            },
        }
    }
}

fn parse_positive(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x > 0.0)
        .ok_or_else(|| format!("`{s}`: expected a positive number"))
}

fn parse_years(s: &str) -> Result<(i32, i32), String> {
    halo_core::bounds::Bounds::parse_years(s).ok_or_else(|| format!("`{s}`: expected FROM..TO, e.g. 1800..2300"))
}

#[derive(Args)]
struct TrainCmd {
    /// Records to train on: an OMOP CDM CSV folder, a MEDS folder, or a JSONL file.
    #[arg(long)]
    data: PathBuf,
    /// Checkpoint folder to write (must be new or empty, unless --resume).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    data_args: DataArgs,
    /// Model size: small (n_embd 128, 2 layers, 4 heads, lr 1e-3) or paper (768, 12, 12, lr 1e-4).
    #[arg(long, default_value = "small", value_parser = parse_preset)]
    preset: Preset,
    /// Training epochs.
    #[arg(long, default_value_t = 50)]
    epochs: usize,
    /// Adam learning rate [default: the preset's].
    #[arg(long, value_parser = train::parse_learning_rate)]
    lr: Option<f64>,
    /// Records per batch.
    #[arg(long, default_value_t = 48)]
    batch_size: usize,
    /// Seed of the split, the initial weights, the batch order and the code order.
    #[arg(long, default_value_t = 4)]
    seed: u64,
    /// Continue the run in --out from its last finished epoch (weights, optimizer state, epoch).
    #[arg(long)]
    resume: bool,
    /// cpu, cuda or auto (CUDA when available).
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    device: Device,
    /// Phenotype label spec (JSON: {"labels": {name: [codes or prefix*]}}); default: chronic conditions for OMOP.
    /// Ignored when the records carry their own labels.
    #[arg(long)]
    label_spec: Option<PathBuf>,
    /// Given split (CSV `id,split` or JSON {id: split}); overrides the records' own and the seeded split.
    #[arg(long)]
    split_file: Option<PathBuf>,
    /// Leave out the gap (and age) bucket codes.
    #[arg(long)]
    no_gaps: bool,
    /// Leave out the lab value bucket codes.
    #[arg(long)]
    no_labs: bool,
    /// Leave out the demographic label codes.
    #[arg(long)]
    no_demographics: bool,
    /// Order of codes in the vocabulary (the order codes are generated within a visit).
    #[arg(long, default_value = "shuffled", value_parser = train::parse_code_order)]
    code_order: CodeOrder,
    /// Quantile buckets per lab value.
    #[arg(long, default_value_t = 5)]
    lab_buckets: usize,
    /// The small-cell rule: codes, source values, labs and demographic values seen in fewer distinct
    /// patients are left out of the vocabulary, and bucket edges come from groups of at least this many
    /// patients, so that nothing of one patient ships in the model. `halo export` refuses models trained
    /// with fewer than 5 unless given --allow-small-cells.
    #[arg(long, default_value_t = halo_core::encoding::DEFAULT_MIN_PATIENTS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    min_patients: usize,
    /// Override the preset's embedding width.
    #[arg(long)]
    n_embd: Option<usize>,
    /// Override the preset's number of transformer layers.
    #[arg(long)]
    n_layer: Option<usize>,
    /// Override the preset's number of attention heads.
    #[arg(long)]
    n_head: Option<usize>,
    /// Override the context: at most n_ctx - 2 visits per record are kept (the most recent).
    #[arg(long)]
    n_ctx: Option<usize>,
    /// Train the HALO-Coarse ablation (no code-level module).
    #[arg(long)]
    coarse: bool,
    /// Initialise the code module's output biases as the reference does (uniform) instead of from each
    /// code's log-odds in the training split; for like-for-like comparisons with the reference
    #[arg(long)]
    reference_init: bool,
    /// CPU threads for libtorch [default: libtorch's choice, all cores]. With 1, a CPU run gives the same
    /// bytes on any machine with the same libtorch build (used to regenerate fixtures/tiny-model)
    #[arg(long)]
    threads: Option<usize>,
    /// No per-epoch lines on stderr.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct TestCmd {
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
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    device: Device,
}

#[derive(Args)]
struct EvaluateCmd {
    /// Real records (the training data).
    #[arg(long)]
    real: PathBuf,
    /// Synthetic records (JSONL or MEDS from halo-sample).
    #[arg(long)]
    synthetic: PathBuf,
    /// Report folder to write (report.json, report.html).
    #[arg(long)]
    out: PathBuf,
    /// Checkpoint of the model (for the real data's split and the likelihood attack).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Model directory (for the real data's split when no checkpoint is given).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Skip the train-on-synthetic, test-on-real classifiers (the slow part: minutes per label on a CPU).
    #[arg(long)]
    no_utility: bool,
    #[command(flatten)]
    data_args: DataArgs,
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    device: Device,
}

fn parse_format(s: &str) -> Result<Format, String> {
    Format::parse(s).ok_or_else(|| format!("unknown format `{s}` (expected omop, meds or jsonl)"))
}
fn parse_preset(s: &str) -> Result<Preset, String> {
    Preset::parse(s).ok_or_else(|| format!("unknown preset `{s}` (expected small or paper)"))
}
fn parse_device(s: &str) -> Result<Device, String> {
    match s {
        "cpu" => Ok(Device::Cpu),
        "cuda" => {
            if tch::Cuda::is_available() {
                Ok(Device::Cuda(0))
            } else {
                Err("CUDA is not available on this machine (use --device cpu or auto)".into())
            }
        }
        "auto" => Ok(Device::cuda_if_available()),
        _ => Err(format!("unknown device `{s}` (expected cpu, cuda or auto)")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // SIGINT, SIGTERM, SIGHUP: every output is written under a temporary name and renamed when complete, so
    // removing the temporaries leaves things as they were before the command (a training run keeps its last
    // saved epoch). A SIGKILL leaves them; the next run into the same place removes them.
    let _ = ctrlc::set_handler(|| {
        let n = halo_core::fsutil::remove_temporaries();
        eprintln!("halo: interrupted; {n} temporary file(s) or folder(s) removed, nothing half-written is left");
        std::process::exit(130);
    });
    let result = match cli.command {
        Command::Train(cmd) => run_train(cmd),
        Command::Test(cmd) => run_test(cmd),
        Command::Export(cmd) => cli::export::run(cmd),
        Command::Keygen(cmd) => cli::keygen::run(cmd),
        Command::Package(cmd) => cli::package::run(cmd),
        Command::Evaluate(cmd) => run_evaluate(cmd),
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

fn run_train(cmd: TrainCmd) -> Result<()> {
    if let Some(n) = cmd.threads {
        tch::set_num_threads(n.max(1) as i32);
    }
    if cmd.batch_size == 0 || cmd.epochs == 0 {
        bail!("--batch-size and --epochs must be at least 1");
    }
    let args = train::TrainArgs {
        read: cmd.data_args.read_options(),
        format: cmd.data_args.format,
        data: cmd.data,
        out: cmd.out,
        preset: cmd.preset,
        epochs: cmd.epochs,
        lr: cmd.lr,
        batch_size: cmd.batch_size,
        seed: cmd.seed,
        resume: cmd.resume,
        device: cmd.device,
        label_spec: cmd.label_spec,
        split_file: cmd.split_file,
        encoding: EncodingOptions {
            gaps: !cmd.no_gaps,
            labs: !cmd.no_labs,
            demographics: !cmd.no_demographics,
            code_order: cmd.code_order,
            order_seed: cmd.seed,
            lab_buckets: cmd.lab_buckets,
            max_visits: 46,
            min_patients: cmd.min_patients,
        },
        n_embd: cmd.n_embd,
        n_layer: cmd.n_layer,
        n_head: cmd.n_head,
        n_ctx: cmd.n_ctx,
        coarse: cmd.coarse,
        reference_init: cmd.reference_init,
        quiet: cmd.quiet,
    };
    train::run(&args)
}

fn run_test(cmd: TestCmd) -> Result<()> {
    let ck = checkpoint::load(&cmd.checkpoint, cmd.device)?;
    let data_path = match &cmd.data {
        Some(p) => p.clone(),
        None => {
            let summary: halo_core::manifest::TrainingSummary = halo_core::fsutil::read_json(
                &cmd.checkpoint.join(halo_core::manifest::checkpoint::TRAINING),
                "training summary",
            )?;
            PathBuf::from(summary.source)
        }
    };
    let dataset = data::read(&data_path, cmd.data_args.format, &cmd.data_args.read_options())?;
    let in_test = ck.split.lookup();
    let mut scored: Vec<_> = dataset
        .patients
        .iter()
        .filter(|p| in_test.get(p.id.as_str()) == Some(&Split::Test))
        .cloned()
        .collect();
    let which = if scored.is_empty() {
        scored = dataset.patients.clone();
        "all records (none belongs to the checkpoint's test split)"
    } else {
        "test split"
    };
    let index = ck.encoding.index();
    let mut unknown = 0;
    let mut encoded: Vec<_> = scored
        .iter()
        .map(|p| ck.encoding.encode(p, &index, ck.spec.as_ref(), &mut unknown))
        .collect();
    let all_codes = score::score(&ck.model, &encoded, &ck.encoding, cmd.batch_size, cmd.device).scores();
    // As the reference test_model.py does: codes that never occur in the training split cannot be learned,
    // so they are taken out of the test records; the figures with them kept are reported beside.
    let train_ids: std::collections::HashSet<&str> = ck.split.train.iter().map(String::as_str).collect();
    let mut seen = vec![false; ck.encoding.vocab_size()];
    let mut train_found = 0;
    for p in dataset.patients.iter().filter(|p| train_ids.contains(p.id.as_str())) {
        train_found += 1;
        for c in ck
            .encoding
            .encode(p, &index, ck.spec.as_ref(), &mut 0)
            .visits
            .iter()
            .flatten()
        {
            seen[*c as usize] = true;
        }
    }
    let mut removed = 0usize;
    if train_found > 0 {
        for visit in encoded.iter_mut().flat_map(|p| p.visits.iter_mut()) {
            let before = visit.len();
            visit.retain(|c| seen[*c as usize]);
            removed += before - visit.len();
        }
    }
    let sums = score::score(&ck.model, &encoded, &ck.encoding, cmd.batch_size, cmd.device);
    let mut out = serde_json::to_value(sums.scores())?;
    out["scored"] = which.into();
    out["codes_unseen_in_training_removed"] = removed.into();
    out["with_unseen_codes"] = serde_json::to_value(all_codes)?;
    if train_found == 0 {
        out["note"] = "the training records are not in this data: codes unseen in training could not be removed".into();
    }
    out["unknown_codes"] = unknown.into();
    out["data"] = data_path.display().to_string().into();
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn run_evaluate(cmd: EvaluateCmd) -> Result<()> {
    use halo_evaluate::{EvalOptions, LabelSource};
    use std::collections::BTreeSet;
    // Checked first: an evaluation takes minutes, and an earlier report is never written over.
    if std::fs::read_dir(&cmd.out).is_ok_and(|mut d| d.next().is_some()) {
        bail!(
            "{}: already exists and is not empty; halo evaluate never writes over an earlier report (choose \
             another --out or remove it)",
            cmd.out.display()
        );
    }
    let read_options = cmd.data_args.read_options();
    let real = data::read(&cmd.real, cmd.data_args.format, &read_options)?;
    let synthetic = data::read(&cmd.synthetic, None, &read_options).context("reading the synthetic records")?;
    if synthetic.patients.is_empty() {
        bail!("{}: no synthetic record with a visit", cmd.synthetic.display());
    }
    let ck = match &cmd.checkpoint {
        Some(dir) => Some(checkpoint::load(dir, cmd.device)?),
        None => None,
    };
    // The split training used: the checkpoint's, else the records' own, else the trainer's default seeded one.
    let split = match &ck {
        Some(ck) => ck.split.clone(),
        None => halo_core::split::assign(&real.patients, None, 4)?,
    };
    if ck.is_none() && cmd.model.is_some() {
        eprintln!(
            "halo evaluate: no --checkpoint: using the records' own split, else the default seeded split (seed 4)"
        );
    }
    let spec = ck.as_ref().and_then(|c| c.spec.clone());
    let given = |p: &halo_core::record::Patient| -> BTreeSet<String> {
        p.labels
            .iter()
            .flatten()
            .filter(|(_, v)| **v)
            .map(|(k, _)| k.clone())
            .collect()
    };
    let real_labels: Vec<BTreeSet<String>> = real
        .patients
        .iter()
        .map(|p| match (&p.labels, &spec) {
            (None, Some(spec)) => spec.labels_of(p),
            _ => given(p),
        })
        .collect();
    let syn_labels: Vec<BTreeSet<String>> = synthetic.patients.iter().map(given).collect();
    // With a label spec, what each synthetic record's own codes imply, to check its sampled labels against.
    let syn_implied: Option<Vec<BTreeSet<String>>> = spec
        .as_ref()
        .map(|spec| synthetic.patients.iter().map(|p| spec.labels_of(p)).collect());
    let mut options = EvalOptions {
        labels: LabelSource::Precomputed {
            real: &real_labels,
            synthetic: &syn_labels,
        },
        synthetic_labels_from_codes: syn_implied.as_deref(),
        ..EvalOptions::default()
    };
    if let Some(ck) = &ck {
        let attacked = halo_evaluate::attacked_records(&real.patients, &split, &options)?;
        let index = ck.encoding.index();
        let mut unknown = 0;
        let encoded: Vec<_> = attacked
            .members
            .iter()
            .chain(&attacked.non_members)
            .map(|p| ck.encoding.encode(p, &index, ck.spec.as_ref(), &mut unknown))
            .collect();
        options.log_likelihoods = Some(score::score(&ck.model, &encoded, &ck.encoding, 96, cmd.device).per_record);
    }
    let mut report = halo_evaluate::evaluate(&real.patients, &split, &synthetic.patients, &options)?;
    if cmd.no_utility {
        report.notes.push("utility classifiers skipped (--no-utility)".into());
    } else {
        report.utility = utility(
            &real.patients,
            &real_labels,
            &split,
            &synthetic.patients,
            &syn_labels,
            cmd.device,
            &mut report.notes,
        );
    }
    halo_evaluate::write_report(&cmd.out, &report)?;
    eprintln!("halo evaluate: wrote {}/report.json and report.html", cmd.out.display());
    Ok(())
}

/// Train-on-synthetic, test-on-real phenotype classifiers, one per label with enough records of each class.
fn utility(
    real: &[halo_core::record::Patient],
    real_labels: &[std::collections::BTreeSet<String>],
    split: &halo_core::split::SplitAssignment,
    synthetic: &[halo_core::record::Patient],
    syn_labels: &[std::collections::BTreeSet<String>],
    device: Device,
    notes: &mut Vec<String>,
) -> Vec<halo_evaluate::UtilityResult> {
    use halo_evaluate::utility::positives;
    use halo_train::utility::{train_and_score, CodeIndex};
    let lookup = split.lookup();
    let in_split = |s: Split| -> Vec<usize> {
        (0..real.len())
            .filter(|i| lookup.get(real[*i].id.as_str()) == Some(&s))
            .collect()
    };
    let (train_idx, test_idx) = (in_split(Split::Train), in_split(Split::Test));
    let index = CodeIndex::new(real.iter().flat_map(|p| p.all_codes()));
    let real_seq: Vec<Vec<Vec<i64>>> = real.iter().map(|p| index.encode(p)).collect();
    let syn_seq: Vec<Vec<Vec<i64>>> = synthetic.iter().map(|p| index.encode(p)).collect();
    type Seq = Vec<Vec<i64>>;
    let in_part = |idx: &[usize]| -> (Vec<&Seq>, Vec<std::collections::BTreeSet<String>>) {
        (
            idx.iter().map(|i| &real_seq[*i]).collect(),
            idx.iter().map(|i| real_labels[*i].clone()).collect(),
        )
    };
    let (train_seq, train_labels) = in_part(&train_idx);
    let (test_seq, test_labels) = in_part(&test_idx);
    let syn_seq: Vec<&Seq> = syn_seq.iter().collect();
    let names: std::collections::BTreeSet<&String> = real_labels.iter().flatten().collect();
    let mut results = Vec::new();
    let n_labels = names.len();
    for (k, name) in names.into_iter().enumerate() {
        eprintln!("halo evaluate: utility classifiers for `{name}` ({}/{n_labels})", k + 1);
        let (train_pos, test_pos, syn_pos) = (
            positives(&train_labels, name),
            positives(&test_labels, name),
            positives(syn_labels, name),
        );
        let sizes = halo_evaluate::UtilitySizes::default();
        let (Ok(real_split), Ok(syn_split)) = (
            halo_evaluate::balanced_split(name, &train_pos, &test_pos, sizes, 4),
            halo_evaluate::balanced_split(name, &syn_pos, &test_pos, sizes, 4),
        ) else {
            notes.push(format!(
                "utility: label `{name}` skipped (too few positive or negative records)"
            ));
            continue;
        };
        fn pick<'a>(seqs: &[&'a Seq], pos: &[bool], idx: &[usize]) -> (Vec<&'a Seq>, Vec<bool>) {
            (
                idx.iter().map(|i| seqs[*i]).collect(),
                idx.iter().map(|i| pos[*i]).collect(),
            )
        }
        let test = pick(&test_seq, &test_pos, &real_split.test);
        let fit = |seqs: &[&Seq], pos: &[bool], s: &halo_evaluate::utility::BalancedSplit| {
            let (train, val) = (pick(seqs, pos, &s.train), pick(seqs, pos, &s.val));
            train_and_score(
                (&train.0, &train.1),
                (&val.0, &val.1),
                (&test.0, &test.1),
                index.len(),
                4,
                device,
            )
        };
        let real_scores = fit(&train_seq, &train_pos, &real_split);
        let syn_scores = fit(&syn_seq, &syn_pos, &syn_split);
        let note = [real_split.note.clone(), syn_split.note.clone()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; ");
        results.push(halo_evaluate::UtilityResult {
            label: name.clone(),
            real: real_scores,
            synthetic: syn_scores,
            n_train: real_split.train.len(),
            n_val: real_split.val.len(),
            n_test: real_split.test.len(),
            note: if note.is_empty() { None } else { Some(note) },
        });
    }
    results
}
