//! The contracts between trainer, exporter and sampler: checkpoint file names, the model directory's
//! `manifest.json`, and the ONNX graphs' input and output names.

use crate::config::ModelConfig;
use crate::encoding::Encoding;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Files of a checkpoint folder (written by `halo train`, read by `halo export` without libtorch).
pub mod checkpoint {
    pub const CONFIG: &str = "config.json";
    pub const ENCODING: &str = "encoding.json";
    pub const LABEL_SPEC: &str = "label_spec.json";
    pub const SPLIT: &str = "split.json";
    /// Weights of the epoch with the best validation loss.
    pub const WEIGHTS: &str = "weights.safetensors";
    /// Weights, optimizer moments and counters of the last finished epoch in one file, so that
    /// `--resume` always finds a consistent state (it is replaced atomically after every epoch).
    pub const LAST: &str = "last.safetensors";
    /// Human-readable mirror of the counters in `last.safetensors`.
    pub const TRAIN_STATE: &str = "train_state.json";
    pub const TRAINING: &str = "training.json";
    pub const LOG: &str = "log.jsonl";
    /// The privacy ledger of a run trained with differential privacy (absent otherwise).
    pub const PRIVACY: &str = crate::privacy::PRIVACY_FILE;
}

/// ONNX graph file names and their input/output names.
pub mod graph;
/// What the model was trained on, for the sampler to print and the evaluator to compare.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingSummary {
    pub records: usize,
    pub train_records: usize,
    pub mean_visits: f64,
    pub mean_codes_per_visit: f64,
    /// Where the data were read (the checkpoint keeps it for `halo test`); empty in model directories,
    /// which leave the training machine.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// What the small-cell rule left out of the vocabulary (counts only).
    #[serde(default)]
    pub left_out: crate::encoding::LeftOut,
    /// Given labels found to partition the records, sampled as exclusive groups (`Encoding::label_groups`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclusive_label_groups: Vec<String>,
    /// Share of each gap bucket among the training records' gaps (`Encoding::gap_bucket_shares`); empty
    /// without gaps, and in checkpoints written before it was recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gap_bucket_shares: Vec<f64>,
    /// Share of each visit-size bucket among the training visits (`Encoding::visit_size_shares`); empty
    /// without the size group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub visit_size_shares: Vec<f64>,
    /// Share of each value of the visit-type group among the training visits (`Encoding::visit_type_shares`);
    /// empty without the group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub visit_type_shares: Vec<f64>,
    /// Per demographic category (`Encoding::demographic_categories`, in order): the share of each value among
    /// the training patients (`encoding::Shares::demographics`); empty under differential privacy, without
    /// demographics, and in checkpoints written before it was recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub demographic_shares: Vec<Vec<f64>>,
    /// Per birth decade (the `birth_year` category's values, in order): the share of each calendar bucket
    /// among the first visits of that decade's training records (`encoding::Shares::first_calendar`), `null`
    /// where fewer than `min_patients` records hold it; empty under differential privacy, without the
    /// calendar and age groups, and in checkpoints written before it was recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub first_calendar_shares: Vec<Vec<Option<f64>>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnnxFile {
    pub name: String,
    pub sha256: String,
    /// The graph's weights when stored beside it as external data (graphs past protobuf's 2 GB limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_data: Option<DataFile>,
}

/// An external weights file and its checksum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataFile {
    pub name: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestFiles {
    pub visit_transformer: OnnxFile,
    pub visit_transformer_step: OnnxFile,
    pub code_head: OnnxFile,
    /// The code-level module split for incremental sampling (format version 2; absent for HALO-Coarse
    /// models and in directories of format version 1, which samplers run through `code_head`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_head_incremental: Option<IncrementalHeadFiles>,
    /// The code-level module for the sampler's own kernel (format version 5; absent for HALO-Coarse models
    /// and in older directories). Layout: [`NativeCodeModule`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_module: Option<DataFile>,
    /// The step graph's input embeddings (format version 8; absent in older directories): see
    /// [`graph::VISIT_EMBEDDINGS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visit_embeddings: Option<DataFile>,
    /// The label bias (format version 9, models with `ModelConfig::label_bias`): see [`graph::LABEL_BIAS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_bias: Option<DataFile>,
}

/// Layout of [`graph::CODE_MODULE`]: the masked code-level module of a model with E = n_embd and V =
/// total_vocab_size, H = E + V - 1 used hidden units, as little-endian f32 (fp16-rounded weights in fp16
/// exports; biases as trained), in four parts:
/// 1. auto1's bias, H values;
/// 2. auto1's weights: first the history inputs in panels of BLOCK hidden units (for panel k, units
///    k BLOCK ..: for each history input i in 0..E, its weights to the panel's units, BLOCK values, zero
///    where the mask cuts and past H), then for each visit code's input i in E..H, rows i..H of column i
///    (the rows the mask keeps), H - i values each;
/// 3. auto2's logit weights in panels of [`NativeCodeModule::BLOCK`] codes: for block b (codes
///    b BLOCK .. end_b, end_b = min((b + 1) BLOCK, V)), for each hidden unit h in 0..E + end_b - 1 (the
///    units its logits read; the logit of code j reads units up to E - 1 + j), the unit's weights to the
///    block's codes: BLOCK values, zero where the mask cuts (codes before h - E + 1, and past V);
/// 4. the logits' bias, V values.
///
/// So a sampler keeps a row's pre-activations, adds one column when a code is set, and sums a block's
/// logits unit by unit from one contiguous panel, each weight once per visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NativeCodeModule {
    pub n_embd: usize,
    pub vocab: usize,
}

impl NativeCodeModule {
    /// Codes per panel.
    pub const BLOCK: usize = 64;

    pub fn of(config: &crate::config::ModelConfig) -> NativeCodeModule {
        NativeCodeModule {
            n_embd: config.n_embd,
            vocab: config.total_vocab_size,
        }
    }

    /// Used hidden units H.
    pub fn hidden(&self) -> usize {
        self.n_embd + self.vocab - 1
    }

    /// Panels of hidden units of the history inputs' weights.
    pub fn history_panels(&self) -> usize {
        self.hidden().div_ceil(Self::BLOCK)
    }

    /// Offset (in values, within part 2) of the column of visit input i (E <= i <= H).
    pub fn column_offset(&self, i: usize) -> usize {
        let (h, e) = (self.hidden(), self.n_embd);
        let columns_before = |i: usize| i * h - i * i.saturating_sub(1) / 2;
        self.history_panels() * e * Self::BLOCK + columns_before(i) - columns_before(e)
    }

    /// First code whose logit reads hidden unit `h`.
    pub fn first_code(&self, h: usize) -> usize {
        (h + 1).saturating_sub(self.n_embd)
    }

    /// Number of panels.
    pub fn blocks(&self) -> usize {
        self.vocab.div_ceil(Self::BLOCK)
    }

    /// Codes of panel `b`.
    pub fn block_codes(&self, b: usize) -> std::ops::Range<usize> {
        b * Self::BLOCK..((b + 1) * Self::BLOCK).min(self.vocab)
    }

    /// Hidden units panel `b` holds: those its codes' logits read.
    pub fn block_units(&self, b: usize) -> usize {
        self.n_embd + self.block_codes(b).end - 1
    }

    /// Offset (in values, within part 3) of each panel, and part 3's length last.
    pub fn panel_offsets(&self) -> Vec<usize> {
        let mut at = 0;
        let mut out = Vec::with_capacity(self.blocks() + 1);
        for b in 0..self.blocks() {
            out.push(at);
            at += self.block_units(b) * Self::BLOCK;
        }
        out.push(at);
        out
    }

    /// Values of each part, in order.
    pub fn part_lengths(&self) -> [usize; 4] {
        let h = self.hidden();
        let panels = *self.panel_offsets().last().expect("one entry at least");
        [h, self.column_offset(h), panels, self.vocab]
    }

    /// Values in the file.
    pub fn values(&self) -> usize {
        self.part_lengths().iter().sum()
    }
}

/// Files of the incremental code module ([`graph::CODE_HEAD_START`], the block graphs
/// [`graph::block_file_name`], [`graph::CODE_HEAD_COLUMNS`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncrementalHeadFiles {
    pub start: OnnxFile,
    /// Codes per block (the last block may be shorter).
    pub block_len: usize,
    /// One graph per block, in vocabulary order: ceil(V / block_len) of them.
    pub blocks: Vec<OnnxFile>,
    pub columns: DataFile,
}

impl ManifestFiles {
    /// Every file the manifest names: (manifest field, file name, sha256), in loading order.
    pub fn all(&self) -> Vec<(String, &str, &str)> {
        fn onnx<'a>(field: String, f: &'a OnnxFile, out: &mut Vec<(String, &'a str, &'a str)>) {
            out.push((format!("{field}.name"), f.name.as_str(), f.sha256.as_str()));
            if let Some(d) = &f.external_data {
                out.push((
                    format!("{field}.external_data.name"),
                    d.name.as_str(),
                    d.sha256.as_str(),
                ));
            }
        }
        let mut out = Vec::new();
        onnx("files.visit_transformer".into(), &self.visit_transformer, &mut out);
        onnx(
            "files.visit_transformer_step".into(),
            &self.visit_transformer_step,
            &mut out,
        );
        onnx("files.code_head".into(), &self.code_head, &mut out);
        if let Some(inc) = &self.code_head_incremental {
            onnx("files.code_head_incremental.start".into(), &inc.start, &mut out);
            for (b, block) in inc.blocks.iter().enumerate() {
                onnx(format!("files.code_head_incremental.blocks[{b}]"), block, &mut out);
            }
            out.push((
                "files.code_head_incremental.columns.name".into(),
                inc.columns.name.as_str(),
                inc.columns.sha256.as_str(),
            ));
        }
        if let Some(m) = &self.code_module {
            out.push(("files.code_module.name".into(), m.name.as_str(), m.sha256.as_str()));
        }
        if let Some(m) = &self.visit_embeddings {
            out.push(("files.visit_embeddings.name".into(), m.name.as_str(), m.sha256.as_str()));
        }
        if let Some(m) = &self.label_bias {
            out.push(("files.label_bias.name".into(), m.name.as_str(), m.sha256.as_str()));
        }
        out
    }
}

/// Whether `name` names a file directly inside the model folder: not empty, not `.` or `..`, no path
/// separator (so no absolute path and no way out of the folder).
pub fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

impl IncrementalHeadFiles {
    /// Vocabulary indices of block `b` of a model with `v` entries.
    pub fn block_codes(&self, b: usize, v: usize) -> std::ops::Range<usize> {
        b * self.block_len..((b + 1) * self.block_len).min(v)
    }

    /// Number of f32 values in the columns file of a model with `v` vocabulary entries.
    pub fn column_values(v: usize) -> usize {
        v * v.saturating_sub(1) / 2
    }

    /// Offset (in values) of code `k`'s column in the columns file; it holds `v - 1 - k` values.
    pub fn column_offset(v: usize, k: usize) -> usize {
        k * (v - 1) - k * k.saturating_sub(1) / 2
    }
}

/// Digest of the first records sampled at a fixed seed on CPU, for `halo-sample verify`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyDigest {
    pub seed: u64,
    pub count: usize,
    /// sha256 of each record's canonical JSON line, in order.
    pub records: Vec<String>,
    /// Per record: short sha256 (16 hex digits) of its sampled label visit, then of each sampled visit
    /// (vocabulary indices), so that `halo-sample verify` can tell from which visit a record differs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub visits: Vec<Vec<String>>,
}

/// `manifest.json` of a model directory: everything a sampler needs besides the ONNX files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub model: ModelConfig,
    pub encoding: Encoding,
    pub files: ManifestFiles,
    pub ir_version: i64,
    pub opset: i64,
    /// How the weights are stored (inputs and outputs stay fp32).
    pub precision: Precision,
    pub training: TrainingSummary,
    /// The sampling calibration `halo export` fitted (absent: none, the offset is 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<SamplingCalibration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyDigest>,
    /// The differential privacy ledger of the training (absent: not trained with differential privacy).
    /// Part of the manifest, so covered by its signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<crate::privacy::PrivacyLedger>,
}

/// What `halo export` fits so that sampled records match two aggregates of the training records: one
/// offset added to the logit of every code drawn on its own (not the end code, not a code of an exclusive
/// group, not a label), for the mean visit size, and one weight per gap bucket, multiplying the bucket's
/// weight in the gap group's draw, for the gap histogram. Why they are needed: drawing a record visit by
/// visit and code by code drifts from the data (a code left out lowers the probability of the codes the
/// model learnt to expect beside it; a history of sampled visits calls for other gaps than the true one),
/// although the model's teacher-forced probabilities add up to the data's counts. Fitted from aggregates
/// only (the training visits' mean size, the gap histogram's shares), so they carry nothing of single records.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SamplingCalibration {
    pub code_logit_offset: f32,
    /// Natural log of each gap bucket's weight factor, in bucket order; empty: all 1.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gap_log_weights: Vec<f32>,
    /// Natural log of each visit-size bucket's weight factor, in bucket order; empty: all 1.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub size_log_weights: Vec<f32>,
    /// Natural log of each visit type's weight factor, in the group's order; empty: all 1.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub visit_type_log_weights: Vec<f32>,
    /// Per demographic category of the label visit (`Encoding::demographic_categories`, in order): natural log of
    /// each value's weight factor; empty: all 1.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub demographic_log_weights: Vec<Vec<f32>>,
    /// Per birth decade (the values of the `birth_year` demographic category, in order): natural log of each
    /// calendar bucket's weight on a record's first visit (format 10 on, `FIRST_VISIT_DATES_FORMAT`); empty:
    /// all 1. The model learns where a record starts in time from one visit a record and drew the demo's last
    /// bucket (2010 on) for 1% of the persons born in the 1980s, against 14% in the data.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub first_calendar_log_weights: Vec<Vec<f32>>,
    /// The mean over the birth decades (weighted by the training records) of the total variation distance
    /// between the first visits' sampled calendar shares and `TrainingSummary::first_calendar_shares`, without
    /// and with the calibration (absent without targets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncalibrated_first_calendar_tvd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibrated_first_calendar_tvd: Option<f64>,
    /// The largest total variation distance between a demographic category's sampled shares and
    /// `TrainingSummary::demographic_shares`, without and with the calibration (absent without targets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncalibrated_demographic_tvd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibrated_demographic_tvd: Option<f64>,
    /// Total variation distance between the sampled visit-size histogram and
    /// `TrainingSummary::visit_size_shares`, without and with the calibration (absent without the group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncalibrated_size_tvd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibrated_size_tvd: Option<f64>,
    /// The same for the visit types (`TrainingSummary::visit_type_shares`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncalibrated_visit_type_tvd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibrated_visit_type_tvd: Option<f64>,
    /// Total variation distance between the sampled gap histogram and `TrainingSummary::gap_bucket_shares`,
    /// without and with the calibration (absent when the model has no gap target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncalibrated_gap_tvd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibrated_gap_tvd: Option<f64>,
    /// Mean codes per visit of the training split as the model saw it (`TrainingSummary`).
    pub target_codes_per_visit: f64,
    /// Mean codes per visit of the calibration sample without the offset, and with it.
    pub uncalibrated_codes_per_visit: f64,
    pub calibrated_codes_per_visit: f64,
    /// Records sampled for each evaluation of the offset (seed [`SamplingCalibration::SEED`]).
    pub records: usize,
}

impl SamplingCalibration {
    /// Seed of the calibration samples (apart from the verify digest's seed 0).
    pub const SEED: u64 = 0xCA1B;
}

/// How the weights are stored in the graphs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Fp32,
    /// Weight matrices stored as fp16 and cast to fp32 inside the graph; inputs and outputs stay fp32.
    Fp16,
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Precision, String> {
        crate::keyword::parse_keyword(s, "precision", &[("fp32", Precision::Fp32), ("fp16", Precision::Fp16)])
    }
}

impl Precision {
    /// The manifest's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
        }
    }
}

pub const MANIFEST: &str = "manifest.json";
/// The detached minisign signature of `manifest.json` (`halo export --sign`); the manifest names the sha256
/// of every other file, so the signature covers the whole model directory.
pub const SIGNATURE: &str = "manifest.json.minisig";
/// Version written. 2 added `files.code_head_incremental`; 3 added `model.seen_codes` (the step graph's `seen`
/// input, which a sampler of version 2 would not feed); 4 added visit types and visit sizes (token kinds a
/// version 3 sampler cannot read), the gap days inside a bucket (`Encoding::gap_quantiles_days`, which a
/// version 3 sampler would ignore and so date visits differently) and the calibration's visit-type and size
/// weights; 5 replaced the incremental files by `files.code_module` (the sampler's own kernel, which sums in
/// another order than ONNX Runtime, so its records differ from a version 4 sampler's in a few draws); 6 draws
/// the last visit type as what the types before it leave (the sampler's `VisitPlan::last_takes_rest`), which
/// changes the records, and adds the calendar group (`Token::Calendar`, set by the sampler from dates it draws
/// from a record's date stream as it samples); 7 puts the calendar group on the first visit too (its own year,
/// drawn by the model, which the first visit's date is then drawn inside: an older sampler would draw the code and
/// date the visit without it), the calibration's demographic weights, and the step graph's cache one tensor per
/// layer and role ([`graph::SPLIT_CACHE_FORMAT`]); 8 gives the step graph the visit's embedding, which the
/// sampler sums from `files.visit_embeddings` ([`graph::EMBEDDED_STEP_FORMAT`]; in another order than the
/// graph's multiplication, so a few draws differ from version 7's); 9 adds `files.label_bias`
/// ([`graph::LABEL_BIAS_FORMAT`], written only for a model with a label bias, which an older sampler would
/// leave out); 10 draws a record's first calendar and age buckets among those its birth decade can meet
/// ([`FIRST_VISIT_DATES_FORMAT`], written for an encoding with the three, whose records an older sampler
/// would draw otherwise). Version 1 to 9 directories are still read and sample as before (version 1 through
/// the dense `code_head`).
pub const MANIFEST_FORMAT_VERSION: u32 = 10;
/// The first version whose sampler draws a record's first visit's calendar bucket, and then its age bucket,
/// among those that a date of the record's birth decade can meet (`halo_infer`'s `FirstVisitDates`).
pub const FIRST_VISIT_DATES_FORMAT: u32 = 10;
/// The version `halo export` writes for a model: the newest whose additions the model uses (10 where the
/// encoding has the calendar and age groups and birth decades, 9 with a label bias, else 8, so that other
/// directories still sample on an older sampler).
pub fn written_format(model: &crate::config::ModelConfig, encoding: &crate::encoding::Encoding) -> u32 {
    if encoding.has_first_visit_dates() {
        FIRST_VISIT_DATES_FORMAT
    } else if model.label_bias {
        graph::LABEL_BIAS_FORMAT
    } else {
        graph::EMBEDDED_STEP_FORMAT
    }
}
/// Oldest version read.
pub const MANIFEST_OLDEST_VERSION: u32 = 1;

impl Manifest {
    pub fn read(dir: &Path) -> Result<Manifest> {
        if !dir.is_dir() {
            return Err(Error::file(
                dir,
                "model directory not found (expected a folder written by `halo export`)",
            ));
        }
        let path = dir.join(MANIFEST);
        let m: Manifest = crate::fsutil::read_json(&path, "model manifest")?;
        if m.format_version > MANIFEST_FORMAT_VERSION {
            return Err(Error::field(
                &path,
                "format_version",
                format!(
                    "{} is newer than this toolkit reads ({MANIFEST_OLDEST_VERSION} to {MANIFEST_FORMAT_VERSION}): \
                     the model was exported by a newer version; use a halo-sample of that version",
                    m.format_version
                ),
            ));
        }
        if m.format_version < MANIFEST_OLDEST_VERSION {
            return Err(Error::field(
                &path,
                "format_version",
                format!(
                    "{} is not supported (expected {MANIFEST_OLDEST_VERSION} to {MANIFEST_FORMAT_VERSION})",
                    m.format_version
                ),
            ));
        }
        if m.model.label_bias != m.files.label_bias.is_some() {
            let (file, flag) = match m.model.label_bias {
                true => ("absent", "with"),
                false => ("present", "without"),
            };
            return Err(Error::field(
                &path,
                "files.label_bias",
                format!("{file} for a model {flag} model.label_bias"),
            ));
        }
        check_parts_against_format(&m, &path)?;
        if let Some(inc) = &m.files.code_head_incremental {
            let v = m.model.total_vocab_size;
            let want = v.div_ceil(inc.block_len.max(1));
            if inc.block_len == 0 || inc.blocks.len() != want {
                return Err(Error::field(
                    &path,
                    "files.code_head_incremental.blocks",
                    format!(
                        "{} block graphs of {} codes for a vocabulary of {v} (expected {want} of a positive length)",
                        inc.blocks.len(),
                        inc.block_len
                    ),
                ));
            }
        }
        // Refused before anything is opened: a manifest must not point outside its folder.
        for (field, name, _) in m.files.all() {
            if !is_plain_file_name(name) {
                return Err(Error::field(
                    &path,
                    &field,
                    format!("`{name}` is not a plain file name inside the model folder (no path separators, not `..`)"),
                ));
            }
        }
        m.model.validate(&path)?;
        m.encoding.validate(&path)?;
        if let Some(ledger) = &m.privacy {
            ledger.check(&path)?;
        }
        if m.encoding.vocab_size() != m.model.total_vocab_size {
            return Err(Error::field(
                &path,
                "encoding.tokens",
                format!(
                    "{} tokens but model.total_vocab_size is {}",
                    m.encoding.vocab_size(),
                    m.model.total_vocab_size
                ),
            ));
        }
        Ok(m)
    }
}

/// Refuses a manifest holding a part that a later format than the one it claims added (a sampler of the
/// claimed version would not read it).
fn check_parts_against_format(m: &Manifest, path: &Path) -> Result<()> {
    let parts = [
        (
            "files.code_head_incremental",
            m.files.code_head_incremental.is_some(),
            2,
        ),
        ("model.seen_codes", m.model.seen_codes, 3),
        ("files.code_module", m.files.code_module.is_some(), 5),
        (
            "files.label_bias",
            m.files.label_bias.is_some(),
            graph::LABEL_BIAS_FORMAT,
        ),
    ];
    for (field, present, first) in parts {
        if present && m.format_version < first {
            return Err(Error::field(
                path,
                field,
                format!("needs format_version {first} or later"),
            ));
        }
    }
    Ok(())
}

/// Hex sha256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}
