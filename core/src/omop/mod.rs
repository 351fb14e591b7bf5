//! OMOP CDM 5.4 CSV reader: a folder of table files becomes patients with visits.
//!
//! # Tables
//! - `person.csv` (required): `person_id`, and for demographics (each optional) `gender_source_value` /
//!   `gender_concept_id`, `race_source_value` / `race_concept_id`, `ethnicity_source_value` /
//!   `ethnicity_concept_id`, `year_of_birth`, `month_of_birth`, `day_of_birth`, `birth_datetime`.
//! - `visit_occurrence.csv` (required): `visit_occurrence_id`, `person_id`, and `visit_start_datetime`
//!   and/or `visit_start_date` (the datetime is used when filled).
//! - `condition_occurrence.csv`, `drug_exposure.csv`, `procedure_occurrence.csv`, `measurement.csv`
//!   (each optional; an absent table is reported in [`ReadReport::skipped`]): `visit_occurrence_id`, the
//!   table's concept id and source value, and for measurements `value_as_number`.
//!
//! File names match case-insensitively (`PERSON.csv`) and may end in `.csv`, `.tsv` or `.txt`, each
//! optionally gzipped (`.csv.gz`); the delimiter (comma, tab, pipe or semicolon) is read off the header
//! line, since database exports often use tabs or pipes whatever the name says. Columns are found by header
//! name (case-insensitive), never by position. A missing required file or column, a row with the wrong number
//! of fields or an unparseable id is an error naming the file and line (the header is line 1).
//! Files are streamed row by row: memory grows with the output, not with the files.
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
//!
//! An event table must have `person_id` and `visit_occurrence_id`. Its dates (every filled `*_date` and
//! `*_datetime` field) must parse as `YYYY-MM-DD` or `YYYY-MM-DD HH:MM:SS`, else the file, line and column are
//! named, though the event takes its visit's date: a date that does not parse points to a broken export.
//! Events with neither a concept id nor a source value are counted in `skipped`. A measurement's
//! `value_as_number`, when filled and finite, also becomes a [`LabValue`] under the same code; NaN,
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
use crate::interner::Interner;
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
const EVENT_TABLES: [EventTable; 4] = [
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
];

/// Gender concept ids of the OMOP standard vocabulary.
const GENDER_MALE: &str = "8507";
const GENDER_FEMALE: &str = "8532";

/// Reads an OMOP CDM 5.4 CSV folder (see the module documentation for what is read and how).
pub fn read_omop(dir: &Path) -> Result<Dataset> {
    let files = TableFiles::scan(dir)?;
    let mut report = ReadReport::default();
    let persons = read_persons(&files.required(dir, "person")?)?;
    let mut visits = read_visits(&files.required(dir, "visit_occurrence")?, &persons, &mut report)?;
    let mut codes = Interner::default();
    for table in &EVENT_TABLES {
        match files.optional(table.table)? {
            Some(path) => read_events(&path, table, &persons, &mut visits, &mut codes, &mut report)?,
            None => report.skip(&format!("table {}.csv absent", table.table)),
        }
    }
    Ok(assemble(persons, visits, &codes, report))
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
    index: HashMap<i64, usize>,
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
        index: HashMap::new(),
    };
    while let Some(line) = t.next_row()? {
        let id = parse_id(t.get(cols.id), path, line, "person_id")?;
        let demographics = parse_demographics(&t, &cols, line)?;
        if persons.index.insert(id, persons.rows.len()).is_some() {
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

/// A visit being filled with events: code and lab indices into a [`Interner`].
struct VisitAcc {
    person: usize,
    start: NaiveDateTime,
    codes: Vec<u32>,
    labs: Vec<(u32, f64)>,
    events: usize,
}

struct Visits {
    list: Vec<VisitAcc>,
    index: HashMap<i64, usize>,
}

fn read_visits(path: &Path, persons: &Persons, report: &mut ReadReport) -> Result<Visits> {
    let mut t = CsvTable::open(path)?;
    let id_col = t.column("visit_occurrence_id")?;
    let person_col = t.column("person_id")?;
    let datetime_col = t.optional_column("visit_start_datetime");
    let date_col = t.optional_column("visit_start_date");
    if datetime_col.is_none() && date_col.is_none() {
        t.column("visit_start_date")?;
    }
    let mut visits = Visits {
        list: Vec::new(),
        index: HashMap::new(),
    };
    while let Some(line) = t.next_row()? {
        let id = parse_id(t.get(id_col), path, line, "visit_occurrence_id")?;
        let person_id = parse_id(t.get(person_col), path, line, "person_id")?;
        let start = match parse_datetime(t.get_opt(datetime_col), path, line, "visit_start_datetime")? {
            Some(s) => Some(s),
            None => parse_datetime(t.get_opt(date_col), path, line, "visit_start_date")?,
        };
        let Some(start) = start else {
            report.skip("visits without a start date");
            continue;
        };
        let Some(&person) = persons.index.get(&person_id) else {
            report.skip("visits of persons not in person.csv");
            continue;
        };
        if visits.index.insert(id, visits.list.len()).is_some() {
            return Err(Error::line(path, line, format!("duplicate visit_occurrence_id {id}")));
        }
        visits.list.push(VisitAcc {
            person,
            start,
            codes: Vec::new(),
            labs: Vec::new(),
            events: 0,
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
    code: Option<String>,
    value: LabField,
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
    codes: &mut Interner,
    report: &mut ReadReport,
) -> Result<()> {
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
        attach_event(row, persons, visits, codes, report);
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
    let source = t.get_opt(cols.source);
    let code = match concept {
        Some(c) if c != 0 => Some(format!("{}/{c}", table.domain)),
        _ if !source.is_empty() => Some(format!("{}/src:{source}", table.domain)),
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

fn attach_event(row: EventRow, persons: &Persons, visits: &mut Visits, codes: &mut Interner, report: &mut ReadReport) {
    let Some(code) = row.code else {
        report.skip("events without a concept id or source value");
        return;
    };
    let Some(&vi) = row.visit_id.and_then(|id| visits.index.get(&id)) else {
        report.events_without_visit += 1;
        return;
    };
    // An event filed under another person's visit belongs to neither record.
    if row
        .person_id
        .is_some_and(|p| p != persons.rows[visits.list[vi].person].id)
    {
        report.skip("events whose person_id is not their visit's person");
        return;
    }
    let code = codes.intern(&code);
    let visit = &mut visits.list[vi];
    visit.events += 1;
    if !visit.codes.contains(&code) {
        visit.codes.push(code);
    }
    match row.value {
        LabField::Absent => {}
        LabField::Finite(x) => visit.labs.push((code, x)),
        LabField::NotFinite => report.non_finite_values += 1,
    }
}

// ---------------------------------------------------------------------------------------------------
// Assembly

fn assemble(persons: Persons, visits: Visits, codes: &Interner, mut report: ReadReport) -> Dataset {
    let mut per_person: Vec<Vec<Visit>> = vec![Vec::new(); persons.rows.len()];
    for v in visits.list {
        if v.codes.is_empty() {
            report.skip("visits without codes");
            continue;
        }
        report.events += v.events;
        per_person[v.person].push(to_visit(v, codes));
    }
    let mut order: Vec<usize> = (0..persons.rows.len()).collect();
    order.sort_by_key(|&i| persons.rows[i].id);
    let mut rows: Vec<Option<Person>> = persons.rows.into_iter().map(Some).collect();
    let mut patients = Vec::new();
    for i in order {
        let person = rows[i].take().expect("each person is taken once");
        report.patients += 1;
        let visits = std::mem::take(&mut per_person[i]);
        if visits.is_empty() {
            report.patients_without_visits += 1;
            continue;
        }
        let mut patient = Patient {
            id: person.id.to_string(),
            demographics: person.demographics,
            visits,
            ..Patient::default()
        };
        crate::sort_visits(&mut patient, &mut report);
        report.visits += patient.visits.len();
        patients.push(patient);
    }
    Dataset { patients, report }
}

fn to_visit(v: VisitAcc, codes: &Interner) -> Visit {
    let name = |i: u32| codes.name(i).to_string();
    Visit {
        day: None,
        time: Some(crate::time::format_record_time(v.start)),
        codes: v.codes.into_iter().map(name).collect(),
        labs: v
            .labs
            .into_iter()
            .map(|(c, value)| LabValue { code: name(c), value })
            .collect(),
        visit_type: None,
    }
}

mod table;
pub use table::is_table_file;
use table::*;

#[cfg(test)]
mod tests;
