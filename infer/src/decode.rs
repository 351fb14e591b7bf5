//! Turning sampled vocabulary indices back into a patient record.
//!
//! - Medical codes become their strings, in vocabulary (sampling) order.
//! - `GAP/k` (days since the previous visit in bucket k) becomes a day offset drawn inside the bucket from
//!   the training gaps' distribution there (`Encoding::gap_quantiles_days`; uniformly in encodings without
//!   it) and accumulated; a later visit without a gap code is placed on the previous visit's day,
//!   and with several the first is used.
//! - `AGE/k` on the first visit becomes the age at the first visit, drawn inside the bucket; where the first visit
//!   also holds its calendar bucket (`YEAR/k`, manifest format 7 on), birth and age are drawn again until the
//!   visit falls in that bucket (at most [`FIRST_VISIT_DATE_TRIES`] draws).
//! - `VISIT_TYPE/<type>` becomes the visit's `visit_type` (`VISIT_TYPE/<other>`: none); no random draw.
//! - `LAB/<code>/q<k>` becomes a lab value drawn uniformly inside the lab's bucket k.
//! - Label codes become the `labels` map (every label of the model, true or false); demographic codes
//!   become sex, race, ethnicity and a birth year drawn inside the decade (with a birth date in it).
//! - Visit times are synthetic: birth date + age at the first visit when both are known, otherwise a time
//!   inside the first visit's calendar bucket where it holds one, otherwise 2000-01-01, plus the day offsets. Models without gap codes give visits no day or time.
//! - Visits left without codes and lab values are dropped (their gap still counts), except a record's
//!   only visit.
//!
//! Every draw comes from the record's own random stream, after all its visits were sampled, in the order
//! birth year, birth day, age, then per visit its gap and its lab values.

use crate::sampler::RawRecord;
use chrono::{Duration, NaiveDate, NaiveDateTime};
use halo_core::buckets::draw_within;
use halo_core::encoding::{Encoding, Token, VisitGroup, CALENDAR_BUCKET_YEARS};
use halo_core::manifest::SamplingCalibration;
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

/// A time drawn uniformly inside the years calendar bucket `bucket` holds (`Encoding::calendar_bucket_years`; the
/// first bucket, open below, taken as its last [`CALENDAR_BUCKET_YEARS`]).
fn time_in_bucket(enc: &Encoding, bucket: usize, rng: &mut ChaCha20Rng) -> Option<NaiveDateTime> {
    let (lo, hi) = enc.calendar_bucket_years(bucket);
    let lo = if lo.is_finite() { lo } else { hi - CALENDAR_BUCKET_YEARS };
    if !(lo.is_finite() && hi.is_finite()) {
        return None;
    }
    let year = uniform_in(rng, lo, hi);
    let whole = year.floor();
    let day = ((year - whole) * 365.0).floor() as i64;
    NaiveDate::from_ymd_opt(whole as i32, 1, 1)?
        .checked_add_signed(Duration::days(day))?
        .and_hms_opt(12, 0, 0)
}

/// Draws of a first visit's birth and age at most, to date it inside its calendar bucket.
pub const FIRST_VISIT_DATE_TRIES: usize = 64;

/// A record's dates as they are drawn: the birth from the label visit's decade, the first visit's time from
/// the age drawn inside its bucket, each later visit's from its gap drawn inside its bucket. Decoding dates a
/// record with it, and a sampler whose encoding has the calendar group (`VisitGroup::CALENDAR`) dates each
/// visit with it as soon as the visit is sampled, from the record's date stream ([`RawRecord::dates`]), so that
/// the next visit's calendar code is the year of this one; decoding then draws the same dates again.
#[derive(Debug, Clone)]
pub(crate) struct Calendar {
    /// The birth years the label visit's decade holds.
    decade: Option<std::ops::RangeInclusive<i32>>,
    birth_year: Option<i32>,
    birth: Option<NaiveDate>,
    /// The first visit's time; `None` until a visit is dated.
    base: Option<NaiveDateTime>,
    /// Seconds from the first visit.
    offset_secs: i64,
    has_gaps: bool,
}

impl Calendar {
    /// Draws the birth date inside the decade that the label visit `labels` holds.
    pub fn born(enc: &Encoding, labels: &[u32], rng: &mut ChaCha20Rng) -> Calendar {
        let birth_decade = labels.iter().find_map(|&i| match &enc.tokens[i as usize] {
            Token::Demographic { category, value } if category.is_birth_year() => BirthDecade::years_of(value),
            _ => None,
        });
        let mut calendar = Calendar {
            decade: birth_decade,
            birth_year: None,
            birth: None,
            base: None,
            offset_secs: 0,
            has_gaps: enc.tokens.iter().any(|t| matches!(t, Token::Gap { .. })),
        };
        calendar.draw_birth(rng);
        calendar
    }

    /// Draws the birth year inside the decade and the day inside the year (nothing without a decade).
    fn draw_birth(&mut self, rng: &mut ChaCha20Rng) {
        let Some(years) = self.decade.clone() else {
            return;
        };
        let year = rng.random_range(years);
        let start = NaiveDate::from_ymd_opt(year, 1, 1);
        let days = if NaiveDate::from_ymd_opt(year, 2, 29).is_some() {
            366
        } else {
            365
        };
        let day = rng.random_range(0..days);
        self.birth_year = Some(year);
        self.birth = start.and_then(|s| s.checked_add_signed(Duration::days(day)));
    }

    /// The first visit's time: the birth plus an age drawn inside `age_years` (`None` without either).
    fn first_visit_time(&self, age_years: Option<(f64, f64)>, rng: &mut ChaCha20Rng) -> Option<NaiveDateTime> {
        let age = age_years.map(|(lo, hi)| uniform_in(rng, lo, hi));
        let secs = (age? * 365.25 * 86_400.0).round() as i64;
        self.birth?
            .and_hms_opt(0, 0, 0)
            .and_then(|t| t.checked_add_signed(Duration::seconds(secs)))
    }

    /// The birth year drawn (after the first visit is dated, the one that dated it).
    pub fn birth_year(&self) -> Option<i32> {
        self.birth_year
    }

    /// The birth date drawn (after the first visit is dated, the one that dated it).
    pub fn birth(&self) -> Option<NaiveDate> {
        self.birth
    }

    /// Dates the next visit, of vocabulary indices `codes`: the first from its age (birth date + age, else
    /// 2000-01-01), a later one by its gap (none: the previous visit's day). Returns its day offset from
    /// the first visit and its time, `None` for models without gap codes.
    pub fn visit(&mut self, enc: &Encoding, codes: &[u32], rng: &mut ChaCha20Rng) -> Option<(i64, NaiveDateTime)> {
        match self.base {
            None => {
                let age_years = codes
                    .iter()
                    .find_map(|&i| match enc.tokens[i as usize] {
                        Token::Age { bucket } => Some(bucket),
                        _ => None,
                    })
                    .and_then(|bucket| edge_range(&enc.age_edges_years, bucket));
                let calendar = codes.iter().find_map(|&i| match enc.tokens[i as usize] {
                    Token::Calendar { bucket } => Some(bucket),
                    _ => None,
                });
                let mut base = self.first_visit_time(age_years, rng);
                // The first visit's own calendar bucket, drawn by the model: the birth inside its decade and the
                // age inside its bucket are drawn again until the visit falls in it. Birth decade, age bucket and
                // calendar bucket drawn by the model may not meet: then the draw nearest the bucket stands.
                if let (Some(bucket), Some(first)) = (calendar, base) {
                    let (lo, hi) = enc.calendar_bucket_years(bucket);
                    let off = |t: NaiveDateTime| {
                        let year = halo_core::time::calendar_year(t);
                        (lo - year).max(year - hi + 1e-9).max(0.0)
                    };
                    let mut nearest = (off(first), self.birth, self.birth_year, first);
                    for _ in 1..FIRST_VISIT_DATE_TRIES {
                        if nearest.0 == 0.0 {
                            break;
                        }
                        self.draw_birth(rng);
                        if let Some(t) = self.first_visit_time(age_years, rng) {
                            if off(t) < nearest.0 {
                                nearest = (off(t), self.birth, self.birth_year, t);
                            }
                        }
                    }
                    (_, self.birth, self.birth_year, _) = nearest;
                    base = Some(nearest.3);
                }
                // Without a birth or an age to date it from, the first visit is dated inside its calendar bucket
                // rather than on the synthetic base date, which the next visit's calendar code would then say.
                if let (None, Some(bucket)) = (base, calendar) {
                    base = time_in_bucket(enc, bucket, rng);
                }
                self.base = Some(base.unwrap_or_else(halo_core::time::synthetic_base_time));
            }
            Some(_) => {
                if let Some(bucket) = codes.iter().find_map(|&i| match enc.tokens[i as usize] {
                    Token::Gap { bucket } => Some(bucket),
                    _ => None,
                }) {
                    if let Some(range) = edge_range(&enc.gap_edges_days, bucket) {
                        let points = enc.gap_quantiles_days.get(bucket).map_or(&[][..], Vec::as_slice);
                        let days = draw_within(points, range, rng.random());
                        self.offset_secs += (days * 86_400.0).round() as i64;
                    }
                }
            }
        }
        let time = self.base?.checked_add_signed(Duration::seconds(self.offset_secs))?;
        self.has_gaps.then_some((self.offset_secs, time))
    }
}

/// Which calendar and age buckets a record's first visit may hold, given the birth years its label visit
/// holds: those under which the visit can be dated as [`Calendar::visit`] dates it (birth year inside the
/// decade, age inside its bucket, the visit's year inside its calendar bucket). The model draws the three
/// one after another and learns their bond from the data's first visits only; unconstrained, the demo
/// model drew a first visit that no date could meet for 70% of its records (a person born in the 1990s
/// first seen in 2005-2009 aged under 5), which the decoder then dated years away from its bucket, and
/// every later visit's calendar code with it. Drawn with these limits, a value that no date meets is left
/// out of its group's walk, as a value fixed unset is.
#[derive(Debug, Clone)]
pub(crate) struct FirstVisitDates {
    /// The first birth year and one past the last.
    birth_years: (f64, f64),
    calendar: std::ops::Range<usize>,
    age: std::ops::Range<usize>,
    /// Per calendar bucket, the years it holds; per age bucket, the ages it is drawn in.
    calendar_years: Vec<(f64, f64)>,
    age_years: Vec<(f64, f64)>,
    /// Per calendar bucket, the factor of its weight for this birth decade (the sampling calibration's
    /// `first_calendar_log_weights`); empty: all 1.
    calendar_factors: Vec<f64>,
}

impl FirstVisitDates {
    /// The limits of a record whose label visit holds `labels`, with the calibration's weights of the first
    /// visit's calendar buckets for its birth decade where `calibration` has them; `None` where the encoding
    /// lacks the calendar or the age group, the labels hold no birth years, or no calendar bucket can be met.
    pub fn of(enc: &Encoding, labels: &[u32], calibration: Option<&SamplingCalibration>) -> Option<FirstVisitDates> {
        let (decade, years) = labels.iter().find_map(|&i| match &enc.tokens[i as usize] {
            Token::Demographic { category, value } if category.is_birth_year() => {
                Some((i as usize, BirthDecade::years_of(value)?))
            }
            _ => None,
        })?;
        let group = |name: &str| enc.visit_groups.iter().find(|g| g.name == name).map(|g| g.range());
        let (calendar, age) = (group(VisitGroup::CALENDAR)?, group(VisitGroup::AGE)?);
        let age_years: Vec<(f64, f64)> = (0..age.len())
            .map(|k| edge_range(&enc.age_edges_years, k))
            .collect::<Option<_>>()?;
        let calendar_factors = calibration
            .and_then(|c| {
                let first = enc
                    .demographic_categories
                    .iter()
                    .find(|c| c.name == halo_core::encoding::DemographicCategory::BirthYear.as_str())?
                    .first;
                c.first_calendar_log_weights
                    .get(decade.checked_sub(enc.code_vocab_size + first)?)
            })
            .filter(|w| w.len() == calendar.len())
            .map(|w| w.iter().map(|&x| f64::from(x).exp()).collect())
            .unwrap_or_default();
        let dates = FirstVisitDates {
            birth_years: (f64::from(*years.start()), f64::from(*years.end()) + 1.0),
            calendar_years: (0..calendar.len()).map(|k| enc.calendar_bucket_years(k)).collect(),
            calendar,
            age,
            age_years,
            calendar_factors,
        };
        dates.calendar.clone().any(|j| dates.allows(j, &[])).then_some(dates)
    }

    /// The factor of vocabulary index `j`'s weight in its group's draw on the first visit: the calibration's
    /// for a calendar bucket, else 1.
    pub fn factor(&self, j: usize) -> f64 {
        j.checked_sub(self.calendar.start)
            .and_then(|k| self.calendar_factors.get(k))
            .copied()
            .unwrap_or(1.0)
    }

    /// Whether vocabulary index `j` may be set on the first visit, whose codes set so far are `set`: a
    /// calendar bucket that some age meets, an age bucket that meets the calendar bucket set (any, before
    /// one is). Other codes always.
    pub fn allows(&self, j: usize, set: &[u32]) -> bool {
        let meets = |(age_lo, age_hi): (f64, f64), (year_lo, year_hi): (f64, f64)| {
            let (lo, hi) = (self.birth_years.0 + age_lo, self.birth_years.1 + age_hi);
            lo.max(year_lo) < hi.min(year_hi)
        };
        if self.calendar.contains(&j) {
            let ages = (self.age_years[0].0, self.age_years[self.age_years.len() - 1].1);
            meets(ages, self.calendar_years[j - self.calendar.start])
        } else if self.age.contains(&j) {
            set.iter()
                .map(|&k| k as usize)
                .find(|k| self.calendar.contains(k))
                .is_none_or(|k| {
                    meets(
                        self.age_years[j - self.age.start],
                        self.calendar_years[k - self.calendar.start],
                    )
                })
        } else {
            true
        }
    }
}

/// The time of every visit of a record sampled with the calendar group (dated from its own date stream, as
/// decoding dates it, visits without codes included); `None` for a record without a date stream or a model
/// without gap codes.
pub fn dated_visit_times(enc: &Encoding, raw: &RawRecord) -> Option<Vec<NaiveDateTime>> {
    let mut stream = raw.dates.clone()?;
    let mut calendar = Calendar::born(enc, &raw.labels, &mut stream);
    raw.visits
        .iter()
        .map(|codes| calendar.visit(enc, codes, &mut stream).map(|(_, time)| time))
        .collect()
}

/// The stream dates are drawn from: the record's date stream where it has one, else its own.
fn date_stream<'a>(dates: &'a mut Option<ChaCha20Rng>, rng: &'a mut ChaCha20Rng) -> &'a mut ChaCha20Rng {
    match dates {
        Some(d) => d,
        None => rng,
    }
}

/// Decodes a sampled record; `rng` is the record's stream, positioned after sampling.
pub fn decode(enc: &Encoding, raw: &RawRecord, rng: &mut ChaCha20Rng) -> Patient {
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
    for &i in &raw.labels {
        match &enc.tokens[i as usize] {
            Token::Label { name } => {
                labels.insert(name.clone(), true);
            }
            Token::Demographic { category, value } => {
                if let Some(field) = category.text_field(&mut demographics) {
                    *field = Some(value.clone());
                }
            }
            _ => {}
        }
    }
    let mut dates = raw.dates.clone();
    let mut calendar = Calendar::born(enc, &raw.labels, date_stream(&mut dates, rng));

    let mut visits = Vec::with_capacity(raw.visits.len());
    for codes in &raw.visits {
        let mut visit = Visit::default();
        if let Some((offset_secs, time)) = calendar.visit(enc, codes, date_stream(&mut dates, rng)) {
            visit.day = Some(offset_secs as f64 / 86_400.0);
            visit.time = Some(halo_core::time::format_record_time(time));
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
        if enc.lab_codes_listed {
            // Every training visit lists the code of each of its lab values: a sampled lab bucket whose code
            // token was not drawn still names the code.
            for lab in &visit.labs {
                if !visit.codes.contains(&lab.code) {
                    visit.codes.push(lab.code.clone());
                }
            }
        }
        visits.push(visit);
    }
    // The birth as the first visit's dating left it.
    demographics.birth_year = calendar.birth_year();
    demographics.birth_date = calendar.birth().map(halo_core::time::format_date);
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

#[cfg(test)]
mod tests {
    use super::*;
    use halo_core::record::DemographicCategory;
    use rand::SeedableRng;

    /// The fixture's encoding.
    fn fixture() -> Encoding {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tiny-model");
        halo_core::manifest::Manifest::read(&dir)
            .expect("fixture manifest")
            .encoding
    }

    /// The vocabulary index of the token that `is` picks.
    fn index_of(enc: &Encoding, is: impl Fn(&Token) -> bool) -> u32 {
        enc.tokens.iter().position(is).expect("a token of the fixture") as u32
    }

    /// The first visit's year, birth year and age, dated 200 times from different streams: born in the 1950s, in
    /// age bucket `age_bucket`, in the calendar bucket of `year`.
    fn first_visits(age_bucket: usize, year: f64) -> Vec<(f64, i32, f64)> {
        let enc = fixture();
        let calendar_bucket = enc.calendar_bucket(year);
        let decade = index_of(
            &enc,
            |t| matches!(t, Token::Demographic { category: DemographicCategory::BirthYear, value } if value == "1950-1959"),
        );
        let age = index_of(&enc, |t| matches!(t, Token::Age { bucket } if *bucket == age_bucket));
        let calendar = index_of(
            &enc,
            |t| matches!(t, Token::Calendar { bucket } if *bucket == calendar_bucket),
        );
        (0..200)
            .map(|seed| {
                let mut rng = ChaCha20Rng::seed_from_u64(seed);
                let mut cal = Calendar::born(&enc, &[decade], &mut rng);
                let (_, time) = cal.visit(&enc, &[calendar, age], &mut rng).expect("a dated visit");
                let birth = cal.birth().expect("a birth");
                let age = (time.date() - birth).num_days() as f64 / 365.25;
                (halo_core::time::calendar_year(time), cal.birth_year().unwrap(), age)
            })
            .collect()
    }

    /// The vocabulary index of birth decade `value`.
    fn decade(enc: &Encoding, value: &str) -> u32 {
        index_of(
            enc,
            |t| matches!(t, Token::Demographic { category: DemographicCategory::BirthYear, value: v } if v == value),
        )
    }

    #[test]
    fn first_visit_dates_allow_only_the_buckets_a_date_meets() {
        let enc = fixture();
        assert!(enc.has_first_visit_dates());
        let calendar = |k: usize| index_of(&enc, |t| matches!(t, Token::Calendar { bucket } if *bucket == k));
        let age = |k: usize| index_of(&enc, |t| matches!(t, Token::Age { bucket } if *bucket == k));
        let calendars = enc.visit_groups.iter().find(|g| g.name == "calendar").unwrap().len;
        let ages = enc.visit_groups.iter().find(|g| g.name == "age").unwrap().len;
        // The fixture's calendar buckets: before 1990, 1990-1994, ..., 2010 on (closed at 2020).
        assert_eq!(enc.calendar_bucket_years(calendars - 1), (2010.0, 2020.0));

        // Born 1950-1959, first seen in any bucket; in 1990-1994 aged 30 to 45 only (age buckets 6, 7, 8).
        let fifties = FirstVisitDates::of(&enc, &[decade(&enc, "1950-1959")], None).expect("limits");
        assert!((0..calendars).all(|k| fifties.allows(calendar(k) as usize, &[])));
        let in_1992 = [calendar(enc.calendar_bucket(1992.0))];
        let allowed: Vec<usize> = (0..ages)
            .filter(|&k| fifties.allows(age(k) as usize, &in_1992))
            .collect();
        assert_eq!(allowed, vec![6, 7, 8]);
        // Before a calendar bucket is set, every age; other codes always.
        assert!((0..ages).all(|k| fifties.allows(age(k) as usize, &[])));
        let gap = index_of(&enc, |t| matches!(t, Token::Gap { .. })) as usize;
        assert!(fifties.allows(gap, &in_1992));

        // Born 2010-2019: only the last bucket (the one before ends where the decade starts).
        let tens = FirstVisitDates::of(&enc, &[decade(&enc, "2010-2019")], None).expect("limits");
        let allowed: Vec<usize> = (0..calendars)
            .filter(|&k| tens.allows(calendar(k) as usize, &[]))
            .collect();
        assert_eq!(allowed, vec![calendars - 1]);

        // No birth decade among the labels: no limits.
        assert!(FirstVisitDates::of(&enc, &[], None).is_none());
    }

    #[test]
    fn a_first_visit_is_dated_inside_its_calendar_bucket() {
        let enc = fixture();
        assert_eq!(enc.calendar_bucket_years(enc.calendar_bucket(1992.0)), (1990.0, 1995.0));
        // Born 1950-1959, aged 40-45: 1990-2005, a quarter of it inside 1990-1995.
        for (year, birth_year, age) in first_visits(8, 1992.0) {
            assert!((1990.0..1995.0).contains(&year), "{year}");
            assert!(
                (1950..=1959).contains(&birth_year) && (40.0..45.01).contains(&age),
                "{birth_year} {age}"
            );
        }
    }

    #[test]
    fn a_first_visit_without_a_birth_is_dated_inside_its_calendar_bucket() {
        let enc = fixture();
        let bucket = enc.calendar_bucket(1992.0);
        let calendar = index_of(&enc, |t| matches!(t, Token::Calendar { bucket: b } if *b == bucket));
        let mut years = Vec::new();
        for seed in 0..200 {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            // No birth decade in the label visit and no age bucket on the visit.
            let mut cal = Calendar::born(&enc, &[], &mut rng);
            let (_, time) = cal.visit(&enc, &[calendar], &mut rng).expect("a dated visit");
            years.push(halo_core::time::calendar_year(time));
        }
        assert!(years.iter().all(|y| (1990.0..1995.0).contains(y)), "{years:?}");
        // Spread over the bucket, not one date.
        let (min, max) = years
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &y| (a.min(y), b.max(y)));
        assert!(min < 1991.0 && max > 1994.0, "{min} {max}");
    }

    #[test]
    fn a_first_visit_its_buckets_cannot_date_takes_the_nearest_draw() {
        // Born 1950-1959, aged 0-5 (1950-1965), in 2010-2015: the latest of 64 draws, against one draw's
        // 1957.5 on average (three in four single draws fall before 1960).
        let visits = first_visits(0, 2012.0);
        for (year, birth_year, age) in &visits {
            assert!((1960.0..1965.0).contains(year), "{year}");
            assert!(
                (1950..=1959).contains(birth_year) && (0.0..5.01).contains(age),
                "{birth_year} {age}"
            );
        }
    }
}
