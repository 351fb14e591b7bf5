//! halo-core: the data model shared by the trainer (`halo`), the exporter and the sampler (`halo-sample`).
//!
//! - [`record`]: patients, visits, codes and lab values; the one data model of every crate.
//! - [`jsonl`], [`omop`], [`meds`]: readers (and writers) of the three record formats; [`omop_write`]:
//!   records as OMOP CDM 5.4 tables (what `halo-sample --format omop` writes and [`omop`] reads back).
//! - [`encoding`]: HALO's vocabulary and the encoding of a patient as visits of code indices.
//! - [`buckets`]: bucket edges of gaps, ages and lab values (rounded, top-coded: no patient's exact value).
//! - [`source`]: records passed over one patient at a time (what `halo prepare` streams).
//! - [`corpus`]: records encoded once into memory-mapped token arrays (`halo prepare`).
//! - [`config`], [`manifest`]: the on-disk contracts of checkpoints and model directories.
//! - [`privacy`]: differential privacy: the RDP accountant and the noise DP-SGD needs for a target ε.

pub mod bounds;
pub mod buckets;
pub mod checkpoint;
pub mod config;
pub mod corpus;
pub mod encoding;
pub mod error;
pub mod fsutil;
pub mod interner;
pub mod jsonl;
pub mod keyword;
pub mod label_spec;
pub mod manifest;
pub mod meds;
pub mod omop;
pub mod omop_write;
pub mod privacy;
pub mod record;
pub mod source;
pub mod split;
pub mod threads;
pub mod time;

pub use error::{Error, Result};
use record::{Dataset, Patient, ReadReport};
use std::path::Path;

/// Input formats of `halo train`, `halo test` and `halo evaluate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// OMOP CDM 5.4 CSV folder (person.csv, visit_occurrence.csv, ...).
    Omop,
    /// MEDS folder (`data/**/*.parquet`) or a single MEDS parquet file.
    Meds,
    /// JSONL records (one patient a line).
    Jsonl,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Format, String> {
        keyword::parse_keyword(
            s,
            "format",
            &[("omop", Format::Omop), ("meds", Format::Meds), ("jsonl", Format::Jsonl)],
        )
    }
}

impl Format {
    /// Detects the format of a path: a `.jsonl` file, a `.parquet` file or a folder with `data/`
    /// (MEDS), or a folder with `person.csv` (OMOP).
    pub fn detect(path: &Path) -> Result<Format> {
        if path.is_file() {
            let name = path.to_string_lossy().to_ascii_lowercase();
            let name = name.strip_suffix(".gz").unwrap_or(&name);
            if name.ends_with(".jsonl") || name.ends_with(".json") || name.ends_with(".ndjson") {
                return Ok(Format::Jsonl);
            }
            if name.ends_with(".parquet") {
                return Ok(Format::Meds);
            }
            return Err(Error::file(
                path,
                "cannot tell the format of this file (expected .jsonl, .jsonl.gz or .parquet; or give --format)",
            ));
        }
        if !path.exists() {
            return Err(Error::file(path, "no such file or folder"));
        }
        let has_person_table = std::fs::read_dir(path)
            .map(|d| {
                d.flatten()
                    .any(|e| crate::omop::is_table_file(&e.file_name().to_string_lossy(), "person"))
            })
            .unwrap_or(false);
        if has_person_table {
            return Ok(Format::Omop);
        }
        if path.join("data").is_dir() {
            return Ok(Format::Meds);
        }
        Err(Error::file(
            path,
            "cannot tell the format of this folder (expected person.csv for OMOP CDM, or data/*.parquet for MEDS; or give --format)",
        ))
    }
}

/// Options of the readers.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// MEDS: events of one subject within this many seconds of a visit's first event join that visit;
    /// `None` means the same calendar day.
    pub meds_visit_window_seconds: Option<i64>,
    /// Plausible years and lab values; what lies outside is dropped and counted.
    pub bounds: bounds::Bounds,
}

/// Reads patients from `path` in `format` (detected when `None`), then drops and counts what lies outside
/// [`ReadOptions::bounds`].
pub fn read_dataset(path: &Path, format: Option<Format>, options: &ReadOptions) -> Result<Dataset> {
    source::Records::open(path, format, options)?.into_dataset()
}

/// Puts visits in time order (stable; visits without a time keep their place relative to each other)
/// and counts the records that needed it.
pub fn sort_visits(p: &mut Patient, report: &mut ReadReport) {
    let days = time::visit_days(p);
    if days.iter().any(Option::is_none) {
        return;
    }
    let sorted = days.windows(2).all(|w| w[0] <= w[1]);
    if !sorted {
        let mut paired: Vec<_> = days.into_iter().zip(std::mem::take(&mut p.visits)).collect();
        paired.sort_by(|a, b| a.0.unwrap().total_cmp(&b.0.unwrap()));
        p.visits = paired.into_iter().map(|(_, v)| v).collect();
        report.skip("records with visits out of time order (sorted)");
        // Day offsets are relative to the first visit; re-base them after sorting.
        if let Some(first) = p.visits.first().and_then(|v| v.day) {
            for v in &mut p.visits {
                if let Some(d) = v.day.as_mut() {
                    *d -= first;
                }
            }
        }
    }
}
