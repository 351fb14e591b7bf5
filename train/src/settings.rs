//! What `halo train` is asked for: where the records come from ([`TrainInput`]), the run's arguments
//! ([`TrainArgs`]) and the options that shape its result ([`TrainSettings`], the serde type `--resume`
//! compares).

use crate::model::Noise;
use crate::train::{DEFAULT_DROPOUT, DEFAULT_PREFIX_DROPOUT, DEFAULT_WEIGHT_DECAY};
use halo_core::config::Preset;
use halo_core::encoding::EncodingOptions;
use halo_core::{Format, ReadOptions};
use std::path::PathBuf;
use tch::Device;

/// What a run learns from.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainInput {
    /// Records (OMOP, MEDS or JSONL), prepared into the checkpoint's `corpus/` first.
    Data(PathBuf),
    /// A corpus written by `halo prepare`, read where it is.
    Corpus(PathBuf),
}

/// The folder of a checkpoint that holds the corpus prepared from `--data`.
pub const CORPUS_DIR: &str = "corpus";

/// Everything `halo train` was asked for.
#[derive(Debug, Clone)]
pub struct TrainArgs {
    pub input: TrainInput,
    pub out: PathBuf,
    pub format: Option<Format>,
    pub read: ReadOptions,
    pub label_spec: Option<PathBuf>,
    pub split_file: Option<PathBuf>,
    pub epochs: usize,
    pub resume: bool,
    pub device: Device,
    pub quiet: bool,
    /// What shapes the result (recorded, and compared on resume).
    pub settings: TrainSettings,
}

/// The options of a run that shape its result: filled by the command line, recorded in
/// `train_state.json` ([`crate::resume::RunSettings`]) and compared field by field by `--resume`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainSettings {
    pub preset: Preset,
    /// Adam's learning rate; `None`: the preset's (recorded resolved).
    pub lr: Option<f64>,
    pub batch_size: usize,
    /// Seed of the split, the initial weights, the batch order and the code order.
    pub seed: u64,
    /// Overrides of the preset's sizes.
    pub n_embd: Option<usize>,
    pub n_layer: Option<usize>,
    pub n_head: Option<usize>,
    pub n_ctx: Option<usize>,
    /// HALO-Coarse (no code-level module).
    pub coarse: bool,
    /// Embed the codes seen so far in each record ([`halo_core::config::ModelConfig::seen_codes`]).
    pub seen_codes: bool,
    /// A learnt bias per label value on every visit's logits ([`halo_core::config::ModelConfig::label_bias`]);
    /// on by default, absent (false) in the `train_state.json` of runs before it. Left out under differential
    /// privacy.
    #[serde(default)]
    pub label_bias: bool,
    /// Dropout in training (embeddings, the transformer's branches, the code module's hidden layer).
    pub dropout: f64,
    /// Probability that a code of a training visit is hidden from the code module's input (the visit so far,
    /// which each code is conditioned on), not from its targets: the module learns to go on from a visit with
    /// codes missing, as a sampled one has ([`crate::model::Noise::prefix_dropout`]). Absent (0) in the
    /// `train_state.json` of runs before it.
    #[serde(default)]
    pub prefix_dropout: f64,
    /// Decoupled (AdamW) weight decay of the weight matrices.
    pub weight_decay: f64,
    /// Start the output biases from the reference's uniform init instead of each code's training log-odds.
    pub reference_init: bool,
    /// How records are encoded (as asked; the context's visits and window stride are set from `n_ctx`).
    pub encoding: EncodingOptions,
    /// Train with differential privacy (DP-SGD, `crate::dp`); absent in runs without (and in their
    /// `train_state.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dp: Option<DpSettings>,
}

/// What `--dp-epsilon` asks for: the guarantee (epsilon, delta) for every record, each record's gradient
/// clipped to `max_grad_norm`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DpSettings {
    pub epsilon: f64,
    /// `None`: min(1e-5, 1 / training records) (`crate::dp::plan`).
    pub delta: Option<f64>,
    pub max_grad_norm: f64,
}

impl TrainSettings {
    /// The noise of a training step.
    pub fn noise(&self) -> Noise {
        Noise {
            dropout: self.dropout,
            prefix_dropout: self.prefix_dropout,
        }
    }
}

/// Default clipping bound of a record's gradient (`--dp-max-grad-norm`).
pub const DEFAULT_MAX_GRAD_NORM: f64 = 1.0;

impl Default for TrainSettings {
    fn default() -> TrainSettings {
        TrainSettings {
            preset: Preset::Small,
            lr: None,
            batch_size: 48,
            seed: halo_core::split::DEFAULT_SEED,
            n_embd: None,
            n_layer: None,
            n_head: None,
            n_ctx: None,
            coarse: false,
            seen_codes: true,
            label_bias: true,
            dropout: DEFAULT_DROPOUT,
            prefix_dropout: DEFAULT_PREFIX_DROPOUT,
            weight_decay: DEFAULT_WEIGHT_DECAY,
            reference_init: false,
            encoding: EncodingOptions::default(),
            dp: None,
        }
    }
}
