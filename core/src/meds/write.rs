//! Writing MEDS datasets (see the parent module's documentation): [`MedsWriter`] streams subjects into a
//! dataset folder; [`write_meds`] writes patients held in memory.

use super::{micros_of, BATCH_ROWS, BIRTH_CODE, MEDS_VERSION, MICROS_PER_DAY};
use crate::error::{Error, Result};
use crate::fsutil::{self, Target};
use crate::record::{DemographicCategory, Demographics, Patient, Visit};
use crate::time::parse_time;
use arrow_array::builder::{Float32Builder, Int64Builder, ListBuilder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{NaiveDate, NaiveDateTime};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// How data files are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShardNames {
    /// `data/0.parquet`, `data/1.parquet`, ... in writing order.
    #[default]
    Sequential,
    /// `data/<first subject id, 12 digits>.parquet`. Writers whose subject ids never overlap (the shards of one
    /// sampled cohort) never write the same name, so their `data/` folders merge by moving files; sorted
    /// names keep the subjects in order.
    FirstSubject,
}

/// How a [`MedsWriter`] writes.
#[derive(Debug, Clone)]
pub struct MedsWriteOptions {
    /// Subjects per data file (at least 1).
    pub shard_size: usize,
    pub metadata: MedsDatasetMetadata,
    /// Time of day 0 for patients whose visits carry only `day`.
    pub base_time: NaiveDateTime,
    pub shard_names: ShardNames,
    /// The codes `metadata/codes.parquet` lists. `Some` (a model's vocabulary): every writer of one cohort
    /// writes the same metadata whatever its subjects (written codes missing from the list are added).
    /// `None`: the codes written.
    pub codes: Option<BTreeSet<String>>,
}

impl MedsWriteOptions {
    /// Dataset `halo-synthetic`, created now, day 0 at 2000-01-01T00:00:00, sequential file names, the
    /// codes written listed.
    pub fn new(shard_size: usize) -> MedsWriteOptions {
        MedsWriteOptions {
            shard_size,
            metadata: MedsDatasetMetadata::now("halo-synthetic", env!("CARGO_PKG_VERSION")),
            base_time: crate::time::synthetic_base_time(),
            shard_names: ShardNames::Sequential,
            codes: None,
        }
    }
}

/// Writes `patients` as a MEDS dataset in `dir` with [`MedsWriteOptions::new`] (see the module
/// documentation). `dir` must not exist or be empty; it appears complete or not at all.
pub fn write_meds(dir: &Path, patients: &[Patient], shard_size: usize) -> Result<()> {
    write_meds_with(dir, patients, &MedsWriteOptions::new(shard_size))
}

/// Writes `patients` as a MEDS dataset in `dir`, sorted by subject id (see the module documentation).
pub fn write_meds_with(dir: &Path, patients: &[Patient], options: &MedsWriteOptions) -> Result<()> {
    let subjects = subject_ids(patients);
    let mut order: Vec<usize> = (0..patients.len()).collect();
    order.sort_by_key(|&i| subjects[i]);
    let mut writer = MedsWriter::create(dir, options.clone())?;
    for i in order {
        writer.write(subjects[i], &patients[i])?;
    }
    writer.finish()
}

/// A MEDS dataset written one subject at a time into a temporary sibling folder, with bounded memory:
/// at most one data file is open, and only the set of codes grows. [`MedsWriter::finish`] writes the
/// metadata and moves the folder into place; dropped unfinished, it leaves nothing behind.
pub struct MedsWriter {
    dir: PathBuf,
    tmp: PathBuf,
    options: MedsWriteOptions,
    shard: Option<ShardWriter>,
    subjects_in_shard: usize,
    shards_written: usize,
    codes: BTreeSet<String>,
    finished: bool,
}

impl MedsWriter {
    /// Refuses a `dir` that exists and is not empty, and creates the temporary folder now, so that an
    /// unwritable location fails before any work.
    pub fn create(dir: &Path, options: MedsWriteOptions) -> Result<MedsWriter> {
        if options.shard_size == 0 {
            return Err(Error::Invalid("MEDS shard size must be at least 1 subject".into()));
        }
        check_target(dir)?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let tmp = crate::fsutil::temp_sibling(dir);
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        }
        let writer = MedsWriter {
            dir: dir.to_path_buf(),
            codes: options.codes.clone().unwrap_or_default(),
            tmp,
            options,
            shard: None,
            subjects_in_shard: 0,
            shards_written: 0,
            finished: false,
        };
        for d in [writer.tmp.join("data"), writer.tmp.join("metadata")] {
            std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
        }
        Ok(writer)
    }

    /// Appends one subject (each subject once; a subject's rows stay in one data file).
    pub fn write(&mut self, subject: i64, patient: &Patient) -> Result<()> {
        // Rows first: a patient that cannot be written adds nothing to the open file.
        let rows = patient_rows(patient, self.options.base_time)?;
        if self.shard.is_none() {
            let name = match self.options.shard_names {
                ShardNames::Sequential => format!("{}.parquet", self.shards_written),
                ShardNames::FirstSubject => format!("{subject:012}.parquet"),
            };
            self.shard = Some(ShardWriter::create(&self.tmp.join("data").join(name))?);
        }
        let shard = self.shard.as_mut().expect("opened above");
        for row in &rows {
            if !self.codes.contains(row.code.as_str()) {
                self.codes.insert(row.code.clone());
            }
            shard.push(subject, row)?;
        }
        self.subjects_in_shard += 1;
        if self.subjects_in_shard == self.options.shard_size {
            self.close_shard()?;
        }
        Ok(())
    }

    fn close_shard(&mut self) -> Result<()> {
        if let Some(shard) = self.shard.take() {
            shard.finish()?;
            self.shards_written += 1;
            self.subjects_in_shard = 0;
        }
        Ok(())
    }

    /// Writes the metadata and moves the dataset to its folder (refused if that appeared meanwhile).
    pub fn finish(mut self) -> Result<()> {
        self.close_shard()?;
        let metadata = self.tmp.join("metadata");
        write_codes(&metadata.join("codes.parquet"), &self.codes)?;
        fsutil::write_json_atomic(&metadata.join("dataset.json"), &self.options.metadata)?;
        check_target(&self.dir)?;
        fsutil::publish(&self.tmp, &self.dir, Target::AbsentOrEmptyDir)?;
        self.finished = true;
        Ok(())
    }
}

impl Drop for MedsWriter {
    fn drop(&mut self) {
        if !self.finished {
            self.shard.take();
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

/// Refuses a target that exists and is not an empty folder.
fn check_target(dir: &Path) -> Result<()> {
    fsutil::check_fresh(dir, Target::AbsentOrEmptyDir, "refusing to overwrite a MEDS dataset")
}

/// Subject ids: the patient ids when all parse as distinct `i64`s, with record indices for those that do
/// not; record indices for everyone when that would collide.
pub(super) fn subject_ids(patients: &[Patient]) -> Vec<i64> {
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

/// One MEDS row of a patient.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Row {
    time: Option<i64>,
    code: String,
    value: Option<f32>,
}

impl Row {
    pub(super) fn new(time: Option<i64>, code: impl Into<String>, value: Option<f32>) -> Row {
        Row {
            time,
            code: code.into(),
            value,
        }
    }
}

/// A patient's rows, static rows first, then in time order.
pub(super) fn patient_rows(p: &Patient, base_time: NaiveDateTime) -> Result<Vec<Row>> {
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
    DemographicCategory::ALL
        .into_iter()
        .filter_map(|category| Some(Row::new(None, static_code(category, category.text_value(d)?)?, None)))
        .collect()
}

/// The static row code written for a demographic value (`SEX//F`); `None` for the birth year, which
/// becomes a [`BIRTH_CODE`] row.
pub fn static_code(category: DemographicCategory, value: &str) -> Option<String> {
    (category != DemographicCategory::BirthYear).then(|| format!("{}//{value}", category.code_prefix()))
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

/// A visit's rows: its type (`VISIT//<type>`), each code once, as its lab values when it has some; lab values of codes not in the
/// visit's codes after them.
fn visit_rows(v: &Visit, time: Option<i64>, rows: &mut Vec<Row>) {
    if let Some(visit_type) = &v.visit_type {
        rows.push(Row::new(time, super::visit_type_code(visit_type), None));
    }
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
pub(super) fn data_schema() -> SchemaRef {
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
