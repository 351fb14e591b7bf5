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
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

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

/// Which keys a report may name ([`crate::small_cells`]), and what stands in for the others.
pub struct KeyNames<'a> {
    pub named: &'a dyn Fn(Statistic, u64) -> bool,
    pub placeholder: &'a str,
}

/// Points for the scatter plots of one statistic ([visit level, record level]): the `max_points / 2` keys
/// with the largest probability on either side, plus a hash-chosen (so repeatable) sample of the others; a
/// key `names` does not name carries its placeholder.
pub fn scatter_points(
    real: &CodeCounts,
    synthetic: &CodeCounts,
    s: Statistic,
    interner: &Interner,
    names: &KeyNames,
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
        _ if !(names.named)(s, key) => names.placeholder.to_string(),
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
    names: &KeyNames,
    plot_points: usize,
) -> Vec<ProbabilityComparison> {
    let mut out = Vec::new();
    for s in Statistic::ALL {
        let vs_train = r2_counts(train, synthetic, s);
        let vs_test = r2_counts(test, synthetic, s);
        let ceiling = r2_counts(train, test, s);
        let points = scatter_points(train, synthetic, s, interner, names, plot_points);
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

pub mod characterisation;
mod shape;
pub use characterisation::{
    DemographicShares, DomainPrevalence, RecordSpans, SexExclusiveCodes, ValueShare, VisitTypes,
};
pub use shape::*;
