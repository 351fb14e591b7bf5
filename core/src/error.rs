use std::path::{Path, PathBuf};

/// Errors from reading and writing records, vocabularies and model files.
/// Every variant names the file, and where it can the line or field, and says what was expected.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The io error is part of the message, not a `source`: an error chain printed with `{:#}` would
    // repeat it.
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{}:{line}: {message}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}: field `{field}`: {message}", path.display())]
    Field {
        path: PathBuf,
        field: String,
        message: String,
    },
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            error: source,
        }
    }
    pub fn line(path: &Path, line: usize, message: impl Into<String>) -> Error {
        Error::Line {
            path: path.to_path_buf(),
            line,
            message: message.into(),
        }
    }
    pub fn field(path: &Path, field: &str, message: impl Into<String>) -> Error {
        Error::Field {
            path: path.to_path_buf(),
            field: field.to_string(),
            message: message.into(),
        }
    }
    pub fn file(path: &Path, message: impl Into<String>) -> Error {
        Error::File {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}
