//! The shape of the data sets (visits per record, codes per visit, gaps between visits), label prevalence
//! and lab values, synthetic beside real.

use super::{r2_score, CodeCounts};
use crate::corpus::Corpus;
use halo_core::encoding::DEFAULT_GAP_EDGES_DAYS;
use halo_core::record::Patient;
use halo_core::time::visit_days;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The same quantity for the training split, the test split and the synthetic data.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SideBySide<T> {
    pub train: T,
    pub test: T,
    pub synthetic: T,
}

/// Mean and population standard deviation (numpy's `np.std`, ddof = 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MeanStd {
    pub mean: f64,
    pub std: f64,
}

impl MeanStd {
    pub fn of(values: impl Iterator<Item = f64> + Clone) -> Option<MeanStd> {
        let (n, sum) = values.clone().fold((0usize, 0.0), |(n, s), x| (n + 1, s + x));
        if n == 0 {
            return None;
        }
        let mean = sum / n as f64;
        let var = values.map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        Some(MeanStd { mean, std: var.sqrt() })
    }
}

/// Size and shape of one data set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetShape {
    pub records: usize,
    pub visits: usize,
    pub visits_per_record: Option<MeanStd>,
    /// Distinct codes per visit.
    pub codes_per_visit: Option<MeanStd>,
    pub distinct_codes: usize,
}

pub fn shape(corpus: &Corpus, counts: &CodeCounts) -> DatasetShape {
    DatasetShape {
        records: corpus.len(),
        visits: corpus.n_visits(),
        visits_per_record: MeanStd::of((0..corpus.len()).map(|r| corpus.visits_of(r).len() as f64)),
        codes_per_visit: MeanStd::of((0..corpus.n_visits()).map(|v| corpus.visit(v).len() as f64)),
        distinct_codes: counts.unigrams.len(),
    }
}

/// One data set's share of each bin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramSeries {
    pub name: String,
    /// Number of values counted.
    pub count: usize,
    /// Fraction of the values in each bin (sums to 1 when `count > 0`).
    pub fractions: Vec<f64>,
}

/// A histogram of several data sets over the same bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub title: String,
    pub bins: Vec<String>,
    pub series: Vec<HistogramSeries>,
}

/// Integer histogram: bins `lo, lo+1, .., hi` and a last bin `> hi`.
fn integer_histogram(title: &str, lo: usize, hi: usize, sets: [(&str, Vec<usize>); 3]) -> Histogram {
    let mut bins: Vec<String> = (lo..=hi).map(|i| i.to_string()).collect();
    bins.push(format!("{}+", hi + 1));
    let series = sets
        .into_iter()
        .map(|(name, values)| {
            let mut counts = vec![0usize; bins.len()];
            for v in &values {
                counts[v.clamp(&lo, &(hi + 1)) - lo] += 1;
            }
            series(name, counts)
        })
        .collect();
    Histogram {
        title: title.into(),
        bins,
        series,
    }
}

fn series(name: &str, counts: Vec<usize>) -> HistogramSeries {
    let n: usize = counts.iter().sum();
    HistogramSeries {
        name: name.into(),
        count: n,
        fractions: counts
            .iter()
            .map(|&c| if n == 0 { 0.0 } else { c as f64 / n as f64 })
            .collect(),
    }
}

/// The value below which 99% of `values` fall (nearest rank), clamped to `lo..=cap`.
fn upper_bin(values: &[usize], lo: usize, cap: usize) -> usize {
    if values.is_empty() {
        return lo;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let idx = ((sorted.len() as f64 * 0.99).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx].clamp(lo, cap)
}

/// Histograms of visits per record and codes per visit, real splits and synthetic overlaid.
pub fn shape_histograms(sets: [&Corpus; 3]) -> Vec<Histogram> {
    // The upper bin follows the training split; every set is counted into the same bins.
    let overlay = |title: &str, lo: usize, values: [Vec<usize>; 3], min_hi: usize, max_hi: usize| {
        let hi = upper_bin(&values[0], min_hi, max_hi);
        let [train, test, synthetic] = values;
        integer_histogram(
            title,
            lo,
            hi,
            [("train", train), ("test", test), ("synthetic", synthetic)],
        )
    };
    let visits = sets.map(|c| (0..c.len()).map(|r| c.visits_of(r).len()).collect());
    let codes = sets.map(|c| (0..c.n_visits()).map(|v| c.visit(v).len()).collect());
    vec![
        overlay("Visits per record", 1, visits, 5, 40),
        overlay("Codes per visit", 0, codes, 10, 80),
    ]
}

/// Prevalence of one label in each data set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelPrevalence {
    pub label: String,
    /// Where the label comes from: given with the records, or derived from codes by a label spec.
    #[serde(default)]
    pub kind: LabelKind,
    pub train: f64,
    pub test: f64,
    pub synthetic: f64,
    /// Share of synthetic records whose sampled label is what the label spec gives for their own codes
    /// (1 in real data whose labels come from that spec); only when labels come from a spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthetic_agreement: Option<f64>,
}

/// Where a label comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelKind {
    /// Given with the records (JSONL `labels`): the sampler samples it like a code.
    #[default]
    Given,
    /// Set by a label spec from the record's codes: the sampler sets it from the sampled codes.
    FromCodes,
}

impl LabelKind {
    pub fn describe(self) -> &'static str {
        match self {
            LabelKind::Given => "given with the records",
            LabelKind::FromCodes => "from codes (label spec)",
        }
    }
}

/// One lab: in what fraction of visits it is measured and its mean value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabComparison {
    pub code: String,
    pub presence: SideBySide<f64>,
    pub mean_value: SideBySide<Option<f64>>,
}

/// Continuous variables: gaps between visits and lab values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Continuous {
    /// Mean days between consecutive visits (where both days are known).
    pub mean_gap_days: SideBySide<Option<f64>>,
    pub gaps: SideBySide<usize>,
    pub gap_histogram: Option<Histogram>,
    /// Labs, most often measured in the training split first.
    pub labs: Vec<LabComparison>,
    /// R² of the synthetic presence rates against the training split's, over the union of labs (missing = 0).
    pub lab_presence_r2: Option<f64>,
    /// R² of the synthetic mean values against the training split's, over labs with values in both.
    pub lab_mean_r2: Option<f64>,
}

#[derive(Default)]
struct ContinuousStats {
    gaps: Vec<f64>,
    visits: usize,
    lab_visits: BTreeMap<String, usize>,
    lab_sums: BTreeMap<String, (f64, usize)>,
}

fn continuous_stats(patients: &[&Patient]) -> ContinuousStats {
    let mut st = ContinuousStats::default();
    let mut seen: Vec<&str> = Vec::new();
    for p in patients {
        let days = visit_days(p);
        for w in days.windows(2) {
            if let (Some(a), Some(b)) = (w[0], w[1]) {
                st.gaps.push(b - a);
            }
        }
        for v in &p.visits {
            st.visits += 1;
            seen.clear();
            for lab in &v.labs {
                let e = st.lab_sums.entry(lab.code.clone()).or_default();
                e.0 += lab.value;
                e.1 += 1;
                if !seen.contains(&lab.code.as_str()) {
                    seen.push(&lab.code);
                    *st.lab_visits.entry(lab.code.clone()).or_default() += 1;
                }
            }
        }
    }
    st
}

/// Gaps and labs of the three data sets.
pub fn continuous(train: &[&Patient], test: &[&Patient], synthetic: &[&Patient]) -> Continuous {
    let st = [
        continuous_stats(train),
        continuous_stats(test),
        continuous_stats(synthetic),
    ];
    let mean = |xs: &[f64]| (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64);
    let gap_histogram = (!st[0].gaps.is_empty() || !st[2].gaps.is_empty()).then(|| {
        let edges = &DEFAULT_GAP_EDGES_DAYS;
        let mut bins: Vec<String> = edges.windows(2).map(|w| format!("{}-{}d", w[0], w[1])).collect();
        bins.push(format!("{}d+", edges[edges.len() - 1]));
        let names = ["train", "test", "synthetic"];
        Histogram {
            title: "Days between consecutive visits".into(),
            series: st
                .iter()
                .zip(names)
                .map(|(s, name)| {
                    let mut counts = vec![0usize; bins.len()];
                    for &g in &s.gaps {
                        // Bin i holds edges[i] <= g < edges[i+1]; below 0 goes to the first bin.
                        let i = edges.partition_point(|&e| e <= g).saturating_sub(1);
                        counts[i] += 1;
                    }
                    series(name, counts)
                })
                .collect(),
            bins,
        }
    });
    let mut codes: Vec<(&String, usize)> = st[0].lab_visits.iter().map(|(c, n)| (c, *n)).collect();
    for c in st[2].lab_visits.keys().chain(st[1].lab_visits.keys()) {
        if !st[0].lab_visits.contains_key(c) {
            codes.push((c, 0));
        }
    }
    codes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    codes.dedup_by(|a, b| a.0 == b.0);
    let presence = |s: &ContinuousStats, c: &str| {
        let n = s.lab_visits.get(c).copied().unwrap_or(0);
        if s.visits == 0 {
            0.0
        } else {
            n as f64 / s.visits as f64
        }
    };
    let mean_value = |s: &ContinuousStats, c: &str| s.lab_sums.get(c).map(|(sum, n)| sum / *n as f64);
    let labs: Vec<LabComparison> = codes
        .iter()
        .map(|(c, _)| LabComparison {
            code: c.to_string(),
            presence: SideBySide {
                train: presence(&st[0], c),
                test: presence(&st[1], c),
                synthetic: presence(&st[2], c),
            },
            mean_value: SideBySide {
                train: mean_value(&st[0], c),
                test: mean_value(&st[1], c),
                synthetic: mean_value(&st[2], c),
            },
        })
        .collect();
    // Presence over labs of the training split or the synthetic data (missing = 0); the test split's
    // own labs do not enter this comparison.
    let in_either: Vec<&LabComparison> = labs
        .iter()
        .filter(|l| l.presence.train > 0.0 || l.presence.synthetic > 0.0)
        .collect();
    let lab_presence_r2 = r2_score(
        &in_either.iter().map(|l| l.presence.train).collect::<Vec<_>>(),
        &in_either.iter().map(|l| l.presence.synthetic).collect::<Vec<_>>(),
    );
    let both: Vec<(f64, f64)> = labs
        .iter()
        .filter_map(|l| Some((l.mean_value.train?, l.mean_value.synthetic?)))
        .collect();
    let lab_mean_r2 = r2_score(
        &both.iter().map(|b| b.0).collect::<Vec<_>>(),
        &both.iter().map(|b| b.1).collect::<Vec<_>>(),
    );
    Continuous {
        mean_gap_days: SideBySide {
            train: mean(&st[0].gaps),
            test: mean(&st[1].gaps),
            synthetic: mean(&st[2].gaps),
        },
        gaps: SideBySide {
            train: st[0].gaps.len(),
            test: st[1].gaps.len(),
            synthetic: st[2].gaps.len(),
        },
        gap_histogram,
        labs,
        lab_presence_r2,
        lab_mean_r2,
    }
}
