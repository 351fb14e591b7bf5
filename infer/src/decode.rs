//! Turning sampled vocabulary indices back into a patient record.
//!
//! - Medical codes become their strings, in vocabulary (sampling) order.
//! - `GAP/k` (days since the previous visit in bucket k) becomes a day offset drawn inside the bucket from
//!   the training gaps' distribution there (`Encoding::gap_quantiles_days`; uniformly in encodings without
//!   it) and accumulated; a later visit without a gap code is placed on the previous visit's day,
//!   and with several the first is used.
//! - `AGE/k` on the first visit becomes the age at the first visit, drawn inside the bucket.
//! - `VISIT_TYPE/<type>` becomes the visit's `visit_type` (`VISIT_TYPE/<other>`: none); no random draw.
//! - `LAB/<code>/q<k>` becomes a lab value drawn uniformly inside the lab's bucket k.
//! - Label codes become the `labels` map (every label of the model, true or false); demographic codes
//!   become sex, race, ethnicity and a birth year drawn inside the decade (with a birth date in it).
//! - Visit times are synthetic: birth date + age at the first visit when both are known, otherwise
//!   2000-01-01, plus the day offsets. Models without gap codes give visits no day or time.
//! - Visits left without codes and lab values are dropped (their gap still counts), except a record's
//!   only visit.
//!
//! Every draw comes from the record's own random stream, after all its visits were sampled, in the order
//! birth year, birth day, age, then per visit its gap and its lab values.

use crate::sampler::RawRecord;
use chrono::{Duration, NaiveDate};
use halo_core::buckets::draw_within;
use halo_core::encoding::{Encoding, Token};
use halo_core::record::{BirthDecade, Demographics, LabValue, Patient, Visit};
use rand::Rng;
use rand_chacha::ChaCha20Rng;
use std::collections::BTreeMap;

fn uniform_in(rng: &mut ChaCha20Rng, lo: f64, hi: f64) -> f64 {
    let u: f64 = rng.random();
    if hi > lo {
        lo + u * (hi - lo)
    } else {
        lo
    }
}

fn edge_range(edges: &[f64], bucket: usize) -> Option<(f64, f64)> {
    Some((*edges.get(bucket)?, *edges.get(bucket + 1)?))
}

/// Decodes a sampled record; `rng` is the record's stream, positioned after sampling.
pub fn decode(enc: &Encoding, raw: &RawRecord, rng: &mut ChaCha20Rng) -> Patient {
    let has_gaps = enc.tokens.iter().any(|t| matches!(t, Token::Gap { .. }));

    // Labels and demographics from the label visit.
    let mut labels: BTreeMap<String, bool> = enc
        .tokens
        .iter()
        .filter_map(|t| match t {
            Token::Label { name } => Some((name.clone(), false)),
            _ => None,
        })
        .collect();
    let any_labels = !labels.is_empty();
    let mut demographics = Demographics::default();
    let mut birth_decade = None;
    for &i in &raw.labels {
        match &enc.tokens[i as usize] {
            Token::Label { name } => {
                labels.insert(name.clone(), true);
            }
            Token::Demographic { category, value } => match category.text_field(&mut demographics) {
                Some(field) => *field = Some(value.clone()),
                None => birth_decade = BirthDecade::years_of(value),
            },
            _ => {}
        }
    }
    let mut birth: Option<NaiveDate> = None;
    if let Some(years) = birth_decade {
        let year = rng.random_range(years);
        let start = NaiveDate::from_ymd_opt(year, 1, 1);
        let days = if NaiveDate::from_ymd_opt(year, 2, 29).is_some() {
            366
        } else {
            365
        };
        let day = rng.random_range(0..days);
        demographics.birth_year = Some(year);
        if let Some(d) = start.and_then(|s| s.checked_add_signed(Duration::days(day))) {
            demographics.birth_date = Some(halo_core::time::format_date(d));
            birth = Some(d);
        }
    }

    // Age at the first visit.
    let mut age_years = None;
    if let Some(first) = raw.visits.first() {
        if let Some(bucket) = first.iter().find_map(|&i| match enc.tokens[i as usize] {
            Token::Age { bucket } => Some(bucket),
            _ => None,
        }) {
            if let Some((lo, hi)) = edge_range(&enc.age_edges_years, bucket) {
                age_years = Some(uniform_in(rng, lo, hi));
            }
        }
    }
    let base = match (birth, age_years) {
        (Some(b), Some(age)) => {
            let secs = (age * 365.25 * 86_400.0).round() as i64;
            b.and_hms_opt(0, 0, 0)
                .and_then(|t| t.checked_add_signed(Duration::seconds(secs)))
        }
        _ => None,
    }
    .unwrap_or_else(halo_core::time::synthetic_base_time);

    let mut visits = Vec::with_capacity(raw.visits.len());
    let mut offset_secs: i64 = 0;
    for (t, codes) in raw.visits.iter().enumerate() {
        let mut visit = Visit::default();
        if t > 0 {
            if let Some(bucket) = codes.iter().find_map(|&i| match enc.tokens[i as usize] {
                Token::Gap { bucket } => Some(bucket),
                _ => None,
            }) {
                if let Some(range) = edge_range(&enc.gap_edges_days, bucket) {
                    let points = enc.gap_quantiles_days.get(bucket).map_or(&[][..], Vec::as_slice);
                    let days = draw_within(points, range, rng.random());
                    offset_secs += (days * 86_400.0).round() as i64;
                }
            }
        }
        for &i in codes {
            match &enc.tokens[i as usize] {
                Token::Code { code } => visit.codes.push(code.clone()),
                Token::VisitType { value } => visit.visit_type.clone_from(value),
                Token::Lab { code, bucket } => {
                    if let Some((lo, hi)) = enc.lab_edges.get(code).and_then(|e| edge_range(e, *bucket)) {
                        visit.labs.push(LabValue {
                            code: code.clone(),
                            value: uniform_in(rng, lo, hi),
                        });
                    }
                }
                _ => {}
            }
        }
        if has_gaps {
            visit.day = Some(offset_secs as f64 / 86_400.0);
            visit.time = base
                .checked_add_signed(Duration::seconds(offset_secs))
                .map(halo_core::time::format_record_time);
        }
        visits.push(visit);
    }
    // Visits without any code or lab value (only time codes, or only the end code) are left out, as the
    // reference implementation does; time still passes over them. Day offsets count from the first
    // visit kept.
    // A record keeps at least its first visit, so that every record has one.
    let first = visits.first().cloned();
    visits.retain(|v| !(v.codes.is_empty() && v.labs.is_empty()));
    if visits.is_empty() {
        visits.extend(first);
    }
    if let Some(first) = visits.first().and_then(|v| v.day) {
        for v in &mut visits {
            if let Some(d) = v.day.as_mut() {
                *d -= first;
            }
        }
    }
    Patient {
        id: raw.index.to_string(),
        split: None,
        demographics,
        labels: any_labels.then_some(labels),
        label_groups: Default::default(),
        visits,
    }
}
