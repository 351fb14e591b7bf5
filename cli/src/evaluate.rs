//! `halo evaluate`: fidelity, privacy and utility of synthetic records against real ones.

use crate::args::{DataArgs, TorchDevice};
use anyhow::{bail, Context, Result};
use clap::Args;
use halo_core::encoding::DEFAULT_MIN_PATIENTS;
use halo_core::fsutil::Target;
use halo_core::interner::Interner;
use halo_core::record::{Patient, Split};
use halo_core::split::{SplitAssignment, DEFAULT_SEED};
use halo_evaluate::small_cells::SmallCells;
use halo_evaluate::utility::{balanced_split, positives, BalancedSplit, UtilitySizes};
use halo_evaluate::{ClassifierScores, EvalOptions, LabelSource, UtilityResult};
use halo_train::utility::{encode_record, train_and_predict, CodeSequence, Labelled};
use halo_train::{checkpoint, data, score};
use std::collections::BTreeSet;
use std::path::PathBuf;
use tch::Device;

#[derive(Args)]
pub struct EvaluateCmd {
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
    /// Name no code, lab or label that fewer real patients hold (the report shows them only as counts).
    /// Default: the model's --min-patients (checkpoint, else model directory), else 10.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    min_patients: Option<usize>,
    #[command(flatten)]
    data_args: DataArgs,
    #[arg(long, default_value = "auto")]
    device: TorchDevice,
}

/// The model's privacy ledger (the checkpoint's `privacy.json`, else the model directory's manifest), in
/// the lines every display uses; empty without either.
fn model_privacy(checkpoint: Option<&std::path::Path>, model: Option<&std::path::Path>) -> Result<Vec<String>> {
    use halo_core::privacy::{describe, PrivacyLedger};
    Ok(match (checkpoint, model) {
        (Some(dir), _) => describe(PrivacyLedger::read_in(dir)?.as_ref()),
        (None, Some(dir)) => describe(halo_core::manifest::Manifest::read(dir)?.privacy.as_ref()),
        (None, None) => Vec::new(),
    })
}

pub fn run(cmd: EvaluateCmd) -> Result<()> {
    // Checked first: an evaluation takes minutes, and an earlier report is never written over.
    halo_core::fsutil::check_fresh(
        &cmd.out,
        Target::AbsentOrEmptyDir,
        "halo evaluate never writes over an earlier report (choose another --out or remove it)",
    )?;
    let read_options = cmd.data_args.read_options();
    let real = data::read(&cmd.real, cmd.data_args.format, &read_options)?;
    let synthetic = data::read(&cmd.synthetic, None, &read_options).context("reading the synthetic records")?;
    if synthetic.patients.is_empty() {
        bail!("{}: no synthetic record with a visit", cmd.synthetic.display());
    }
    let ck = match &cmd.checkpoint {
        Some(dir) => Some(checkpoint::load(dir, cmd.device.0)?),
        None => None,
    };
    // The split training used: the checkpoint's, else the records' own, else the trainer's default seeded one.
    let split = match &ck {
        Some(ck) => ck.split.clone(),
        None => halo_core::split::assign(&real.patients, None, DEFAULT_SEED)?,
    };
    if ck.is_none() && cmd.model.is_some() {
        eprintln!(
            "halo evaluate: no --checkpoint: using the records' own split, else the default seeded split (seed {DEFAULT_SEED})"
        );
    }
    let min_patients = match (cmd.min_patients, &ck, &cmd.model) {
        (Some(k), _, _) => k,
        (None, Some(ck), _) => ck.encoding.options.min_patients,
        (None, None, Some(dir)) => halo_core::manifest::Manifest::read(dir)?.encoding.options.min_patients,
        (None, None, None) => {
            eprintln!(
                "halo evaluate: no --checkpoint, --model or --min-patients: naming only values at least {DEFAULT_MIN_PATIENTS} real patients hold"
            );
            DEFAULT_MIN_PATIENTS
        }
    };
    let spec = ck.as_ref().and_then(|c| c.spec.clone());
    let (real_labels, syn_labels, syn_implied) = record_labels(&real.patients, &synthetic.patients, spec.as_ref());
    let mut options = EvalOptions {
        labels: LabelSource::Precomputed {
            real: &real_labels,
            synthetic: &syn_labels,
        },
        synthetic_labels_from_codes: syn_implied.as_deref(),
        min_patients,
        ..EvalOptions::default()
    };
    if let (Some(ck), Some(dir)) = (&ck, &cmd.checkpoint) {
        options.log_likelihoods = Some(attacked_log_likelihoods(
            dir,
            ck,
            &real.patients,
            &split,
            &options,
            cmd.device.0,
        )?);
    }
    let mut report = halo_evaluate::evaluate(&real.patients, &split, &synthetic.patients, &options)?;
    if cmd.no_utility {
        report.notes.push("utility classifiers skipped (--no-utility)".into());
    } else {
        // Labels fewer than min_patients real patients have are not named, here nor in the logs.
        let cells = SmallCells::count(&real.patients, |i| real_labels[i].clone(), min_patients);
        let (mut named_labels, mut unnamed) = (real_labels.clone(), BTreeSet::new());
        for labels in &mut named_labels {
            unnamed.extend(labels.iter().filter(|l| !cells.label_named(l)).cloned());
            labels.retain(|l| cells.label_named(l));
        }
        if !unnamed.is_empty() {
            report.notes.push(format!(
                "utility: {} labels held by fewer than {min_patients} real patients skipped (not named)",
                unnamed.len()
            ));
        }
        report.utility = utility(
            &real.patients,
            &named_labels,
            &split,
            &synthetic.patients,
            &syn_labels,
            cmd.device.0,
            &mut report.notes,
        );
    }
    report.model_privacy = model_privacy(cmd.checkpoint.as_deref(), cmd.model.as_deref())?;
    halo_evaluate::write_report(&cmd.out, &report)?;
    eprintln!("halo evaluate: {}", report.hidden.describe());
    eprint!("halo evaluate: {}", halo_evaluate::headline::summary_text(&report));
    eprintln!("halo evaluate: wrote {}/report.json and report.html", cmd.out.display());
    Ok(())
}

/// Train-on-synthetic, test-on-real phenotype classifiers, one per label with enough records of each class.
fn utility(
    real: &[Patient],
    real_labels: &[BTreeSet<String>],
    split: &SplitAssignment,
    synthetic: &[Patient],
    syn_labels: &[BTreeSet<String>],
    device: Device,
    notes: &mut Vec<String>,
) -> Vec<UtilityResult> {
    let lookup = split.lookup();
    let in_split = |s: Split| -> Vec<usize> {
        (0..real.len())
            .filter(|i| lookup.get(real[*i].id.as_str()) == Some(&s))
            .collect()
    };
    let (train_idx, test_idx) = (in_split(Split::Train), in_split(Split::Test));
    let mut codes = Interner::default();
    for code in real.iter().flat_map(|p| p.all_codes()) {
        codes.intern(code);
    }
    let real_seq: Vec<CodeSequence> = real.iter().map(|p| encode_record(&codes, p)).collect();
    let syn_seq: Vec<CodeSequence> = synthetic.iter().map(|p| encode_record(&codes, p)).collect();
    let syn_seq: Vec<&CodeSequence> = syn_seq.iter().collect();
    let train_seq: Vec<&CodeSequence> = train_idx.iter().map(|i| &real_seq[*i]).collect();
    let test_seq: Vec<&CodeSequence> = test_idx.iter().map(|i| &real_seq[*i]).collect();
    let labels_of = |idx: &[usize]| -> Vec<BTreeSet<String>> { idx.iter().map(|i| real_labels[*i].clone()).collect() };
    let (train_labels, test_labels) = (labels_of(&train_idx), labels_of(&test_idx));
    let names: BTreeSet<&String> = real_labels.iter().flatten().collect();
    let mut results = Vec::new();
    let n_labels = names.len();
    for (k, name) in names.into_iter().enumerate() {
        eprintln!("halo evaluate: utility classifiers for `{name}` ({}/{n_labels})", k + 1);
        let (train_pos, test_pos, syn_pos) = (
            positives(&train_labels, name),
            positives(&test_labels, name),
            positives(syn_labels, name),
        );
        let sizes = UtilitySizes::default();
        let (Ok(real_split), Ok(syn_split)) = (
            balanced_split(name, &train_pos, &test_pos, sizes, DEFAULT_SEED),
            balanced_split(name, &syn_pos, &test_pos, sizes, DEFAULT_SEED),
        ) else {
            notes.push(format!(
                "utility: label `{name}` skipped (too few positive or negative records)"
            ));
            continue;
        };
        let test = Labelled::pick(&test_seq, &test_pos, &real_split.test);
        let fit = |records: &[&CodeSequence], positive: &[bool], s: &BalancedSplit| {
            let train = Labelled::pick(records, positive, &s.train);
            let val = Labelled::pick(records, positive, &s.val);
            let predicted = train_and_predict(&train, &val, &test.records, codes.len(), DEFAULT_SEED, device);
            ClassifierScores::from_scores(&test.positive, &predicted, 0.5)
        };
        let real_scores = fit(&train_seq, &train_pos, &real_split);
        let syn_scores = fit(&syn_seq, &syn_pos, &syn_split);
        let note = [real_split.note.clone(), syn_split.note.clone()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; ");
        results.push(UtilityResult {
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

/// The model's log-likelihood of each attacked record (members, then non-members), for the likelihood attack.
fn attacked_log_likelihoods(
    checkpoint: &std::path::Path,
    ck: &halo_train::checkpoint::Checkpoint,
    real: &[Patient],
    split: &halo_core::split::SplitAssignment,
    options: &EvalOptions,
    device: tch::Device,
) -> Result<Vec<f64>> {
    let attacked = halo_evaluate::attacked_records(real, split, options)?;
    let encoded = match attacked_from_corpus(checkpoint, ck, real, &attacked)? {
        Some(encoded) => {
            eprintln!("halo evaluate: the attacked records as the checkpoint's prepared corpus holds them");
            encoded
        }
        None => {
            let index = ck.encoding.index();
            let mut unknown = 0;
            attacked
                .members
                .iter()
                .chain(&attacked.non_members)
                .map(|p| ck.encoding.encode(p, &index, ck.spec.as_ref(), &mut unknown))
                .collect()
        }
    };
    Ok(score::score(&ck.model, &encoded, &ck.encoding, 96, device).per_record)
}

/// The attacked records (members, then non-members) as the checkpoint's prepared corpus holds them, so that
/// the model scores the sequences it was trained on without encoding the records again; `None` when the
/// checkpoint has no corpus (trained before corpora, or from `--corpus` elsewhere), its split is another, or
/// the real records are not the ones it was prepared from (their digest differs).
fn attacked_from_corpus(
    checkpoint: &std::path::Path,
    ck: &halo_train::checkpoint::Checkpoint,
    real: &[Patient],
    attacked: &halo_evaluate::AttackedRecords,
) -> Result<Option<Vec<halo_core::encoding::EncodedPatient>>> {
    use halo_core::record::Split;
    let dir = checkpoint.join(halo_train::train::CORPUS_DIR);
    if !dir.join(halo_core::corpus::INFO).is_file() {
        return Ok(None);
    }
    let split: halo_core::split::SplitAssignment =
        halo_core::fsutil::read_json(&dir.join(halo_core::manifest::checkpoint::SPLIT), "split")?;
    if split != ck.split {
        return Ok(None);
    }
    let corpus = halo_core::corpus::Corpus::open(&dir)?;
    let mut digest = halo_prepare::RecordDigest::default();
    for p in real {
        digest.add(p)?;
    }
    if digest.finish() != corpus.info.data_digest {
        return Ok(None);
    }
    let (train, test) = (
        corpus.first_sequences(Split::Train)?,
        corpus.first_sequences(Split::Test)?,
    );
    let members = attacked
        .members
        .iter()
        .map(|p| train.get(&p.id).map(|&i| corpus.train.get(i)));
    let non_members = attacked
        .non_members
        .iter()
        .map(|p| test.get(&p.id).map(|&i| corpus.test.get(i)));
    Ok(members.chain(non_members).collect())
}

/// Each record's labels: given in the record, else (real records, with a spec) from its codes; and, with a
/// spec, what each synthetic record's own codes imply, to check its sampled labels against.
type Labels = Vec<BTreeSet<String>>;
fn record_labels(
    real: &[Patient],
    synthetic: &[Patient],
    spec: Option<&halo_core::label_spec::LabelSpec>,
) -> (Labels, Labels, Option<Labels>) {
    let given = |p: &Patient| -> BTreeSet<String> {
        p.labels
            .iter()
            .flatten()
            .filter(|(_, v)| **v)
            .map(|(k, _)| k.clone())
            .collect()
    };
    let real_labels = real
        .iter()
        .map(|p| match (&p.labels, spec) {
            (None, Some(spec)) => spec.labels_of(p),
            _ => given(p),
        })
        .collect();
    let syn_labels = synthetic.iter().map(given).collect();
    let syn_implied = spec.map(|spec| synthetic.iter().map(|p| spec.labels_of(p)).collect());
    (real_labels, syn_labels, syn_implied)
}
