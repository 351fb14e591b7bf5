//! Writing sampled records: JSONL streamed into a temporary sibling file, OMOP CDM tables streamed into a
//! temporary sibling folder, or a MEDS folder, each moved to the requested path only when everything was
//! written. An existing output path is refused.

use crate::error::{Error, Result};
use crate::Sampled;
use halo_core::omop_write::{OmopCohort, OmopWriteReport, OmopWriter};
use halo_core::record::Patient;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

/// Output formats of `halo-sample`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// One JSON record a line (the schema `halo` reads).
    #[default]
    Jsonl,
    /// A MEDS dataset folder (`data/<k>.parquet` shards of 10,000 subjects, `metadata/`); the records
    /// are held in memory until the end.
    Meds,
    /// OMOP CDM 5.4 tables as CSV files in a folder (`person.csv`, `visit_occurrence.csv`, ...), streamed.
    Omop,
}

impl OutputFormat {
    pub fn parse(s: &str) -> Option<OutputFormat> {
        match s {
            "jsonl" => Some(OutputFormat::Jsonl),
            "meds" => Some(OutputFormat::Meds),
            "omop" => Some(OutputFormat::Omop),
            _ => None,
        }
    }
}

/// An output being written; dropped without [`Output::finish`], it leaves nothing behind.
pub struct Output {
    path: PathBuf,
    format: OutputFormat,
    tmp: PathBuf,
    writer: Option<BufWriter<File>>,
    /// MEDS is written in one go at the end.
    held: Vec<Patient>,
    omop: Option<OmopWriter>,
    finished: bool,
}

/// Refuses an existing path; checks that its folder exists.
fn check_target(path: &Path) -> Result<()> {
    if path.exists() || path.symlink_metadata().is_ok() {
        return Err(Error::Invalid(format!(
            "{}: already exists; halo-sample never overwrites output (choose another --out or remove it first)",
            path.display()
        )));
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(Error::Invalid(format!(
            "{}: the folder {} does not exist",
            path.display(),
            parent.display()
        )));
    }
    Ok(())
}

impl Output {
    /// Prepares `path`: refuses it when it exists and creates the temporary file now, so that an
    /// unwritable location fails before any sampling. `cohort` is required for [`OutputFormat::Omop`].
    pub fn create(path: &Path, format: OutputFormat, cohort: Option<OmopCohort>) -> Result<Output> {
        check_target(path)?;
        if format == OutputFormat::Omop {
            let cohort = cohort.ok_or_else(|| Error::Invalid("OMOP output needs its cohort".into()))?;
            return Ok(Output {
                path: path.to_path_buf(),
                format,
                tmp: PathBuf::new(),
                writer: None,
                held: Vec::new(),
                omop: Some(OmopWriter::create(path, cohort)?),
                finished: false,
            });
        }
        let tmp = halo_core::fsutil::temp_sibling(path);
        let file = File::create(&tmp).map_err(|e| {
            Error::Invalid(format!(
                "{}: cannot write here ({e}); choose a writable --out",
                path.display()
            ))
        })?;
        let writer = match format {
            OutputFormat::Jsonl => Some(BufWriter::with_capacity(1 << 20, file)),
            OutputFormat::Meds | OutputFormat::Omop => {
                // Only a probe of the folder's writability; MEDS is written at the end.
                drop(file);
                let _ = std::fs::remove_file(&tmp);
                None
            }
        };
        Ok(Output {
            path: path.to_path_buf(),
            format,
            tmp,
            writer,
            held: Vec::new(),
            omop: None,
            finished: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends records (in order).
    pub fn write(&mut self, records: Vec<Sampled>) -> Result<()> {
        match self.format {
            OutputFormat::Jsonl => {
                let w = self.writer.as_mut().expect("open writer");
                for s in &records {
                    halo_core::jsonl::write_record(w, &s.patient).map_err(|e| Error::io(&self.tmp, e))?;
                }
            }
            OutputFormat::Meds => self.held.extend(records.into_iter().map(|s| s.patient)),
            OutputFormat::Omop => {
                let w = self.omop.as_mut().expect("open OMOP writer");
                for s in &records {
                    w.write(s.raw.index, &s.patient)?;
                }
            }
        }
        Ok(())
    }

    /// Completes the output: flushes and moves it to its path (never replacing an existing one). For
    /// OMOP, returns what was written.
    pub fn finish(mut self) -> Result<Option<OmopWriteReport>> {
        let mut report = None;
        match self.format {
            OutputFormat::Jsonl => {
                let w = self.writer.take().expect("open writer");
                let file = w.into_inner().map_err(|e| Error::io(&self.tmp, e.into_error()))?;
                file.sync_all().map_err(|e| Error::io(&self.tmp, e))?;
                drop(file);
                publish(&self.tmp, &self.path)?;
            }
            OutputFormat::Meds => {
                check_target(&self.path)?;
                write_meds(&self.path, &self.held)?;
            }
            OutputFormat::Omop => {
                report = Some(self.omop.take().expect("open OMOP writer").finish()?);
            }
        }
        self.finished = true;
        Ok(report)
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if !self.finished {
            self.writer.take();
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Moves `tmp` to `path` unless `path` appeared meanwhile (a hard link fails on an existing name).
fn publish(tmp: &Path, path: &Path) -> Result<()> {
    match std::fs::hard_link(tmp, path) {
        Ok(()) => {
            let _ = std::fs::remove_file(tmp);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(Error::Invalid(format!(
            "{}: appeared while sampling; not overwritten (the records are lost, nothing was written)",
            path.display()
        ))),
        Err(_) => {
            // File systems without hard links: check, then rename.
            check_target(path)?;
            std::fs::rename(tmp, path).map_err(|e| Error::io(path, e))
        }
    }
}

/// Subjects per MEDS data shard (`data/<k>.parquet`).
pub const MEDS_SHARD_SIZE: usize = 10_000;

fn write_meds(path: &Path, patients: &[Patient]) -> Result<()> {
    Ok(halo_core::meds::write_meds(path, patients, MEDS_SHARD_SIZE)?)
}

/// Refuses, before any sampling, a format the model cannot fill: MEDS rows need a time, which a model
/// without gap codes (trained with `--no-gaps`, or on records without dates) does not give.
pub fn check_model_for(format: OutputFormat, enc: &halo_core::encoding::Encoding) -> Result<()> {
    use halo_core::encoding::Token;
    let has_times = enc.tokens.iter().any(|t| matches!(t, Token::Gap { .. }));
    if format == OutputFormat::Meds && !has_times {
        return Err(Error::Invalid(
            "--format meds needs visit times, and this model gives none (it has no gap codes: trained with \
             --no-gaps or on records without dates); use --format jsonl, or --format omop (visits dated 2000-01-01)"
                .into(),
        ));
    }
    Ok(())
}

/// What `--format omop` must say once about a model before sampling: codes that go to `observation`
/// for lack of a domain prefix, and dates or birth years the model cannot give.
pub fn omop_notes(enc: &halo_core::encoding::Encoding) -> Vec<String> {
    use halo_core::encoding::Token;
    use halo_core::omop_write::route;
    let mut codes: Vec<&str> = enc
        .tokens
        .iter()
        .filter_map(|t| match t {
            Token::Code { code } | Token::Lab { code, .. } => Some(code.as_str()),
            _ => None,
        })
        .collect();
    codes.sort_unstable();
    codes.dedup();
    let unprefixed: Vec<&str> = codes.iter().copied().filter(|c| route(c).unprefixed).collect();
    let mut notes = Vec::new();
    if let Some(example) = unprefixed.first() {
        notes.push(format!(
            "{} of the model's {} codes carry no OMOP domain prefix (condition/, drug/, procedure/, \
             measurement/, observation/; e.g. `{example}`): they go to observation.csv with concept id 0 and \
             the code as observation_source_value",
            unprefixed.len(),
            codes.len()
        ));
    }
    let long = codes
        .iter()
        .filter(|c| route(c).source_value.chars().count() > 50)
        .count();
    if long > 0 {
        notes.push(format!(
            "{long} codes have source values longer than the DDL's varchar(50); they are written whole \
             (DuckDB loads them, stricter databases may refuse them)"
        ));
    }
    if !enc.tokens.iter().any(|t| matches!(t, Token::Gap { .. })) {
        notes.push("the model has no visit gaps: every visit is dated 2000-01-01".into());
    }
    let has_birth = enc
        .tokens
        .iter()
        .any(|t| matches!(t, Token::Demographic { category, .. } if category == "birth_year"));
    if !has_birth {
        notes.push("the model has no birth years: each person's year_of_birth is the year of their first visit".into());
    }
    notes
}
