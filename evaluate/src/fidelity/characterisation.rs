//! What a characterisation of the data as an OHDSI user runs it (Achilles) compares: who the persons are
//! (sex, race, ethnicity and birth decade: a study's "table 1"), how long records span (the observation period,
//! first to last visit), the shares of visit types, and per domain the share of persons holding each concept. Each obeys the small-cell rule of the report (`crate::small_cells`).

use super::{r2_score, CodeCounts, Level, SideBySide, Statistic};
use crate::corpus::Interner;
use crate::small_cells::SmallCells;
use halo_core::record::{BirthDecade, DemographicCategory, Patient};
use halo_core::time::visit_days;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Days from a record's first to its last dated visit (0 for a record of one dated visit), over the records
/// with at least one dated visit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SpanStats {
    pub records: usize,
    pub mean: f64,
    /// Median and 90th percentile, each the mean of the `min_patients` spans nearest its rank (so that no
    /// figure is one patient's span).
    pub median: f64,
    pub p90: f64,
}

/// Record spans of the three data sets, and the synthetic ones' relative differences from the training
/// split's (synthetic / train - 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordSpans {
    pub days: SideBySide<Option<SpanStats>>,
    pub median_change: Option<f64>,
    pub p90_change: Option<f64>,
    pub mean_change: Option<f64>,
}

/// The days a record spans, `None` without a dated visit.
pub fn span_days(p: &Patient) -> Option<f64> {
    let days: Vec<f64> = visit_days(p).into_iter().flatten().collect();
    let first = days.iter().copied().reduce(f64::min)?;
    let last = days.iter().copied().reduce(f64::max)?;
    Some(last - first)
}

/// The mean of the `k` values of sorted `values` nearest the rank of quantile `q` (nearest rank).
fn smoothed_quantile(values: &[f64], q: f64, k: usize) -> f64 {
    let n = values.len();
    let k = k.clamp(1, n);
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
    let start = rank.saturating_sub(k / 2).min(n - k);
    values[start..start + k].iter().sum::<f64>() / k as f64
}

/// Span statistics of `patients`, `None` when fewer than `min_patients` of them have a dated visit.
pub fn span_stats(patients: &[&Patient], min_patients: usize) -> Option<SpanStats> {
    let mut spans: Vec<f64> = patients.iter().filter_map(|p| span_days(p)).collect();
    if spans.is_empty() || spans.len() < min_patients {
        return None;
    }
    spans.sort_by(|a, b| a.total_cmp(b));
    Some(SpanStats {
        records: spans.len(),
        mean: spans.iter().sum::<f64>() / spans.len() as f64,
        median: smoothed_quantile(&spans, 0.5, min_patients),
        p90: smoothed_quantile(&spans, 0.9, min_patients),
    })
}

/// Record spans of the training and test splits and the synthetic records.
pub fn record_spans(train: &[&Patient], test: &[&Patient], synthetic: &[&Patient], min_patients: usize) -> RecordSpans {
    let days = SideBySide {
        train: span_stats(train, min_patients),
        test: span_stats(test, min_patients),
        // Synthetic records describe no patient: their quantiles need no smoothing, but get the same
        // treatment so that both sides are measured alike.
        synthetic: span_stats(synthetic, min_patients),
    };
    let change = |f: fn(&SpanStats) -> f64| {
        let (t, s) = (days.train.as_ref()?, days.synthetic.as_ref()?);
        (f(t) > 0.0).then(|| f(s) / f(t) - 1.0)
    };
    RecordSpans {
        median_change: change(|s| s.median),
        p90_change: change(|s| s.p90),
        mean_change: change(|s| s.mean),
        days,
    }
}

/// One value's share of the persons of each data set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueShare {
    pub value: String,
    pub train: f64,
    pub test: f64,
    pub synthetic: f64,
}

/// The shares of one demographic field's values among the persons (a person without the field counts as the
/// value `(none)`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DemographicShares {
    /// `sex`, `race`, `ethnicity` or `birth_decade`.
    pub field: String,
    /// Values held by at least `min_patients` real patients, most frequent in training first.
    pub shares: Vec<ValueShare>,
    /// Largest absolute difference of a value's synthetic share from its training share, over every value
    /// (named or not).
    pub largest_difference: f64,
    /// Values not named: fewer real patients hold them (their shares still count in `largest_difference`).
    pub hidden: usize,
}

/// The value of field `category` of a person, as the report compares it: the text, or the birth decade.
fn demographic_value(category: DemographicCategory, p: &Patient) -> String {
    let value = match category {
        DemographicCategory::BirthYear => p.demographics.birth_year.map(|y| {
            BirthDecade::years_value(
                BirthDecade::of_year(y).first_year,
                BirthDecade::of_year(y).first_year + 9,
            )
        }),
        c => c.text_value(&p.demographics).map(str::to_string),
    };
    value.unwrap_or_else(|| "(none)".into())
}

/// Per demographic field that the training split's persons have: the shares of its values in the three data
/// sets; a value is named when `real` holds it in `min_patients` patients.
pub fn demographics(
    real: &[Patient],
    train: &[&Patient],
    test: &[&Patient],
    synthetic: &[&Patient],
    min_patients: usize,
) -> Vec<DemographicShares> {
    let mut out = Vec::new();
    for category in DemographicCategory::ALL {
        let field = match category {
            DemographicCategory::BirthYear => "birth_decade",
            c => c.as_str(),
        };
        let counts = |persons: &[&Patient]| {
            let mut counts: BTreeMap<String, usize> = BTreeMap::new();
            for p in persons {
                *counts.entry(demographic_value(category, p)).or_default() += 1;
            }
            counts
        };
        let sides = [counts(train), counts(test), counts(synthetic)];
        if sides[0].keys().all(|v| v == "(none)") {
            continue;
        }
        let mut patients_with: BTreeMap<String, usize> = BTreeMap::new();
        for p in real {
            *patients_with.entry(demographic_value(category, p)).or_default() += 1;
        }
        let totals = [train.len(), test.len(), synthetic.len()];
        let share =
            |side: usize, value: &str| sides[side].get(value).copied().unwrap_or(0) as f64 / totals[side].max(1) as f64;
        let values: BTreeSet<&String> = sides.iter().flat_map(|s| s.keys()).collect();
        let mut shares: Vec<ValueShare> = values
            .iter()
            .map(|v| ValueShare {
                value: v.to_string(),
                train: share(0, v),
                test: share(1, v),
                synthetic: share(2, v),
            })
            .collect();
        let largest_difference = shares.iter().map(|s| (s.synthetic - s.train).abs()).fold(0.0, f64::max);
        let before = shares.len();
        shares.retain(|s| s.value == "(none)" || patients_with.get(&s.value).copied().unwrap_or(0) >= min_patients);
        shares.sort_by(|a, b| b.train.total_cmp(&a.train).then_with(|| a.value.cmp(&b.value)));
        out.push(DemographicShares {
            field: field.into(),
            hidden: before - shares.len(),
            shares,
            largest_difference,
        });
    }
    out
}

/// One visit type's share of the visits of each data set that carry a type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisitTypeShare {
    pub visit_type: String,
    pub train: f64,
    pub test: f64,
    pub synthetic: f64,
}

/// Visit type shares; empty when the training split's visits carry no type.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VisitTypes {
    /// Types held by at least `min_patients` real patients, most frequent in training first.
    pub shares: Vec<VisitTypeShare>,
    /// Visits without a type, per data set.
    pub untyped_visits: SideBySide<usize>,
    /// Largest absolute difference of a type's synthetic share from its training share, over every type
    /// (named or not).
    pub largest_difference: Option<f64>,
    /// Types not named: fewer real patients hold them (their shares still count in `largest_difference`).
    pub hidden: usize,
}

fn type_counts<'a>(patients: &[&'a Patient]) -> (BTreeMap<&'a str, usize>, usize, usize) {
    let (mut counts, mut typed, mut untyped) = (BTreeMap::new(), 0, 0);
    for v in patients.iter().flat_map(|p| &p.visits) {
        match v.visit_type.as_deref() {
            Some(t) => {
                *counts.entry(t).or_default() += 1;
                typed += 1;
            }
            None => untyped += 1,
        }
    }
    (counts, typed, untyped)
}

/// Visit type shares of the three data sets; a type is named when `real` holds it in `min_patients`
/// patients.
pub fn visit_types(
    real: &[Patient],
    train: &[&Patient],
    test: &[&Patient],
    synthetic: &[&Patient],
    min_patients: usize,
) -> VisitTypes {
    let sides = [type_counts(train), type_counts(test), type_counts(synthetic)];
    if sides[0].1 == 0 {
        return VisitTypes {
            untyped_visits: SideBySide {
                train: sides[0].2,
                test: sides[1].2,
                synthetic: sides[2].2,
            },
            ..VisitTypes::default()
        };
    }
    let mut patients_with: BTreeMap<&str, usize> = BTreeMap::new();
    for p in real {
        let types: BTreeSet<&str> = p.visits.iter().filter_map(|v| v.visit_type.as_deref()).collect();
        for t in types {
            *patients_with.entry(t).or_default() += 1;
        }
    }
    let share = |side: &(BTreeMap<&str, usize>, usize, usize), t: &str| {
        side.0.get(t).copied().unwrap_or(0) as f64 / side.1.max(1) as f64
    };
    let all_types: BTreeSet<&str> = sides.iter().flat_map(|s| s.0.keys().copied()).collect();
    let mut shares: Vec<VisitTypeShare> = all_types
        .iter()
        .map(|t| VisitTypeShare {
            visit_type: t.to_string(),
            train: share(&sides[0], t),
            test: share(&sides[1], t),
            synthetic: share(&sides[2], t),
        })
        .collect();
    let largest_difference = shares.iter().map(|s| (s.synthetic - s.train).abs()).reduce(f64::max);
    let before = shares.len();
    shares.retain(|s| patients_with.get(s.visit_type.as_str()).copied().unwrap_or(0) >= min_patients);
    shares.sort_by(|a, b| {
        b.train
            .total_cmp(&a.train)
            .then_with(|| a.visit_type.cmp(&b.visit_type))
    });
    VisitTypes {
        hidden: before - shares.len(),
        shares,
        untyped_visits: SideBySide {
            train: sides[0].2,
            test: sides[1].2,
            synthetic: sides[2].2,
        },
        largest_difference,
    }
}

/// The per-concept share of persons (records holding the concept / records) of one domain, synthetic and
/// test split against the training split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainPrevalence {
    /// The code prefix before the first `/` (`condition`, `drug`, `procedure`, `measurement`, `observation`
    /// in OMOP-read records; `DIAGNOSIS`, `LAB`, ... in MEDS).
    pub domain: String,
    /// Concepts of the domain in the training split or the synthetic records.
    pub concepts: usize,
    /// R² over those concepts (a concept missing from one side counting as share 0).
    pub r2_synthetic_vs_train: Option<f64>,
    /// The same for the test split: the ceiling a model can be expected to reach.
    pub r2_test_vs_train: Option<f64>,
}

/// The domain of a code: the text before its first `/`, or `None` for a code without one.
pub fn domain_of(code: &str) -> Option<&str> {
    code.split_once('/').map(|(d, _)| d).filter(|d| !d.is_empty())
}

/// Per-domain prevalence R², over domains whose codes `min_patients` real patients hold (counted in
/// `cells`), in name order.
pub fn domain_prevalence(counts: &[CodeCounts; 3], interner: &Interner, cells: &SmallCells) -> Vec<DomainPrevalence> {
    // Per domain, the codes of any side.
    let mut codes: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
    for c in counts {
        for (key, _) in c.unigrams.iter() {
            if let Some(d) = domain_of(interner.name(key as u32)) {
                codes.entry(d).or_default().insert(key);
            }
        }
    }
    let share = |c: &CodeCounts, key: u64| c.probability(Statistic::Unigram, Level::Record, key);
    codes
        .into_iter()
        .filter(|(_, keys)| keys.iter().any(|&k| cells.code_named(interner.name(k as u32))))
        .map(|(domain, keys)| {
            let r2 = |truth: &CodeCounts, pred: &CodeCounts| {
                let keys: Vec<u64> = keys
                    .iter()
                    .copied()
                    .filter(|&k| truth.unigrams.get(k).is_some() || pred.unigrams.get(k).is_some())
                    .collect();
                r2_score(
                    &keys.iter().map(|&k| share(truth, k)).collect::<Vec<_>>(),
                    &keys.iter().map(|&k| share(pred, k)).collect::<Vec<_>>(),
                )
            };
            let in_train_or_synthetic = keys
                .iter()
                .filter(|&&k| counts[0].unigrams.get(k).is_some() || counts[2].unigrams.get(k).is_some())
                .count();
            DomainPrevalence {
                domain: domain.to_string(),
                concepts: in_train_or_synthetic,
                r2_synthetic_vs_train: r2(&counts[0], &counts[2]),
                r2_test_vs_train: r2(&counts[0], &counts[1]),
            }
        })
        .collect()
}

/// Codes that the training split's persons of one sex never hold while at least `min_patients` of another
/// sex do (prenatal care, prostate screening), and how many persons hold one their sex does not: synthetic
/// records against the test split (real persons outside training, the bar; the training split holds none
/// by construction).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SexExclusiveCodes {
    /// Such codes, over both directions.
    pub codes: usize,
    /// Shares of persons holding a code that no training person of their sex holds.
    pub test: f64,
    pub synthetic: f64,
}

/// [`SexExclusiveCodes`]; `None` when the training split's persons carry no sex or one only.
pub fn sex_exclusive_codes(
    train: &[&Patient],
    test: &[&Patient],
    synthetic: &[&Patient],
    min_patients: usize,
) -> Option<SexExclusiveCodes> {
    let codes_of =
        |p: &Patient| -> BTreeSet<String> { p.visits.iter().flat_map(|v| v.codes.iter().cloned()).collect() };
    // Per sex, how many training persons hold each code.
    let mut holders: BTreeMap<&str, BTreeMap<String, usize>> = BTreeMap::new();
    for p in train {
        let Some(sex) = p.demographics.sex.as_deref() else {
            continue;
        };
        let counts = holders.entry(sex).or_default();
        for code in codes_of(p) {
            *counts.entry(code).or_default() += 1;
        }
    }
    if holders.len() < 2 {
        return None;
    }
    // Per sex, the codes it never holds that another sex holds in min_patients persons.
    let foreign: BTreeMap<&str, BTreeSet<&String>> = holders
        .iter()
        .map(|(&sex, own)| {
            let others = holders
                .iter()
                .filter(|(other, _)| **other != sex)
                .flat_map(|(_, counts)| counts.iter().filter(|(_, n)| **n >= min_patients).map(|(c, _)| c))
                .filter(|c| !own.contains_key(*c))
                .collect();
            (sex, others)
        })
        .collect();
    let share = |persons: &[&Patient]| {
        let crossing = persons
            .iter()
            .filter(|p| {
                let Some(foreign) = p.demographics.sex.as_deref().and_then(|s| foreign.get(s)) else {
                    return false;
                };
                p.visits.iter().flat_map(|v| &v.codes).any(|c| foreign.contains(c))
            })
            .count();
        crossing as f64 / persons.len().max(1) as f64
    };
    Some(SexExclusiveCodes {
        codes: foreign.values().map(BTreeSet::len).sum(),
        test: share(test),
        synthetic: share(synthetic),
    })
}
