//! Writing sampled records: JSONL streamed into a temporary sibling file, or a MEDS folder, and moved
//! to the requested path only when everything was written. An existing output path is refused.

use crate::error::{Error, Result};
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
}

impl OutputFormat {
    pub fn parse(s: &str) -> Option<OutputFormat> {
        match s {
            "jsonl" => Some(OutputFormat::Jsonl),
            "meds" => Some(OutputFormat::Meds),
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
    /// unwritable location fails before any sampling.
    pub fn create(path: &Path, format: OutputFormat) -> Result<Output> {
        check_target(path)?;
        let tmp = halo_core::fsutil::temp_sibling(path);
        let file = File::create(&tmp).map_err(|e| {
            Error::Invalid(format!(
                "{}: cannot write here ({e}); choose a writable --out",
                path.display()
            ))
        })?;
        let writer = match format {
            OutputFormat::Jsonl => Some(BufWriter::with_capacity(1 << 20, file)),
            OutputFormat::Meds => {
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
            finished: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends records (in order).
    pub fn write(&mut self, patients: Vec<Patient>) -> Result<()> {
        match self.format {
            OutputFormat::Jsonl => {
                let w = self.writer.as_mut().expect("open writer");
                for p in &patients {
                    halo_core::jsonl::write_record(w, p).map_err(|e| Error::io(&self.tmp, e))?;
                }
            }
            OutputFormat::Meds => self.held.extend(patients),
        }
        Ok(())
    }

    /// Completes the output: flushes and moves it to its path (never replacing an existing one).
    pub fn finish(mut self) -> Result<()> {
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
        }
        self.finished = true;
        Ok(())
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
