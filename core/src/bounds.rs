//! Plausible ranges for what the readers give, applied to every format after reading: a visit dated in year
//! 9999, a birth year 99999 or a lab value of 1e308 is a data error, and left in it would become a bucket
//! edge and come back in samples. What falls outside is dropped and counted in the read report, never
//! silently: a visit outside the years, a birth outside the years, a lab value beyond the magnitude. The
//! defaults admit MIMIC-IV's date shifting (years 2100-2220); `halo train --plausible-years` and
//! `--max-lab-value` widen them.

use crate::record::{Dataset, Patient, ReadReport};
use crate::time::parse_time;
use chrono::Datelike;

/// The plausible ranges.
#[derive(Debug, Clone, PartialEq)]
pub struct Bounds {
    /// Years a visit or a birth may fall in (inclusive).
    pub first_year: i32,
    pub last_year: i32,
    /// Largest magnitude of a lab value.
    pub max_abs_lab_value: f64,
}

impl Default for Bounds {
    fn default() -> Bounds {
        Bounds {
            first_year: 1800,
            last_year: 2300,
            max_abs_lab_value: 1e12,
        }
    }
}

impl Bounds {
    fn year_ok(&self, year: i32) -> bool {
        (self.first_year..=self.last_year).contains(&year)
    }

    /// Largest magnitude of a visit's day offset from its record's first visit (JSONL `day`): a record spans
    /// at most the plausible years.
    pub fn max_day_offset(&self) -> f64 {
        f64::from(self.last_year - self.first_year + 1) * 366.0
    }

    /// Parses `FROM..TO` (`1800..2300`).
    pub fn parse_years(s: &str) -> Option<(i32, i32)> {
        let (a, b) = s.split_once("..")?;
        let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        (a <= b).then_some((a, b))
    }
}

/// Drops what lies outside `bounds` from `dataset`, counting it in its report; patients left without a
/// visit are removed and counted in `patients_without_visits`.
pub fn apply(dataset: &mut Dataset, bounds: &Bounds) {
    let report = &mut dataset.report;
    dataset.patients.retain_mut(|p| apply_one(p, bounds, report));
}

/// [`apply`] to one patient: whether it keeps a visit (or never had one). Readers that stream records
/// ([`crate::source`]) apply it patient by patient.
pub fn apply_one(p: &mut Patient, bounds: &Bounds, report: &mut ReadReport) -> bool {
    let had_visits = !p.visits.is_empty();
    let (births, visits, labs) = clean(p, bounds);
    if births + visits + labs > 0 {
        count_dropped(report, bounds, births, visits, labs);
    }
    let keep = !(had_visits && p.visits.is_empty());
    report.patients_without_visits += usize::from(!keep);
    keep
}

fn count_dropped(report: &mut ReadReport, bounds: &Bounds, births: usize, visits: usize, labs: usize) {
    let years = format!("{}..={}", bounds.first_year, bounds.last_year);
    let mut count = |n: usize, what: String| {
        if n > 0 {
            *report.skipped.entry(what).or_default() += n;
        }
    };
    count(births, format!("birth years outside {years} (dropped)"));
    count(visits, format!("visits dated outside {years} (dropped)"));
    count(
        labs,
        format!("lab values beyond +-{:e} (dropped)", bounds.max_abs_lab_value),
    );
}

/// Cleans one patient; returns (births, visits, lab values) dropped.
fn clean(p: &mut Patient, bounds: &Bounds) -> (usize, usize, usize) {
    let d = &mut p.demographics;
    let birth_year = d
        .birth_date
        .as_deref()
        .and_then(parse_time)
        .map(|t| t.year())
        .or(d.birth_year);
    let births = match birth_year {
        Some(y) if !bounds.year_ok(y) => {
            d.birth_year = None;
            d.birth_date = None;
            1
        }
        _ => 0,
    };
    let before = p.visits.len();
    let first_day = p.visits.first().and_then(|v| v.day);
    p.visits.retain(|v| {
        v.time
            .as_deref()
            .and_then(parse_time)
            .is_none_or(|t| bounds.year_ok(t.year()))
    });
    let visits = before - p.visits.len();
    // Day offsets count from the first visit; re-base them if it was dropped.
    if let (Some(old), Some(new)) = (first_day, p.visits.first().and_then(|v| v.day)) {
        if visits > 0 && old != new {
            for v in &mut p.visits {
                if let Some(day) = v.day.as_mut() {
                    *day -= new;
                }
            }
        }
    }
    let mut labs = 0;
    for v in &mut p.visits {
        let n = v.labs.len();
        v.labs.retain(|l| l.value.abs() <= bounds.max_abs_lab_value);
        labs += n - v.labs.len();
    }
    (births, visits, labs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Demographics, LabValue, Visit};

    fn visit(time: &str, lab: f64) -> Visit {
        Visit {
            visit_type: None,
            day: None,
            time: Some(time.to_string()),
            codes: vec!["dx/a".into()],
            labs: vec![LabValue {
                code: "lab/x".into(),
                value: lab,
            }],
        }
    }

    #[test]
    fn implausible_years_and_values_are_dropped_and_counted() {
        let mut ds = Dataset::default();
        ds.patients.push(Patient {
            id: "1".into(),
            split: None,
            demographics: Demographics {
                birth_year: Some(99999),
                ..Default::default()
            },
            labels: None,
            label_groups: Default::default(),
            visits: vec![
                visit("-044-01-01T00:00:00", 1.0),
                visit("2150-03-01T00:00:00", 1e308),
                visit("9999-01-01T00:00:00", 2.0),
            ],
        });
        ds.patients.push(Patient {
            id: "2".into(),
            split: None,
            demographics: Demographics::default(),
            labels: None,
            label_groups: Default::default(),
            visits: vec![visit("9999-12-31", 1.0)],
        });
        apply(&mut ds, &Bounds::default());
        assert_eq!(ds.patients.len(), 1);
        let p = &ds.patients[0];
        assert_eq!(p.demographics.birth_year, None);
        assert_eq!(p.visits.len(), 1, "the MIMIC-like shifted year 2150 stays");
        assert!(p.visits[0].labs.is_empty());
        let skipped = &ds.report.skipped;
        assert_eq!(skipped["birth years outside 1800..=2300 (dropped)"], 1);
        assert_eq!(skipped["visits dated outside 1800..=2300 (dropped)"], 3);
        assert_eq!(skipped["lab values beyond +-1e12 (dropped)"], 1);
        assert_eq!(ds.report.patients_without_visits, 1);
        assert_eq!(Bounds::parse_years("1900..2000"), Some((1900, 2000)));
        assert_eq!(Bounds::parse_years("2000..1900"), None);
    }
}
