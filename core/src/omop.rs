//! OMOP CDM 5.4 CSV reader (to be written).
use crate::error::{Error, Result};
use crate::record::Dataset;
use std::path::Path;

pub fn read_omop(dir: &Path) -> Result<Dataset> {
    Err(Error::file(dir, "OMOP reader not yet implemented"))
}
