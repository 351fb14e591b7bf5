//! Where records' contents go in OMOP: codes to tables, demographic values to concepts, births, ids; and
//! what the reader gives back for a written record.

use super::tables::{fit_source_value, EventTable, DEMOGRAPHIC_CONCEPTS, MAX_ID};
use super::visit_time;
use crate::meds::DEATH_CODE;
use crate::record::DemographicCategory;
use crate::record::{Demographics, Patient, Visit};
use chrono::{Datelike, NaiveDate};

/// Where a code goes: its table, concept id (0 when it has none) and source value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route<'a> {
    pub table: EventTable,
    pub concept_id: i64,
    /// What the row's `*_source_value` holds: cut to [`super::SOURCE_VALUE_WIDTH`] characters.
    pub source_value: &'a str,
    /// The code's prefix named no table's domain: it went to `observation`.
    pub unprefixed: bool,
    /// The source value was longer than the column and was cut.
    pub truncated: bool,
}

impl<'a> Route<'a> {
    fn new(table: EventTable, concept_id: i64, source_value: &'a str, unprefixed: bool) -> Route<'a> {
        let (source_value, truncated) = fit_source_value(source_value);
        Route {
            table,
            concept_id,
            source_value,
            unprefixed,
            truncated,
        }
    }
}

/// Where `code` goes (see the module documentation).
pub fn route(code: &str) -> Route<'_> {
    if let Some((prefix, rest)) = code.split_once('/') {
        if let Some(table) = EventTable::from_prefix(prefix) {
            let exact_domain = prefix == table.domain();
            if exact_domain {
                if let Some(source) = rest.strip_prefix("src:") {
                    return Route::new(table, 0, source, false);
                }
                if let Ok(id) = rest.parse::<i64>() {
                    if id > 0 && id <= i32::MAX as i64 {
                        return Route::new(table, id, "", false);
                    }
                }
            }
            return Route::new(table, 0, code, false);
        }
    }
    Route::new(EventTable::Observation, 0, code, true)
}

/// A visit's `visit_concept_id` and `visit_source_value`: a type that is a concept id (as the reader reads
/// `visit_concept_id`) is the concept, with no source value; any other type (a model trained on MEDS or
/// JSONL: `IP`) is concept 0 with the type as the source value, cut to the column (the flag says so); no
/// type is 0 and empty.
pub(super) fn visit_concept(visit_type: Option<&str>) -> (i64, &str, bool) {
    match visit_type {
        None => (0, "", false),
        Some(t) => match t.trim().parse::<i64>() {
            Ok(id) if id > 0 && id <= i32::MAX as i64 => (id, "", false),
            _ => {
                let (source, truncated) = fit_source_value(t);
                (0, source, truncated)
            }
        },
    }
}

/// Whether `code` is the death code ([`DEATH_CODE`], `MEDS_DEATH`), which the writer puts in `death`.
pub fn is_death(code: &str) -> bool {
    code == DEATH_CODE
}

/// The date of a record's death: its first visit holding the death code.
pub(super) fn death_visit(p: &Patient) -> Option<usize> {
    p.visits.iter().position(|v| v.codes.iter().any(|c| is_death(c)))
}

/// One row a visit gives: where it goes, and its value.
pub(super) struct EventRow<'a> {
    pub(super) route: Route<'a>,
    pub(super) value: Option<f64>,
}

fn event_row(code: &str, value: Option<f64>) -> EventRow<'_> {
    let mut route = route(code);
    if value.is_some() && !route.table.has_value() {
        // A value of a condition, drug or procedure code: an observation of that code.
        route = Route::new(EventTable::Observation, 0, code, route.unprefixed);
    }
    EventRow { route, value }
}

/// A visit's rows in writing order: each code with the first of its lab values not yet placed, then each
/// lab value left over under its code.
pub(super) fn visit_rows(v: &Visit) -> Vec<EventRow<'_>> {
    let mut used = vec![false; v.labs.len()];
    let mut rows = Vec::with_capacity(v.codes.len() + v.labs.len());
    // The death code is the person's `death` row, not an event.
    for code in v.codes.iter().filter(|c| !is_death(c)) {
        let lab = (0..v.labs.len()).find(|&i| !used[i] && &v.labs[i].code == code);
        if let Some(i) = lab {
            used[i] = true;
        }
        rows.push(event_row(code, lab.map(|i| v.labs[i].value)));
    }
    for (lab, _) in v.labs.iter().zip(&used).filter(|(_, u)| !**u) {
        rows.push(event_row(&lab.code, Some(lab.value)));
    }
    rows
}

/// The record [`crate::omop::read_omop`] reads from what [`super::OmopWriter::write`] wrote for `p` at
/// `index`: id `index + 1`; codes grouped by table in the reader's order (condition, drug, procedure,
/// measurement, observation) with each lab value's code among them, and the death code (the record's first)
/// last on the last visit on or before the death's date; lab values in their
/// rows' order; the visit type when it is a concept id (as `visit_concept_id`); visits without codes left out; times at whole seconds, days and labels not kept; sex
/// given as a concept id read as `M`/`F`; the birth of a record without a birth year, or born after its
/// first visit, in the first visit's year (on its date, for the latter).
/// A record left without visits is not read back at all.
pub fn as_read_back(index: u64, p: &Patient) -> Patient {
    let mut visits = Vec::new();
    let death_date = death_visit(p).map(|t| visit_time(&p.visits[t]).date());
    for v in &p.visits {
        let rows = visit_rows(v);
        let mut codes: Vec<String> = Vec::new();
        let mut labs = Vec::new();
        for table in EventTable::ALL {
            for row in rows.iter().filter(|r| r.route.table == table) {
                let read = match row.route.concept_id {
                    0 => format!("{}/src:{}", table.domain(), row.route.source_value),
                    id => format!("{}/{id}", table.domain()),
                };
                if !codes.contains(&read) {
                    codes.push(read.clone());
                }
                if let Some(value) = row.value {
                    labs.push(crate::record::LabValue { code: read, value });
                }
            }
        }
        let time = visit_time(v).format("%Y-%m-%dT%H:%M:%S").to_string();
        let visit_type = match visit_concept(v.visit_type.as_deref()) {
            (0, ..) => None,
            (id, ..) => Some(id.to_string()),
        };
        visits.push(Visit {
            day: None,
            time: Some(time),
            codes,
            labs,
            visit_type,
        });
    }
    // The reader puts the death on the last visit on or before its date.
    if let Some(date) = death_date {
        let on_or_before = |v: &Visit| {
            v.time
                .as_deref()
                .and_then(crate::time::parse_time)
                .is_some_and(|t| t.date() <= date)
        };
        if let Some(v) = visits.iter_mut().rev().find(|v| on_or_before(v)) {
            v.codes.push(DEATH_CODE.to_string());
        }
    }
    visits.retain(|v| !v.codes.is_empty());
    let mut demographics = p.demographics.clone();
    // Values that are concept ids are written as concepts only; the reader names the two genders.
    demographics.sex = demographics.sex.and_then(|s| match s.trim().parse::<i64>() {
        Ok(8507) => Some("M".to_string()),
        Ok(8532) => Some("F".to_string()),
        Ok(_) => None,
        Err(_) => Some(fit_source_value(&s).0.to_string()),
    });
    for value in [&mut demographics.race, &mut demographics.ethnicity] {
        if value
            .as_deref()
            .is_some_and(|v| v.trim().parse::<i64>().is_ok_and(|id| id <= 0))
        {
            *value = None;
        }
        if let Some(v) = value.as_mut() {
            *v = fit_source_value(v).0.to_string();
        }
    }
    let first = p
        .visits
        .first()
        .map_or_else(crate::time::synthetic_base_time, visit_time)
        .date();
    let birth = birth_of(&p.demographics, first);
    demographics.birth_year = Some(birth.year);
    demographics.birth_date = birth.date.map(|b| b.format("%Y-%m-%d").to_string());
    Patient {
        id: (index + 1).to_string(),
        split: None,
        demographics,
        labels: None,
        label_groups: Default::default(),
        visits,
    }
}

/// Why a person's birth differs from the record's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BirthAdjustment {
    /// No birth year: the first visit's year.
    Missing,
    /// Born after the first visit (a first visit without an age bucket is dated inside its calendar bucket, or
    /// 2000-01-01 without the calendar group): born on the first visit's date instead.
    AfterFirstVisit,
}

pub(super) struct Birth {
    pub(super) year: i32,
    pub(super) date: Option<NaiveDate>,
    pub(super) adjusted: Option<BirthAdjustment>,
}

/// The birth written for a record whose first visit is on `first` (never after it).
pub(super) fn birth_of(d: &Demographics, first: NaiveDate) -> Birth {
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

/// The concept id of a demographic value of `category`; 0 when unknown.
pub fn demographic_concept(category: DemographicCategory, value: &str) -> i64 {
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

/// Ids each record of a cohort of `end` records adds to a table's range: floor((2^31 - 1) / `end`).
pub fn id_share(end: u64) -> u64 {
    MAX_ID / end.max(1)
}
