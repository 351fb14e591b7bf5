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
//! stays an ordinary code of the visit at its time. Static rows whose code is a demographic
//! (`GENDER//x`, `SEX//x`, `RACE//x`, `ETHNICITY//x`; prefix case-insensitive, a single `/` accepted)
//! fill the demographics (first row of a category wins; `GENDER` fills `sex`); other static rows are
//! counted in `skipped`. Subjects without timed events are counted in `patients_without_visits`.
//! Patients come out sorted by `subject_id`, with the id as a string.
//!
//! Report counts: `patients` = subjects, `visits` = visits output, `events` = rows placed in a visit.
//!
//! # Writing
//! [`write_meds`] writes `data/<k>.parquet` shards (`subject_id` int64, `time` timestamp\[us\] null only
//! on static rows, `code` utf8, `numeric_value` float32 nullable), sorted by subject then time, with
//! `shard_size` subjects a shard and no subject split, plus `metadata/codes.parquet` (one row per distinct
//! code: `code`, `description`, `parent_codes`, the last two null) and `metadata/dataset.json`.
//! Per patient: static rows `SEX//<sex>`, `RACE//<race>`, `ETHNICITY//<ethnicity>`; a `MEDS_BIRTH` row at the
//! birth date (January 1st of the birth year when only the year is known); then each visit's codes at the
//! visit's time. A code with lab values in the visit is written as one row per value (with
//! `numeric_value`) instead of a row without one; lab values whose code is not among the visit's codes
//! follow. A visit's time is its `time`, else its `day` added to the first visit's time (or, when the
//! first visit has no time either, to [`MedsWriteOptions::base_time`]). Patient ids that parse as `i64`
//! become `subject_id`s; otherwise (or when two would collide) every patient gets its record index.
//! Reading a written dataset back gives the same patients, except that visits falling in one visit
//! window (by default the same calendar day) merge, lab codes missing from a visit's codes join them, and
//! lab values pass through float32.

use crate::encoding::parse_time;
use crate::error::{Error, Result};
use crate::record::{Dataset, Demographics, LabValue, Patient, ReadReport, Visit};
use crate::ReadOptions;
use arrow_array::builder::{Float32Builder, Int64Builder, ListBuilder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int64Type, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use arrow_array::{
    Array, ArrayRef, Float32Array, Float64Array, Int64Array, LargeStringArray, RecordBatch, StringArray,
    StringViewArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The code of a subject's birth event.
pub const BIRTH_CODE: &str = "MEDS_BIRTH";
/// The code of a subject's death event.
pub const DEATH_CODE: &str = "MEDS_DEATH";
/// The MEDS schema version written to `metadata/dataset.json`.
pub const MEDS_VERSION: &str = "0.3.3";

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;
/// Rows per record batch, reading and writing.
const BATCH_ROWS: usize = 8192;

// ===================================================================================================
// Reading

/// Reads a MEDS folder or parquet file (see the module documentation).
pub fn read_meds(path: &Path, options: &ReadOptions) -> Result<Dataset> {
    let files = meds_files(path)?;
    let mut store = EventStore::default();
    let mut report = ReadReport::default();
    for file in &files {
        read_meds_file(file, &mut store, &mut report)?;
    }
    if store.subjects.is_empty() {
        return Err(Error::file(path, "no events (expected rows of subject_id, time, code)"));
    }
    Ok(assemble(store, options.meds_visit_window_seconds, report))
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
    collect_parquet(&root, &mut files)?;
    files.sort();
    if files.is_empty() {
        return Err(Error::file(
            &root,
            "no .parquet files (expected a MEDS folder with data/**/*.parquet)",
        ));
    }
    Ok(files)
}

fn collect_parquet(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
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
                collect_parquet(&path, out)?;
            }
        } else if name.ends_with(".parquet") {
            out.push(path);
        }
    }
    Ok(())
}

/// Interned code strings.
#[derive(Default)]
struct CodeTable {
    names: Vec<String>,
    index: HashMap<String, u32>,
}

impl CodeTable {
    fn intern(&mut self, code: &str) -> u32 {
        if let Some(&i) = self.index.get(code) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(code.to_string());
        self.index.insert(code.to_string(), i);
        i
    }

    fn name(&self, i: u32) -> &str {
        &self.names[i as usize]
    }
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
    codes: CodeTable,
    subjects: HashMap<i64, Vec<RawEvent>>,
}

/// The MEDS columns of one file: where they are and how to read them.
struct MedsColumns {
    subject: usize,
    time: usize,
    code: usize,
    value: Option<usize>,
}

impl MedsColumns {
    fn locate(schema: &Schema, path: &Path) -> Result<MedsColumns> {
        let required = |name: &str| {
            schema.index_of(name).map_err(|_| {
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                Error::field(
                    path,
                    name,
                    format!("missing MEDS column (the file has {})", names.join(", ")),
                )
            })
        };
        let columns = MedsColumns {
            subject: required("subject_id")?,
            time: required("time")?,
            code: required("code")?,
            value: schema.index_of("numeric_value").ok(),
        };
        let check = |index: usize, ok: fn(&DataType) -> bool, expected: &str| {
            let field = schema.field(index);
            if ok(field.data_type()) {
                Ok(())
            } else {
                Err(Error::field(
                    path,
                    field.name(),
                    format!("has type {}, expected {expected}", field.data_type()),
                ))
            }
        };
        check(columns.subject, |t| t.is_integer(), "int64")?;
        check(
            columns.time,
            |t| {
                matches!(
                    t,
                    DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 | DataType::Null
                )
            },
            "timestamp[us]",
        )?;
        check(
            columns.code,
            |t| match t {
                DataType::Dictionary(_, values) => matches!(**values, DataType::Utf8 | DataType::LargeUtf8),
                t => matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View),
            },
            "string (utf8)",
        )?;
        if let Some(v) = columns.value {
            check(
                v,
                |t| matches!(t, DataType::Float32 | DataType::Float64 | DataType::Null),
                "float32",
            )?;
        }
        Ok(columns)
    }

    fn indices(&self) -> Vec<usize> {
        [Some(self.subject), Some(self.time), Some(self.code), self.value]
            .into_iter()
            .flatten()
            .collect()
    }
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

/// Typed access to one record batch's MEDS columns (after projection, found by name). Columns whose type
/// only differs from the MEDS schema's in width or encoding (int32 subject ids, date-only times,
/// dictionary-encoded codes as polars writes categoricals) are converted here.
struct BatchView<'a> {
    subject: Int64Array,
    time: TimeColumn,
    code: CodeColumn<'a>,
    value: ValueColumn<'a>,
}

enum TimeColumn {
    AllNull,
    /// Raw values and the factor that turns them into microseconds (negative: a divisor).
    Values(Int64Array, i64),
}

enum CodeColumn<'a> {
    Utf8(&'a StringArray),
    LargeUtf8(&'a LargeStringArray),
    View(&'a StringViewArray),
    /// Dictionary-encoded: each row's key into the values (`None` for a null row).
    Dictionary(Vec<Option<usize>>, Box<CodeColumn<'a>>),
}

enum ValueColumn<'a> {
    Absent,
    F32(&'a Float32Array),
    F64(&'a Float64Array),
}

impl<'a> BatchView<'a> {
    /// The column types were checked by [`MedsColumns::locate`].
    fn new(batch: &'a RecordBatch) -> BatchView<'a> {
        let column = |name: &str| batch.column_by_name(name);
        BatchView {
            subject: subject_column(column("subject_id").expect("checked")),
            time: TimeColumn::new(column("time").expect("checked")),
            code: CodeColumn::new(column("code").expect("checked")),
            value: column("numeric_value").map_or(ValueColumn::Absent, ValueColumn::new),
        }
    }
}

/// Subject ids of any integer type as int64 (unsigned ids beyond int64 become null, reported as such).
fn subject_column(array: &ArrayRef) -> Int64Array {
    use arrow_array::types::{Int16Type, Int32Type, Int8Type, UInt16Type, UInt32Type, UInt64Type, UInt8Type};
    macro_rules! widen {
        ($t:ty) => {
            array
                .as_primitive::<$t>()
                .iter()
                .map(|v| v.and_then(|x| i64::try_from(x).ok()))
                .collect()
        };
    }
    match array.data_type() {
        DataType::Int64 => array.as_primitive::<Int64Type>().clone(),
        DataType::Int32 => widen!(Int32Type),
        DataType::Int16 => widen!(Int16Type),
        DataType::Int8 => widen!(Int8Type),
        DataType::UInt64 => widen!(UInt64Type),
        DataType::UInt32 => widen!(UInt32Type),
        DataType::UInt16 => widen!(UInt16Type),
        DataType::UInt8 => widen!(UInt8Type),
        // `locate` admits integer types only.
        _ => Int64Array::new_null(array.len()),
    }
}

impl TimeColumn {
    fn new(array: &ArrayRef) -> TimeColumn {
        let raw = |a: Int64Array, factor| TimeColumn::Values(a, factor);
        match array.data_type() {
            DataType::Date32 => raw(
                array
                    .as_primitive::<arrow_array::types::Date32Type>()
                    .unary::<_, Int64Type>(i64::from),
                86_400 * MICROS_PER_SECOND,
            ),
            DataType::Date64 => raw(
                array
                    .as_primitive::<arrow_array::types::Date64Type>()
                    .reinterpret_cast::<Int64Type>(),
                1000,
            ),
            DataType::Timestamp(TimeUnit::Second, _) => raw(
                array
                    .as_primitive::<TimestampSecondType>()
                    .reinterpret_cast::<Int64Type>(),
                MICROS_PER_SECOND,
            ),
            DataType::Timestamp(TimeUnit::Millisecond, _) => raw(
                array
                    .as_primitive::<TimestampMillisecondType>()
                    .reinterpret_cast::<Int64Type>(),
                1000,
            ),
            DataType::Timestamp(TimeUnit::Microsecond, _) => raw(
                array
                    .as_primitive::<TimestampMicrosecondType>()
                    .reinterpret_cast::<Int64Type>(),
                1,
            ),
            DataType::Timestamp(TimeUnit::Nanosecond, _) => raw(
                array
                    .as_primitive::<TimestampNanosecondType>()
                    .reinterpret_cast::<Int64Type>(),
                -1000,
            ),
            _ => TimeColumn::AllNull,
        }
    }

    /// Microseconds since the epoch, or `None` for a static row.
    fn get(&self, i: usize) -> Option<i64> {
        match self {
            TimeColumn::AllNull => None,
            TimeColumn::Values(a, _) if a.is_null(i) => None,
            TimeColumn::Values(a, factor) if *factor < 0 => Some(a.value(i).div_euclid(-factor)),
            TimeColumn::Values(a, factor) => Some(a.value(i).saturating_mul(*factor)),
        }
    }
}

impl<'a> CodeColumn<'a> {
    fn new(array: &'a ArrayRef) -> CodeColumn<'a> {
        match array.data_type() {
            DataType::LargeUtf8 => CodeColumn::LargeUtf8(array.as_string::<i64>()),
            DataType::Utf8View => CodeColumn::View(array.as_string_view()),
            DataType::Dictionary(_, _) => {
                let dict = array.as_any_dictionary();
                let keys = dict.normalized_keys();
                let rows = (0..array.len()).map(|i| (!array.is_null(i)).then(|| keys[i])).collect();
                CodeColumn::Dictionary(rows, Box::new(CodeColumn::new(dict.values())))
            }
            _ => CodeColumn::Utf8(array.as_string::<i32>()),
        }
    }

    fn get(&self, i: usize) -> Option<&'a str> {
        match self {
            CodeColumn::Utf8(a) => (!a.is_null(i)).then(|| a.value(i)),
            CodeColumn::LargeUtf8(a) => (!a.is_null(i)).then(|| a.value(i)),
            CodeColumn::View(a) => (!a.is_null(i)).then(|| a.value(i)),
            CodeColumn::Dictionary(rows, values) => rows[i].and_then(|k| values.get(k)),
        }
    }
}

impl<'a> ValueColumn<'a> {
    fn new(array: &'a ArrayRef) -> ValueColumn<'a> {
        match array.data_type() {
            DataType::Float32 => ValueColumn::F32(array.as_primitive::<Float32Type>()),
            DataType::Float64 => ValueColumn::F64(array.as_primitive::<Float64Type>()),
            _ => ValueColumn::Absent,
        }
    }

    fn get(&self, i: usize) -> Option<f64> {
        match self {
            ValueColumn::Absent => None,
            ValueColumn::F32(a) => (!a.is_null(i)).then(|| widen(a.value(i))),
            ValueColumn::F64(a) => (!a.is_null(i)).then(|| a.value(i)),
        }
    }
}

/// Widens a float32 through its shortest decimal form, so that `0.1f32` becomes `0.1`.
fn widen(x: f32) -> f64 {
    if x.is_finite() {
        x.to_string().parse().unwrap_or(f64::from(x))
    } else {
        f64::from(x)
    }
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
            return Err(Error::field(
                path,
                "subject_id",
                format!("null in row {} (expected a subject id on every row)", first_row + i + 1),
            ));
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

fn assemble(store: EventStore, window_seconds: Option<i64>, mut report: ReadReport) -> Dataset {
    let birth = store.codes.index.get(BIRTH_CODE).copied();
    let mut subjects: Vec<(i64, Vec<RawEvent>)> = store.subjects.into_iter().collect();
    subjects.sort_unstable_by_key(|(id, _)| *id);
    let mut patients = Vec::new();
    for (id, events) in subjects {
        report.patients += 1;
        let patient = build_patient(id, events, &store.codes, birth, window_seconds, &mut report);
        if patient.visits.is_empty() {
            report.patients_without_visits += 1;
            continue;
        }
        report.visits += patient.visits.len();
        patients.push(patient);
    }
    Dataset { patients, report }
}

fn build_patient(
    id: i64,
    events: Vec<RawEvent>,
    codes: &CodeTable,
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
        demographics.birth_date = Some(date.format("%Y-%m-%d").to_string());
    }
    timed.sort_by_key(|e| e.time);
    let visits = group_visits(&timed, window_seconds)
        .into_iter()
        .map(|group| to_visit(group, codes, report))
        .collect();
    Patient {
        id: id.to_string(),
        demographics,
        visits,
        ..Patient::default()
    }
}

/// Which demographic a static code sets, and its value: `SEX//F` -> (sex, F).
fn parse_demographic(code: &str) -> Option<(DemographicField, &str)> {
    let (key, rest) = code.split_once('/')?;
    let value = rest.strip_prefix('/').unwrap_or(rest);
    if value.is_empty() {
        return None;
    }
    let field = match key.to_ascii_uppercase().as_str() {
        "SEX" | "GENDER" => DemographicField::Sex,
        "RACE" => DemographicField::Race,
        "ETHNICITY" => DemographicField::Ethnicity,
        _ => return None,
    };
    Some((field, value))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum DemographicField {
    Sex,
    Race,
    Ethnicity,
}

fn apply_static(code: &str, demographics: &mut Demographics, report: &mut ReadReport) {
    let Some((field, value)) = parse_demographic(code) else {
        report.skip("static rows that are not demographics");
        return;
    };
    let slot = match field {
        DemographicField::Sex => &mut demographics.sex,
        DemographicField::Race => &mut demographics.race,
        DemographicField::Ethnicity => &mut demographics.ethnicity,
    };
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

fn to_visit(group: &[RawEvent], codes: &CodeTable, report: &mut ReadReport) -> Visit {
    let mut seen = HashSet::new();
    let mut visit = Visit {
        time: group[0].time.and_then(datetime_of).map(format_time),
        ..Visit::default()
    };
    for e in group {
        let code = codes.name(e.code);
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

fn format_time(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%dT%H:%M:%S").to_string()
}

// ===================================================================================================
// Writing

/// `metadata/dataset.json` of a MEDS dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MedsDatasetMetadata {
    pub dataset_name: String,
    pub dataset_version: String,
    pub etl_name: String,
    pub etl_version: String,
    pub meds_version: String,
    /// ISO timestamp of the dataset's creation.
    pub created_at: String,
}

impl MedsDatasetMetadata {
    /// Metadata of a dataset written by this toolkit (`etl_name` halo-sample, this crate's version).
    pub fn new(dataset_name: &str, dataset_version: &str, created_at: &str) -> MedsDatasetMetadata {
        MedsDatasetMetadata {
            dataset_name: dataset_name.to_string(),
            dataset_version: dataset_version.to_string(),
            etl_name: "halo-sample".to_string(),
            etl_version: env!("CARGO_PKG_VERSION").to_string(),
            meds_version: MEDS_VERSION.to_string(),
            created_at: created_at.to_string(),
        }
    }

    /// Same as [`MedsDatasetMetadata::new`], created now (UTC).
    /// Created now, or at `SOURCE_DATE_EPOCH` when set and valid ([`crate::fsutil::stamp_time`]).
    pub fn now(dataset_name: &str, dataset_version: &str) -> MedsDatasetMetadata {
        let now = crate::fsutil::stamp_time()
            .unwrap_or_else(|_| chrono::Utc::now())
            .format("%Y-%m-%dT%H:%M:%S%.6f")
            .to_string();
        MedsDatasetMetadata::new(dataset_name, dataset_version, &now)
    }
}

/// How [`write_meds_with`] writes.
#[derive(Debug, Clone)]
pub struct MedsWriteOptions {
    /// Subjects per `data/<k>.parquet` shard (at least 1).
    pub shard_size: usize,
    pub metadata: MedsDatasetMetadata,
    /// Time of day 0 for patients whose visits carry only `day`.
    pub base_time: NaiveDateTime,
}

impl MedsWriteOptions {
    /// Dataset `halo-synthetic`, created now, day 0 at 2000-01-01T00:00:00.
    pub fn new(shard_size: usize) -> MedsWriteOptions {
        MedsWriteOptions {
            shard_size,
            metadata: MedsDatasetMetadata::now("halo-synthetic", env!("CARGO_PKG_VERSION")),
            base_time: crate::record::synthetic_base_time(),
        }
    }
}

/// Writes `patients` as a MEDS dataset in `dir` with [`MedsWriteOptions::new`] (see the module
/// documentation). `dir` must not exist or be empty; it appears complete or not at all.
pub fn write_meds(dir: &Path, patients: &[Patient], shard_size: usize) -> Result<()> {
    write_meds_with(dir, patients, &MedsWriteOptions::new(shard_size))
}

/// Writes `patients` as a MEDS dataset in `dir` (see the module documentation).
pub fn write_meds_with(dir: &Path, patients: &[Patient], options: &MedsWriteOptions) -> Result<()> {
    if options.shard_size == 0 {
        return Err(Error::Invalid("MEDS shard size must be at least 1 subject".into()));
    }
    check_target(dir)?;
    let subjects = subject_ids(patients);
    let mut order: Vec<usize> = (0..patients.len()).collect();
    order.sort_by_key(|&i| subjects[i]);

    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let tmp = crate::fsutil::temp_sibling(dir);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    let result = write_dataset(&tmp, patients, &subjects, &order, options).and_then(|()| move_into_place(&tmp, dir));
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// Refuses a target that exists and is not an empty folder.
fn check_target(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let mut entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    if entries.next().is_some() {
        return Err(Error::file(
            dir,
            "already exists and is not empty; refusing to overwrite a MEDS dataset",
        ));
    }
    Ok(())
}

fn move_into_place(tmp: &Path, dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir(dir).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::rename(tmp, dir).map_err(|e| Error::io(dir, e))
}

/// Subject ids: the patient ids when all parse as distinct `i64`s, with record indices for those that do
/// not; record indices for everyone when that would collide.
fn subject_ids(patients: &[Patient]) -> Vec<i64> {
    let ids: Vec<i64> = patients
        .iter()
        .enumerate()
        .map(|(i, p)| p.id.trim().parse().unwrap_or(i as i64))
        .collect();
    let distinct: HashSet<i64> = ids.iter().copied().collect();
    if distinct.len() == ids.len() {
        ids
    } else {
        (0..patients.len() as i64).collect()
    }
}

fn write_dataset(
    root: &Path,
    patients: &[Patient],
    subjects: &[i64],
    order: &[usize],
    options: &MedsWriteOptions,
) -> Result<()> {
    let data = root.join("data");
    let metadata = root.join("metadata");
    for d in [&data, &metadata] {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    let mut codes = BTreeSet::new();
    for (k, shard) in order.chunks(options.shard_size).enumerate() {
        let path = data.join(format!("{k}.parquet"));
        let mut writer = ShardWriter::create(&path)?;
        for &i in shard {
            let rows = patient_rows(&patients[i], options.base_time)?;
            for row in &rows {
                if !codes.contains(row.code.as_str()) {
                    codes.insert(row.code.clone());
                }
                writer.push(subjects[i], row)?;
            }
        }
        writer.finish()?;
    }
    write_codes(&metadata.join("codes.parquet"), &codes)?;
    crate::fsutil::write_json_atomic(&metadata.join("dataset.json"), &options.metadata)
}

/// One MEDS row of a patient.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    time: Option<i64>,
    code: String,
    value: Option<f32>,
}

impl Row {
    fn new(time: Option<i64>, code: impl Into<String>, value: Option<f32>) -> Row {
        Row {
            time,
            code: code.into(),
            value,
        }
    }
}

/// A patient's rows, static rows first, then in time order.
fn patient_rows(p: &Patient, base_time: NaiveDateTime) -> Result<Vec<Row>> {
    let mut rows = static_rows(&p.demographics);
    if let Some(t) = birth_time(p)? {
        rows.push(Row::new(Some(micros_of(t)), BIRTH_CODE, None));
    }
    let anchor = visit_anchor(p, base_time)?;
    for (vi, v) in p.visits.iter().enumerate() {
        let time = Some(micros_of(visit_time(p, vi, anchor)?));
        visit_rows(v, time, &mut rows);
    }
    rows.sort_by_key(|r| r.time);
    Ok(rows)
}

fn static_rows(d: &Demographics) -> Vec<Row> {
    [("SEX", &d.sex), ("RACE", &d.race), ("ETHNICITY", &d.ethnicity)]
        .into_iter()
        .filter_map(|(key, value)| {
            let value = value.as_deref()?;
            Some(Row::new(None, format!("{key}//{value}"), None))
        })
        .collect()
}

fn birth_time(p: &Patient) -> Result<Option<NaiveDateTime>> {
    let d = &p.demographics;
    if let Some(date) = &d.birth_date {
        return parse_time(date).map(Some).ok_or_else(|| {
            Error::Invalid(format!(
                "patient `{}`: birth_date `{date}` is not a date (expected YYYY-MM-DD)",
                p.id
            ))
        });
    }
    Ok(d.birth_year
        .and_then(|y| NaiveDate::from_ymd_opt(y, 1, 1))
        .and_then(|date| date.and_hms_opt(0, 0, 0)))
}

/// The time of day 0: the first visit's time less its day, else `base_time`.
fn visit_anchor(p: &Patient, base_time: NaiveDateTime) -> Result<NaiveDateTime> {
    let Some(first) = p.visits.first() else {
        return Ok(base_time);
    };
    match &first.time {
        Some(_) => Ok(visit_time(p, 0, base_time)? - days(first.day.unwrap_or(0.0))),
        None => Ok(base_time),
    }
}

fn days(d: f64) -> chrono::Duration {
    chrono::Duration::microseconds((d * MICROS_PER_DAY as f64).round() as i64)
}

fn visit_time(p: &Patient, index: usize, anchor: NaiveDateTime) -> Result<NaiveDateTime> {
    let v = &p.visits[index];
    match (&v.time, v.day) {
        (Some(t), _) => parse_time(t).ok_or_else(|| {
            Error::Invalid(format!(
                "patient `{}` visit {index}: time `{t}` is not a timestamp (expected YYYY-MM-DDTHH:MM:SS)",
                p.id
            ))
        }),
        (None, Some(d)) if d.is_finite() => Ok(anchor + days(d)),
        _ => Err(Error::Invalid(format!(
            "patient `{}` visit {index}: neither `time` nor `day` is given; MEDS rows need a time",
            p.id
        ))),
    }
}

/// A visit's rows: each code once, as its lab values when it has some; lab values of codes not in the
/// visit's codes after them.
fn visit_rows(v: &Visit, time: Option<i64>, rows: &mut Vec<Row>) {
    for code in &v.codes {
        let mut with_value = false;
        for lab in v.labs.iter().filter(|l| &l.code == code) {
            rows.push(Row::new(time, code.clone(), Some(lab.value as f32)));
            with_value = true;
        }
        if !with_value {
            rows.push(Row::new(time, code.clone(), None));
        }
    }
    for lab in v.labs.iter().filter(|l| !v.codes.contains(&l.code)) {
        rows.push(Row::new(time, lab.code.clone(), Some(lab.value as f32)));
    }
}

/// The schema of `data/*.parquet`.
fn data_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("subject_id", DataType::Int64, false),
        Field::new("time", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new("code", DataType::Utf8, false),
        Field::new("numeric_value", DataType::Float32, true),
    ]))
}

fn writer_properties() -> WriterProperties {
    WriterProperties::builder().set_compression(Compression::SNAPPY).build()
}

fn write_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::file(path, format!("cannot write parquet: {e}"))
}

/// Writes one data shard in record batches.
struct ShardWriter {
    path: PathBuf,
    schema: SchemaRef,
    writer: ArrowWriter<File>,
    subject: Int64Builder,
    time: TimestampMicrosecondBuilder,
    code: StringBuilder,
    value: Float32Builder,
    pending: usize,
}

impl ShardWriter {
    fn create(path: &Path) -> Result<ShardWriter> {
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        let schema = data_schema();
        let writer =
            ArrowWriter::try_new(file, schema.clone(), Some(writer_properties())).map_err(|e| write_error(path, e))?;
        Ok(ShardWriter {
            path: path.to_path_buf(),
            schema,
            writer,
            subject: Int64Builder::new(),
            time: TimestampMicrosecondBuilder::new(),
            code: StringBuilder::new(),
            value: Float32Builder::new(),
            pending: 0,
        })
    }

    fn push(&mut self, subject: i64, row: &Row) -> Result<()> {
        self.subject.append_value(subject);
        self.time.append_option(row.time);
        self.code.append_value(&row.code);
        self.value.append_option(row.value);
        self.pending += 1;
        if self.pending >= BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.pending == 0 {
            return Ok(());
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.subject.finish()),
            Arc::new(self.time.finish()),
            Arc::new(self.code.finish()),
            Arc::new(self.value.finish()),
        ];
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| write_error(&self.path, e))?;
        self.writer.write(&batch).map_err(|e| write_error(&self.path, e))?;
        self.pending = 0;
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        self.flush()?;
        self.writer.close().map_err(|e| write_error(&self.path, e))?;
        Ok(())
    }
}

/// Writes `metadata/codes.parquet`: one row per code, without descriptions or parents.
fn write_codes(path: &Path, codes: &BTreeSet<String>) -> Result<()> {
    let item = Arc::new(Field::new_list_field(DataType::Utf8, true));
    let schema = Arc::new(Schema::new(vec![
        Field::new("code", DataType::Utf8, false),
        Field::new("description", DataType::Utf8, true),
        Field::new("parent_codes", DataType::List(item.clone()), true),
    ]));
    let mut code = StringBuilder::new();
    let mut description = StringBuilder::new();
    let mut parents = ListBuilder::new(StringBuilder::new()).with_field(item);
    for c in codes {
        code.append_value(c);
        description.append_null();
        parents.append_null();
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(code.finish()),
        Arc::new(description.finish()),
        Arc::new(parents.finish()),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| write_error(path, e))?;
    let file = File::create(path).map_err(|e| Error::io(path, e))?;
    let mut writer = ArrowWriter::try_new(file, schema, Some(writer_properties())).map_err(|e| write_error(path, e))?;
    writer.write(&batch).map_err(|e| write_error(path, e))?;
    writer.close().map_err(|e| write_error(path, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visit(time: &str, codes: &[&str], labs: &[(&str, f64)]) -> Visit {
        Visit {
            day: None,
            time: Some(time.to_string()),
            codes: codes.iter().map(|c| c.to_string()).collect(),
            labs: labs
                .iter()
                .map(|(c, v)| LabValue {
                    code: c.to_string(),
                    value: *v,
                })
                .collect(),
        }
    }

    fn fixed_options(shard_size: usize) -> MedsWriteOptions {
        MedsWriteOptions {
            metadata: MedsDatasetMetadata::new("test", "1", "2024-01-01T00:00:00"),
            ..MedsWriteOptions::new(shard_size)
        }
    }

    fn sample_patients() -> Vec<Patient> {
        vec![
            Patient {
                id: "42".into(),
                demographics: Demographics {
                    sex: Some("F".into()),
                    race: Some("white".into()),
                    ethnicity: Some("hispanic".into()),
                    birth_year: Some(1970),
                    birth_date: Some("1970-05-17".into()),
                },
                visits: vec![
                    visit("2020-01-01T08:00:00", &["dx/a", "lab/x", "rx/b"], &[("lab/x", 0.1)]),
                    visit(
                        "2020-02-03T09:30:00",
                        &["lab/x", "dx/c"],
                        &[("lab/x", 2.5), ("lab/x", -3.0)],
                    ),
                    visit("2021-06-01T00:00:00", &["MEDS_DEATH"], &[]),
                ],
                ..Patient::default()
            },
            Patient {
                id: "7".into(),
                visits: vec![visit("2019-03-04T12:00:00", &["dx/a"], &[])],
                ..Patient::default()
            },
            Patient {
                id: "100".into(),
                demographics: Demographics {
                    sex: Some("M".into()),
                    ..Demographics::default()
                },
                visits: vec![
                    visit("2018-01-01T00:00:00", &["dx/z"], &[]),
                    visit("2018-01-02T00:00:00", &["dx/y"], &[("lab/q", 1e6)]),
                ],
                ..Patient::default()
            },
        ]
    }

    /// What the reader gives for a written patient: lab codes not among the codes join them.
    fn as_read(p: &Patient) -> Patient {
        let mut p = p.clone();
        for v in &mut p.visits {
            for lab in &v.labs {
                if !v.codes.contains(&lab.code) {
                    v.codes.push(lab.code.clone());
                }
            }
        }
        p
    }

    #[test]
    fn round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("meds");
        let patients = sample_patients();
        write_meds_with(&dir, &patients, &fixed_options(2)).unwrap();
        assert!(dir.join("data/0.parquet").is_file());
        assert!(dir.join("data/1.parquet").is_file());
        assert!(!dir.join("data/2.parquet").exists());
        let ds = read_meds(&dir, &ReadOptions::default()).unwrap();
        let mut expected: Vec<Patient> = patients.iter().map(as_read).collect();
        expected.sort_by_key(|p| p.id.parse::<i64>().unwrap());
        assert_eq!(ds.patients, expected);
        assert_eq!(ds.report.patients, 3);
        assert_eq!(ds.report.visits, 6);
        // Rows in visits: 3 + 3 (two values of lab/x) + 1, then 1, then 1 + 2 (dx/y and lab/q).
        assert_eq!(ds.report.events, 11);
        assert!(ds.report.skipped.is_empty(), "{:?}", ds.report.skipped);

        let meta: MedsDatasetMetadata =
            crate::fsutil::read_json(&dir.join("metadata/dataset.json"), "dataset.json").unwrap();
        assert_eq!(meta, fixed_options(1).metadata);
        assert_eq!(meta.meds_version, "0.3.3");
        assert_eq!(meta.etl_name, "halo-sample");
    }

    fn read_batches(path: &Path) -> Vec<RecordBatch> {
        let file = File::open(path).unwrap();
        ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .map(|b| b.unwrap())
            .collect()
    }

    #[test]
    fn written_rows_are_sorted_and_shards_keep_subjects_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("meds");
        write_meds_with(&dir, &sample_patients(), &fixed_options(2)).unwrap();
        let mut shard_subjects = Vec::new();
        for k in 0..2 {
            let batches = read_batches(&dir.join(format!("data/{k}.parquet")));
            let batch = &batches[0];
            assert_eq!(batch.schema(), data_schema());
            let subject = batch.column(0).as_primitive::<Int64Type>();
            let time = batch.column(1).as_primitive::<TimestampMicrosecondType>();
            let rows: Vec<(i64, Option<i64>)> = (0..batch.num_rows())
                .map(|i| (subject.value(i), (!time.is_null(i)).then(|| time.value(i))))
                .collect();
            assert!(rows.windows(2).all(|w| w[0] <= w[1]), "{rows:?}");
            let mut ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
            ids.dedup();
            shard_subjects.push(ids);
        }
        assert_eq!(shard_subjects, vec![vec![7, 42], vec![100]]);

        // Subject 42's first rows: three static rows (null time), then MEDS_BIRTH.
        let batch = &read_batches(&dir.join("data/0.parquet"))[0];
        let code = batch.column(2).as_string::<i32>();
        let codes: Vec<&str> = (0..batch.num_rows()).map(|i| code.value(i)).collect();
        assert_eq!(
            &codes[..6],
            &[
                "dx/a",
                "SEX//F",
                "RACE//white",
                "ETHNICITY//hispanic",
                "MEDS_BIRTH",
                "dx/a"
            ]
        );

        let codes_batch = &read_batches(&dir.join("metadata/codes.parquet"))[0];
        let listed = codes_batch.column(0).as_string::<i32>();
        let listed: Vec<&str> = (0..codes_batch.num_rows()).map(|i| listed.value(i)).collect();
        assert_eq!(
            listed,
            vec![
                "ETHNICITY//hispanic",
                "MEDS_BIRTH",
                "MEDS_DEATH",
                "RACE//white",
                "SEX//F",
                "SEX//M",
                "dx/a",
                "dx/c",
                "dx/y",
                "dx/z",
                "lab/q",
                "lab/x",
                "rx/b"
            ]
        );
        assert_eq!(codes_batch.column(1).null_count(), codes_batch.num_rows());
        assert_eq!(codes_batch.column(2).null_count(), codes_batch.num_rows());
    }

    #[test]
    fn refuses_a_non_empty_target_and_fills_an_empty_one() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("meds");
        std::fs::create_dir(&dir).unwrap();
        write_meds_with(&dir, &sample_patients(), &fixed_options(10)).unwrap();
        assert!(dir.join("data/0.parquet").is_file());
        let msg = write_meds_with(&dir, &sample_patients(), &fixed_options(10))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("not empty"), "{msg}");
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary folder left behind");
    }

    #[test]
    fn a_failed_write_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("meds");
        let mut patients = sample_patients();
        patients[1].visits[0].time = None;
        let msg = write_meds_with(&dir, &patients, &fixed_options(10))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("patient `7` visit 0"), "{msg}");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn visits_with_only_days_are_placed_after_the_first_time() {
        let mut p = sample_patients().remove(2);
        p.visits[1].time = None;
        p.visits[1].day = Some(1.5);
        let rows = patient_rows(&p, MedsWriteOptions::new(1).base_time).unwrap();
        let t = |s: &str| Some(micros_of(parse_time(s).unwrap()));
        assert_eq!(
            rows,
            vec![
                Row::new(None, "SEX//M", None),
                Row::new(t("2018-01-01T00:00:00"), "dx/z", None),
                Row::new(t("2018-01-02T12:00:00"), "dx/y", None),
                Row::new(t("2018-01-02T12:00:00"), "lab/q", Some(1e6)),
            ]
        );
    }

    #[test]
    fn non_numeric_ids_become_record_indices() {
        let mut patients = sample_patients();
        assert_eq!(subject_ids(&patients), vec![42, 7, 100]);
        patients[0].id = "synthetic-a".into();
        assert_eq!(subject_ids(&patients), vec![0, 7, 100]);
        patients[1].id = "0".into();
        assert_eq!(subject_ids(&patients), vec![0, 1, 2]);
    }

    /// A hand-written MEDS file: (subject, time, code, value) rows with free column types.
    fn write_parquet(path: &Path, columns: Vec<(&str, ArrayRef)>) {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(name, a)| Field::new(*name, a.data_type().clone(), true))
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let batch = RecordBatch::try_new(schema.clone(), columns.into_iter().map(|c| c.1).collect()).unwrap();
        let mut w = ArrowWriter::try_new(File::create(path).unwrap(), schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    fn micros(s: &str) -> Option<i64> {
        Some(micros_of(parse_time(s).unwrap()))
    }

    fn events_file(path: &Path, rows: &[(i64, Option<&str>, &str, Option<f32>)]) {
        let subject: Int64Array = rows.iter().map(|r| Some(r.0)).collect();
        let time: arrow_array::TimestampMicrosecondArray = rows.iter().map(|r| r.1.and_then(micros)).collect();
        let code: StringArray = rows.iter().map(|r| Some(r.2)).collect();
        let value: Float32Array = rows.iter().map(|r| r.3).collect();
        write_parquet(
            path,
            vec![
                ("subject_id", Arc::new(subject)),
                ("time", Arc::new(time)),
                ("code", Arc::new(code)),
                ("numeric_value", Arc::new(value)),
            ],
        );
    }

    #[test]
    fn wrong_column_type_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("bad.parquet");
        let subject: StringArray = vec![Some("1")].into_iter().collect();
        let time: arrow_array::TimestampMicrosecondArray = vec![Some(0i64)].into_iter().collect();
        let code: StringArray = vec![Some("a")].into_iter().collect();
        write_parquet(
            &path,
            vec![
                ("subject_id", Arc::new(subject)),
                ("time", Arc::new(time)),
                ("code", Arc::new(code)),
            ],
        );
        let msg = read_meds(&path, &ReadOptions::default()).unwrap_err().to_string();
        assert!(msg.contains("bad.parquet"), "{msg}");
        assert!(msg.contains("`subject_id`"), "{msg}");
        assert!(msg.contains("has type Utf8, expected int64"), "{msg}");
    }

    #[test]
    fn missing_column_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("bad.parquet");
        let subject: Int64Array = vec![Some(1)].into_iter().collect();
        let code: StringArray = vec![Some("a")].into_iter().collect();
        write_parquet(&path, vec![("subject_id", Arc::new(subject)), ("code", Arc::new(code))]);
        let msg = read_meds(&path, &ReadOptions::default()).unwrap_err().to_string();
        assert!(msg.contains("field `time`: missing MEDS column"), "{msg}");
    }

    #[test]
    fn float64_values_large_strings_and_extra_columns_are_read() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x.parquet");
        let subject: Int64Array = vec![Some(3), Some(3)].into_iter().collect();
        let extra: StringArray = vec![Some("u"), Some("v")].into_iter().collect();
        let time: arrow_array::TimestampMillisecondArray = vec![Some(1_000), Some(2_000)].into_iter().collect();
        let code: LargeStringArray = vec![Some("a"), Some("b")].into_iter().collect();
        let value: Float64Array = vec![None, Some(0.1)].into_iter().collect();
        write_parquet(
            &path,
            vec![
                ("extra", Arc::new(extra)),
                ("subject_id", Arc::new(subject)),
                ("time", Arc::new(time)),
                ("code", Arc::new(code)),
                ("numeric_value", Arc::new(value)),
            ],
        );
        let ds = read_meds(&path, &ReadOptions::default()).unwrap();
        assert_eq!(
            ds.patients,
            vec![Patient {
                id: "3".into(),
                visits: vec![visit("1970-01-01T00:00:01", &["a", "b"], &[("b", 0.1)])],
                ..Patient::default()
            }]
        );
    }

    #[test]
    fn int32_subjects_date_times_and_dictionary_codes_are_read() {
        // What polars writes for an un-cast frame: int32 ids, date-only times, categorical codes.
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x.parquet");
        let subject: arrow_array::Int32Array = vec![Some(7), Some(7), Some(7)].into_iter().collect();
        let time: arrow_array::Date32Array = vec![Some(1), Some(1), Some(3)].into_iter().collect();
        let code: arrow_array::DictionaryArray<arrow_array::types::Int32Type> =
            vec![Some("b"), Some("a"), Some("b")].into_iter().collect();
        let value: Float64Array = vec![Some(2.5), None, None].into_iter().collect();
        write_parquet(
            &path,
            vec![
                ("subject_id", Arc::new(subject)),
                ("time", Arc::new(time)),
                ("code", Arc::new(code)),
                ("numeric_value", Arc::new(value)),
            ],
        );
        let ds = read_meds(&path, &ReadOptions::default()).unwrap();
        assert_eq!(
            ds.patients,
            vec![Patient {
                id: "7".into(),
                visits: vec![
                    visit("1970-01-02T00:00:00", &["b", "a"], &[("b", 2.5)]),
                    visit("1970-01-04T00:00:00", &["b"], &[]),
                ],
                ..Patient::default()
            }]
        );
    }

    #[test]
    fn visit_window_groups_events() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        std::fs::create_dir_all(data.join("train")).unwrap();
        // Subject 1 spread over two files, unsorted.
        events_file(
            &data.join("train/0.parquet"),
            &[
                (1, Some("2020-01-01T10:00:00"), "b", None),
                (1, Some("2020-01-01T08:00:00"), "a", None),
                (1, Some("2020-01-02T07:00:00"), "d", None),
            ],
        );
        events_file(
            &data.join("train/1.parquet"),
            &[
                (1, Some("2020-01-01T23:30:00"), "c", None),
                (1, Some("2020-01-01T08:00:00"), "a2", None),
            ],
        );
        let codes_of = |window: Option<i64>| -> Vec<(String, Vec<String>)> {
            let options = ReadOptions {
                meds_visit_window_seconds: window,
            };
            read_meds(tmp.path(), &options).unwrap().patients[0]
                .visits
                .iter()
                .map(|v| (v.time.clone().unwrap(), v.codes.clone()))
                .collect()
        };
        let s = |x: &[&str]| x.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        // Same calendar day.
        assert_eq!(
            codes_of(None),
            vec![
                ("2020-01-01T08:00:00".into(), s(&["a", "a2", "b", "c"])),
                ("2020-01-02T07:00:00".into(), s(&["d"])),
            ]
        );
        // Same timestamp only.
        assert_eq!(codes_of(Some(0)).len(), 4);
        // Within two hours of the visit's first event: 10:00 joins 08:00, 23:30 does not.
        assert_eq!(
            codes_of(Some(7200)),
            vec![
                ("2020-01-01T08:00:00".into(), s(&["a", "a2", "b"])),
                ("2020-01-01T23:30:00".into(), s(&["c"])),
                ("2020-01-02T07:00:00".into(), s(&["d"])),
            ]
        );
        // Within a day of the first event: 07:00 the next day joins too, as windows run from the first.
        assert_eq!(codes_of(Some(86_400)).len(), 1);
    }

    #[test]
    fn birth_static_rows_and_values() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("one.parquet");
        events_file(
            &path,
            &[
                (5, None, "GENDER//F", None),
                (5, None, "race/Asian", None),
                (5, None, "ethnicity//Not Hispanic", None),
                (5, None, "SEX//M", None),
                (5, None, "INSURANCE//medicare", None),
                (5, Some("1980-02-29T06:00:00"), "MEDS_BIRTH", None),
                (5, Some("2000-01-01T00:00:00"), "lab/x", Some(f32::NAN)),
                (5, Some("2000-01-01T00:00:00"), "lab/x", Some(4.2)),
                (5, Some("2003-01-01T00:00:00"), "MEDS_DEATH", None),
                (6, None, "SEX//M", None),
            ],
        );
        let ds = read_meds(&path, &ReadOptions::default()).unwrap();
        assert_eq!(
            ds.patients,
            vec![Patient {
                id: "5".into(),
                demographics: Demographics {
                    sex: Some("F".into()),
                    race: Some("Asian".into()),
                    ethnicity: Some("Not Hispanic".into()),
                    birth_year: Some(1980),
                    birth_date: Some("1980-02-29".into()),
                },
                visits: vec![
                    visit("2000-01-01T00:00:00", &["lab/x"], &[("lab/x", 4.2)]),
                    visit("2003-01-01T00:00:00", &["MEDS_DEATH"], &[]),
                ],
                ..Patient::default()
            }]
        );
        let r = &ds.report;
        assert_eq!(r.patients, 2);
        assert_eq!(r.patients_without_visits, 1);
        assert_eq!(r.non_finite_values, 1);
        assert_eq!(r.events, 3);
        assert_eq!(r.skipped.get("static rows that are not demographics"), Some(&1));
        assert_eq!(
            r.skipped.get("conflicting static demographic rows (first kept)"),
            Some(&1)
        );
    }

    #[test]
    fn demographic_codes() {
        use DemographicField::*;
        assert_eq!(parse_demographic("SEX//F"), Some((Sex, "F")));
        assert_eq!(parse_demographic("gender/M"), Some((Sex, "M")));
        assert_eq!(
            parse_demographic("Race//Black or African American"),
            Some((Race, "Black or African American"))
        );
        assert_eq!(parse_demographic("ETHNICITY//"), None);
        assert_eq!(parse_demographic("SEXUAL_HISTORY//x"), None);
        assert_eq!(parse_demographic("MEDS_BIRTH"), None);
    }

    #[test]
    fn float32_values_widen_through_their_decimal() {
        assert_eq!(widen(0.1), 0.1);
        assert_eq!(widen(-3.25), -3.25);
        assert!(widen(f32::NAN).is_nan());
        assert_eq!(widen(f32::INFINITY), f64::INFINITY);
    }

    #[test]
    fn missing_input_and_empty_folder_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let msg = read_meds(&tmp.path().join("nope"), &ReadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("no such file"), "{msg}");
        std::fs::create_dir(tmp.path().join("data")).unwrap();
        let msg = read_meds(tmp.path(), &ReadOptions::default()).unwrap_err().to_string();
        assert!(msg.contains("no .parquet files"), "{msg}");
    }
}
