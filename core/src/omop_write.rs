//! OMOP CDM 5.4 writer: records as the CSV tables a site loads into its OMOP database, streamed (memory
//! does not grow with the number of records) into a temporary folder that is renamed into place at the end.
//!
//! # Tables
//! `person`, `observation_period`, `visit_occurrence`, `condition_occurrence`, `drug_exposure`,
//! `procedure_occurrence`, `measurement`, `observation` and `cdm_source`, each `<table>.csv` with a header
//! of the OMOP CDM 5.4 column names in the DDL's order (so `COPY ... FROM` maps them by position), comma
//! separated, dates `YYYY-MM-DD`, datetimes `YYYY-MM-DD HH:MM:SS`, empty fields for NULL.
//!
//! # Where a code goes ([`route`], the one place of this mapping)
//! - `<domain>/<concept_id>` (what [`crate::omop`] reads) goes to the domain's table with that concept id;
//!   `<domain>/src:<value>` goes there with concept id 0 and `<value>` as the source value. Domains:
//!   `condition`, `drug`, `procedure`, `measurement` (the reader's) and `observation`.
//! - A code whose first `/`-separated part names a table's domain some other way (case-insensitive:
//!   `diagnosis`/`dx` -> condition, `medication`/`rx` -> drug, `px` -> procedure, `lab` -> measurement) goes
//!   there with concept id 0 and the whole code as the source value; so does any other code, into
//!   `observation` (a model trained on MEDS or JSONL).
//! - A lab value goes to the row of its code in that visit (`value_as_number`), or to a row of its own
//!   when the visit has no such code (or the code has several values). Values of codes whose table has
//!   no `value_as_number` go to `observation` (concept id 0, the whole code as source value).
//!
//! [`as_read_back`] says exactly what [`crate::omop::read_omop`] gives back for a written record.
//!
//! # Persons, visits and dates
//! Every visit is a `visit_occurrence` on its record's date (`Visit::time`, else [`crate::record::synthetic_base_time`])
//! with `visit_concept_id` 0; its events carry the visit's date and id; the observation period runs from
//! the first visit's date to the last one's. Sex, race and ethnicity keep the model's value as the source
//! value and take the concept id of [`DEMOGRAPHIC_CONCEPTS`] (or the value itself when it is a concept id,
//! as the reader keeps ids without a source value; else 0). A record without a birth year gets its first
//! visit's year (`year_of_birth` is NOT NULL), counted in [`OmopWriteReport::persons_without_birth_year`];
//! one born after its first visit (the sampler dates a first visit without an age bucket 2000-01-01) is
//! written as born on that visit's date, counted in [`OmopWriteReport::births_after_first_visit`].
//! Type concepts are 32817 (EHR).
//!
//! # Ids
//! Ids derive from the record's global index `i` alone, so shards of one cohort concatenate: `person_id` =
//! `observation_period_id` = `i + 1`, every other id = `i * stride + n + 1` for the record's `n`-th row of
//! that table. The stride is the largest 1, 2 or 5 x 10^k (at most 1,000,000) with `end * stride` <=
//! 2^31 - 1, where `end` is one past the cohort's last record index: the ids fit the DDL's 32-bit
//! `integer` columns. For 10,000,000 records the stride is 200 rows of one table per record; a record with
//! more is an error that says how many records fit.

use crate::error::{Error, Result};
use crate::record::{Demographics, Patient, Visit};
use chrono::{Datelike, NaiveDate, NaiveDateTime};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Type concept of every row: 32817 "EHR" (the records were learned from EHR data).
const EHR_TYPE_CONCEPT: i64 = 32817;
/// `cdm_version_concept_id` of OMOP CDM 5.4.
const CDM_54_CONCEPT: i64 = 756265;
/// The largest id the DDL's `integer` columns hold.
const MAX_ID: u64 = i32::MAX as u64;

/// Standard concepts of demographic values as sources commonly spell them (matched case-insensitively).
pub const DEMOGRAPHIC_CONCEPTS: &[(&str, &str, i64)] = &[
    ("sex", "m", 8507),
    ("sex", "male", 8507),
    ("sex", "f", 8532),
    ("sex", "female", 8532),
    ("race", "white", 8527),
    ("race", "black", 8516),
    ("race", "black or african american", 8516),
    ("race", "asian", 8515),
    ("race", "native", 8657),
    ("race", "american indian or alaska native", 8657),
    ("race", "hawaiian", 8557),
    ("race", "native hawaiian or other pacific islander", 8557),
    ("ethnicity", "hispanic", 38003563),
    ("ethnicity", "hispanic or latino", 38003563),
    ("ethnicity", "nonhispanic", 38003564),
    ("ethnicity", "not hispanic or latino", 38003564),
];

/// The clinical event tables a code can go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventTable {
    Condition,
    Drug,
    Procedure,
    Measurement,
    Observation,
}

impl EventTable {
    pub const ALL: [EventTable; 5] = [
        EventTable::Condition,
        EventTable::Drug,
        EventTable::Procedure,
        EventTable::Measurement,
        EventTable::Observation,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EventTable::Condition => "condition_occurrence",
            EventTable::Drug => "drug_exposure",
            EventTable::Procedure => "procedure_occurrence",
            EventTable::Measurement => "measurement",
            EventTable::Observation => "observation",
        }
    }

    /// The code prefix of the table's concepts (`condition/201826`).
    pub fn domain(self) -> &'static str {
        match self {
            EventTable::Condition => "condition",
            EventTable::Drug => "drug",
            EventTable::Procedure => "procedure",
            EventTable::Measurement => "measurement",
            EventTable::Observation => "observation",
        }
    }

    /// Whether the table has `value_as_number`.
    pub fn has_value(self) -> bool {
        matches!(self, EventTable::Measurement | EventTable::Observation)
    }

    /// Whether [`crate::omop`] reads the table back.
    fn is_read(self) -> bool {
        self != EventTable::Observation
    }

    fn from_prefix(prefix: &str) -> Option<EventTable> {
        let p = prefix.to_ascii_lowercase();
        Some(match p.as_str() {
            "condition" | "diagnosis" | "dx" => EventTable::Condition,
            "drug" | "medication" | "rx" => EventTable::Drug,
            "procedure" | "px" => EventTable::Procedure,
            "measurement" | "lab" => EventTable::Measurement,
            "observation" => EventTable::Observation,
            _ => return None,
        })
    }

    /// Columns in the DDL's order, each with what the writer puts there.
    fn columns(self) -> &'static [(&'static str, Slot)] {
        use Slot::*;
        match self {
            EventTable::Condition => &[
                ("condition_occurrence_id", Id),
                ("person_id", Person),
                ("condition_concept_id", Concept),
                ("condition_start_date", Date),
                ("condition_start_datetime", DateTime),
                ("condition_end_date", Null),
                ("condition_end_datetime", Null),
                ("condition_type_concept_id", TypeConcept),
                ("condition_status_concept_id", Null),
                ("stop_reason", Null),
                ("provider_id", Null),
                ("visit_occurrence_id", Visit),
                ("visit_detail_id", Null),
                ("condition_source_value", Source),
                ("condition_source_concept_id", Zero),
                ("condition_status_source_value", Null),
            ],
            EventTable::Drug => &[
                ("drug_exposure_id", Id),
                ("person_id", Person),
                ("drug_concept_id", Concept),
                ("drug_exposure_start_date", Date),
                ("drug_exposure_start_datetime", DateTime),
                // NOT NULL in the DDL; the model has no durations, so the exposure ends the day it starts.
                ("drug_exposure_end_date", Date),
                ("drug_exposure_end_datetime", Null),
                ("verbatim_end_date", Null),
                ("drug_type_concept_id", TypeConcept),
                ("stop_reason", Null),
                ("refills", Null),
                ("quantity", Null),
                ("days_supply", Null),
                ("sig", Null),
                ("route_concept_id", Null),
                ("lot_number", Null),
                ("provider_id", Null),
                ("visit_occurrence_id", Visit),
                ("visit_detail_id", Null),
                ("drug_source_value", Source),
                ("drug_source_concept_id", Zero),
                ("route_source_value", Null),
                ("dose_unit_source_value", Null),
            ],
            EventTable::Procedure => &[
                ("procedure_occurrence_id", Id),
                ("person_id", Person),
                ("procedure_concept_id", Concept),
                ("procedure_date", Date),
                ("procedure_datetime", DateTime),
                ("procedure_end_date", Null),
                ("procedure_end_datetime", Null),
                ("procedure_type_concept_id", TypeConcept),
                ("modifier_concept_id", Null),
                ("quantity", Null),
                ("provider_id", Null),
                ("visit_occurrence_id", Visit),
                ("visit_detail_id", Null),
                ("procedure_source_value", Source),
                ("procedure_source_concept_id", Zero),
                ("modifier_source_value", Null),
            ],
            EventTable::Measurement => &[
                ("measurement_id", Id),
                ("person_id", Person),
                ("measurement_concept_id", Concept),
                ("measurement_date", Date),
                ("measurement_datetime", DateTime),
                ("measurement_time", Null),
                ("measurement_type_concept_id", TypeConcept),
                ("operator_concept_id", Null),
                ("value_as_number", Value),
                ("value_as_concept_id", Null),
                ("unit_concept_id", Null),
                ("range_low", Null),
                ("range_high", Null),
                ("provider_id", Null),
                ("visit_occurrence_id", Visit),
                ("visit_detail_id", Null),
                ("measurement_source_value", Source),
                ("measurement_source_concept_id", Zero),
                ("unit_source_value", Null),
                ("unit_source_concept_id", Null),
                ("value_source_value", Null),
                ("measurement_event_id", Null),
                ("meas_event_field_concept_id", Null),
            ],
            EventTable::Observation => &[
                ("observation_id", Id),
                ("person_id", Person),
                ("observation_concept_id", Concept),
                ("observation_date", Date),
                ("observation_datetime", DateTime),
                ("observation_type_concept_id", TypeConcept),
                ("value_as_number", Value),
                ("value_as_string", Null),
                ("value_as_concept_id", Null),
                ("qualifier_concept_id", Null),
                ("unit_concept_id", Null),
                ("provider_id", Null),
                ("visit_occurrence_id", Visit),
                ("visit_detail_id", Null),
                ("observation_source_value", Source),
                ("observation_source_concept_id", Zero),
                ("unit_source_value", Null),
                ("qualifier_source_value", Null),
                ("value_source_value", Null),
                ("observation_event_id", Null),
                ("obs_event_field_concept_id", Null),
            ],
        }
    }
}

/// What an event table's column holds.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Id,
    Person,
    Concept,
    Date,
    DateTime,
    TypeConcept,
    Visit,
    Source,
    Value,
    Zero,
    Null,
}

/// Where a code goes: its table, concept id (0 when it has none) and source value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route<'a> {
    pub table: EventTable,
    pub concept_id: i64,
    pub source_value: &'a str,
    /// The code's prefix named no table's domain: it went to `observation`.
    pub unprefixed: bool,
}

/// Where `code` goes (see the module documentation).
pub fn route(code: &str) -> Route<'_> {
    if let Some((prefix, rest)) = code.split_once('/') {
        if let Some(table) = EventTable::from_prefix(prefix) {
            let exact_domain = prefix == table.domain();
            if exact_domain {
                if let Some(source) = rest.strip_prefix("src:") {
                    return Route {
                        table,
                        concept_id: 0,
                        source_value: source,
                        unprefixed: false,
                    };
                }
                if let Ok(id) = rest.parse::<i64>() {
                    if id > 0 && id <= i32::MAX as i64 {
                        return Route {
                            table,
                            concept_id: id,
                            source_value: "",
                            unprefixed: false,
                        };
                    }
                }
            }
            return Route {
                table,
                concept_id: 0,
                source_value: code,
                unprefixed: false,
            };
        }
    }
    Route {
        table: EventTable::Observation,
        concept_id: 0,
        source_value: code,
        unprefixed: true,
    }
}

/// The record [`crate::omop::read_omop`] reads from what [`OmopWriter::write`] wrote for `p` at
/// `index`: id `index + 1`; codes grouped by table in the reader's order (condition, drug, procedure,
/// measurement; `observation` is not read) with each lab value's code among them; lab values in their
/// rows' order; visits without codes left out; times at whole seconds, days and labels not kept; sex
/// given as a concept id read as `M`/`F`; the birth of a record without a birth year, or born after its
/// first visit, in the first visit's year (on its date, for the latter).
/// A record left without visits is not read back at all.
pub fn as_read_back(index: u64, p: &Patient) -> Patient {
    let mut visits = Vec::new();
    for v in &p.visits {
        let mut used = vec![false; v.labs.len()];
        // (table, code, value) in the order rows are written.
        let mut rows: Vec<(EventTable, &str, Option<f64>)> = Vec::new();
        for code in &v.codes {
            let lab = v.labs.iter().enumerate().position(|(i, l)| !used[i] && &l.code == code);
            if let Some(i) = lab {
                used[i] = true;
            }
            rows.push((route(code).table, code, lab.map(|i| v.labs[i].value)));
        }
        for (lab, _) in v.labs.iter().zip(&used).filter(|(_, u)| !**u) {
            rows.push((route(&lab.code).table, &lab.code, Some(lab.value)));
        }
        let read_code = |table: EventTable, code: &str, value: Option<f64>| {
            let r = route(code);
            let table = if value.is_some() && !table.has_value() {
                EventTable::Observation
            } else {
                table
            };
            if !table.is_read() {
                return None;
            }
            Some(match (r.concept_id, r.source_value) {
                (0, source) => format!("{}/src:{source}", table.domain()),
                (id, _) => format!("{}/{id}", table.domain()),
            })
        };
        let mut codes: Vec<(EventTable, String)> = Vec::new();
        let mut labs = Vec::new();
        for table in EventTable::ALL {
            for &(t, code, value) in rows.iter().filter(|r| r.0 == table) {
                let Some(read) = read_code(t, code, value) else {
                    continue;
                };
                if !codes.iter().any(|(_, c)| c == &read) {
                    codes.push((t, read.clone()));
                }
                if let (Some(value), true) = (value, t.has_value()) {
                    labs.push(crate::record::LabValue { code: read, value });
                }
            }
        }
        if codes.is_empty() {
            continue;
        }
        let time = visit_time(v).format("%Y-%m-%dT%H:%M:%S").to_string();
        visits.push(Visit {
            day: None,
            time: Some(time),
            codes: codes.into_iter().map(|c| c.1).collect(),
            labs,
        });
    }
    let mut demographics = p.demographics.clone();
    // Values that are concept ids are written as concepts only; the reader names the two genders.
    demographics.sex = demographics.sex.and_then(|s| match s.trim().parse::<i64>() {
        Ok(8507) => Some("M".to_string()),
        Ok(8532) => Some("F".to_string()),
        Ok(_) => None,
        Err(_) => Some(s),
    });
    for value in [&mut demographics.race, &mut demographics.ethnicity] {
        if value
            .as_deref()
            .is_some_and(|v| v.trim().parse::<i64>().is_ok_and(|id| id <= 0))
        {
            *value = None;
        }
    }
    let first = p
        .visits
        .first()
        .map_or_else(crate::record::synthetic_base_time, visit_time)
        .date();
    let birth = birth_of(&p.demographics, first);
    demographics.birth_year = Some(birth.year);
    demographics.birth_date = birth.date.map(|b| b.format("%Y-%m-%d").to_string());
    Patient {
        id: (index + 1).to_string(),
        split: None,
        demographics,
        labels: None,
        visits,
    }
}

/// Why a person's birth differs from the record's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BirthAdjustment {
    /// No birth year: the first visit's year.
    Missing,
    /// Born after the first visit (a first visit without an age bucket is dated 2000-01-01): born on the
    /// first visit's date instead.
    AfterFirstVisit,
}

struct Birth {
    year: i32,
    date: Option<NaiveDate>,
    adjusted: Option<BirthAdjustment>,
}

/// The birth written for a record whose first visit is on `first` (never after it).
fn birth_of(d: &Demographics, first: NaiveDate) -> Birth {
    let date = d
        .birth_date
        .as_deref()
        .and_then(|b| NaiveDate::parse_from_str(b, "%Y-%m-%d").ok());
    let Some(year) = d.birth_year.or(date.map(|b| b.year())) else {
        return Birth {
            year: first.year(),
            date: None,
            adjusted: Some(BirthAdjustment::Missing),
        };
    };
    if date.is_some_and(|b| b > first) || year > first.year() {
        return Birth {
            year: first.year(),
            date: Some(first),
            adjusted: Some(BirthAdjustment::AfterFirstVisit),
        };
    }
    Birth {
        year,
        date,
        adjusted: None,
    }
}

/// The concept id of a demographic value of `category` (`sex`, `race`, `ethnicity`); 0 when unknown.
pub fn demographic_concept(category: &str, value: &str) -> i64 {
    if let Ok(id) = value.trim().parse::<i64>() {
        if id > 0 && id <= i32::MAX as i64 {
            return id;
        }
    }
    DEMOGRAPHIC_CONCEPTS
        .iter()
        .find(|(c, v, _)| *c == category && v.eq_ignore_ascii_case(value.trim()))
        .map_or(0, |&(_, _, id)| id)
}

/// The rows per table a record may have so that ids up to `end` records fit 32-bit columns.
pub fn id_stride(end: u64) -> u64 {
    let raw = MAX_ID / end.max(1);
    let mut best = 1;
    let mut scale = 1u64;
    while scale <= 1_000_000 {
        for m in [1, 2, 5] {
            let s = m * scale;
            if s <= raw && s <= 1_000_000 {
                best = s;
            }
        }
        scale *= 10;
    }
    best
}

/// The one `cdm_source` row: what the data are and where they came from (no training data in it).
#[derive(Debug, Clone)]
pub struct CdmSource {
    pub description: String,
    pub etl_reference: String,
    pub release_date: NaiveDate,
}

/// What the cohort is: where its record indices end (for the id stride) and its `cdm_source` row.
#[derive(Debug, Clone)]
pub struct OmopCohort {
    pub records_end: u64,
    pub source: CdmSource,
}

/// Counts of what was written, and of what needed a default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OmopWriteReport {
    pub persons: u64,
    pub visits: u64,
    /// Rows of each event table, in [`EventTable::ALL`] order.
    pub events: [u64; 5],
    /// Rows of codes whose prefix named no table (written to `observation`).
    pub unprefixed_rows: u64,
    /// Persons whose `year_of_birth` is their first visit's year (the model has no birth year).
    pub persons_without_birth_year: u64,
    /// Persons whose sampled birth lies after their first visit (a first visit without an age bucket is
    /// dated 2000-01-01), written as born on the first visit's date.
    pub births_after_first_visit: u64,
    /// Source values longer than the DDL's varchar(50) (written whole; DuckDB accepts them, stricter
    /// databases may not).
    pub long_source_values: u64,
}

/// An OMOP folder being written; dropped without [`OmopWriter::finish`], it leaves nothing behind.
pub struct OmopWriter {
    dir: PathBuf,
    tmp: PathBuf,
    stride: u64,
    records_end: u64,
    source: CdmSource,
    person: BufWriter<File>,
    period: BufWriter<File>,
    visit: BufWriter<File>,
    events: Vec<BufWriter<File>>,
    report: OmopWriteReport,
    line: String,
    finished: bool,
}

const PERSON_COLUMNS: &[&str] = &[
    "person_id",
    "gender_concept_id",
    "year_of_birth",
    "month_of_birth",
    "day_of_birth",
    "birth_datetime",
    "race_concept_id",
    "ethnicity_concept_id",
    "location_id",
    "provider_id",
    "care_site_id",
    "person_source_value",
    "gender_source_value",
    "gender_source_concept_id",
    "race_source_value",
    "race_source_concept_id",
    "ethnicity_source_value",
    "ethnicity_source_concept_id",
];
const PERIOD_COLUMNS: &[&str] = &[
    "observation_period_id",
    "person_id",
    "observation_period_start_date",
    "observation_period_end_date",
    "period_type_concept_id",
];
const VISIT_COLUMNS: &[&str] = &[
    "visit_occurrence_id",
    "person_id",
    "visit_concept_id",
    "visit_start_date",
    "visit_start_datetime",
    "visit_end_date",
    "visit_end_datetime",
    "visit_type_concept_id",
    "provider_id",
    "care_site_id",
    "visit_source_value",
    "visit_source_concept_id",
    "admitted_from_concept_id",
    "admitted_from_source_value",
    "discharged_to_concept_id",
    "discharged_to_source_value",
    "preceding_visit_occurrence_id",
];
const CDM_SOURCE_COLUMNS: &[&str] = &[
    "cdm_source_name",
    "cdm_source_abbreviation",
    "cdm_holder",
    "source_description",
    "source_documentation_reference",
    "cdm_etl_reference",
    "source_release_date",
    "cdm_release_date",
    "cdm_version",
    "cdm_version_concept_id",
    "vocabulary_version",
];

/// Appends `value` as one CSV field, quoted when it holds a delimiter, quote or line break.
fn push_field(line: &mut String, value: &str) {
    if value.contains([',', '"', '\n', '\r']) {
        line.push('"');
        line.push_str(&value.replace('"', "\"\""));
        line.push('"');
    } else {
        line.push_str(value);
    }
}

fn header(columns: impl Iterator<Item = &'static str>) -> String {
    let mut line = columns.collect::<Vec<_>>().join(",");
    line.push('\n');
    line
}

fn create_table(dir: &Path, table: &str, header: &str) -> Result<BufWriter<File>> {
    let path = dir.join(format!("{table}.csv"));
    let mut w = BufWriter::with_capacity(1 << 18, File::create(&path).map_err(|e| Error::io(&path, e))?);
    w.write_all(header.as_bytes()).map_err(|e| Error::io(&path, e))?;
    Ok(w)
}

/// The date and time of a visit: its `time`, else the base date at midnight.
fn visit_time(visit: &Visit) -> NaiveDateTime {
    visit
        .time
        .as_deref()
        .and_then(|t| crate::encoding::parse_time(t))
        .unwrap_or_else(crate::record::synthetic_base_time)
}

impl OmopWriter {
    /// Creates `dir`'s temporary sibling and the table files; refuses an existing `dir`.
    pub fn create(dir: &Path, cohort: OmopCohort) -> Result<OmopWriter> {
        if dir.symlink_metadata().is_ok() {
            return Err(Error::file(
                dir,
                "already exists; an OMOP output is never written over anything",
            ));
        }
        let tmp = crate::fsutil::temp_sibling(dir);
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        }
        std::fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let opened = (|| {
            let events = EventTable::ALL
                .iter()
                .map(|t| create_table(&tmp, t.name(), &header(t.columns().iter().map(|c| c.0))))
                .collect::<Result<Vec<_>>>()?;
            Ok::<_, Error>((
                create_table(&tmp, "person", &header(PERSON_COLUMNS.iter().copied()))?,
                create_table(&tmp, "observation_period", &header(PERIOD_COLUMNS.iter().copied()))?,
                create_table(&tmp, "visit_occurrence", &header(VISIT_COLUMNS.iter().copied()))?,
                events,
            ))
        })();
        let (person, period, visit, events) = match opened {
            Ok(files) => files,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        Ok(OmopWriter {
            dir: dir.to_path_buf(),
            tmp,
            stride: id_stride(cohort.records_end),
            records_end: cohort.records_end,
            source: cohort.source,
            person,
            period,
            visit,
            events,
            report: OmopWriteReport::default(),
            line: String::with_capacity(512),
            finished: false,
        })
    }

    /// Rows per table a record may have (see the module documentation).
    pub fn stride(&self) -> u64 {
        self.stride
    }

    /// Writes the record with global index `index`.
    pub fn write(&mut self, index: u64, patient: &Patient) -> Result<()> {
        if index >= self.records_end {
            return Err(Error::Invalid(format!(
                "record {index} lies outside the cohort of {} records the OMOP ids were laid out for",
                self.records_end
            )));
        }
        let person_id = index + 1;
        let times: Vec<NaiveDateTime> = patient.visits.iter().map(visit_time).collect();
        self.write_person(person_id, &patient.demographics, times.first().copied())?;
        if let (Some(start), Some(end)) = (
            times.iter().map(|t| t.date()).min(),
            times.iter().map(|t| t.date()).max(),
        ) {
            let line = format!("{person_id},{person_id},{start},{end},{EHR_TYPE_CONCEPT}\n");
            self.period
                .write_all(line.as_bytes())
                .map_err(|e| Error::io(&self.tmp, e))?;
        }
        let mut rows = [0u64; 5];
        for (n, (visit, time)) in patient.visits.iter().zip(&times).enumerate() {
            let visit_id = self.id(index, n as u64, "visit_occurrence")?;
            let (date, datetime) = (time.format("%Y-%m-%d"), time.format("%Y-%m-%d %H:%M:%S"));
            let line =
                format!("{visit_id},{person_id},0,{date},{datetime},{date},{datetime},{EHR_TYPE_CONCEPT},,,,,,,,,\n");
            self.visit
                .write_all(line.as_bytes())
                .map_err(|e| Error::io(&self.tmp, e))?;
            self.report.visits += 1;
            let ctx = RowContext {
                index,
                person_id,
                visit_id,
                time: *time,
            };
            self.write_events(&ctx, visit, &mut rows)?;
        }
        self.report.persons += 1;
        Ok(())
    }

    fn id(&self, index: u64, n: u64, table: &str) -> Result<u64> {
        if n >= self.stride {
            let fits = MAX_ID / (n + 1);
            return Err(Error::Invalid(format!(
                "record {index} has more than {} {table} rows, the most 32-bit ids leave a record in a cohort \
                 of {} records; cohorts of such records fit up to about {fits} records",
                self.stride, self.records_end
            )));
        }
        Ok(index * self.stride + n + 1)
    }

    fn write_person(&mut self, person_id: u64, d: &Demographics, first: Option<NaiveDateTime>) -> Result<()> {
        let first = first.unwrap_or_else(crate::record::synthetic_base_time).date();
        let Birth {
            year,
            date: birth,
            adjusted,
        } = birth_of(d, first);
        match adjusted {
            Some(BirthAdjustment::Missing) => self.report.persons_without_birth_year += 1,
            Some(BirthAdjustment::AfterFirstVisit) => self.report.births_after_first_visit += 1,
            None => {}
        }
        let concept =
            |category: &str, value: &Option<String>| value.as_deref().map_or(0, |v| demographic_concept(category, v));
        // A value that is a concept id is kept as the concept only, as the reader read it.
        let source = |value: &Option<String>| match value.as_deref() {
            Some(v) if v.trim().parse::<i64>().is_err() => v.to_string(),
            _ => String::new(),
        };
        let fields: [String; 18] = [
            person_id.to_string(),
            concept("sex", &d.sex).to_string(),
            year.to_string(),
            birth.map(|b| b.month().to_string()).unwrap_or_default(),
            birth.map(|b| b.day().to_string()).unwrap_or_default(),
            birth.map(|b| format!("{b} 00:00:00")).unwrap_or_default(),
            concept("race", &d.race).to_string(),
            concept("ethnicity", &d.ethnicity).to_string(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            source(&d.sex),
            String::new(),
            source(&d.race),
            String::new(),
            source(&d.ethnicity),
            String::new(),
        ];
        self.line.clear();
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                self.line.push(',');
            }
            push_field(&mut self.line, f);
        }
        self.line.push('\n');
        self.person
            .write_all(self.line.as_bytes())
            .map_err(|e| Error::io(&self.tmp, e))
    }

    fn write_events(&mut self, ctx: &RowContext, visit: &Visit, rows: &mut [u64; 5]) -> Result<()> {
        // Each lab value joins the first row of its code that has no value yet; the rest get rows.
        let mut used = vec![false; visit.labs.len()];
        for code in &visit.codes {
            let lab = visit
                .labs
                .iter()
                .enumerate()
                .position(|(i, l)| !used[i] && &l.code == code);
            if let Some(i) = lab {
                used[i] = true;
            }
            self.write_event(ctx, code, lab.map(|i| visit.labs[i].value), rows)?;
        }
        for (lab, _) in visit.labs.iter().zip(&used).filter(|(_, u)| !**u) {
            self.write_event(ctx, &lab.code, Some(lab.value), rows)?;
        }
        Ok(())
    }

    fn write_event(&mut self, ctx: &RowContext, code: &str, value: Option<f64>, rows: &mut [u64; 5]) -> Result<()> {
        let mut r = route(code);
        if value.is_some() && !r.table.has_value() {
            // A value of a condition, drug or procedure code: an observation of that code.
            r = Route {
                table: EventTable::Observation,
                concept_id: 0,
                source_value: code,
                unprefixed: r.unprefixed,
            };
        }
        let t = r.table as usize;
        let id = self.id(ctx.index, rows[t], r.table.name())?;
        rows[t] += 1;
        self.report.events[t] += 1;
        self.report.unprefixed_rows += u64::from(r.unprefixed);
        self.report.long_source_values += u64::from(r.source_value.chars().count() > 50);
        self.line.clear();
        for (i, (_, slot)) in r.table.columns().iter().enumerate() {
            if i > 0 {
                self.line.push(',');
            }
            use std::fmt::Write as _;
            let l = &mut self.line;
            let _ = match slot {
                Slot::Id => write!(l, "{id}"),
                Slot::Person => write!(l, "{}", ctx.person_id),
                Slot::Concept => write!(l, "{}", r.concept_id),
                Slot::Date => write!(l, "{}", ctx.time.format("%Y-%m-%d")),
                Slot::DateTime => write!(l, "{}", ctx.time.format("%Y-%m-%d %H:%M:%S")),
                Slot::TypeConcept => write!(l, "{EHR_TYPE_CONCEPT}"),
                Slot::Visit => write!(l, "{}", ctx.visit_id),
                Slot::Source => {
                    push_field(l, r.source_value);
                    Ok(())
                }
                // Shortest representation that reads back to the same f64.
                Slot::Value => value.map_or(Ok(()), |v| write!(l, "{v:?}")),
                Slot::Zero => write!(l, "0"),
                Slot::Null => Ok(()),
            };
        }
        self.line.push('\n');
        self.events[t]
            .write_all(self.line.as_bytes())
            .map_err(|e| Error::io(&self.tmp, e))
    }

    /// Writes `cdm_source`, flushes every table and moves the folder into place.
    pub fn finish(mut self) -> Result<OmopWriteReport> {
        let release = self.source.release_date.format("%Y-%m-%d").to_string();
        let values = [
            "HALO synthetic cohort",
            "HALO synthetic",
            "synthetic data: no real persons",
            &self.source.description,
            "",
            &self.source.etl_reference,
            &release,
            &release,
            "5.4",
            &CDM_54_CONCEPT.to_string(),
            "unknown",
        ];
        let mut text = header(CDM_SOURCE_COLUMNS.iter().copied());
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            push_field(&mut text, v);
        }
        text.push('\n');
        let cdm_source = self.tmp.join("cdm_source.csv");
        std::fs::write(&cdm_source, text).map_err(|e| Error::io(&cdm_source, e))?;
        let tmp = self.tmp.clone();
        for w in [&mut self.person, &mut self.period, &mut self.visit]
            .into_iter()
            .chain(self.events.iter_mut())
        {
            w.flush().map_err(|e| Error::io(&tmp, e))?;
            w.get_ref().sync_all().map_err(|e| Error::io(&tmp, e))?;
        }
        if self.dir.symlink_metadata().is_ok() {
            return Err(Error::file(
                &self.dir,
                "appeared while writing; not overwritten (nothing was written)",
            ));
        }
        std::fs::rename(&self.tmp, &self.dir).map_err(|e| Error::io(&self.dir, e))?;
        self.finished = true;
        Ok(self.report.clone())
    }
}

struct RowContext {
    index: u64,
    person_id: u64,
    visit_id: u64,
    time: NaiveDateTime,
}

impl Drop for OmopWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

#[cfg(test)]
#[path = "omop_write_tests.rs"]
mod tests;
