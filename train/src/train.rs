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
    let model = Halo::load(&vs.root(), &setup.config);
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
            (None, false) => model.set_output_bias(&data::prior_logits(train.iter(), &setup.encoding)),
            (Some(private), false) => model.set_output_bias(&dp::prior::noisy_prior_logits(
                train,
                &private.records,
                &setup.encoding,
                dp::plan::PRIOR_NOISE_MULTIPLIER,
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

/// What every epoch of a run works with.
struct Run<'a> {
    args: &'a TrainArgs,
    setup: &'a Setup,
    model: &'a Halo,
    vs: &'a nn::VarStore,
    adam: &'a mut Adam,
    log: std::fs::File,
}

impl Run<'_> {
    /// One epoch: the training steps, the validation loss, the best weights and the resumable state saved.
    fn epoch(&mut self, epoch: usize, state: &mut TrainState) -> Result<()> {
        let started = Instant::now();
        let (train_loss, dp_line) = match &self.setup.private {
            None => (self.train_steps(epoch)?, None),
            Some(private) => {
                let (loss, summary) = self.private_steps(epoch, private)?;
                (loss, Some(summary))
            }
        };
        let (args, encoding) = (self.args, &self.setup.encoding);
        let val = &self.setup.corpus.val;
        let val_loss = if val.is_empty() {
            train_loss
        } else {
            score::score_sequences(self.model, val, encoding, args.settings.batch_size * 2, args.device)
                .scores()
                .bce
        };
        if !train_loss.is_finite() || !val_loss.is_finite() {
            // Checked before anything is saved: the files keep the last good epoch's state.
            bail!(
                "training diverged at epoch {epoch} (train loss {train_loss}, validation loss {val_loss}); {}; try \
                 a smaller --lr",
                if state.best_epoch > 0 {
                    format!("the best weights (epoch {}) are kept", state.best_epoch)
                } else {
                    "no weights were saved".to_string()
                }
            );
        }
        let seconds = started.elapsed().as_secs_f64();
        state.epochs_done = epoch;
        state.step = self.adam.step;
        // Under differential privacy the weights are the last epoch's: choosing an epoch by validation loss
        // would be one more look at the data, outside the accounting.
        let improved = val_loss < state.best_val_loss || self.setup.private.is_some();
        if improved {
            state.best_val_loss = val_loss;
            state.best_epoch = epoch;
            save_weights(&args.out.join(ck::WEIGHTS), self.vs, &[])?;
        }
        let records = self.setup.corpus.train.len();
        // The log line first, in one write: a kill after it and before the state is saved leaves a line that
        // the resume drops (`resume::trim_log`), never a state without its line.
        let mut line = serde_json::json!({
            "epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "best": improved,
            "seconds": seconds, "records_per_s": records as f64 / seconds,
        });
        if let Some(summary) = &dp_line {
            line["dp"] = serde_json::to_value(summary)?;
        }
        self.log.write_all(format!("{line}\n").as_bytes())?;
        self.log.flush()?;
        save_last(&args.out, self.vs, self.adam, state)?;
        if !args.quiet {
            let privacy = dp_line.as_ref().map_or(String::new(), |s| {
                format!(
                    "  epsilon {:.3}, {:.0}% of records clipped (median norm {:.3})",
                    s.epsilon,
                    100.0 * s.clipped_share,
                    s.median_norm
                )
            });
            eprintln!(
                "epoch {epoch:>3}/{}: train loss {train_loss:.5}  val loss {val_loss:.5}{}  {seconds:.1}s ({:.0} records/s){privacy}",
                args.epochs,
                if improved && dp_line.is_none() { " *" } else { "" },
                records as f64 / seconds
            );
        }
        Ok(())
    }

    /// The epoch's training steps, in an order seeded by (seed, epoch) so that a resumed run sees the same
    /// batches and dropout masks as an uninterrupted one; the mean training loss.
    fn train_steps(&mut self, epoch: usize) -> Result<f64> {
        let (args, train) = (self.args, &self.setup.corpus.train);
        let mut order: Vec<usize> = (0..train.len()).collect();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
            args.settings.seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64),
        );
        order.shuffle(&mut rng);
        tch::manual_seed(args.settings.seed.wrapping_mul(1_000_033).wrapping_add(epoch as u64) as i64);
        let n_batches = order.len().div_ceil(args.settings.batch_size);
        let show_progress = !args.quiet && std::io::stderr().is_terminal();
        let bar = progress_bar(n_batches as u64, epoch, args.epochs, show_progress);
        let mut loss_sum = 0.0;
        for chunk in order.chunks(args.settings.batch_size) {
            let sequences: Vec<_> = chunk.iter().map(|i| train.get(*i)).collect();
            let refs: Vec<_> = sequences.iter().collect();
            let batch = data::make_batch(&refs, &self.setup.encoding, args.device);
            self.adam.zero_grad();
            let loss = score::loss(self.model, &batch, args.settings.noise());
            loss.backward();
            self.adam.step();
            let l = loss.double_value(&[]);
            if !l.is_finite() {
                bail!(
                    "training diverged at epoch {epoch} (loss {l}); the files keep the state after epoch {}; try a \
                     smaller --lr",
                    epoch - 1
                );
            }
            loss_sum += l * chunk.len() as f64;
            bar.set_message(format!("loss {l:.5}"));
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok(loss_sum / train.len() as f64)
    }
}

/// What an epoch of DP-SGD did, in its log line.
#[derive(Debug, serde::Serialize)]
struct DpEpoch {
    /// Spent after this epoch's last step (the initialisation included).
    epsilon: f64,
    /// Records drawn this epoch (Poisson sampling: about one pass).
    records_drawn: usize,
    /// Share of the drawn records whose gradient norm exceeded the bound.
    clipped_share: f64,
    median_norm: f64,
}

impl Run<'_> {
    /// The epoch's DP-SGD steps (`crate::dp`): global steps (epoch - 1) * steps_per_epoch + 1 ..= epoch *
    /// steps_per_epoch, each a Poisson sample of the records, their clipped gradients summed, Gaussian noise
    /// of standard deviation sigma C added, divided by the expected batch size q N (the standard choice, so
    /// that the scale does not depend on the batch drawn), then Adam's update. The sample, the dropout masks
    /// and the noise of a step are seeded by (seed, step). Returns the mean training loss per scored entry.
    fn private_steps(&mut self, epoch: usize, private: &Private) -> Result<(f64, DpEpoch)> {
        let (args, train, plan) = (self.args, &self.setup.corpus.train, &private.plan);
        let seed = args.settings.seed;
        let first = (epoch as u64 - 1) * plan.steps_per_epoch + 1;
        let last = (epoch as u64 * plan.steps_per_epoch).min(plan.planned_steps);
        let show_progress = !args.quiet && std::io::stderr().is_terminal();
        let bar = progress_bar(last + 1 - first, epoch, args.epochs, show_progress);
        let noise_std = plan.noise_multiplier * plan.max_grad_norm;
        let expected_batch = plan.sample_rate * plan.records as f64;
        let (mut loss_sum, mut entries) = (0.0, 0.0);
        let mut norms: Vec<f64> = Vec::new();
        for step in first..=last {
            if self.adam.step as u64 != step - 1 {
                bail!("internal: DP step {step} after optimizer step {}", self.adam.step);
            }
            let drawn = dp::sampling::poisson_batch(plan.records, plan.sample_rate, seed, step);
            tch::manual_seed(dp::sampling::step_seed(seed, step));
            self.adam.zero_grad();
            let (mut sequences, mut record_of) = (Vec::new(), Vec::new());
            for (r, &record) in drawn.iter().enumerate() {
                for &i in &private.records[record] {
                    sequences.push(train.get(i));
                    record_of.push(r);
                }
            }
            if !sequences.is_empty() {
                let refs: Vec<_> = sequences.iter().collect();
                let batch = data::make_batch(&refs, &self.setup.encoding, args.device);
                let records = Records::new(&record_of, args.device);
                let clipped =
                    dp::clipped_backward(self.model, &batch, &records, args.settings.noise(), plan.max_grad_norm);
                let l = clipped.losses.sum(Kind::Double).double_value(&[]);
                if !l.is_finite() {
                    bail!(
                        "training diverged at epoch {epoch} (loss {l}); the files keep the state after epoch {}; try \
                         a smaller --lr",
                        epoch - 1
                    );
                }
                loss_sum += l;
                entries += batch.rows.size()[0] as f64 * self.setup.encoding.vocab_size() as f64;
                norms.extend(Vec::<f64>::try_from(clipped.norms.to_kind(Kind::Double))?);
            }
            // Noise drawn in the optimizer's (name) order after the step's seed and dropout: reproducible.
            self.adam.step_with(|p| {
                let g = p.grad();
                let sum = if g.defined() { g } else { p.zeros_like() };
                Some((sum + p.randn_like() * noise_std) / expected_batch)
            });
            bar.inc(1);
        }
        bar.finish_and_clear();
        let clipped = norms.iter().filter(|n| **n > plan.max_grad_norm).count();
        norms.sort_by(f64::total_cmp);
        let summary = DpEpoch {
            epsilon: plan.epsilon_after(last, &private.spent_before),
            records_drawn: norms.len(),
            clipped_share: clipped as f64 / norms.len().max(1) as f64,
            median_norm: norms.get(norms.len() / 2).copied().unwrap_or(0.0),
        };
        Ok((loss_sum / entries.max(1.0), summary))
    }
}

fn progress_bar(len: u64, epoch: usize, epochs: usize, visible: bool) -> indicatif::ProgressBar {
    if !visible {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "epoch {epoch}/{epochs} [{{bar:30}}] {{pos}}/{{len}} batches {{per_sec}} {{msg}}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
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
