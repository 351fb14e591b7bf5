//! MEDS reader and writer (to be written).
use crate::error::{Error, Result};
use crate::record::Dataset;
use crate::ReadOptions;
use std::path::Path;

pub fn read_meds(dir: &Path, _options: &ReadOptions) -> Result<Dataset> {
    Err(Error::file(dir, "MEDS reader not yet implemented"))
}
