use std::path::PathBuf;

/// Why an evaluation could not be done or written.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("the synthetic data set has no records with visits ({records} records read, all without visits); nothing to evaluate")]
    EmptySynthetic { records: usize },
    #[error("none of the {occurrences} synthetic code occurrences is a code of the real data (e.g. {examples}): were the synthetic records sampled from a model trained on these real records, in the same format?")]
    NoCommonCodes { occurrences: usize, examples: String },
    #[error("the real data has no {split} records with visits under the split ({hint})")]
    EmptySplit { split: &'static str, hint: String },
    #[error("{what}: expected {expected} values, got {got} ({hint})")]
    Length {
        what: &'static str,
        expected: usize,
        got: usize,
        hint: &'static str,
    },
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
    // The io error is part of the message, not a `source`: an error chain printed with `{:#}` would repeat it.
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },
    #[error(transparent)]
    Core(#[from] halo_core::Error),
}
