//! MEDS (Medical Event Data Standard, <https://github.com/Medical-Event-Data-Standard/meds>) reader and
//! writer.
//!
//! # Reading
//! A MEDS dataset is a folder with `data/**/*.parquet` (read recursively, files in sorted path order; a
//! folder without `data/` is searched itself, leaving out `metadata/`), or a single parquet file. Columns:
//! `subject_id` int64 (other integer widths are accepted), `time` timestamp (any unit, read as
//! microseconds; date32/date64 as midnight; null = a static row), `code` string (utf8, large utf8, utf8
//! view, or dictionary-encoded as polars writes categoricals) and optionally `numeric_value` float32 or
//! float64 (nullable).
//! Other columns are not read. A column of another type is an error naming the file, the column, the type
//! found and the type expected. Files are read in record batches; only the per-subject event lists grow.
//!
//! A subject's rows may be spread over files and unsorted: they are grouped by `subject_id` across all
//! files, put in time order (ties keep file order) and cut into visits: an event joins the current visit
//! when it falls within [`ReadOptions::meds_visit_window_seconds`] of the visit's first event, or, when
//! that is `None`, on the same calendar day. A visit's `time` is its first event's time
//! (`YYYY-MM-DDTHH:MM:SS`); its codes are the distinct codes of its events in first-seen order.
//! `numeric_value`, when not null, becomes a [`LabValue`] under the row's code; float32 values are widened
//! through their shortest decimal form (a stored `0.1f32` reads as `0.1`); NaN and infinite values are
//! counted in `non_finite_values` (the code is kept).
//!
//! Special codes: `MEDS_BIRTH` sets `birth_date` and `birth_year` and is not a visit code; `MEDS_DEATH`
//! stays an ordinary code of the visit at its time (the OMOP reader gives a `death` row the same code, and
//! the OMOP writer writes it to `death`). A row `VISIT//<type>` (e.g. `VISIT//9201`, the OMOP visit concept,
//! or `VISIT//IP`) sets the [`Visit::visit_type`] of the visit it falls in and is not a code; a visit with
//! two different types keeps the first (counted in `skipped`), and a visit holding nothing but its type
//! row is left out (counted in `skipped`). MEDS has no standard visit-type code; this is halo's. Static rows whose code is a demographic
//! (`GENDER//x`, `SEX//x`, `RACE//x`, `ETHNICITY//x`; prefix case-insensitive, a single `/` accepted)
//! fill the demographics (first row of a category wins; `GENDER` fills `sex`); other static rows are
//! counted in `skipped`. Subjects without timed events are counted in `patients_without_visits`.
//! [`read_meds`] gives the patients sorted by `subject_id`, with the id as a string.
//!
//! Report counts: `patients` = subjects, `visits` = visits output, `events` = rows placed in a visit.
//!
//! ## Reading shard by shard
//! [`read_meds`] holds every event of the dataset (about 40 bytes each) before it builds a patient.
//! [`MedsShards`] (what `halo prepare` and [`crate::read_dataset`] use) holds one file's: opening it reads
//! only the `subject_id` column of every file, and when no subject has rows in two files (MEDS data is
//! sharded by subject) each pass reads the files one after the other and hands out one file's patients,
//! built as above, before reading the next. Patients then come file by file, in ascending `subject_id`
//! within a file, and the files in ascending order of their subject ids when their id ranges do not
//! overlap: exactly [`read_meds`]'s order. Files whose ranges interleave (subjects dealt to shards at
//! random) are read in path order, so their patients come in another order than [`read_meds`]'s (the
//! same patients; a model trained on them sees them in another order). A dataset in which some subject
//! spans files is read whole by [`read_meds`], and its report's `skipped` says so
//! ([`SUBJECTS_SPAN_FILES`], counting those subjects). The report of a pass is [`read_meds`]'s.
//!
//! # Writing
//! [`write_meds`] writes `data/<k>.parquet` shards (`subject_id` int64, `time` timestamp\[us\] null only
//! on static rows, `code` utf8, `numeric_value` float32 nullable), sorted by subject then time, with
//! `shard_size` subjects a shard and no subject split, plus `metadata/codes.parquet` (one row per distinct
//! code: `code`, `description`, `parent_codes`, the last two null) and `metadata/dataset.json`.
//! Per patient: static rows `SEX//<sex>`, `RACE//<race>`, `ETHNICITY//<ethnicity>`; a `MEDS_BIRTH` row at the
//! birth date (January 1st of the birth year when only the year is known); then each visit's codes at the
//! visit's time, its type first as a `VISIT//<type>` row. A code with lab values in the visit is written as one row per value (with
//! `numeric_value`) instead of a row without one; lab values whose code is not among the visit's codes
//! follow. A visit's time is its `time`, else its `day` added to the first visit's time (or, when the
//! first visit has no time either, to [`MedsWriteOptions::base_time`]). Patient ids that parse as `i64`
//! become `subject_id`s; otherwise (or when two would collide) every patient gets its record index.
//! Reading a written dataset back gives the same patients, except that visits falling in one visit
//! window (by default the same calendar day) merge, lab codes missing from a visit's codes join them, and
//! lab values pass through float32.

use crate::error::{Error, Result};
use crate::interner::Interner;
use crate::record::{Dataset, DemographicCategory, Demographics, LabValue, Patient, ReadReport, Visit};
use crate::ReadOptions;
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int64Type, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use arrow_array::{
    Array, ArrayRef, Float32Array, Float64Array, Int64Array, LargeStringArray, RecordBatch, StringArray,
    StringViewArray,
};
use arrow_schema::{DataType, Schema, TimeUnit};
use chrono::{DateTime, NaiveDateTime};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

/// The code of a subject's birth event.
pub const BIRTH_CODE: &str = "MEDS_BIRTH";
/// The code of a subject's death event.
pub const DEATH_CODE: &str = "MEDS_DEATH";
/// The prefix of a visit's type row: `VISIT//9201` at the visit's time sets [`Visit::visit_type`] `9201`.
pub const VISIT_TYPE_PREFIX: &str = "VISIT//";
/// The MEDS schema version written to `metadata/dataset.json`.
pub const MEDS_VERSION: &str = "0.3.3";

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;
/// Rows per record batch, reading and writing.
const BATCH_ROWS: usize = 8192;

// ===================================================================================================
// Reading

/// Reads a MEDS folder or parquet file whole (see the module documentation); [`MedsShards`] reads it one
/// file at a time.
pub fn read_meds(path: &Path, options: &ReadOptions) -> Result<Dataset> {
    let files = meds_files(path)?;
    let mut store = EventStore::default();
    let mut report = ReadReport::default();
    for file in &files {
        read_meds_file(file, &mut store, &mut report)?;
    }
    if store.subjects.is_empty() {
        return Err(no_events(path));
    }
    let mut patients = Vec::new();
    assemble(store, options.meds_visit_window_seconds, &mut report, &mut |p, _| {
        patients.push(p);
        Ok(())
    })?;
    Ok(Dataset { patients, report })
}

fn no_events(path: &Path) -> Error {
    Error::file(path, "no events (expected rows of subject_id, time, code)")
}

/// The note a whole read of a dataset whose subjects span files adds to the report's `skipped`, with the
/// number of such subjects.
pub const SUBJECTS_SPAN_FILES: &str = "subjects with rows in more than one MEDS file (dataset read whole, in memory)";

/// How a MEDS dataset's subjects lie in its files.
pub enum MedsLayout {
    /// No subject has rows in two files: the dataset can be read one file at a time.
    Sharded(MedsShards),
    /// This many subjects have rows in more than one file: only a whole read ([`read_meds`]) groups them.
    SubjectsSpanFiles(usize),
}

/// A MEDS dataset read one file at a time, in as many passes as needed: memory holds one file's events.
pub struct MedsShards {
    /// The dataset, named when it holds no events.
    path: PathBuf,
    /// The files that have rows, in the order a pass reads them.
    files: Vec<PathBuf>,
    window_seconds: Option<i64>,
}

impl MedsShards {
    /// Lists the files and reads their `subject_id` column only, to learn whether a subject spans files and
    /// in which order to read them (see "Reading shard by shard" in the module documentation).
    pub fn open(path: &Path, options: &ReadOptions) -> Result<MedsLayout> {
        // Each file with rows, with its distinct subject ids (sorted, so first and last are its range).
        let mut files: Vec<(PathBuf, Vec<i64>)> = Vec::new();
        for file in meds_files(path)? {
            let subjects = file_subjects(&file)?;
            if !subjects.is_empty() {
                files.push((file, subjects));
            }
        }
        if files.is_empty() {
            return Err(no_events(path));
        }
        let range = |subjects: &[i64]| (subjects[0], subjects[subjects.len() - 1]);
        let mut ranges: Vec<(i64, i64)> = files.iter().map(|(_, s)| range(s)).collect();
        ranges.sort_unstable();
        if ranges.windows(2).all(|w| w[0].1 < w[1].0) {
            // Files in ascending ranges give the patients in a whole read's order: ascending subject id.
            files.sort_by_key(|(_, subjects)| subjects[0]);
        } else {
            let mut all: Vec<i64> = files.iter().flat_map(|(_, s)| s.iter().copied()).collect();
            all.sort_unstable();
            let spanning = all.chunk_by(|a, b| a == b).filter(|run| run.len() > 1).count();
            if spanning > 0 {
                return Ok(MedsLayout::SubjectsSpanFiles(spanning));
            }
        }
        Ok(MedsLayout::Sharded(MedsShards {
            path: path.to_path_buf(),
            files: files.into_iter().map(|(file, _)| file).collect(),
            window_seconds: options.meds_visit_window_seconds,
        }))
    }

    /// Reads the files one after the other and calls `each` with every patient of a file, in ascending
    /// subject id, and `report`, into which it counts what reading skipped (as [`read_meds`] does).
    pub fn for_each_patient(
        &self,
        report: &mut ReadReport,
        each: &mut dyn FnMut(Patient, &mut ReadReport) -> Result<()>,
    ) -> Result<()> {
        let mut any_subject = false;
        for file in &self.files {
            let mut store = EventStore::default();
            read_meds_file(file, &mut store, report)?;
            any_subject |= !store.subjects.is_empty();
            assemble(store, self.window_seconds, report, each)?;
        }
        // Every row had a null code (the whole read refuses that too).
        if !any_subject {
            return Err(no_events(&self.path));
        }
        Ok(())
    }
}

/// The distinct subject ids of one file, sorted, from its `subject_id` column alone.
fn file_subjects(path: &Path) -> Result<Vec<i64>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| parquet_error(path, e))?;
    let columns = MedsColumns::locate(builder.schema(), path)?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), [columns.subject]);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| parquet_error(path, e))?;
    let mut subjects = Vec::new();
    let mut first_row = 0;
    for batch in reader {
        let batch = batch.map_err(|e| parquet_error(path, e))?;
        let ids = columns::subject_column(batch.column_by_name("subject_id").expect("projected"));
        for i in 0..ids.len() {
            if ids.is_null(i) {
                return Err(null_subject(path, first_row + i));
            }
            // Rows are usually grouped by subject: keep one id a run.
            if subjects.last() != Some(&ids.value(i)) {
                subjects.push(ids.value(i));
            }
        }
        first_row += batch.num_rows();
    }
    subjects.sort_unstable();
    subjects.dedup();
    Ok(subjects)
}

/// A null `subject_id` in the 0-based data row `row` of `path`.
fn null_subject(path: &Path, row: usize) -> Error {
    Error::field(
        path,
        "subject_id",
        format!("null in row {} (expected a subject id on every row)", row + 1),
    )
}

/// The parquet files of a MEDS dataset, in sorted path order.
fn meds_files(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !path.is_dir() {
        return Err(Error::file(path, "no such file or folder"));
    }
    let data = path.join("data");
    let root = if data.is_dir() { data } else { path.to_path_buf() };
    let mut files = Vec::new();
    collect_parquet(&root, &mut files, &mut HashSet::new())?;
    files.sort();
    // A file reached through two paths (a symbolic link to it) is read once.
    let mut seen = HashSet::new();
    files.retain(|f| seen.insert(std::fs::canonicalize(f).unwrap_or_else(|_| f.clone())));
    if files.is_empty() {
        return Err(Error::file(
            &root,
            "no .parquet files (expected a MEDS folder with data/**/*.parquet)",
        ));
    }
    Ok(files)
}

/// Collects `*.parquet` under `dir`; `visited` holds the real paths of the folders already read, so that a
/// symbolic link back to one of them (a loop) is an error instead of endless or repeated reading.
fn collect_parquet(dir: &Path, out: &mut Vec<PathBuf>, visited: &mut HashSet<PathBuf>) -> Result<()> {
    let real = std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
    if !visited.insert(real.clone()) {
        return Err(Error::file(
            dir,
            format!(
                "is a symbolic link to {}, a folder already read (a loop); remove the link",
                real.display()
            ),
        ));
    }
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            if name != "metadata" {
                collect_parquet(&path, out, visited)?;
            }
        } else if name.ends_with(".parquet") {
            out.push(path);
        }
    }
    Ok(())
}

/// One row, as kept until its subject is assembled.
#[derive(Debug, Clone, Copy)]
struct RawEvent {
    /// Microseconds since the Unix epoch; `None` for a static row.
    time: Option<i64>,
    value: Option<f64>,
    code: u32,
}

/// Every subject's rows, across all files.
#[derive(Default)]
struct EventStore {
    codes: Interner,
    subjects: HashMap<i64, Vec<RawEvent>>,
}

fn parquet_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::file(path, format!("cannot read parquet: {e}"))
}

/// Reads one parquet file into `store`, batch by batch, reading only the MEDS columns.
fn read_meds_file(path: &Path, store: &mut EventStore, report: &mut ReadReport) -> Result<()> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| parquet_error(path, e))?;
    let columns = MedsColumns::locate(builder.schema(), path)?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), columns.indices());
    let reader = builder
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| parquet_error(path, e))?;
    let mut first_row = 0;
    for batch in reader {
        let batch = batch.map_err(|e| parquet_error(path, e))?;
        let view = BatchView::new(&batch);
        append_batch(&view, path, first_row, store, report)?;
        first_row += batch.num_rows();
    }
    Ok(())
}

fn append_batch(
    view: &BatchView,
    path: &Path,
    first_row: usize,
    store: &mut EventStore,
    report: &mut ReadReport,
) -> Result<()> {
    for i in 0..view.subject.len() {
        if view.subject.is_null(i) {
            return Err(null_subject(path, first_row + i));
        }
        let Some(code) = view.code.get(i) else {
            report.skip("rows with a null code");
            continue;
        };
        let event = RawEvent {
            time: view.time.get(i),
            value: view.value.get(i),
            code: store.codes.intern(code),
        };
        store.subjects.entry(view.subject.value(i)).or_default().push(event);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// Assembly of read events into patients

/// Builds the patients of `store` in ascending subject id and hands each to `each`, counting into `report`.
fn assemble(
    store: EventStore,
    window_seconds: Option<i64>,
    report: &mut ReadReport,
    each: &mut dyn FnMut(Patient, &mut ReadReport) -> Result<()>,
) -> Result<()> {
    let birth = store.codes.get(BIRTH_CODE);
    let mut subjects: Vec<(i64, Vec<RawEvent>)> = store.subjects.into_iter().collect();
    subjects.sort_unstable_by_key(|(id, _)| *id);
    for (id, events) in subjects {
        report.patients += 1;
        let patient = build_patient(id, events, &store.codes, birth, window_seconds, report);
        if patient.visits.is_empty() {
            report.patients_without_visits += 1;
            continue;
        }
        report.visits += patient.visits.len();
        each(patient, report)?;
    }
    Ok(())
}

fn build_patient(
    id: i64,
    events: Vec<RawEvent>,
    codes: &Interner,
    birth: Option<u32>,
    window_seconds: Option<i64>,
    report: &mut ReadReport,
) -> Patient {
    let mut demographics = Demographics::default();
    let mut birth_time: Option<i64> = None;
    let mut timed = Vec::with_capacity(events.len());
    for e in events {
        match e.time {
            None if Some(e.code) == birth => report.skip("MEDS_BIRTH rows without a time"),
            None => apply_static(codes.name(e.code), &mut demographics, report),
            Some(t) if Some(e.code) == birth => {
                if birth_time.is_some() {
                    report.skip("repeated MEDS_BIRTH rows (earliest kept)");
                }
                birth_time = Some(birth_time.map_or(t, |b| b.min(t)));
            }
            Some(_) => timed.push(e),
        }
    }
    if let Some(date) = birth_time.and_then(datetime_of).map(|t| t.date()) {
        demographics.birth_year = Some(chrono::Datelike::year(&date));
        demographics.birth_date = Some(crate::time::format_date(date));
    }
    timed.sort_by_key(|e| e.time);
    let mut visits: Vec<Visit> = group_visits(&timed, window_seconds)
        .into_iter()
        .map(|group| to_visit(group, codes, report))
        .collect();
    let before = visits.len();
    visits.retain(|v| !v.codes.is_empty());
    for _ in visits.len()..before {
        report.skip("visits with only a VISIT// type row");
    }
    Patient {
        id: id.to_string(),
        demographics,
        visits,
        ..Patient::default()
    }
}

/// Which demographic a static code sets, and its value: `SEX//F` -> (sex, F).
fn parse_demographic(code: &str) -> Option<(DemographicCategory, &str)> {
    let (key, rest) = code.split_once('/')?;
    let value = rest.strip_prefix('/').unwrap_or(rest);
    if value.is_empty() {
        return None;
    }
    let category = match key.to_ascii_uppercase().as_str() {
        "SEX" | "GENDER" => DemographicCategory::Sex,
        "RACE" => DemographicCategory::Race,
        "ETHNICITY" => DemographicCategory::Ethnicity,
        _ => return None,
    };
    Some((category, value))
}

fn apply_static(code: &str, demographics: &mut Demographics, report: &mut ReadReport) {
    let Some(slot) =
        parse_demographic(code).and_then(|(category, value)| Some((category.text_field(demographics)?, value)))
    else {
        report.skip("static rows that are not demographics");
        return;
    };
    let (slot, value) = slot;
    match slot {
        None => *slot = Some(value.to_string()),
        Some(old) if old == value => {}
        Some(_) => report.skip("conflicting static demographic rows (first kept)"),
    }
}

/// Cuts time-sorted events into visits: each visit takes the events within the window of its first one.
fn group_visits(timed: &[RawEvent], window_seconds: Option<i64>) -> Vec<&[RawEvent]> {
    let mut groups = Vec::new();
    let mut start = 0;
    while start < timed.len() {
        let first = timed[start].time.expect("timed events");
        let mut end = start + 1;
        while end < timed.len() && same_visit(first, timed[end].time.expect("timed"), window_seconds) {
            end += 1;
        }
        groups.push(&timed[start..end]);
        start = end;
    }
    groups
}

fn same_visit(first: i64, t: i64, window_seconds: Option<i64>) -> bool {
    match window_seconds {
        Some(w) => t - first <= w.saturating_mul(MICROS_PER_SECOND),
        None => first.div_euclid(MICROS_PER_DAY) == t.div_euclid(MICROS_PER_DAY),
    }
}

/// The MEDS code of a visit type: `VISIT//<type>`.
pub fn visit_type_code(visit_type: &str) -> String {
    format!("{VISIT_TYPE_PREFIX}{visit_type}")
}

fn to_visit(group: &[RawEvent], codes: &Interner, report: &mut ReadReport) -> Visit {
    let mut seen = HashSet::new();
    let mut visit = Visit {
        time: group[0].time.and_then(datetime_of).map(crate::time::format_record_time),
        ..Visit::default()
    };
    for e in group {
        let code = codes.name(e.code);
        if let Some(visit_type) = code.strip_prefix(VISIT_TYPE_PREFIX).filter(|t| !t.is_empty()) {
            match &visit.visit_type {
                None => visit.visit_type = Some(visit_type.to_string()),
                Some(first) if first == visit_type => {}
                Some(_) => report.skip("visits with more than one VISIT// type (first kept)"),
            }
            continue;
        }
        if seen.insert(e.code) {
            visit.codes.push(code.to_string());
        }
        match e.value {
            Some(value) if value.is_finite() => visit.labs.push(LabValue {
                code: code.to_string(),
                value,
            }),
            Some(_) => report.non_finite_values += 1,
            None => {}
        }
    }
    report.events += group.len();
    visit
}

fn datetime_of(micros: i64) -> Option<NaiveDateTime> {
    DateTime::from_timestamp_micros(micros).map(|t| t.naive_utc())
}

fn micros_of(t: NaiveDateTime) -> i64 {
    t.and_utc().timestamp_micros()
}

mod columns;
mod write;
use columns::{BatchView, MedsColumns};
pub use write::*;

#[cfg(test)]
mod shard_tests;
#[cfg(test)]
mod tests;
