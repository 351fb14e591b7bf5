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
//! Events with neither a concept id nor a source value are counted in `skipped`. A measurement's
//! `value_as_number`, when filled and finite, also becomes a [`LabValue`] under the same code; NaN,
//! infinite and unparseable values are counted in `non_finite_values` (the code is kept).
//!
//! # Assembly
//! Events join visits by `visit_occurrence_id`; events with an empty or unknown visit id are counted in
//! `events_without_visit` and left out, and so are events whose `person_id` (when the table has the
//! column) is not their visit's person (counted in `skipped`: such a row is a broken export, and adding
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

use crate::encoding::parse_time;
use crate::error::{Error, Result};
use crate::fsutil::open_maybe_gz;
use crate::record::{Dataset, Demographics, LabValue, Patient, ReadReport, Visit};
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
    let mut codes = CodeTable::default();
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

/// The table name of a file name (`PERSON.csv.gz` -> `person`), when it has a table file's extension.
fn table_stem(name: &str) -> Option<String> {
    let name = name.to_ascii_lowercase();
    let plain = name.strip_suffix(".gz").unwrap_or(&name);
    [".csv", ".tsv", ".txt"]
        .iter()
        .find_map(|ext| plain.strip_suffix(ext))
        .map(str::to_string)
}

/// Whether `name` is a file of OMOP table `table` (any case, any accepted extension).
pub fn is_table_file(name: &str, table: &str) -> bool {
    table_stem(name).as_deref() == Some(table)
}

/// The CSV files of a folder, by lowercase file stem.
struct TableFiles {
    by_stem: HashMap<String, Vec<PathBuf>>,
}

impl TableFiles {
    fn scan(dir: &Path) -> Result<TableFiles> {
        if !dir.is_dir() {
            return Err(Error::file(
                dir,
                "not a folder (expected an OMOP CDM folder with person.csv, visit_occurrence.csv, ...)",
            ));
        }
        let mut by_stem: HashMap<String, Vec<PathBuf>> = HashMap::new();
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let path = entry.map_err(|e| Error::io(dir, e))?.path();
            let name = match path.file_name() {
                Some(n) => n.to_string_lossy().to_ascii_lowercase(),
                None => continue,
            };
            if let Some(stem) = table_stem(&name) {
                if path.is_file() {
                    by_stem.entry(stem).or_default().push(path);
                }
            }
        }
        Ok(TableFiles { by_stem })
    }

    fn optional(&self, table: &str) -> Result<Option<PathBuf>> {
        match self.by_stem.get(table).map(Vec::as_slice) {
            None | Some([]) => Ok(None),
            Some([one]) => Ok(Some(one.clone())),
            Some(many) => Err(Error::file(
                &many[0],
                format!(
                    "table {table} has {} files (names differing only in case or extension); keep one",
                    many.len()
                ),
            )),
        }
    }

    fn required(&self, dir: &Path, table: &str) -> Result<PathBuf> {
        self.optional(table)?.ok_or_else(|| {
            Error::file(
                &dir.join(format!("{table}.csv")),
                format!("missing required OMOP table {table}.csv (file names match case-insensitively)"),
            )
        })
    }
}

/// The field delimiter of a table, from its header line: tab, comma, pipe or semicolon, whichever occurs
/// most (exports from database tools are often tab- or pipe-delimited whatever the file name says).
fn sniff_delimiter(path: &Path) -> Result<u8> {
    let mut header = Vec::new();
    let mut reader = BufReader::new(open_maybe_gz(path)?);
    reader.read_until(b'\n', &mut header).map_err(|e| Error::io(path, e))?;
    if header.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(Error::line(
            path,
            1,
            "is empty: expected a header line naming the table's columns (e.g. person_id,year_of_birth,...)",
        ));
    }
    let count = |d: u8| header.iter().filter(|&&b| b == d).count();
    let delimiters = [b',', b'\t', b'|', b';'];
    if delimiters.iter().all(|&d| count(d) == 0) {
        let shown: String = String::from_utf8_lossy(&header).trim().chars().take(80).collect();
        return Err(Error::line(
            path,
            1,
            format!(
                "the header `{shown}` has no comma, tab, pipe or semicolon: expected one of those as the field \
                 delimiter (convert the table, e.g. from colons, first)"
            ),
        ));
    }
    Ok(delimiters
        .into_iter()
        .max_by_key(|d| (count(*d), *d == b','))
        .unwrap_or(b','))
}

/// A CSV file read row by row, with its columns found by header name.
struct CsvTable {
    path: PathBuf,
    reader: csv::Reader<BufReader<Box<dyn Read>>>,
    columns: HashMap<String, usize>,
    width: usize,
    record: csv::StringRecord,
}

impl CsvTable {
    fn open(path: &Path) -> Result<CsvTable> {
        let delimiter = sniff_delimiter(path)?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .delimiter(delimiter)
            .from_reader(BufReader::new(open_maybe_gz(path)?));
        let headers = reader.headers().map_err(|e| csv_error(path, e))?.clone();
        let mut columns = HashMap::new();
        for (i, name) in headers.iter().enumerate() {
            let name = name.trim_start_matches('\u{feff}').trim().to_ascii_lowercase();
            columns.entry(name).or_insert(i);
        }
        Ok(CsvTable {
            path: path.to_path_buf(),
            reader,
            columns,
            width: headers.len(),
            record: csv::StringRecord::new(),
        })
    }

    fn column(&self, name: &str) -> Result<usize> {
        self.optional_column(name).ok_or_else(|| {
            Error::field(
                &self.path,
                name,
                "missing required column (the header names are matched case-insensitively)",
            )
        })
    }

    fn optional_column(&self, name: &str) -> Option<usize> {
        self.columns.get(name).copied()
    }

    /// Advances to the next row; returns its line number (1-based, the header is line 1), or `None` at
    /// the end. A row with a different number of fields than the header is an error.
    fn next_row(&mut self) -> Result<Option<usize>> {
        let more = self
            .reader
            .read_record(&mut self.record)
            .map_err(|e| csv_error(&self.path, e))?;
        if !more {
            return Ok(None);
        }
        let line = self.record.position().map_or(0, |p| p.line() as usize);
        if self.record.len() != self.width {
            return Err(Error::line(
                &self.path,
                line,
                format!("{} fields, expected {} as in the header", self.record.len(), self.width),
            ));
        }
        Ok(Some(line))
    }

    /// Field `col` of the current row, trimmed.
    fn get(&self, col: usize) -> &str {
        self.record.get(col).unwrap_or("").trim()
    }

    /// Field of an optional column; empty when the column is absent.
    fn get_opt(&self, col: Option<usize>) -> &str {
        col.map_or("", |c| self.get(c))
    }
}

fn csv_error(path: &Path, e: csv::Error) -> Error {
    match e.position() {
        Some(p) => Error::line(path, p.line() as usize, e.to_string()),
        None => Error::file(path, e.to_string()),
    }
}

/// Parses a required integer id.
fn parse_id(value: &str, path: &Path, line: usize, column: &str) -> Result<i64> {
    value
        .parse()
        .map_err(|_| Error::line(path, line, format!("`{column}` is `{value}`, expected an integer id")))
}

/// Parses an optional integer id: empty is `None`.
fn parse_optional_id(value: &str, path: &Path, line: usize, column: &str) -> Result<Option<i64>> {
    if value.is_empty() {
        Ok(None)
    } else {
        parse_id(value, path, line, column).map(Some)
    }
}

/// Parses a date or datetime field; empty is `None`.
fn parse_datetime(value: &str, path: &Path, line: usize, column: &str) -> Result<Option<NaiveDateTime>> {
    if value.is_empty() {
        return Ok(None);
    }
    parse_time(value.trim_end_matches('Z')).map(Some).ok_or_else(|| {
        Error::line(
            path,
            line,
            format!("`{column}` is `{value}`, expected YYYY-MM-DD or YYYY-MM-DD HH:MM:SS"),
        )
    })
}

fn format_time(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%dT%H:%M:%S").to_string()
}

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
        birth_date: birth.map(|d| d.format("%Y-%m-%d").to_string()),
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

/// A visit being filled with events: code and lab indices into a [`CodeTable`].
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

/// Interned code strings, so that visits hold small indices.
#[derive(Default)]
struct CodeTable {
    names: Vec<String>,
    index: HashMap<String, u32>,
}

impl CodeTable {
    fn intern(&mut self, code: String) -> u32 {
        if let Some(&i) = self.index.get(&code) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(code.clone());
        self.index.insert(code, i);
        i
    }
}

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
    person: Option<usize>,
    concept: usize,
    source: Option<usize>,
    value: Option<usize>,
}

fn read_events(
    path: &Path,
    table: &EventTable,
    persons: &Persons,
    visits: &mut Visits,
    codes: &mut CodeTable,
    report: &mut ReadReport,
) -> Result<()> {
    let mut t = CsvTable::open(path)?;
    let cols = EventColumns {
        visit: t.column("visit_occurrence_id")?,
        person: t.optional_column("person_id"),
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
    let person_id = match cols.person {
        Some(c) => parse_optional_id(t.get(c), &t.path, line, "person_id")?,
        None => None,
    };
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

fn attach_event(row: EventRow, persons: &Persons, visits: &mut Visits, codes: &mut CodeTable, report: &mut ReadReport) {
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
    let code = codes.intern(code);
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

fn assemble(persons: Persons, visits: Visits, codes: &CodeTable, mut report: ReadReport) -> Dataset {
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

fn to_visit(v: VisitAcc, codes: &CodeTable) -> Visit {
    let name = |i: u32| codes.names[i as usize].clone();
    Visit {
        day: None,
        time: Some(format_time(v.start)),
        codes: v.codes.into_iter().map(name).collect(),
        labs: v
            .labs
            .into_iter()
            .map(|(c, value)| LabValue { code: name(c), value })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    /// A small folder exercising most rules: visits out of order, unknown and empty visit ids, an event
    /// of one person in another's visit, a NaN measurement, upper-case file and column names, a source-value code, an absent table.
    fn sample_folder() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        write(
            d,
            "PERSON.csv",
            "person_id,gender_concept_id,year_of_birth,month_of_birth,day_of_birth,birth_datetime,race_concept_id,ethnicity_concept_id,gender_source_value,race_source_value,ethnicity_source_value\n\
             2,8532,1950,8,2,,8527,0,,,hispanic\n\
             1,8507,1974,12,6,1974-12-06 00:00:00,8527,0,M,white,\n\
             3,0,,,,,0,0,,,\n",
        );
        write(
            d,
            "visit_occurrence.csv",
            "visit_occurrence_id,person_id,visit_concept_id,visit_start_date,visit_start_datetime\n\
             10,1,9202,2020-03-01,\n\
             11,1,9202,2020-01-15,2020-01-15 10:30:00\n\
             12,1,9202,2020-05-01,\n\
             20,2,9202,2019-07-04,2019-07-04\n",
        );
        write(
            d,
            "condition_occurrence.csv",
            "condition_occurrence_id,person_id,condition_concept_id,visit_occurrence_id,condition_source_value\n\
             1,1,316866,10,38341003\n\
             2,1,0,11,E11.9\n\
             3,1,316866,10,38341003\n\
             4,1,201826,99,44054006\n\
             5,1,201826,,44054006\n\
             6,2,320128,20,59621000\n\
             7,2,201826,10,44054006\n",
        );
        write(
            d,
            "DRUG_EXPOSURE.csv",
            "DRUG_EXPOSURE_ID,PERSON_ID,DRUG_CONCEPT_ID,VISIT_OCCURRENCE_ID,DRUG_SOURCE_VALUE\n\
             1,1,1308216,10,314076\n\
             2,1,1308216,11,314076\n",
        );
        write(
            d,
            "measurement.csv",
            "measurement_id,person_id,measurement_concept_id,value_as_number,visit_occurrence_id,measurement_source_value\n\
             1,1,3004249,132.5,11,8480-6\n\
             2,1,3004249,NaN,11,8480-6\n\
             3,1,0,,10,2339-0\n\
             4,2,3004249,,20,8480-6\n\
             5,2,3012888,abc,20,8462-4\n",
        );
        tmp
    }

    /// Rewrites every table of `from` into `to` with another delimiter and file name, gzipped or not.
    fn rewrite(from: &Path, to: &Path, delimiter: char, ext: &str, gzip: bool) {
        use std::io::Write;
        for entry in std::fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path)
                .unwrap()
                .replace(',', &delimiter.to_string());
            let stem = path.file_stem().unwrap().to_string_lossy().to_string();
            let name = format!("{stem}.{ext}{}", if gzip { ".gz" } else { "" });
            let mut file = std::fs::File::create(to.join(name)).unwrap();
            if gzip {
                let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
                gz.write_all(text.as_bytes()).unwrap();
                gz.finish().unwrap();
            } else {
                file.write_all(text.as_bytes()).unwrap();
            }
        }
    }

    #[test]
    fn tab_pipe_semicolon_and_gzipped_tables_read_like_csv() {
        let csv = sample_folder();
        let expected = read_omop(csv.path()).unwrap();
        for (delimiter, ext, gzip) in [
            ('\t', "tsv", false),
            ('\t', "csv", true),
            ('|', "txt", false),
            (';', "csv", true),
        ] {
            let other = tempfile::tempdir().unwrap();
            rewrite(csv.path(), other.path(), delimiter, ext, gzip);
            let ds = read_omop(other.path()).unwrap_or_else(|e| panic!("{delimiter:?} {ext} gz={gzip}: {e}"));
            assert_eq!(ds.patients, expected.patients, "{delimiter:?} {ext} gz={gzip}");
            assert_eq!(ds.report, expected.report, "{delimiter:?} {ext} gz={gzip}");
            assert_eq!(crate::Format::detect(other.path()).unwrap(), crate::Format::Omop);
        }
        // The same table twice (plain and gzipped) is ambiguous: an error, not a silent pick.
        let both = tempfile::tempdir().unwrap();
        rewrite(csv.path(), both.path(), ',', "csv", false);
        rewrite(csv.path(), both.path(), ',', "csv", true);
        let err = read_omop(both.path()).unwrap_err().to_string();
        assert!(err.contains("keep one"), "{err}");
    }

    #[test]
    fn compact_and_offset_dates_parse() {
        use crate::encoding::parse_time;
        let t = |s: &str| parse_time(s).map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string());
        assert_eq!(t("20200115").as_deref(), Some("2020-01-15T00:00:00"));
        assert_eq!(t("2020-01-15 10:30").as_deref(), Some("2020-01-15T10:30:00"));
        assert_eq!(t("2020-01-15T10:30:00+02:00").as_deref(), Some("2020-01-15T10:30:00"));
        assert_eq!(
            t("2020-01-15 10:30:00.123-0500").as_deref(),
            Some("2020-01-15T10:30:00")
        );
        assert_eq!(t("2020-1-5"), None);
        assert_eq!(t("202001150"), None);
    }

    #[test]
    fn reads_a_small_folder_exactly() {
        let tmp = sample_folder();
        let ds = read_omop(tmp.path()).unwrap();
        let expected = vec![
            Patient {
                id: "1".into(),
                demographics: Demographics {
                    sex: Some("M".into()),
                    race: Some("white".into()),
                    ethnicity: None,
                    birth_year: Some(1974),
                    birth_date: Some("1974-12-06".into()),
                },
                visits: vec![
                    Visit {
                        day: None,
                        time: Some("2020-01-15T10:30:00".into()),
                        codes: vec![
                            "condition/src:E11.9".into(),
                            "drug/1308216".into(),
                            "measurement/3004249".into(),
                        ],
                        labs: vec![LabValue {
                            code: "measurement/3004249".into(),
                            value: 132.5,
                        }],
                    },
                    Visit {
                        day: None,
                        time: Some("2020-03-01T00:00:00".into()),
                        codes: vec![
                            "condition/316866".into(),
                            "drug/1308216".into(),
                            "measurement/src:2339-0".into(),
                        ],
                        labs: vec![],
                    },
                ],
                ..Patient::default()
            },
            Patient {
                id: "2".into(),
                demographics: Demographics {
                    sex: Some("F".into()),
                    race: Some("8527".into()),
                    ethnicity: Some("hispanic".into()),
                    birth_year: Some(1950),
                    birth_date: Some("1950-08-02".into()),
                },
                visits: vec![Visit {
                    day: None,
                    time: Some("2019-07-04T00:00:00".into()),
                    codes: vec![
                        "condition/320128".into(),
                        "measurement/3004249".into(),
                        "measurement/3012888".into(),
                    ],
                    labs: vec![],
                }],
                ..Patient::default()
            },
        ];
        assert_eq!(ds.patients, expected);
        let r = &ds.report;
        assert_eq!(r.patients, 3);
        assert_eq!(r.patients_without_visits, 1);
        assert_eq!(r.visits, 3);
        assert_eq!(r.events, 11);
        assert_eq!(r.events_without_visit, 2);
        assert_eq!(r.non_finite_values, 2);
        let skipped: BTreeMap<String, usize> = [
            ("table procedure_occurrence.csv absent", 1),
            ("visits without codes", 1),
            ("records with visits out of time order (sorted)", 1),
            // Row 7: person 2's event filed under person 1's visit 10.
            ("events whose person_id is not their visit's person", 1),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(r.skipped, skipped);
    }

    #[test]
    fn missing_person_table_is_named() {
        let tmp = sample_folder();
        std::fs::remove_file(tmp.path().join("PERSON.csv")).unwrap();
        let msg = read_omop(tmp.path()).unwrap_err().to_string();
        assert!(msg.contains("person.csv"), "{msg}");
        assert!(msg.contains("missing required OMOP table"), "{msg}");
    }

    #[test]
    fn missing_visit_table_is_named() {
        let tmp = sample_folder();
        std::fs::remove_file(tmp.path().join("visit_occurrence.csv")).unwrap();
        let msg = read_omop(tmp.path()).unwrap_err().to_string();
        assert!(msg.contains("visit_occurrence.csv"), "{msg}");
    }

    #[test]
    fn row_with_wrong_field_count_names_the_line() {
        let tmp = sample_folder();
        write(
            tmp.path(),
            "visit_occurrence.csv",
            "visit_occurrence_id,person_id,visit_start_date\n10,1,2020-03-01\n11,1\n",
        );
        let msg = read_omop(tmp.path()).unwrap_err().to_string();
        assert!(msg.contains("visit_occurrence.csv:3:"), "{msg}");
        assert!(msg.contains("2 fields, expected 3"), "{msg}");
    }

    #[test]
    fn unparseable_id_names_file_line_and_column() {
        let tmp = sample_folder();
        write(
            tmp.path(),
            "condition_occurrence.csv",
            "condition_concept_id,visit_occurrence_id\n316866,10\n316866,ten\n",
        );
        let msg = read_omop(tmp.path()).unwrap_err().to_string();
        assert!(msg.contains("condition_occurrence.csv:3:"), "{msg}");
        assert!(msg.contains("`visit_occurrence_id` is `ten`"), "{msg}");
    }

    #[test]
    fn missing_column_names_file_and_column() {
        let tmp = sample_folder();
        write(
            tmp.path(),
            "measurement.csv",
            "measurement_id,visit_occurrence_id,value_as_number\n1,10,3\n",
        );
        let msg = read_omop(tmp.path()).unwrap_err().to_string();
        assert!(msg.contains("measurement.csv"), "{msg}");
        assert!(msg.contains("`measurement_concept_id`"), "{msg}");
    }

    #[test]
    fn empty_and_colon_delimited_tables_say_what_is_wrong() {
        let tmp = sample_folder();
        write(tmp.path(), "measurement.csv", "");
        let msg = read_omop(tmp.path()).unwrap_err().to_string();
        assert!(msg.contains("measurement.csv:1:") && msg.contains("is empty"), "{msg}");
        write(
            tmp.path(),
            "measurement.csv",
            "measurement_id:visit_occurrence_id:measurement_concept_id\n1:10:3\n",
        );
        let msg = read_omop(tmp.path()).unwrap_err().to_string();
        assert!(
            msg.contains("measurement.csv:1:") && msg.contains("no comma, tab, pipe or semicolon"),
            "{msg}"
        );
    }

    #[test]
    fn unparseable_visit_date_is_an_error() {
        let tmp = sample_folder();
        write(
            tmp.path(),
            "visit_occurrence.csv",
            "visit_occurrence_id,person_id,visit_start_date\n10,1,03/01/2020\n",
        );
        let msg = read_omop(tmp.path()).unwrap_err().to_string();
        assert!(msg.contains("visit_occurrence.csv:2:"), "{msg}");
        assert!(msg.contains("visit_start_date"), "{msg}");
    }

    #[test]
    fn table_files_differing_in_case_are_refused() {
        let tmp = sample_folder();
        write(tmp.path(), "person.csv", "person_id\n1\n");
        let msg = read_omop(tmp.path()).unwrap_err().to_string();
        assert!(msg.contains("differing only in case"), "{msg}");
    }

    #[test]
    fn lab_fields() {
        assert_eq!(parse_lab_field(""), LabField::Absent);
        assert_eq!(parse_lab_field("1e3"), LabField::Finite(1000.0));
        assert_eq!(parse_lab_field("inf"), LabField::NotFinite);
        assert_eq!(parse_lab_field("NaN"), LabField::NotFinite);
        assert_eq!(parse_lab_field("1,5"), LabField::NotFinite);
    }

    /// The bundled Synthea-1k demo data (`./scripts/setup.sh` extracts it).
    #[test]
    #[ignore = "needs the demo data of ./scripts/setup.sh in data/synthea1k-omop"]
    fn reads_the_synthea_demo_data() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/synthea1k-omop");
        let ds = read_omop(&dir).unwrap();
        assert_eq!(ds.report.patients, 1130);
        assert!(ds.patients.len() > 1000, "{}", ds.patients.len());
        assert!(ds.report.visits > 25_000, "{:?}", ds.report);
        for p in &ds.patients {
            let times: Vec<&str> = p.visits.iter().map(|v| v.time.as_deref().unwrap()).collect();
            assert!(times.windows(2).all(|w| w[0] <= w[1]), "{}", p.id);
        }
    }
}
