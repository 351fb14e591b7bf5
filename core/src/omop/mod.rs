//! OMOP CDM 5.4 CSV reader: a folder of table files becomes patients with visits.
//!
//! # Tables
//! - `person.csv` (required): `person_id`, and for demographics (each optional) `gender_source_value` /
//!   `gender_concept_id`, `race_source_value` / `race_concept_id`, `ethnicity_source_value` /
//!   `ethnicity_concept_id`, `year_of_birth`, `month_of_birth`, `day_of_birth`, `birth_datetime`.
//! - `visit_occurrence.csv` (required): `visit_occurrence_id`, `person_id`, and `visit_start_datetime`
//!   and/or `visit_start_date` (the datetime is used when filled); optionally `visit_concept_id`, which
//!   becomes the visit's [`Visit::visit_type`] as a string (`9201` inpatient, `9202` outpatient, `9203`
//!   emergency) when nonzero; 0 or empty is no type. `visit_source_value` is not read: sources fill it with
//!   encounter ids (Synthea's are UUIDs), not kinds of visit.
//! - `condition_occurrence.csv`, `drug_exposure.csv`, `procedure_occurrence.csv`, `measurement.csv`,
//!   `observation.csv` (each optional; an absent table is reported in [`ReadReport::skipped`]):
//!   `visit_occurrence_id`, the table's concept id and source value, and for measurements and observations
//!   `value_as_number`. Observations (smoking status, allergies, history findings; Synthea maps most to
//!   concept 0 with the SNOMED code as source value) are codes like the others; their `value_as_string`
//!   and `value_as_concept_id` are not read.
//!
//! File names match case-insensitively (`PERSON.csv`) and may end in `.csv`, `.tsv` or `.txt`, each
//! optionally gzipped (`.csv.gz`); the delimiter (comma, tab, pipe or semicolon) is read off the header
//! line, since database exports often use tabs or pipes whatever the name says. Columns are found by header
//! name (case-insensitive), never by position. A missing required file or column, a row with the wrong number
//! of fields or an unparseable id is an error naming the file and line (the header is line 1).
//! Files are streamed row by row: memory grows with the output, not with the files.
//!
//! - `death.csv` (optional): `person_id`, `death_datetime` and/or `death_date`. A death becomes the code
//!   `MEDS_DEATH` (the MEDS standard's, [`crate::meds::DEATH_CODE`], so that models of either source agree)
//!   at the end of the person's last visit starting on or before the death's day: HALO has no events
//!   outside visits, and a death is most often recorded in or right after the last encounter. A person's
//!   further death rows, deaths without a date, of unknown persons or before every visit are counted in
//!   `skipped`. The OMOP writer writes the code back as a `death` row.
//!
//! # Codes
//! An event's code is `<domain>/<concept_id>` when the concept id is nonzero, else
//! `<domain>/src:<source_value>`:
//!
//! | table | domain | concept id column | source value column |
//! |---|---|---|---|
//! | condition_occurrence | `condition` | `condition_concept_id` | `condition_source_value` |
//! | drug_exposure | `drug` | `drug_concept_id` | `drug_source_value` |
//! | procedure_occurrence | `procedure` | `procedure_concept_id` | `procedure_source_value` |
//! | measurement | `measurement` | `measurement_concept_id` | `measurement_source_value` |
//! | observation | `observation` | `observation_concept_id` | `observation_source_value` |
//!
//! An event table must have `person_id` and `visit_occurrence_id`. Its dates (every filled `*_date` and
//! `*_datetime` field) must parse as `YYYY-MM-DD` or `YYYY-MM-DD HH:MM:SS`, else the file, line and column are
//! named, though the event takes its visit's date: a date that does not parse points to a broken export.
//! Events with neither a concept id nor a source value are counted in `skipped`. A measurement's or
//! observation's `value_as_number`, when filled and finite, also becomes a [`LabValue`] under the same code; NaN,
//! infinite and unparseable values are counted in `non_finite_values` (the code is kept).
//!
//! # Assembly
//! Events join visits by `visit_occurrence_id`; events with an empty or unknown visit id are counted in
//! `events_without_visit` and left out, and so are events whose `person_id` (a required column) is not
//! their visit's person (counted in `skipped`: such a row is a broken export, and adding
//! it to either person would mix two records). A visit's codes are the distinct codes of its events in
//! first-seen order (tables in the order above, rows in file order); its `time` is the visit start as
//! `YYYY-MM-DDTHH:MM:SS`. Visits without codes are dropped (counted as `visits without codes`), visits are
//! put in time order with [`crate::sort_visits`] (ties keep file order), and persons left without visits
//! are counted in `patients_without_visits` and left out. Patients come out in ascending `person_id`,
//! with the id as a string.
//!
//! Demographics: sex from `gender_source_value`, else the gender concept (8507 -> `M`, 8532 -> `F`);
//! race and ethnicity from their source values, else their nonzero concept ids as strings; the birth year
//! from `year_of_birth` (else `birth_datetime`); the birth date `YYYY-MM-DD` from `birth_datetime`, else
//! from year, month and day of birth.
//!
//! Report counts: `patients` = rows of person.csv, `visits` = visits output, `events` = event rows
//! attached to an output visit.

use crate::error::{Error, Result};
use crate::fsutil::open_maybe_gz;
use crate::interner::{FastMap, Interner};
use crate::meds::DEATH_CODE;
use crate::record::{Dataset, Demographics, LabValue, Patient, ReadReport, Visit};
use crate::time::parse_time;
use chrono::{NaiveDate, NaiveDateTime};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// A clinical event table and how its rows become codes.
struct EventTable {
    /// File stem, lowercase.
    table: &'static str,
    /// Code prefix.
    domain: &'static str,
    concept_column: &'static str,
    source_column: &'static str,
    value_column: Option<&'static str>,
}

/// Event tables in the order their codes enter a visit.
const EVENT_TABLES: [EventTable; 5] = [
    EventTable {
        table: "condition_occurrence",
        domain: "condition",
        concept_column: "condition_concept_id",
        source_column: "condition_source_value",
        value_column: None,
    },
    EventTable {
        table: "drug_exposure",
        domain: "drug",
        concept_column: "drug_concept_id",
        source_column: "drug_source_value",
        value_column: None,
    },
    EventTable {
        table: "procedure_occurrence",
        domain: "procedure",
        concept_column: "procedure_concept_id",
        source_column: "procedure_source_value",
        value_column: None,
    },
    EventTable {
        table: "measurement",
        domain: "measurement",
        concept_column: "measurement_concept_id",
        source_column: "measurement_source_value",
        value_column: Some("value_as_number"),
    },
    EventTable {
        table: "observation",
        domain: "observation",
        concept_column: "observation_concept_id",
        source_column: "observation_source_value",
        value_column: Some("value_as_number"),
    },
];

/// Gender concept ids of the OMOP standard vocabulary.
const GENDER_MALE: &str = "8507";
const GENDER_FEMALE: &str = "8532";

/// Reads an OMOP CDM 5.4 CSV folder (see the module documentation for what is read and how).
pub fn read_omop(dir: &Path) -> Result<Dataset> {
    let store = OmopStore::read(dir)?;
    let mut patients = Vec::with_capacity(store.len());
    store.for_each_patient(&mut |p| {
        patients.push(p);
        Ok(())
    })?;
    Ok(Dataset {
        patients,
        report: store.report.clone(),
    })
}

// ---------------------------------------------------------------------------------------------------
// Files and CSV access

// ---------------------------------------------------------------------------------------------------
// person.csv

struct Person {
    id: i64,
    demographics: Demographics,
}

struct Persons {
    rows: Vec<Person>,
    index: FastMap<i64, u32>,
}

/// Columns of person.csv; all but the id are optional.
struct PersonColumns {
    id: usize,
    gender_source: Option<usize>,
    gender_concept: Option<usize>,
    race_source: Option<usize>,
    race_concept: Option<usize>,
    ethnicity_source: Option<usize>,
    ethnicity_concept: Option<usize>,
    year: Option<usize>,
    month: Option<usize>,
    day: Option<usize>,
    birth_datetime: Option<usize>,
}

impl PersonColumns {
    fn locate(t: &CsvTable) -> Result<PersonColumns> {
        Ok(PersonColumns {
            id: t.column("person_id")?,
            gender_source: t.optional_column("gender_source_value"),
            gender_concept: t.optional_column("gender_concept_id"),
            race_source: t.optional_column("race_source_value"),
            race_concept: t.optional_column("race_concept_id"),
            ethnicity_source: t.optional_column("ethnicity_source_value"),
            ethnicity_concept: t.optional_column("ethnicity_concept_id"),
            year: t.optional_column("year_of_birth"),
            month: t.optional_column("month_of_birth"),
            day: t.optional_column("day_of_birth"),
            birth_datetime: t.optional_column("birth_datetime"),
        })
    }
}

fn read_persons(path: &Path) -> Result<Persons> {
    let mut t = CsvTable::open(path)?;
    let cols = PersonColumns::locate(&t)?;
    let mut persons = Persons {
        rows: Vec::new(),
        index: FastMap::default(),
    };
    while let Some(line) = t.next_row()? {
        let id = parse_id(t.get(cols.id), path, line, "person_id")?;
        let demographics = parse_demographics(&t, &cols, line)?;
        if persons.index.insert(id, persons.rows.len() as u32).is_some() {
            return Err(Error::line(path, line, format!("duplicate person_id {id}")));
        }
        persons.rows.push(Person { id, demographics });
    }
    Ok(persons)
}

fn parse_demographics(t: &CsvTable, cols: &PersonColumns, line: usize) -> Result<Demographics> {
    let sex = match (t.get_opt(cols.gender_source), t.get_opt(cols.gender_concept)) {
        ("", GENDER_MALE) => Some("M".to_string()),
        ("", GENDER_FEMALE) => Some("F".to_string()),
        ("", _) => None,
        (source, _) => Some(source.to_string()),
    };
    let race = source_or_concept(t.get_opt(cols.race_source), t.get_opt(cols.race_concept));
    let ethnicity = source_or_concept(t.get_opt(cols.ethnicity_source), t.get_opt(cols.ethnicity_concept));
    let year = parse_number::<i32>(t, cols.year, line, "year_of_birth")?;
    let month = parse_number::<u32>(t, cols.month, line, "month_of_birth")?;
    let day = parse_number::<u32>(t, cols.day, line, "day_of_birth")?;
    let birth_datetime = parse_datetime(t.get_opt(cols.birth_datetime), &t.path, line, "birth_datetime")?;
    let birth = birth_datetime.map(|d| d.date()).or_else(|| match (year, month, day) {
        (Some(y), Some(m), Some(d)) => NaiveDate::from_ymd_opt(y, m, d),
        _ => None,
    });
    Ok(Demographics {
        sex,
        race,
        ethnicity,
        birth_year: year.or_else(|| birth.map(|d| chrono::Datelike::year(&d))),
        birth_date: birth.map(crate::time::format_date),
    })
}

/// The source value when filled, else the concept id when nonzero.
fn source_or_concept(source: &str, concept: &str) -> Option<String> {
    if !source.is_empty() {
        Some(source.to_string())
    } else if !concept.is_empty() && concept != "0" {
        Some(concept.to_string())
    } else {
        None
    }
}

fn parse_number<T: std::str::FromStr>(
    t: &CsvTable,
    col: Option<usize>,
    line: usize,
    column: &str,
) -> Result<Option<T>> {
    let value = t.get_opt(col);
    if value.is_empty() {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| {
        Error::line(
            &t.path,
            line,
            format!("`{column}` is `{value}`, expected a whole number"),
        )
    })
}

// ---------------------------------------------------------------------------------------------------
// visit_occurrence.csv

/// A visit as read from visit_occurrence.csv.
struct VisitRow {
    person: u32,
    start: NaiveDateTime,
    /// `visit_concept_id` when nonzero, interned.
    visit_type: Option<u32>,
}

struct Visits {
    list: Vec<VisitRow>,
    index: FastMap<i64, u32>,
    types: Interner,
}

/// Event rows attached to visits, in table and file order: grouped per visit at the end.
#[derive(Default)]
struct Events {
    names: Interner,
    /// Codes of concept ids, by (table, concept id), so that a row does not build its code's string.
    concepts: FastMap<(u8, i64), u32>,
    /// (visit, code) of every event row.
    codes: Vec<(u32, u32)>,
    /// The event row (index into `codes`) and value of every lab value.
    lab_events: Vec<u32>,
    lab_values: Vec<f64>,
}

impl Events {
    fn concept_code(&mut self, table: usize, concept: i64) -> u32 {
        let names = &mut self.names;
        *self
            .concepts
            .entry((table as u8, concept))
            .or_insert_with(|| names.intern(&format!("{}/{concept}", EVENT_TABLES[table].domain)))
    }
}

fn read_visits(path: &Path, persons: &Persons, report: &mut ReadReport) -> Result<Visits> {
    let mut t = CsvTable::open(path)?;
    let id_col = t.column("visit_occurrence_id")?;
    let person_col = t.column("person_id")?;
    let datetime_col = t.optional_column("visit_start_datetime");
    let date_col = t.optional_column("visit_start_date");
    let concept_col = t.optional_column("visit_concept_id");
    if datetime_col.is_none() && date_col.is_none() {
        t.column("visit_start_date")?;
    }
    let mut visits = Visits {
        list: Vec::new(),
        index: FastMap::default(),
        types: Interner::default(),
    };
    while let Some(line) = t.next_row()? {
        let id = parse_id(t.get(id_col), path, line, "visit_occurrence_id")?;
        let person_id = parse_id(t.get(person_col), path, line, "person_id")?;
        let start = match parse_datetime(t.get_opt(datetime_col), path, line, "visit_start_datetime")? {
            Some(s) => Some(s),
            None => parse_datetime(t.get_opt(date_col), path, line, "visit_start_date")?,
        };
        let visit_type = parse_optional_id(t.get_opt(concept_col), path, line, "visit_concept_id")?
            .filter(|&concept| concept != 0)
            .map(|concept| visits.types.intern(&concept.to_string()));
        let Some(start) = start else {
            report.skip("visits without a start date");
            continue;
        };
        let Some(&person) = persons.index.get(&person_id) else {
            report.skip("visits of persons not in person.csv");
            continue;
        };
        if visits.index.insert(id, visits.list.len() as u32).is_some() {
            return Err(Error::line(path, line, format!("duplicate visit_occurrence_id {id}")));
        }
        visits.list.push(VisitRow {
            person,
            start,
            visit_type,
        });
    }
    Ok(visits)
}

// ---------------------------------------------------------------------------------------------------
// Event tables

/// A measurement value as found in the file.
#[derive(Debug, PartialEq)]
enum LabField {
    Absent,
    Finite(f64),
    NotFinite,
}

/// One parsed event row.
struct EventRow {
    visit_id: Option<i64>,
    /// The row's `person_id`, when the table has the column.
    person_id: Option<i64>,
    code: Option<EventCode>,
    value: LabField,
}

/// What names an event's code: its nonzero concept id, else its source value (read from the row).
enum EventCode {
    Concept(i64),
    Source,
}

struct EventColumns {
    visit: usize,
    person: usize,
    /// `(name, index)` of the date and datetime columns, checked and not kept.
    dates: Vec<(String, usize)>,
    concept: usize,
    source: Option<usize>,
    value: Option<usize>,
}

fn read_events(
    path: &Path,
    table: &EventTable,
    persons: &Persons,
    visits: &mut Visits,
    events: &mut Events,
    report: &mut ReadReport,
) -> Result<()> {
    let table_index = EVENT_TABLES
        .iter()
        .position(|t| t.table == table.table)
        .expect("an event table");
    let mut t = CsvTable::open(path)?;
    let cols = EventColumns {
        visit: t.column("visit_occurrence_id")?,
        person: t.column("person_id")?,
        dates: t.columns_ending(&["_date", "_datetime"]),
        concept: t.column(table.concept_column)?,
        source: t.optional_column(table.source_column),
        value: table.value_column.and_then(|c| t.optional_column(c)),
    };
    while let Some(line) = t.next_row()? {
        let row = parse_event(&t, table, &cols, line)?;
        let Some(code) = &row.code else {
            report.skip("events without a concept id or source value");
            continue;
        };
        let Some(visit) = visit_of(&row, persons, visits, report) else {
            continue;
        };
        let code = match code {
            EventCode::Concept(c) => events.concept_code(table_index, *c),
            EventCode::Source => events
                .names
                .intern(&format!("{}/src:{}", table.domain, t.get_opt(cols.source))),
        };
        events.codes.push((visit, code));
        match row.value {
            LabField::Absent => {}
            LabField::Finite(x) => {
                let row = u32::try_from(events.codes.len() - 1).map_err(|_| {
                    Error::line(
                        path,
                        line,
                        "more than 4,294,967,295 event rows: split the export and prepare each part",
                    )
                })?;
                events.lab_events.push(row);
                events.lab_values.push(x);
            }
            LabField::NotFinite => report.non_finite_values += 1,
        }
    }
    Ok(())
}

fn parse_event(t: &CsvTable, table: &EventTable, cols: &EventColumns, line: usize) -> Result<EventRow> {
    let visit_id = parse_optional_id(t.get(cols.visit), &t.path, line, "visit_occurrence_id")?;
    let person_id = parse_optional_id(t.get(cols.person), &t.path, line, "person_id")?;
    for (name, c) in &cols.dates {
        parse_datetime(t.get(*c), &t.path, line, name)?;
    }
    let concept = parse_optional_id(t.get(cols.concept), &t.path, line, table.concept_column)?;
    let code = match concept {
        Some(c) if c != 0 => Some(EventCode::Concept(c)),
        _ if !t.get_opt(cols.source).is_empty() => Some(EventCode::Source),
        _ => None,
    };
    Ok(EventRow {
        visit_id,
        person_id,
        code,
        value: parse_lab_field(t.get_opt(cols.value)),
    })
}

fn parse_lab_field(value: &str) -> LabField {
    if value.is_empty() {
        return LabField::Absent;
    }
    match value.parse::<f64>() {
        Ok(x) if x.is_finite() => LabField::Finite(x),
        _ => LabField::NotFinite,
    }
}

/// The visit an event row joins, or `None` (counted) when its visit is unknown or another person's.
fn visit_of(row: &EventRow, persons: &Persons, visits: &Visits, report: &mut ReadReport) -> Option<u32> {
    let Some(&vi) = row.visit_id.and_then(|id| visits.index.get(&id)) else {
        report.events_without_visit += 1;
        return None;
    };
    // An event filed under another person's visit belongs to neither record.
    if row
        .person_id
        .is_some_and(|p| p != persons.rows[visits.list[vi as usize].person as usize].id)
    {
        report.skip("events whose person_id is not their visit's person");
        return None;
    }
    Some(vi)
}

// ---------------------------------------------------------------------------------------------------
// death.csv

/// Gives each person's death (`death_datetime`, else `death_date`) the code [`DEATH_CODE`] on their last
/// visit starting on or before the death's day (see the module documentation).
fn read_deaths(
    path: &Path,
    persons: &Persons,
    visits: &Visits,
    events: &mut Events,
    report: &mut ReadReport,
) -> Result<()> {
    let mut t = CsvTable::open(path)?;
    let person_col = t.column("person_id")?;
    let datetime_col = t.optional_column("death_datetime");
    let date_col = t.optional_column("death_date");
    if datetime_col.is_none() && date_col.is_none() {
        t.column("death_date")?;
    }
    let visits_of = visits_by_person(&visits.list, persons.rows.len());
    let death = events.names.intern(DEATH_CODE);
    let mut dead = vec![false; persons.rows.len()];
    while let Some(line) = t.next_row()? {
        let person_id = parse_id(t.get(person_col), path, line, "person_id")?;
        let when = match parse_datetime(t.get_opt(datetime_col), path, line, "death_datetime")? {
            Some(w) => Some(w),
            None => parse_datetime(t.get_opt(date_col), path, line, "death_date")?,
        };
        let Some(day) = when.map(|w| w.date()) else {
            report.skip("deaths without a date");
            continue;
        };
        let Some(&person) = persons.index.get(&person_id) else {
            report.skip("deaths of persons not in person.csv");
            continue;
        };
        if std::mem::replace(&mut dead[person as usize], true) {
            report.skip("repeated deaths of a person (first kept)");
            continue;
        }
        // The latest start on or before the day; among equal starts the last in file order, as sorting
        // visits keeps ties in file order.
        let list = &visits.list;
        let last = visits_of[person as usize]
            .iter()
            .copied()
            .filter(|&i| list[i as usize].start.date() <= day)
            .fold(None, |best: Option<u32>, i| match best {
                Some(b) if list[b as usize].start > list[i as usize].start => Some(b),
                _ => Some(i),
            });
        let Some(vi) = last else {
            report.skip("deaths before the person's first visit");
            continue;
        };
        events.codes.push((vi, death));
    }
    Ok(())
}

/// Each person's visits (indices into `visits`), in file order.
fn visits_by_person(visits: &[VisitRow], persons: usize) -> Vec<Vec<u32>> {
    let mut of: Vec<Vec<u32>> = vec![Vec::new(); persons];
    for (i, v) in visits.iter().enumerate() {
        of[v.person as usize].push(i as u32);
    }
    of
}

mod store;
mod table;
pub use store::OmopStore;
pub use table::is_table_file;
use table::*;

#[cfg(test)]
mod tests;
