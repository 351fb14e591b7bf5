//! A checkpoint folder written by `halo train`, read and checked in one place for the trainer (`halo test`,
//! `halo evaluate`, `--resume`) and the exporter: the config is valid, the encoding is valid and matches the
//! config's vocabulary, the split and the label spec parse, and the weights file is there. The weights
//! themselves are read by each user in its own tensor type (libtorch, or plain f32 for the exporter).

use crate::config::ModelConfig;
use crate::encoding::Encoding;
use crate::error::{Error, Result};
use crate::fsutil::read_json;
use crate::label_spec::LabelSpec;
use crate::manifest::{checkpoint as files, TrainingSummary};
use crate::privacy::PrivacyLedger;
use crate::split::SplitAssignment;
use std::path::{Path, PathBuf};

/// Everything of a checkpoint folder but its weights.
#[derive(Debug, Clone)]
pub struct CheckpointFolder {
    pub dir: PathBuf,
    pub config: ModelConfig,
    pub encoding: Encoding,
    pub split: SplitAssignment,
    /// The phenotype label spec the records were labelled with; none when the records carried labels.
    pub spec: Option<LabelSpec>,
    /// What the model was trained on; the default when `training.json` is absent.
    pub training: TrainingSummary,
    /// The differential privacy ledger (`privacy.json`, written by a run with DP-SGD); none otherwise.
    pub privacy: Option<PrivacyLedger>,
}

impl CheckpointFolder {
    /// Reads and checks the folder of a finished run; names the first missing file or inconsistent field.
    pub fn read(dir: &Path) -> Result<CheckpointFolder> {
        Self::read_files(dir, true)
    }

    /// As [`CheckpointFolder::read`], for a run in progress (`--resume`), whose best weights may not be
    /// written yet.
    pub fn read_unfinished(dir: &Path) -> Result<CheckpointFolder> {
        Self::read_files(dir, false)
    }

    fn read_files(dir: &Path, finished: bool) -> Result<CheckpointFolder> {
        let missing = |what: &str| {
            Error::file(
                dir,
                format!(
                    "not a checkpoint folder: expected {}, {}, {} and {} (written by `halo train --out`), but \
                     {what} is missing",
                    files::CONFIG,
                    files::ENCODING,
                    files::SPLIT,
                    files::WEIGHTS
                ),
            )
        };
        if !dir.is_dir() {
            return Err(missing("the folder itself"));
        }
        let required = [files::CONFIG, files::ENCODING, files::SPLIT, files::WEIGHTS];
        for name in &required[..if finished { 4 } else { 3 }] {
            if !dir.join(name).is_file() {
                return Err(missing(name));
            }
        }
        let config = ModelConfig::read(&dir.join(files::CONFIG))?;
        let encoding_path = dir.join(files::ENCODING);
        let encoding: Encoding = read_json(&encoding_path, "HALO encoding.json")?;
        encoding.validate(&encoding_path)?;
        if encoding.vocab_size() != config.total_vocab_size
            || encoding.code_vocab_size != config.code_vocab_size
            || encoding.label_vocab_size != config.label_vocab_size
        {
            return Err(Error::field(
                &encoding_path,
                "tokens",
                format!(
                    "{} tokens ({} codes, {} labels) but {} has total_vocab_size {} ({} codes, {} labels)",
                    encoding.vocab_size(),
                    encoding.code_vocab_size,
                    encoding.label_vocab_size,
                    files::CONFIG,
                    config.total_vocab_size,
                    config.code_vocab_size,
                    config.label_vocab_size
                ),
            ));
        }
        let split: SplitAssignment = read_json(&dir.join(files::SPLIT), "split")?;
        let spec_path = dir.join(files::LABEL_SPEC);
        let spec = if spec_path.is_file() {
            Some(LabelSpec::read(&spec_path)?)
        } else {
            None
        };
        let training_path = dir.join(files::TRAINING);
        let training = if training_path.is_file() {
            read_json(&training_path, "training summary")?
        } else {
            TrainingSummary::default()
        };
        let privacy = PrivacyLedger::read_in(dir)?;
        Ok(CheckpointFolder {
            dir: dir.to_path_buf(),
            config,
            encoding,
            split,
            spec,
            training,
            privacy,
        })
    }

    /// The best epoch's weights (`weights.safetensors`).
    pub fn weights_path(&self) -> PathBuf {
        self.dir.join(files::WEIGHTS)
    }
}
