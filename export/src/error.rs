use std::path::PathBuf;

/// Why an export (or reading a checkpoint) failed. Each variant names the file or folder concerned.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A JSON file of the checkpoint, an I/O error, or a contract check from halo-core.
    #[error(transparent)]
    Core(#[from] halo_core::Error),

    #[error("{}: not a readable safetensors file: {message}", path.display())]
    Weights { path: PathBuf, message: String },

    #[error(
        "{}: tensor `{name}` is missing (config.json expects shape {expected:?})",
        path.display()
    )]
    MissingTensor {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
    },

    #[error(
        "{}: tensor `{name}` has shape {found:?} but config.json expects {expected:?}",
        path.display()
    )]
    ShapeMismatch {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    #[error("{}: {message}", path.display())]
    Output { path: PathBuf, message: String },

    #[error("{0}")]
    Invalid(String),

    /// A step run on the complete model directory before it is moved into place.
    #[error("finishing the model directory")]
    Finish(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type Result<T, E = ExportError> = std::result::Result<T, E>;

impl ExportError {
    pub(crate) fn io(path: &std::path::Path, e: std::io::Error) -> ExportError {
        ExportError::Core(halo_core::Error::io(path, e))
    }
}
