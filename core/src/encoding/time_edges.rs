//! The time groups' bucket edges fitted on the training split: gaps (with the days inside each bucket), the
//! age at the first visit encoded, and the calendar year of the visit before.

use super::counts::TrainCounts;
use super::*;
use crate::privacy::statistics::{DP_MAX_AGE_YEARS, DP_MAX_GAP_DAYS};

/// The calendar group's edges: the multiples of [`CALENDAR_BUCKET_YEARS`] between the year that `k` patients'
/// records start by and the year that `k` patients' records reach, so that the outer buckets (open below and
/// above) hold at least `k` patients each and no edge is one patient's year. (Yearly buckets over the data's
/// last five years measured worse on the demo: records spanned longer, docs/records.md.)
fn calendar_edges(first_years: &mut [f64], last_years: &mut [f64], k: usize) -> Vec<f64> {
    if first_years.len() < k || last_years.len() < k {
        return Vec::new();
    }
    first_years.sort_by(f64::total_cmp);
    last_years.sort_by(|a, b| b.total_cmp(a));
    let (lo, hi) = (first_years[k - 1], last_years[k - 1]);
    let w = CALENDAR_BUCKET_YEARS;
    let (from, to) = ((lo / w).ceil() as i64, (hi / w).floor() as i64);
    (from..=to).map(|i| i as f64 * w).collect()
}

/// Bucket edges of the gaps (with the within-bucket points), ages and calendar years, from the training split.
pub(super) struct TimeEdges {
    pub gap_days: Vec<f64>,
    pub gap_quantiles: Vec<Vec<f64>>,
    pub age_years: Vec<f64>,
    /// The calendar group's edges ([`Encoding::calendar_edges_years`]); empty without the group.
    pub calendar_years: Vec<f64>,
    pub any_gap: bool,
    pub any_age: bool,
}

impl TimeEdges {
    pub fn fit(t: &mut TrainCounts, spec: Option<&LabelSpec>, options: &EncodingOptions, k: usize) -> TimeEdges {
        let dp = options.dp.is_some();
        // Under DP the edges are public: closed at fixed values, and each group assumed present and held by
        // every visit it applies to (facts of the data otherwise).
        if dp {
            (t.always_gap, t.always_age) = (true, true);
        }
        let (any_gap, any_age) = match dp {
            true => (true, true),
            false => (!t.largest_gaps.is_empty(), !t.ages.is_empty()),
        };
        let max_gap = if dp {
            DP_MAX_GAP_DAYS
        } else {
            closing_value(&mut t.largest_gaps, k)
        };
        let max_age = if dp {
            DP_MAX_AGE_YEARS
        } else {
            closing_value(&mut t.ages, k)
        };
        let gap_base = spec
            .and_then(|s| s.gap_edges_days.clone())
            .unwrap_or_else(|| DEFAULT_GAP_EDGES_DAYS.to_vec());
        let gap_days = closed_edges(&gap_base, max_gap);
        let gap_quantiles = match options.gaps && !dp {
            true => gap_quantiles(&t.gaps, &t.gap_ends, &gap_days, k),
            false => Vec::new(),
        };
        let age_base: Vec<f64> = (0..24).map(|i| i as f64 * AGE_BUCKET_YEARS).collect();
        // Under DP the calendar's edges would be the data's: the group is left out. Fewer than two buckets
        // say nothing.
        let calendar_years = match options.calendar && !dp && t.always_calendar {
            true => calendar_edges(&mut t.first_years, &mut t.last_years, k),
            false => Vec::new(),
        };
        TimeEdges {
            gap_days,
            gap_quantiles,
            age_years: closed_edges(&age_base, max_age),
            calendar_years: if calendar_years.len() >= 3 {
                calendar_years
            } else {
                Vec::new()
            },
            any_gap,
            any_age,
        }
    }
}

/// [`Encoding::gap_quantiles_days`]: per bucket, the within-bucket points of the gaps between consecutive
/// dated visits of the training records (all their visits, as [`Encoding::gap_bucket_shares`] counts them).
/// Empty when no bucket has enough patients.
fn gap_quantiles(gaps: &[f64], patient_ends: &[usize], edges: &[f64], k: usize) -> Vec<Vec<f64>> {
    let buckets = edges.len().saturating_sub(1);
    let mut samples: Vec<LabSample> = (0..buckets).map(|_| LabSample::default()).collect();
    let mut from = 0;
    for &to in patient_ends {
        let mut range: BTreeMap<usize, (f64, f64)> = BTreeMap::new();
        for &gap in &gaps[from..to] {
            let bucket = bucket_of(edges, gap);
            samples[bucket].values.push(gap);
            let r = range.entry(bucket).or_insert((gap, gap));
            *r = (r.0.min(gap), r.1.max(gap));
        }
        from = to;
        for (bucket, (lowest, highest)) in range {
            samples[bucket].patient_lowest.push(lowest);
            samples[bucket].patient_highest.push(highest);
        }
    }
    let points: Vec<Vec<f64>> = samples
        .iter_mut()
        .enumerate()
        .map(|(b, sample)| within_bucket_points(sample, GAP_SEGMENTS, k, (edges[b], edges[b + 1])))
        .collect();
    if points.iter().all(Vec::is_empty) {
        return Vec::new();
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Visit;

    #[test]
    fn the_calendar_code_of_a_visit_is_the_year_of_the_visit_before_and_the_first_visits_own() {
        use crate::record::Demographics;
        // 12 patients seen in 1971, 1989 and 2004 (a 13th alone in 1850 and 2090 moves no edge).
        let dated = |id: usize, times: &[&str]| Patient {
            id: format!("p{id}"),
            demographics: Demographics {
                birth_year: Some(1950),
                birth_date: Some("1950-01-01".into()),
                ..Default::default()
            },
            visits: times
                .iter()
                .map(|time| Visit {
                    time: Some(time.to_string()),
                    codes: vec!["condition/1".into()],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let mut all: Vec<Patient> = (0..12)
            .map(|i| {
                dated(
                    i,
                    &["1971-06-01T00:00:00", "1989-06-01T00:00:00", "2004-06-01T00:00:00"],
                )
            })
            .collect();
        all.push(dated(12, &["1850-06-01T00:00:00", "2090-06-01T00:00:00"]));
        let train: Vec<&Patient> = all.iter().collect();
        let fit = |calendar| {
            let options = EncodingOptions {
                gaps: true,
                labs: false,
                demographics: false,
                min_patients: 10,
                calendar,
                visit_size_buckets: 0,
                ..Default::default()
            };
            Encoding::fit(&all, &train, None, options).unwrap()
        };
        let enc = fit(true);
        // Multiples of 5 between the 10th earliest first year and the 10th latest last year.
        assert_eq!(
            enc.calendar_edges_years,
            vec![1975.0, 1980.0, 1985.0, 1990.0, 1995.0, 2000.0]
        );
        let group = enc
            .visit_groups
            .iter()
            .find(|g| g.name == VisitGroup::CALENDAR)
            .expect("a calendar group");
        assert_eq!(
            (group.on, group.first),
            (GroupVisits::EveryVisit, 0),
            "the calendar opens the vocabulary, on every visit"
        );
        let calendar_of = |enc: &Encoding, p: &Patient| -> Vec<Vec<usize>> {
            let windows = enc.encode_windows(p, &enc.index(), None, &mut 0);
            windows[0]
                .visits
                .iter()
                .map(|v| {
                    v.iter()
                        .filter_map(|&c| match enc.tokens[c as usize] {
                            Token::Calendar { bucket } => Some(bucket),
                            _ => None,
                        })
                        .collect()
                })
                .collect()
        };
        // 1971 falls in the first bucket (open below), 1989 in 1985-1990; the first visit holds its own year, each
        // later one the year of the visit before (2090: the last bucket, open above).
        assert_eq!(calendar_of(&enc, &all[0]), vec![vec![0], vec![0], vec![2]]);
        assert_eq!(calendar_of(&enc, &all[12]), vec![vec![0], vec![0]]);
        // The years a bucket holds for a first visit: the first open below, the last closed 5 years on.
        assert_eq!(enc.calendar_bucket_years(0), (f64::NEG_INFINITY, 1980.0));
        assert_eq!(enc.calendar_bucket_years(2), (1985.0, 1990.0));
        assert_eq!(enc.calendar_bucket_years(4), (1995.0, 2005.0));
        let without = fit(false);
        assert!(without.calendar_edges_years.is_empty());
        assert!(!without.tokens.iter().any(|t| matches!(t, Token::Calendar { .. })));
    }
}
