//! The training loop: seeded split, per-epoch validation, best checkpoint kept, exact resume.

use crate::checkpoint::{load_last, save_last, save_weights};
use crate::data;
use crate::dp::plan::DpPlan;
use crate::dp::{self, Records};
use crate::model::Halo;
use crate::optim::Adam;
use crate::score;
pub use crate::settings::{DpSettings, TrainArgs, TrainInput, TrainSettings, CORPUS_DIR, DEFAULT_MAX_GRAD_NORM};
use anyhow::{bail, Context, Result};
use halo_core::checkpoint::CheckpointFolder;
use halo_core::config::ModelConfig;
use halo_core::corpus::{self, Corpus, CorpusInfo};
use halo_core::encoding::{Encoding, EncodingOptions};
use halo_core::fsutil::{self, is_nonempty_dir, read_json, temp_sibling, write_json_atomic, Target};
use halo_core::manifest::checkpoint as ck;
use halo_prepare::{self as prepare, PrepareArgs};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{nn, Kind};

mod epoch;
use epoch::Run;

/// Default dropout in training (see [`TrainSettings::dropout`]). Measured on the demo (Synthea-1k OMOP, small
/// preset, 50 epochs): 0.3 took the model likelihood attack from 0.585 to 0.545 and lowered the best
/// validation loss (0.01783 -> 0.01647); on the records comparison (docs/records.md) perplexity 1.893 -> 1.776.
/// The embedding of the codes seen so far ([`halo_core::config::ModelConfig::seen_codes`]) lets a model tell
/// records apart more easily: with it, 0.3 gave an attack of 0.558 and 0.35 0.554, 0.4 gives 0.545.
pub const DEFAULT_DROPOUT: f64 = 0.4;
/// Default [`TrainSettings::prefix_dropout`]: none (see docs/records.md, "Dense visits").
pub const DEFAULT_PREFIX_DROPOUT: f64 = 0.0;
/// Default weight decay (see [`TrainSettings::weight_decay`]).
pub const DEFAULT_WEIGHT_DECAY: f64 = 0.0;

/// Counters of a run, mirrored in `train_state.json` and stored as tensors in `last.safetensors`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TrainState {
    pub epochs_done: usize,
    pub step: i64,
    /// Infinite before the first epoch (JSON writes it as null).
    #[serde(deserialize_with = "null_as_infinity")]
    pub best_val_loss: f64,
    pub best_epoch: usize,
    pub epochs_planned: usize,
    pub lr: f64,
    pub batch_size: usize,
    pub seed: u64,
    /// How the code module's output biases started.
    #[serde(default)]
    pub output_bias_init: OutputBiasInit,
    /// The data digest and options the run started with; `--resume` refuses other ones.
    #[serde(default)]
    pub settings: crate::resume::SavedSettings,
    /// A run with differential privacy: its plan (noise, sample rate, steps, the epsilon it spends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<DpPlan>,
}

fn null_as_infinity<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(<Option<f64> as serde::Deserialize>::deserialize(d)?.unwrap_or(f64::INFINITY))
}

/// How the code module's output biases start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputBiasInit {
    /// Each code's training log-odds.
    Prior,
    /// Uniform, as the reference implementation (and runs from before this setting was saved).
    #[default]
    Reference,
}

/// The fitted pieces of a run that resume must reuse unchanged.
struct Setup {
    config: ModelConfig,
    encoding: Encoding,
    corpus: Corpus,
    settings: crate::resume::RunSettings,
    /// With differential privacy: the sequences of each training record (the privacy unit) and the plan.
    private: Option<Private>,
}

struct Private {
    records: Vec<Vec<usize>>,
    plan: DpPlan,
    /// What the records spent before training (the prepared corpus's statistics).
    spent_before: halo_core::privacy::Rdp,
    /// The corpus's ledger and the run's mechanisms: `privacy.json` in the checkpoint.
    ledger: halo_core::privacy::PrivacyLedger,
}

/// Removes a new run's folder under construction unless it was moved into place.
struct PendingDir(Option<PathBuf>);

impl Drop for PendingDir {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

pub fn run(args: &TrainArgs) -> Result<()> {
    let resuming = args.resume && args.out.join(ck::LAST).is_file();
    if args.resume && !resuming {
        eprintln!(
            "halo train: nothing to resume in {} (no {}); starting a new run",
            args.out.display(),
            ck::LAST
        );
    }
    if !resuming && is_nonempty_dir(&args.out) {
        bail!(
            "{} exists and is not empty: pass --resume to continue the run in it, or choose another --out",
            args.out.display()
        );
    }
    let mut pending = PendingDir(None);
    let (mut setup, dir) = if resuming {
        (resume_setup(args)?, args.out.clone())
    } else {
        let dir = new_run_dir(&args.out, &mut pending)?;
        (new_setup(args, &dir)?, dir)
    };
    if setup.corpus.train.is_empty() {
        bail!("the training split is empty");
    }
    if let Some(dp) = &args.settings.dp {
        setup.private = Some(private_setup(args, dp, &setup.corpus)?);
    }
    let setup = setup;
    let train = &setup.corpus.train;
    tch::manual_seed(args.settings.seed as i64);
    let mut vs = nn::VarStore::new(args.device);
    let mut model = Halo::load(&vs.root(), &setup.config);
    if setup.config.label_bias {
        model.restrict_label_bias(&data::label_bias_rows(&setup.encoding));
    }
    let lr = args
        .settings
        .lr
        .unwrap_or(args.settings.preset.settings().learning_rate);
    let mut adam = Adam::new(&vs, lr, args.settings.weight_decay);
    let mut state = TrainState::new(args, lr, &setup.settings);
    state.privacy = setup.private.as_ref().map(|p| p.plan.clone());
    if resuming {
        state = resumed_state(args, &mut vs, &mut adam, state)?;
    } else {
        match (&setup.private, args.settings.reference_init) {
            (_, true) => {}
            (None, false) => {
                model.set_output_bias(&data::prior_logits(train.iter(), &setup.encoding));
                if let Some(weight) = &model.label_bias {
                    let _guard = tch::no_grad_guard();
                    let init = data::label_bias_init(train.iter(), &setup.encoding);
                    weight.shallow_clone().copy_(&init.to_device(weight.device()));
                }
            }
            (Some(private), false) => model.set_output_bias(&dp::prior::noisy_prior_logits(
                train,
                &private.records,
                &setup.encoding,
                private.plan.prior_noise_multiplier.expect("a noisy prior is planned"),
                dp::sampling::step_seed(args.settings.seed, 0),
            )),
        }
        if let Some(private) = &setup.private {
            // The planned total: what the run spends if it runs to its last step (a killed run spends less).
            private.ledger.write_in(&dir)?;
        }
        save_last(&dir, &vs, &adam, &state)?;
        fsutil::publish(&dir, &args.out, Target::AbsentOrEmptyDir).context("moving the new run into place")?;
        pending.0 = None;
    }
    let n_params: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
    eprintln!(
        "halo train: {} train / {} val records, vocabulary {} ({} codes, {} labels), {} parameters, device {:?}",
        train.len(),
        setup.corpus.val.len(),
        setup.config.total_vocab_size,
        setup.config.code_vocab_size,
        setup.config.label_vocab_size,
        n_params,
        args.device
    );
    let mut run = Run {
        args,
        setup: &setup,
        model: &model,
        vs: &vs,
        adam: &mut adam,
        log: std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(args.out.join(ck::LOG))?,
    };
    for epoch in state.epochs_done + 1..=args.epochs {
        run.epoch(epoch, &mut state)?;
    }
    say_done(args, &setup, &state);
    Ok(())
}

/// The state of the run being resumed in `args.out` (its weights and Adam's moments loaded into `vs` and
/// `adam`), with this invocation's plan, settings and privacy plan from `state`; the log cut to its epochs.
fn resumed_state(args: &TrainArgs, vs: &mut nn::VarStore, adam: &mut Adam, state: TrainState) -> Result<TrainState> {
    let saved = load_last(&args.out, vs, adam)?;
    if saved.privacy.is_some() && saved.epochs_planned != args.epochs {
        bail!(
            "--resume: epochs: was {}, now {}: a run with differential privacy set its noise for its planned \
             steps; resume it with --epochs {}",
            saved.epochs_planned,
            args.epochs,
            saved.epochs_planned
        );
    }
    if saved.privacy.is_some() && saved.privacy != state.privacy {
        bail!(
            "--resume: the run's privacy plan (its noise and what it spends) was made by another version of halo \
             train and differs from this one's: finish it with that version, or start a new run"
        );
    }
    let state = TrainState {
        epochs_planned: args.epochs,
        settings: state.settings,
        privacy: state.privacy,
        ..saved
    };
    crate::resume::trim_log(&args.out.join(ck::LOG), state.epochs_done)?;
    eprintln!(
        "halo train: resuming after epoch {} (best validation loss {:.5} at epoch {})",
        state.epochs_done, state.best_val_loss, state.best_epoch
    );
    Ok(state)
}

/// The run's last line: its best validation loss, or with differential privacy the guarantee it spent.
fn say_done(args: &TrainArgs, setup: &Setup, state: &TrainState) {
    match &setup.private {
        None => eprintln!(
            "halo train: done; best validation loss {:.5} at epoch {}; checkpoint {}",
            state.best_val_loss,
            state.best_epoch,
            args.out.display()
        ),
        Some(private) => eprintln!(
            "halo train: done; ({:.3}, {:.1e})-DP; the weights are the last epoch's ({}, validation loss {:.5}: no \
             selection on validation under differential privacy); checkpoint {}",
            private.plan.epsilon_after(state.step as u64, &private.spent_before),
            private.plan.delta,
            state.epochs_done,
            state.best_val_loss,
            args.out.display()
        ),
    }
}

/// The plan of a run with differential privacy on `corpus`, printed: the records (the privacy unit), what the
/// corpus spent already (its ledger), the noise for the planned steps and the run's ledger.
fn private_setup(args: &TrainArgs, dp: &DpSettings, corpus: &Corpus) -> Result<Private> {
    let records = corpus.record_sequences(halo_core::record::Split::Train)?;
    // What preparing the corpus released from the records under differential privacy, if anything.
    let before = halo_core::privacy::PrivacyLedger::read_in(&corpus.dir)?;
    if before.is_none() {
        eprintln!(
            "halo train: note: the corpus {} was prepared without differential privacy: its vocabulary, \
             bucket edges and calibration shares are not covered by the guarantee (prepare it with `halo \
             prepare --dp-epsilon`, or train from --data)",
            corpus.dir.display()
        );
    }
    let spent_before = before.as_ref().map_or_else(halo_core::privacy::Rdp::zero, |l| l.rdp());
    let plan = DpPlan::new(
        dp,
        records.len(),
        args.settings.batch_size,
        args.epochs,
        !args.settings.reference_init,
        before.as_ref(),
    )?;
    eprintln!(
        "halo train: differential privacy: ({:.3}, {:.1e})-DP for each of {} records over {} steps ({} an \
         epoch): sample rate q = {:.4}, noise multiplier sigma = {:.4}, clipping bound C = {}",
        plan.epsilon,
        plan.delta,
        plan.records,
        plan.planned_steps,
        plan.steps_per_epoch,
        plan.sample_rate,
        plan.noise_multiplier,
        plan.max_grad_norm
    );
    let ledger = plan.ledger(before.as_ref());
    for m in &ledger.mechanisms {
        eprintln!("halo train:   {}", m.describe());
    }
    Ok(Private {
        records,
        plan,
        spent_before,
        ledger,
    })
}

/// A new run is set up in a temporary sibling of `out` and appears at `out` with a resumable state (epoch
/// 0), so that a kill at any point leaves either nothing or a run `--resume` continues.
fn new_run_dir(out: &Path, pending: &mut PendingDir) -> Result<PathBuf> {
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let swept = halo_core::fsutil::sweep_stale_temps(out);
    if swept > 0 {
        eprintln!("halo train: removed {swept} temporary folder(s) of an earlier run that was killed");
    }
    let tmp = temp_sibling(out);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    pending.0 = Some(tmp.clone());
    Ok(tmp)
}

impl TrainState {
    /// The state before the first epoch.
    fn new(args: &TrainArgs, lr: f64, settings: &crate::resume::RunSettings) -> TrainState {
        TrainState {
            epochs_done: 0,
            step: 0,
            best_val_loss: f64::INFINITY,
            best_epoch: 0,
            epochs_planned: args.epochs,
            lr,
            batch_size: args.settings.batch_size,
            seed: args.settings.seed,
            output_bias_init: if args.settings.reference_init {
                OutputBiasInit::Reference
            } else {
                OutputBiasInit::Prior
            },
            settings: crate::resume::SavedSettings::Fields(Box::new(settings.clone())),
            privacy: None,
        }
    }
}

fn new_setup(args: &TrainArgs, out: &Path) -> Result<Setup> {
    let preset = args.settings.preset.settings();
    let n_ctx = args.settings.n_ctx.unwrap_or(preset.n_ctx);
    let corpus_dir = match &args.input {
        TrainInput::Data(data) => {
            let dir = out.join(CORPUS_DIR);
            let prepare_args = PrepareArgs {
                data: data.clone(),
                format: args.format,
                read: args.read.clone(),
                label_spec: args.label_spec.clone(),
                split_file: args.split_file.clone(),
                seed: args.settings.seed,
                encoding: prepare::encoding_options(&args.settings.encoding, n_ctx),
                quiet: false,
            };
            prepare::prepare(&prepare_args, &dir)?;
            dir
        }
        TrainInput::Corpus(dir) => dir.clone(),
    };
    let corpus = Corpus::open(&corpus_dir)?;
    let encoding_path = corpus_dir.join(ck::ENCODING);
    let encoding: Encoding = read_json(&encoding_path, "HALO encoding.json")?;
    encoding.validate(&encoding_path)?;
    if encoding.options.max_visits + 2 != n_ctx {
        bail!(
            "{}: the corpus was prepared for a context of {} (--n-ctx {}), this run asks for {n_ctx}: prepare it \
             again with the run's --preset / --n-ctx, or give the corpus's",
            corpus_dir.display(),
            encoding.options.max_visits + 2,
            encoding.options.max_visits + 2,
        );
    }
    let mut config = ModelConfig::new(
        args.settings.preset,
        encoding.code_vocab_size,
        encoding.label_vocab_size,
    );
    config.n_embd = args.settings.n_embd.unwrap_or(preset.n_embd);
    config.n_layer = args.settings.n_layer.unwrap_or(preset.n_layer);
    config.n_head = args.settings.n_head.unwrap_or(preset.n_head);
    config.n_ctx = n_ctx;
    config.n_positions = config.n_positions.max(n_ctx);
    config.coarse = args.settings.coarse;
    config.seen_codes = args.settings.seen_codes;
    // No label bias under differential privacy: its gradients are not clipped per record.
    config.label_bias = args.settings.label_bias && args.settings.dp.is_none();
    config
        .validate(Path::new("command line"))
        .context("invalid model size")?;
    write_json_atomic(&out.join(ck::CONFIG), &config)?;
    for name in [ck::ENCODING, ck::SPLIT, ck::TRAINING, ck::LABEL_SPEC] {
        let from = corpus_dir.join(name);
        if from.is_file() {
            let bytes = std::fs::read(&from).with_context(|| format!("reading {}", from.display()))?;
            fsutil::write_atomic(&out.join(name), &bytes)?;
        }
    }
    let settings = crate::resume::settings_of(args, &corpus.info.data_digest, corpus_encoding(args, &encoding))?;
    Ok(Setup {
        config,
        encoding,
        corpus,
        settings,
        private: None,
    })
}

/// The encoding options a run records: a run from a corpus takes the corpus's.
fn corpus_encoding<'a>(args: &TrainArgs, encoding: &'a Encoding) -> Option<&'a EncodingOptions> {
    matches!(args.input, TrainInput::Corpus(_)).then_some(&encoding.options)
}

/// A resumed run: the data checked against the run's settings before anything is written, then its corpus
/// (a run from before corpora gets one, encoded with its own encoding).
fn resume_setup(args: &TrainArgs) -> Result<Setup> {
    let folder = CheckpointFolder::read_unfinished(&args.out)?;
    let saved: TrainState = read_json(&args.out.join(ck::TRAIN_STATE), "train state")?;
    let (corpus_dir, digest, records) = match &args.input {
        TrainInput::Data(data) => {
            let mut records = prepare::open(data, args.format, &args.read)?;
            let digest = prepare::data_digest(&mut records)?;
            (args.out.join(CORPUS_DIR), digest, Some(records))
        }
        TrainInput::Corpus(dir) => {
            let info: CorpusInfo = read_json(&dir.join(corpus::INFO), "corpus information")?;
            (dir.clone(), info.data_digest, None)
        }
    };
    let settings = crate::resume::settings_of(args, &digest, corpus_encoding(args, &folder.encoding))?;
    crate::resume::check_same(&args.out, &saved.settings, &settings)?;
    if let (Some(mut records), false) = (records, corpus_dir.join(corpus::INFO).is_file()) {
        eprintln!(
            "halo train: encoding the records into {} (a run from before corpora)",
            corpus_dir.display()
        );
        let tmp = temp_sibling(&corpus_dir);
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
        }
        std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let (info, _) = prepare::encode_into(
            &mut records,
            &folder.split,
            &folder.encoding,
            folder.spec.as_ref(),
            &tmp,
        )?;
        let info = CorpusInfo {
            data_digest: digest,
            read_report: records.report().clone(),
            ..info
        };
        write_json_atomic(&tmp.join(corpus::INFO), &info)?;
        fsutil::publish(&tmp, &corpus_dir, Target::AbsentOrEmptyDir).context("moving the corpus into place")?;
    }
    Ok(Setup {
        config: folder.config,
        encoding: folder.encoding,
        corpus: Corpus::open(&corpus_dir)?,
        settings,
        private: None,
    })
}
