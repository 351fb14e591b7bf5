//! Statistical fidelity: how closely the synthetic records' code probabilities and shapes follow the real ones.
//!
//! Code probabilities follow the reference `evaluate_datasets.py` of HALO:
//! - visit level: unigram = visits holding the code / visits; same-visit bigram = visits holding both codes of
//!   an unordered pair of distinct codes / visits; consecutive-visit bigram = transitions (visit t-1 -> t) with
//!   the first code in visit t-1 and the second in visit t / (visits - records);
//! - record level: records holding the code / pair anywhere / records (for all three).
//!
//! Agreement is sklearn's `r2_score(y_true=real, y_pred=synthetic)` over the union of keys of both data sets,
//! a key missing from one side counting as probability 0. Counting is sparse: sorted tables of the codes and
//! pairs that occur ([`crate::counting`]), never vocabulary-by-vocabulary matrices.

use crate::corpus::{fold_mul, Corpus, Interner};
use crate::counting::{count_pairs, count_unigrams, Pairs, Run, PASS_BUDGET};
use halo_core::encoding::DEFAULT_GAP_EDGES_DAYS;
use halo_core::record::Patient;
use halo_core::time::visit_days;
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

/// sklearn's `r2_score(y_true, y_pred)`: `1 - SS_res / SS_tot` with `SS_res = sum (y_true - y_pred)^2` and
/// `SS_tot = sum (y_true - mean(y_true))^2`; 1 when `SS_res` is 0, 0 when only `SS_tot` is 0 (sklearn's
/// `force_finite`); `None` for fewer than two values (sklearn returns NaN there).
pub fn r2_score(y_true: &[f64], y_pred: &[f64]) -> Option<f64> {
    assert_eq!(y_true.len(), y_pred.len(), "r2_score: lengths differ");
    let n = y_true.len();
    if n < 2 {
        return None;
    }
    let mean = y_true.iter().sum::<f64>() / n as f64;
    let ss_res: f64 = y_true.iter().zip(y_pred).map(|(t, p)| (t - p) * (t - p)).sum();
    let ss_tot: f64 = y_true.iter().map(|t| (t - mean) * (t - mean)).sum();
    finish_r2(ss_res, ss_tot, n)
}

fn finish_r2(ss_res: f64, ss_tot: f64, n: usize) -> Option<f64> {
    if n < 2 {
        None
    } else if ss_res == 0.0 {
        Some(1.0)
    } else if ss_tot == 0.0 {
        Some(0.0)
    } else {
        Some(1.0 - ss_res / ss_tot)
    }
}

/// R² of `pred` against `truth` over the union of their keys, missing keys counting as 0.
pub fn r2_of_maps(truth: &BTreeMap<String, f64>, pred: &BTreeMap<String, f64>) -> Option<f64> {
    let keys: std::collections::BTreeSet<&String> = truth.keys().chain(pred.keys()).collect();
    let t: Vec<f64> = keys.iter().map(|k| truth.get(*k).copied().unwrap_or(0.0)).collect();
    let p: Vec<f64> = keys.iter().map(|k| pred.get(*k).copied().unwrap_or(0.0)).collect();
    r2_score(&t, &p)
}

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Statistic {
    Unigram,
    SameVisitBigram,
    ConsecutiveVisitBigram,
}

impl Statistic {
    pub const ALL: [Statistic; 3] = [
        Statistic::Unigram,
        Statistic::SameVisitBigram,
        Statistic::ConsecutiveVisitBigram,
    ];
    pub fn title(self) -> &'static str {
        match self {
            Statistic::Unigram => "unigram",
            Statistic::SameVisitBigram => "same-visit bigram",
            Statistic::ConsecutiveVisitBigram => "consecutive-visit bigram",
        }
    }
}

/// Per visit (divided by visits, or transitions) or per record (divided by records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Visit,
    Record,
}

impl Level {
    pub const ALL: [Level; 2] = [Level::Visit, Level::Record];
    pub fn title(self) -> &'static str {
        match self {
            Level::Visit => "visit-level",
            Level::Record => "record-level",
        }
    }
}

pub use crate::counting::Counts;

/// Counts of keys (codes or pairs), sorted by key.
#[derive(Debug, Clone, Default)]
pub struct CountTable {
    entries: Run,
}

impl CountTable {
    pub fn get(&self, key: u64) -> Option<Counts> {
        self.entries
            .binary_search_by_key(&key, |e| e.0)
            .ok()
            .map(|i| self.entries[i].1)
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = (u64, Counts)> + '_ {
        self.entries.iter().copied()
    }
}

/// Every count of one data set.
#[derive(Debug, Clone)]
pub struct CodeCounts {
    pub n_records: usize,
    pub n_visits: usize,
    /// Code ids are below this bound; pair keys are `a * code_bound + b`.
    pub code_bound: u32,
    /// Key: the code id.
    pub unigrams: CountTable,
    /// Key: [`CodeCounts::pair_key`]`(a, b)` with `a < b`.
    pub same_visit: CountTable,
    /// Key: [`CodeCounts::pair_key`]`(code in visit t-1, code in visit t)`.
    pub consecutive: CountTable,
}

impl CodeCounts {
    pub fn table(&self, s: Statistic) -> &CountTable {
        match s {
            Statistic::Unigram => &self.unigrams,
            Statistic::SameVisitBigram => &self.same_visit,
            Statistic::ConsecutiveVisitBigram => &self.consecutive,
        }
    }
    /// Key of the pair of codes `(a, b)`.
    pub fn pair_key(&self, a: u32, b: u32) -> u64 {
        a as u64 * self.code_bound as u64 + b as u64
    }
    /// The codes of a pair key.
    pub fn pair_of(&self, key: u64) -> (u32, u32) {
        let bound = self.code_bound as u64;
        ((key / bound) as u32, (key % bound) as u32)
    }
    /// Factors turning counts into probabilities: [visit level, record level].
    pub fn scale(&self, s: Statistic) -> [f64; 2] {
        let visit_den = match s {
            Statistic::ConsecutiveVisitBigram => self.n_visits - self.n_records.min(self.n_visits),
            _ => self.n_visits,
        };
        [inverse(visit_den), inverse(self.n_records)]
    }
    /// Probability of `key` at `level`, 0 when absent.
    pub fn probability(&self, s: Statistic, level: Level, key: u64) -> f64 {
        values(self.table(s).get(key).unwrap_or_default(), self.scale(s))[level as usize]
    }
}

fn inverse(n: usize) -> f64 {
    if n == 0 {
        0.0
    } else {
        1.0 / n as f64
    }
}

/// Probabilities [visit level, record level] of counts.
#[inline]
fn values(c: Counts, scale: [f64; 2]) -> [f64; 2] {
    [c.visits as f64 * scale[0], c.records as f64 * scale[1]]
}

/// Counts unigrams, same-visit and consecutive-visit bigrams at visit and record level, on `threads`
/// threads. Code ids must be below `code_bound` (the interner's size: the same for every data set compared).
pub fn count_codes(corpus: &Corpus, code_bound: u32, threads: usize) -> CodeCounts {
    let pairs = |kind| CountTable {
        entries: count_pairs(corpus, code_bound, kind, threads, PASS_BUDGET),
    };
    CodeCounts {
        n_records: corpus.len(),
        n_visits: corpus.n_visits(),
        code_bound,
        unigrams: CountTable {
            entries: count_unigrams(corpus, code_bound),
        },
        same_visit: pairs(Pairs::SameVisit),
        consecutive: pairs(Pairs::ConsecutiveVisit),
    }
}

/// Calls `f(key, truth counts, pred counts)` for every key of either table in key order; a key missing
/// from one table comes with `None` there.
fn join(truth: &[(u64, Counts)], pred: &[(u64, Counts)], mut f: impl FnMut(u64, Option<Counts>, Option<Counts>)) {
    let (mut i, mut j) = (0, 0);
    while i < truth.len() || j < pred.len() {
        let kt = truth.get(i).map_or(u64::MAX, |e| e.0);
        let kp = pred.get(j).map_or(u64::MAX, |e| e.0);
        if j >= pred.len() || (i < truth.len() && kt < kp) {
            f(kt, Some(truth[i].1), None);
            i += 1;
        } else if i >= truth.len() || kp < kt {
            f(kp, None, Some(pred[j].1));
            j += 1;
        } else {
            f(kt, Some(truth[i].1), Some(pred[j].1));
            i += 1;
            j += 1;
        }
    }
}

/// R² of `pred` against `truth` for one statistic at both levels ([visit, record]), over the union of keys.
pub fn r2_counts(truth: &CodeCounts, pred: &CodeCounts, s: Statistic) -> [Option<f64>; 2] {
    assert_eq!(truth.code_bound, pred.code_bound, "counts with different code bounds");
    let (t, p) = (&truth.table(s).entries, &pred.table(s).entries);
    let (ts, ps) = (truth.scale(s), pred.scale(s));
    let n_union = {
        let mut n = 0usize;
        join(t, p, |_, _, _| n += 1);
        n
    };
    if n_union < 2 {
        return [None, None];
    }
    let mut sum_true = [0.0; 2];
    for (_, c) in t {
        let v = values(*c, ts);
        sum_true[0] += v[0];
        sum_true[1] += v[1];
    }
    let mean = [sum_true[0] / n_union as f64, sum_true[1] / n_union as f64];
    let (mut ss_res, mut ss_tot) = ([0.0; 2], [0.0; 2]);
    join(t, p, |_, tc, pc| {
        let tv = values(tc.unwrap_or_default(), ts);
        let pv = values(pc.unwrap_or_default(), ps);
        for l in 0..2 {
            ss_res[l] += (tv[l] - pv[l]) * (tv[l] - pv[l]);
            ss_tot[l] += (tv[l] - mean[l]) * (tv[l] - mean[l]);
        }
    });
    [
        finish_r2(ss_res[0], ss_tot[0], n_union),
        finish_r2(ss_res[1], ss_tot[1], n_union),
    ]
}

/// One point of a real-vs-synthetic scatter plot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScatterPoint {
    pub key: String,
    pub real: f64,
    pub synthetic: f64,
}

/// Points for the scatter plots of one statistic ([visit level, record level]): the `max_points / 2` keys
/// with the largest probability on either side, plus a hash-chosen (so repeatable) sample of the others.
pub fn scatter_points(
    real: &CodeCounts,
    synthetic: &CodeCounts,
    s: Statistic,
    interner: &Interner,
    max_points: usize,
) -> [Vec<ScatterPoint>; 2] {
    let (t, p) = (&real.table(s).entries, &synthetic.table(s).entries);
    let (ts, ps) = (real.scale(s), synthetic.scale(s));
    let n_top = max_points / 2;
    let n_random = max_points - n_top;
    let n_keys = (t.len() + p.len()).max(1);
    // Keep a key at random when its hash falls below this fraction of the hash range.
    let threshold = if n_random >= n_keys {
        u64::MAX
    } else {
        ((n_random as f64 / n_keys as f64) * u64::MAX as f64) as u64
    };
    // Min-heaps of (probability bits, key): non-negative floats order like their bit patterns.
    let mut top: [BinaryHeap<Reverse<(u64, u64)>>; 2] = [BinaryHeap::new(), BinaryHeap::new()];
    let mut random = Vec::new();
    join(t, p, |key, tc, pc| {
        let tv = values(tc.unwrap_or_default(), ts);
        let pv = values(pc.unwrap_or_default(), ps);
        for l in 0..2 {
            let item = Reverse((tv[l].max(pv[l]).to_bits(), key));
            if top[l].len() < n_top {
                top[l].push(item);
            } else if top[l].peek().is_some_and(|min| item < *min) {
                top[l].pop();
                top[l].push(item);
            }
        }
        if random.len() < n_random && fold_mul(key, 0xA076_1D64_78BD_642F) <= threshold {
            random.push(key);
        }
    });
    let name = |key: u64| match s {
        Statistic::Unigram => interner.name(key as u32).to_string(),
        Statistic::SameVisitBigram => {
            let (a, b) = real.pair_of(key);
            format!("{} + {}", interner.name(a), interner.name(b))
        }
        Statistic::ConsecutiveVisitBigram => {
            let (a, b) = real.pair_of(key);
            format!("{} -> {}", interner.name(a), interner.name(b))
        }
    };
    let mut out: [Vec<ScatterPoint>; 2] = [Vec::new(), Vec::new()];
    for (l, heap) in top.into_iter().enumerate() {
        let level = Level::ALL[l];
        let mut keys: Vec<u64> = heap.into_iter().map(|Reverse((_, k))| k).collect();
        keys.extend(&random);
        keys.sort_unstable();
        keys.dedup();
        out[l] = keys
            .into_iter()
            .map(|k| ScatterPoint {
                key: name(k),
                real: real.probability(s, level, k),
                synthetic: synthetic.probability(s, level, k),
            })
            .collect();
    }
    out
}

/// R² of one statistic at one level, synthetic against both real splits, and the real ceiling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbabilityComparison {
    pub statistic: Statistic,
    pub level: Level,
    /// Distinct keys (codes or pairs) in each data set.
    pub keys_train: usize,
    pub keys_test: usize,
    pub keys_synthetic: usize,
    /// `r2_score(y_true = real training split, y_pred = synthetic)`.
    pub r2_synthetic_vs_train: Option<f64>,
    /// `r2_score(y_true = real test split, y_pred = synthetic)`.
    pub r2_synthetic_vs_test: Option<f64>,
    /// `r2_score(y_true = real training split, y_pred = real test split)`: what a perfect generator reaches.
    pub r2_test_vs_train: Option<f64>,
    /// Training split (x) against synthetic (y), for the plot.
    pub points: Vec<ScatterPoint>,
}

/// Every code-probability comparison: 3 statistics x 2 levels.
pub fn code_probabilities(
    train: &CodeCounts,
    test: &CodeCounts,
    synthetic: &CodeCounts,
    interner: &Interner,
    plot_points: usize,
) -> Vec<ProbabilityComparison> {
    let mut out = Vec::new();
    for s in Statistic::ALL {
        let vs_train = r2_counts(train, synthetic, s);
        let vs_test = r2_counts(test, synthetic, s);
        let ceiling = r2_counts(train, test, s);
        let points = scatter_points(train, synthetic, s, interner, plot_points);
        for (l, level) in Level::ALL.into_iter().enumerate() {
            out.push(ProbabilityComparison {
                statistic: s,
                level,
                keys_train: train.table(s).len(),
                keys_test: test.table(s).len(),
                keys_synthetic: synthetic.table(s).len(),
                r2_synthetic_vs_train: vs_train[l],
                r2_synthetic_vs_test: vs_test[l],
                r2_test_vs_train: ceiling[l],
                points: points[l].clone(),
            });
        }
    }
    out
}

/// The same quantity for the training split, the test split and the synthetic data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    let names = ["train", "test", "synthetic"];
    let lens: Vec<Vec<usize>> = sets
        .iter()
        .map(|c| (0..c.len()).map(|r| c.visits_of(r).len()).collect())
        .collect();
    let hi = upper_bin(&lens[0], 5, 40);
    let visits = integer_histogram(
        "Visits per record",
        1,
        hi,
        [
            (names[0], lens[0].clone()),
            (names[1], lens[1].clone()),
            (names[2], lens[2].clone()),
        ],
    );
    let codes: Vec<Vec<usize>> = sets
        .iter()
        .map(|c| (0..c.n_visits()).map(|v| c.visit(v).len()).collect())
        .collect();
    let hi = upper_bin(&codes[0], 10, 80);
    let per_visit = integer_histogram(
        "Codes per visit",
        0,
        hi,
        [
            (names[0], codes[0].clone()),
            (names[1], codes[1].clone()),
            (names[2], codes[2].clone()),
        ],
    );
    vec![visits, per_visit]
}

/// Prevalence of one label in each data set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelPrevalence {
    pub label: String,
    pub train: f64,
    pub test: f64,
    pub synthetic: f64,
    /// Share of synthetic records whose sampled label is what the label spec gives for their own codes
    /// (1 in real data whose labels come from that spec); only when labels come from a spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthetic_agreement: Option<f64>,
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
