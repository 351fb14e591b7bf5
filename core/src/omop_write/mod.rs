//! OMOP CDM 5.4 writer: records as the CSV tables a site loads into its OMOP database, streamed (memory
//! does not grow with the number of records) into a temporary folder that is renamed into place at the end.
//!
//! # Tables
//! `person`, `observation_period`, `visit_occurrence`, `condition_occurrence`, `drug_exposure`,
//! `procedure_occurrence`, `measurement`, `observation`, `death` and `cdm_source`, each `<table>.csv` with a header
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
//! - The death code `MEDS_DEATH` ([`crate::meds::DEATH_CODE`], which the OMOP reader gives a `death` row and
//!   the MEDS reader keeps as a code) is no event: a record holding it gets one `death` row dated its first
//!   visit holding it (type 32817, cause unknown: concept 0); later ones are counted in
//!   [`OmopWriteReport::repeated_death_codes`].
//!
//! [`as_read_back`] says exactly what [`crate::omop::read_omop`] gives back for a written record.
//!
//! # Persons, visits and dates
//! Every visit is a `visit_occurrence` on its record's date (`Visit::time`, else [`crate::time::synthetic_base_time`])
//! with `visit_concept_id` its [`Visit::visit_type`] when that is a concept id (the reader's `9201`,
//! `9202`, `9203`), else 0 with the type, if any, as `visit_source_value` (`IP` from a MEDS model); its events carry the visit's date and id; the observation period runs from
//! the first visit's date to the last one's. Sex, race and ethnicity keep the model's value as the source
//! value and take the concept id of [`DEMOGRAPHIC_CONCEPTS`] (or the value itself when it is a concept id,
//! as the reader keeps ids without a source value; else 0). A record without a birth year gets its first
//! visit's year (`year_of_birth` is NOT NULL), counted in [`OmopWriteReport::persons_without_birth_year`];
//! one born after its first visit (the sampler dates a first visit without an age bucket inside its calendar
//! bucket, or 2000-01-01 without the calendar group) is
//! written as born on that visit's date, counted in [`OmopWriteReport::births_after_first_visit`].
//! Type concepts are 32817 (EHR). A source value longer than the DDL's `varchar(50)` is cut to 50 characters
//! ([`tables::SOURCE_VALUE_WIDTH`]) and counted in [`OmopWriteReport::truncated_source_values`]; the model
//! keeps the whole code.
//!
//! # Ids
//! `person_id` = `observation_period_id` = `i + 1` for the record with global index `i`. Every other table
//! numbers its rows in writing order within an id range that derives from the output's record range
//! `a..b` alone: `a * share + 1 ..= b * share`, where `share` = floor((2^31 - 1) / `end`) and `end` is one
//! past the cohort's last record index. So the folders of shards (and of `--start` runs) of one cohort
//! never share an id and concatenate table by table, an unsharded output numbers each table 1, 2, 3, ...,
//! and every id fits the DDL's 32-bit `integer` columns. The limit: the output's rows of one table may
//! average at most `share` a record (214 for a cohort of 10,000,000 records, 2,147 for 1,000,000);
//! beyond it the writer stops with an error that names the table and the cohort size that fits.

mod mapping;
mod tables;

pub use mapping::{as_read_back, demographic_concept, id_share, is_death, route, Route};
pub use tables::{fit_source_value, EventTable, DEMOGRAPHIC_CONCEPTS, SOURCE_VALUE_WIDTH};

use crate::error::{Error, Result};
use crate::fsutil::{self, Target};
use crate::record::{DemographicCategory, Demographics, Patient, Visit};
use chrono::{Datelike, NaiveDate, NaiveDateTime};
use mapping::{birth_of, death_visit, visit_concept, visit_rows, Birth, BirthAdjustment, EventRow};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use tables::{
    Slot, CDM_54_CONCEPT, CDM_SOURCE_COLUMNS, DEATH_COLUMNS, EHR_TYPE_CONCEPT, MAX_ID, PERIOD_COLUMNS, PERSON_COLUMNS,
    VISIT_COLUMNS,
};

/// The one `cdm_source` row: what the data are and where they came from (no training data in it).
#[derive(Debug, Clone)]
pub struct CdmSource {
    pub description: String,
    pub etl_reference: String,
    pub release_date: NaiveDate,
}

/// What is written: the output's records, where the cohort's record indices end (both lay out the ids)
/// and the `cdm_source` row.
#[derive(Debug, Clone)]
pub struct OmopCohort {
    /// Global indices of the records of this output (a shard's, or the whole cohort's).
    pub records: std::ops::Range<u64>,
    /// One past the last record index of the whole cohort (the same for every shard).
    pub cohort_end: u64,
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
    /// dated inside its calendar bucket, or 2000-01-01 without the calendar group), written as born on the first
    /// visit's date.
    pub births_after_first_visit: u64,
    /// Persons written with a `death` row (records holding the death code).
    pub deaths: u64,
    /// Death codes after a record's first (a person has one `death` row): not written.
    pub repeated_death_codes: u64,
    /// Source values (of events and demographics) longer than the DDL's varchar(50), written cut to 50
    /// characters (PostgreSQL refuses longer ones).
    pub truncated_source_values: u64,
}

/// An OMOP folder being written; dropped without [`OmopWriter::finish`], it leaves nothing behind.
pub struct OmopWriter {
    dir: PathBuf,
    tmp: PathBuf,
    records: std::ops::Range<u64>,
    cohort_end: u64,
    /// Ids each record adds to every table's range.
    share: u64,
    /// The next id of visit_occurrence, then of each event table in [`EventTable::ALL`] order.
    next_id: [u64; 6],
    /// The last id this output may give.
    last_id: u64,
    source: CdmSource,
    person: BufWriter<File>,
    period: BufWriter<File>,
    visit: BufWriter<File>,
    death: BufWriter<File>,
    events: Vec<BufWriter<File>>,
    report: OmopWriteReport,
    line: String,
    finished: bool,
}

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
        .and_then(crate::time::parse_time)
        .unwrap_or_else(crate::time::synthetic_base_time)
}

impl OmopWriter {
    /// Creates `dir`'s temporary sibling and the table files; refuses an existing `dir`.
    pub fn create(dir: &Path, cohort: OmopCohort) -> Result<OmopWriter> {
        fsutil::check_fresh(dir, Target::Absent, "an OMOP output is never written over anything")?;
        let (a, b) = (cohort.records.start, cohort.records.end);
        if a > b || b > cohort.cohort_end || cohort.cohort_end > MAX_ID {
            return Err(Error::Invalid(format!(
                "records {a}..{b} of a cohort of {}: OMOP ids need 0 <= start <= end <= cohort size <= {MAX_ID}",
                cohort.cohort_end
            )));
        }
        let share = id_share(cohort.cohort_end);
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
                create_table(&tmp, "death", &header(DEATH_COLUMNS.iter().copied()))?,
                events,
            ))
        })();
        let (person, period, visit, death, events) = match opened {
            Ok(files) => files,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        Ok(OmopWriter {
            dir: dir.to_path_buf(),
            tmp,
            records: cohort.records.clone(),
            cohort_end: cohort.cohort_end,
            share,
            next_id: [cohort.records.start * share + 1; 6],
            last_id: cohort.records.end * share,
            source: cohort.source,
            person,
            period,
            visit,
            death,
            events,
            report: OmopWriteReport::default(),
            line: String::with_capacity(512),
            finished: false,
        })
    }

    /// Rows of one table a record may average (see the module documentation).
    pub fn share(&self) -> u64 {
        self.share
    }

    /// Writes the record with global index `index`.
    pub fn write(&mut self, index: u64, patient: &Patient) -> Result<()> {
        if !self.records.contains(&index) {
            return Err(Error::Invalid(format!(
                "record {index} lies outside the records {}..{} the OMOP ids were laid out for",
                self.records.start, self.records.end
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
        if let Some(t) = death_visit(patient) {
            let time = times[t];
            let line = format!(
                "{person_id},{},{},{EHR_TYPE_CONCEPT},0,,0\n",
                crate::time::format_date(time.date()),
                time.format("%Y-%m-%d %H:%M:%S")
            );
            self.death
                .write_all(line.as_bytes())
                .map_err(|e| Error::io(&self.tmp, e))?;
            self.report.deaths += 1;
            let all = patient
                .visits
                .iter()
                .flat_map(|v| &v.codes)
                .filter(|c| is_death(c))
                .count();
            self.report.repeated_death_codes += all as u64 - 1;
        }
        for (visit, time) in patient.visits.iter().zip(&times) {
            let visit_id = self.next_id(0, "visit_occurrence")?;
            // Formatted once a visit: every row of the visit carries them.
            let (date, datetime) = (
                crate::time::format_date(time.date()),
                time.format("%Y-%m-%d %H:%M:%S").to_string(),
            );
            let (concept, source, truncated) = visit_concept(visit.visit_type.as_deref());
            self.report.truncated_source_values += u64::from(truncated);
            self.line.clear();
            self.line.push_str(&format!(
                "{visit_id},{person_id},{concept},{date},{datetime},{date},{datetime},{EHR_TYPE_CONCEPT},,,"
            ));
            push_field(&mut self.line, source);
            self.line.push_str(",,,,,,\n");
            self.visit
                .write_all(self.line.as_bytes())
                .map_err(|e| Error::io(&self.tmp, e))?;
            self.report.visits += 1;
            let ctx = RowContext {
                person_id,
                visit_id,
                date,
                datetime,
            };
            self.write_events(&ctx, visit)?;
        }
        self.report.persons += 1;
        Ok(())
    }

    /// The next id of table `t` (0: visit_occurrence, 1 + k: event table k).
    fn next_id(&mut self, t: usize, table: &str) -> Result<u64> {
        let id = self.next_id[t];
        if id > self.last_id {
            let (a, b) = (self.records.start, self.records.end);
            let average = (id - 1 - a * self.share) / (b - a).max(1);
            return Err(Error::Invalid(format!(
                "records {a}..{b} have more {table} rows than 32-bit ids leave them in a cohort of {} records \
                 ({} a record on average, and these average more than {average}); a cohort of up to {} such \
                 records fits",
                self.cohort_end,
                self.share,
                MAX_ID / (average + 1).max(1)
            )));
        }
        self.next_id[t] += 1;
        Ok(id)
    }

    fn write_person(&mut self, person_id: u64, d: &Demographics, first: Option<NaiveDateTime>) -> Result<()> {
        let first = first.unwrap_or_else(crate::time::synthetic_base_time).date();
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
            |category: DemographicCategory| category.text_value(d).map_or(0, |v| demographic_concept(category, v));
        // A value that is a concept id is kept as the concept only, as the reader read it.
        let mut truncated = 0;
        let mut source = |value: &Option<String>| match value.as_deref() {
            Some(v) if v.trim().parse::<i64>().is_err() => {
                let (fitted, cut) = tables::fit_source_value(v);
                truncated += u64::from(cut);
                fitted.to_string()
            }
            _ => String::new(),
        };
        let (sex, race, ethnicity) = (source(&d.sex), source(&d.race), source(&d.ethnicity));
        self.report.truncated_source_values += truncated;
        let fields: [String; 18] = [
            person_id.to_string(),
            concept(DemographicCategory::Sex).to_string(),
            year.to_string(),
            birth.map(|b| b.month().to_string()).unwrap_or_default(),
            birth.map(|b| b.day().to_string()).unwrap_or_default(),
            birth.map(|b| format!("{b} 00:00:00")).unwrap_or_default(),
            concept(DemographicCategory::Race).to_string(),
            concept(DemographicCategory::Ethnicity).to_string(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            sex,
            String::new(),
            race,
            String::new(),
            ethnicity,
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

    fn write_events(&mut self, ctx: &RowContext, visit: &Visit) -> Result<()> {
        for row in visit_rows(visit) {
            self.write_event(ctx, &row)?;
        }
        Ok(())
    }

    fn write_event(&mut self, ctx: &RowContext, row: &EventRow) -> Result<()> {
        let (r, value) = (&row.route, row.value);
        let t = r.table as usize;
        let id = self.next_id(1 + t, r.table.name())?;
        self.report.events[t] += 1;
        self.report.unprefixed_rows += u64::from(r.unprefixed);
        self.report.truncated_source_values += u64::from(r.truncated);
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
                Slot::Date => {
                    l.push_str(&ctx.date);
                    Ok(())
                }
                Slot::DateTime => {
                    l.push_str(&ctx.datetime);
                    Ok(())
                }
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
        for w in [&mut self.person, &mut self.period, &mut self.visit, &mut self.death]
            .into_iter()
            .chain(self.events.iter_mut())
        {
            w.flush().map_err(|e| Error::io(&tmp, e))?;
            w.get_ref().sync_all().map_err(|e| Error::io(&tmp, e))?;
        }
        fsutil::publish(&self.tmp, &self.dir, Target::Absent)?;
        self.finished = true;
        Ok(self.report.clone())
    }
}

struct RowContext {
    person_id: u64,
    visit_id: u64,
    date: String,
    datetime: String,
}

impl Drop for OmopWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests;
