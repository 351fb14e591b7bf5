//! Errors of the sampler library. Every message names the file, flag or field at fault and says what
//! was expected.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading a record, manifest or other file of the shared data model.
    #[error(transparent)]
    Core(#[from] halo_core::Error),
    /// A file of the model directory is wrong (checksum, shapes, ONNX Runtime could not load it).
    #[error("{}: {message}", path.display())]
    Model { path: PathBuf, message: String },
    /// ONNX Runtime itself: the library could not be found or loaded, or a run failed.
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    /// A `--condition` that names an unknown label or is malformed.
    #[error("condition {source_name}: {message}")]
    Condition { source_name: String, message: String },
    /// Invalid options (a count of zero, a shard outside its range, ...).
    #[error("{0}")]
    Invalid(String),
    // The io error is part of the message, not a `source`: an error chain printed with `{:#}` would
    // repeat it.
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn model(path: &Path, message: impl Into<String>) -> Error {
        Error::Model {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
    pub fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            error: source,
        }
    }
    pub fn runtime(message: impl std::fmt::Display) -> Error {
        Error::Runtime(message.to_string())
    }
}
