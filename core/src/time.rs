//! Time in a record: parsing the timestamps the readers meet, the formats the writers use, the base date of
//! synthetic records, a patient's visit days, birth and ages.

use crate::record::Patient;

/// How a record's visit times are written (JSONL `time`, decoded samples): `YYYY-MM-DDTHH:MM:SS`.
pub const RECORD_TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S";
/// How a birth date or a visit date is written: `YYYY-MM-DD`.
pub const DATE_FORMAT: &str = "%Y-%m-%d";

/// A visit time as records carry it.
pub fn format_record_time(t: chrono::NaiveDateTime) -> String {
    t.format(RECORD_TIME_FORMAT).to_string()
}

/// A date as records and OMOP tables carry it.
pub fn format_date(d: chrono::NaiveDate) -> String {
    d.format(DATE_FORMAT).to_string()
}

/// Day 0 of synthetic visit times when a record's birth date or age is unknown, and the date of visits
/// that have no time (models without gap codes): 2000-01-01T00:00:00.
pub fn synthetic_base_time() -> chrono::NaiveDateTime {
    chrono::NaiveDate::from_ymd_opt(2000, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("valid date")
}

/// Day offsets of a patient's visits from its first one, from `day` or `time`.
pub fn visit_days(patient: &Patient) -> Vec<Option<f64>> {
    let first_time = patient
        .visits
        .first()
        .and_then(|v| v.time.as_deref())
        .and_then(parse_time);
    patient
        .visits
        .iter()
        .map(|v| {
            v.day.or_else(|| {
                let t = parse_time(v.time.as_deref()?)?;
                Some((t - first_time?).num_seconds() as f64 / 86_400.0)
            })
        })
        .collect()
}

/// Parses `YYYY-MM-DD`, `YYYYMMDD`, `YYYY-MM-DDTHH:MM[:SS[.f]]` (or a space instead of `T`), optionally
/// with a UTC offset (the local time is kept).
pub fn parse_time(s: &str) -> Option<chrono::NaiveDateTime> {
    let s = s.trim();
    // A plain date, the commonest form in OMOP tables, without trying the datetime forms first.
    if s.len() == 10 {
        if let Ok(d) = chrono::NaiveDate::parse_from_str(s, DATE_FORMAT) {
            return d.and_hms_opt(0, 0, 0);
        }
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        RECORD_TIME_FORMAT,
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t);
        }
    }
    // With a UTC offset (`+02:00`, `-0500`, `Z`): the local wall-clock time is kept, as a visit's day is.
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.naive_local());
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(t) = chrono::DateTime::parse_from_str(s, fmt) {
            return Some(t.naive_local());
        }
    }
    let date = s
        .get(..10)
        .and_then(|d| chrono::NaiveDate::parse_from_str(d, DATE_FORMAT).ok())
        // Compact dates (`20200115`) as some database exports write them.
        .or_else(|| (s.len() == 8).then(|| chrono::NaiveDate::parse_from_str(s, "%Y%m%d").ok())?);
    date.and_then(|d| d.and_hms_opt(0, 0, 0))
}

pub(crate) fn birth_year(patient: &Patient) -> Option<i32> {
    patient.demographics.birth_year.or_else(|| {
        patient
            .demographics
            .birth_date
            .as_deref()
            .and_then(parse_time)
            .map(|t| chrono::Datelike::year(&t))
    })
}

pub(crate) fn birth_time(patient: &Patient) -> Option<chrono::NaiveDateTime> {
    if let Some(t) = patient.demographics.birth_date.as_deref().and_then(parse_time) {
        return Some(t);
    }
    let y = patient.demographics.birth_year?;
    chrono::NaiveDate::from_ymd_opt(y, 7, 1)?.and_hms_opt(0, 0, 0)
}

/// A time as a fractional calendar year (2018-07-02 is about 2018.5): what the calendar group buckets.
pub fn calendar_year(t: chrono::NaiveDateTime) -> f64 {
    use chrono::Datelike;
    f64::from(t.year()) + f64::from(t.ordinal0()) / 366.0
}

/// The calendar year of each visit, `None` without a time.
pub fn visit_years(patient: &Patient) -> Vec<Option<f64>> {
    patient
        .visits
        .iter()
        .map(|v| parse_time(v.time.as_deref()?).map(calendar_year))
        .collect()
}

pub(crate) fn age_at_visit(p: &Patient, t: usize) -> Option<f64> {
    let birth = birth_time(p)?;
    let at = parse_time(p.visits.get(t)?.time.as_deref()?)?;
    Some(((at - birth).num_days() as f64 / 365.25).max(0.0))
}
