//! Writing sampled records: JSONL streamed into a temporary sibling file, OMOP CDM tables streamed into a
//! temporary sibling folder, or a MEDS folder, each moved to the requested path only when everything was
//! written. An existing output path is refused.

use crate::error::{Error, Result};
use crate::Sampled;
use halo_core::encoding::{DemographicCategory, Encoding};
use halo_core::fsutil::{self, Target};
use halo_core::meds::{static_code, MedsWriteOptions, MedsWriter, ShardNames, BIRTH_CODE};
use halo_core::omop_write::{OmopCohort, OmopWriteReport, OmopWriter};
use std::collections::BTreeSet;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

/// Output formats of `halo-sample`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// One JSON record a line (the schema `halo` reads).
    #[default]
    Jsonl,
    /// A MEDS dataset folder (`data/<first record, 12 digits>.parquet` files of 10,000 subjects,
    /// `metadata/` listing the model's whole vocabulary), streamed.
    Meds,
    /// OMOP CDM 5.4 tables as CSV files in a folder (`person.csv`, `visit_occurrence.csv`, ...), streamed.
    Omop,
}

impl std::str::FromStr for OutputFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<OutputFormat, String> {
        halo_core::keyword::parse_keyword(
            s,
            "output format",
            &[
                ("jsonl", OutputFormat::Jsonl),
                ("meds", OutputFormat::Meds),
                ("omop", OutputFormat::Omop),
            ],
        )
    }
}

/// An output being written; dropped without [`Output::finish`], it leaves nothing behind.
pub struct Output {
    path: PathBuf,
    /// Taken by [`Output::finish`].
    sink: Option<Sink>,
}

/// Where the records go until the output is finished.
enum Sink {
    /// Streamed into a temporary sibling file.
    Jsonl { tmp: PathBuf, writer: BufWriter<File> },
    /// Streamed into a temporary sibling folder (the writer removes it when dropped unfinished).
    Meds(Box<MedsWriter>),
    /// Streamed into a temporary sibling folder (the writer removes it when dropped unfinished).
    Omop(Box<OmopWriter>),
}

/// Refuses an existing path; checks that its folder exists. Creates nothing: the cheap check a command
/// runs before its slow set-up, [`Output::create`] then makes the temporary output.
pub fn check_target(path: &Path) -> Result<()> {
    fsutil::check_fresh(
        path,
        Target::Absent,
        "halo-sample never overwrites output (choose another --out or remove it first)",
    )?;
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
    /// Prepares `path`: refuses it when it exists and creates the temporary file or folder now, so that
    /// an unwritable location fails before any sampling (`halo-sample` calls it once the model is loaded,
    /// so that a run stopped while loading leaves nothing behind). `cohort` is required for [`OutputFormat::Omop`],
    /// `encoding` (the model's) for [`OutputFormat::Meds`].
    pub fn create(
        path: &Path,
        format: OutputFormat,
        cohort: Option<OmopCohort>,
        encoding: Option<&Encoding>,
    ) -> Result<Output> {
        check_target(path)?;
        let swept = halo_core::fsutil::sweep_stale_temps(path);
        if swept > 0 {
            eprintln!(
                "halo-sample: removed {swept} temporary output{} of an earlier run that was killed",
                if swept == 1 { "" } else { "s" }
            );
        }
        let tmp = halo_core::fsutil::temp_sibling(path);
        let probe = || {
            File::create(&tmp).map_err(|e| {
                Error::Invalid(format!(
                    "{}: cannot write here ({e}); choose a writable --out",
                    path.display()
                ))
            })
        };
        let sink = match format {
            OutputFormat::Jsonl => Sink::Jsonl {
                writer: BufWriter::with_capacity(1 << 20, probe()?),
                tmp,
            },
            OutputFormat::Meds => {
                let encoding =
                    encoding.ok_or_else(|| Error::Invalid("MEDS output needs the model's encoding".into()))?;
                let options = MedsWriteOptions {
                    shard_names: ShardNames::FirstSubject,
                    codes: Some(meds_codes(encoding)),
                    ..MedsWriteOptions::new(MEDS_SHARD_SIZE)
                };
                Sink::Meds(Box::new(MedsWriter::create(path, options)?))
            }
            OutputFormat::Omop => {
                let cohort = cohort.ok_or_else(|| Error::Invalid("OMOP output needs its cohort".into()))?;
                Sink::Omop(Box::new(OmopWriter::create(path, cohort)?))
            }
        };
        Ok(Output {
            path: path.to_path_buf(),
            sink: Some(sink),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends records (in order).
    pub fn write(&mut self, records: Vec<Sampled>) -> Result<()> {
        match self.sink.as_mut().expect("output not finished") {
            Sink::Jsonl { tmp, writer } => {
                for s in &records {
                    halo_core::jsonl::write_record(writer, &s.patient).map_err(|e| Error::io(tmp, e))?;
                }
            }
            Sink::Meds(w) => {
                for s in &records {
                    w.write(meds_subject(s.raw.index)?, &s.patient)?;
                }
            }
            Sink::Omop(w) => {
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
        match self.sink.take().expect("output not finished") {
            Sink::Jsonl { tmp, writer } => {
                let result = (|| {
                    let file = writer.into_inner().map_err(|e| Error::io(&tmp, e.into_error()))?;
                    file.sync_all().map_err(|e| Error::io(&tmp, e))?;
                    drop(file);
                    Ok(fsutil::publish(&tmp, &self.path, Target::Absent)?)
                })();
                if result.is_err() {
                    let _ = std::fs::remove_file(&tmp);
                }
                result.map(|()| None)
            }
            Sink::Meds(w) => {
                w.finish()?;
                Ok(None)
            }
            Sink::Omop(w) => Ok(Some(w.finish()?)),
        }
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if let Some(Sink::Jsonl { tmp, writer }) = self.sink.take() {
            drop(writer);
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

/// Subjects per MEDS data file.
pub const MEDS_SHARD_SIZE: usize = 10_000;

/// A record's MEDS `subject_id`: its record number.
fn meds_subject(index: u64) -> Result<i64> {
    i64::try_from(index).map_err(|_| Error::Invalid(format!("record number {index} does not fit a MEDS subject_id")))
}

/// Every code a MEDS output of a model can hold (its codes, lab codes, visit types, demographic static codes, and
/// `MEDS_BIRTH` when it samples birth years), so that `metadata/codes.parquet` is the same for every shard
/// of a cohort.
pub fn meds_codes(enc: &Encoding) -> BTreeSet<String> {
    use halo_core::encoding::Token;
    enc.tokens
        .iter()
        .filter_map(|t| match t {
            Token::Code { code } | Token::Lab { code, .. } => Some(code.clone()),
            Token::Demographic {
                category: DemographicCategory::BirthYear,
                ..
            } => Some(BIRTH_CODE.to_string()),
            Token::Demographic { category, value } => static_code(*category, value),
            Token::VisitType { value: Some(value) } => Some(halo_core::meds::visit_type_code(value)),
            _ => None,
        })
        .collect()
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
    // The death code goes to `death`, not to observation.
    let unprefixed: Vec<&str> = codes
        .iter()
        .copied()
        .filter(|c| route(c).unprefixed && !halo_core::omop_write::is_death(c))
        .collect();
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
    let long = codes.iter().filter(|c| route(c).truncated).count();
    if long > 0 {
        notes.push(format!(
            "{long} codes have source values longer than the DDL's varchar({}); their rows carry the first {} \
             characters (the model keeps the whole codes)",
            halo_core::omop_write::SOURCE_VALUE_WIDTH,
            halo_core::omop_write::SOURCE_VALUE_WIDTH
        ));
    }
    if !enc.tokens.iter().any(|t| matches!(t, Token::Gap { .. })) {
        notes.push("the model has no visit gaps: every visit is dated 2000-01-01".into());
    }
    let has_birth = enc.tokens.iter().any(|t| {
        matches!(
            t,
            Token::Demographic {
                category: DemographicCategory::BirthYear,
                ..
            }
        )
    });
    if !has_birth {
        notes.push("the model has no birth years: each person's year_of_birth is the year of their first visit".into());
    }
    notes
}
