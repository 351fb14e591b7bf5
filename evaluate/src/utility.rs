//! Utility: do classifiers trained on synthetic records predict real labels as well as ones trained on real
//! records? The classifier itself (a BiLSTM, as in the paper) lives in the trainer; this module holds what it
//! needs that is plain data: the balanced sampling of the paper (2,500 training and 250 validation records,
//! half positive, from the real training split or the synthetic data; 500 balanced real test records) and the
//! metrics.

use crate::error::EvalError;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Scores of one classifier on the real test records.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassifierScores {
    pub accuracy: f64,
    pub f1: f64,
    /// `None` when the test records hold one class only.
    pub auroc: Option<f64>,
}

impl ClassifierScores {
    /// Scores from predicted probabilities, a record predicted positive when its score is at least `threshold`.
    pub fn from_scores(y_true: &[bool], scores: &[f64], threshold: f64) -> ClassifierScores {
        let y_pred: Vec<bool> = scores.iter().map(|&s| s >= threshold).collect();
        ClassifierScores {
            accuracy: accuracy(y_true, &y_pred),
            f1: f1(y_true, &y_pred),
            auroc: auroc(y_true, scores),
        }
    }
}

/// One label's utility comparison: a classifier trained on real records and one trained on synthetic records,
/// both tested on the same balanced real test records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UtilityResult {
    pub label: String,
    pub real: ClassifierScores,
    pub synthetic: ClassifierScores,
    pub n_train: usize,
    pub n_val: usize,
    pub n_test: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Fraction of predictions equal to the truth (0 for no records).
pub fn accuracy(y_true: &[bool], y_pred: &[bool]) -> f64 {
    assert_eq!(y_true.len(), y_pred.len(), "accuracy: lengths differ");
    if y_true.is_empty() {
        return 0.0;
    }
    y_true.iter().zip(y_pred).filter(|(t, p)| t == p).count() as f64 / y_true.len() as f64
}

/// F1 of the positive class, `2TP / (2TP + FP + FN)`; 0 when there are no positives at all (sklearn's
/// `zero_division` default).
pub fn f1(y_true: &[bool], y_pred: &[bool]) -> f64 {
    assert_eq!(y_true.len(), y_pred.len(), "f1: lengths differ");
    let (mut tp, mut fp, mut fneg) = (0usize, 0usize, 0usize);
    for (&t, &p) in y_true.iter().zip(y_pred) {
        match (t, p) {
            (true, true) => tp += 1,
            (false, true) => fp += 1,
            (true, false) => fneg += 1,
            (false, false) => {}
        }
    }
    let denom = 2 * tp + fp + fneg;
    if denom == 0 {
        0.0
    } else {
        2.0 * tp as f64 / denom as f64
    }
}

/// Area under the ROC curve by ranks (Mann-Whitney U), tied scores sharing their average rank: the probability
/// that a random positive scores above a random negative, ties counting one half. `None` without both classes.
pub fn auroc(y_true: &[bool], scores: &[f64]) -> Option<f64> {
    assert_eq!(y_true.len(), scores.len(), "auroc: lengths differ");
    let n_pos = y_true.iter().filter(|&&t| t).count();
    let n_neg = y_true.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        // Positions i..=j (ranks i+1..=j+1) are tied: each gets the average rank.
        let avg_rank = (i + j + 2) as f64 / 2.0;
        rank_sum_pos += avg_rank * order[i..=j].iter().filter(|&&k| y_true[k]).count() as f64;
        i = j + 1;
    }
    let u = rank_sum_pos - (n_pos * (n_pos + 1)) as f64 / 2.0;
    Some(u / (n_pos * n_neg) as f64)
}

/// Whether each record carries `label`.
pub fn positives(label_sets: &[BTreeSet<String>], label: &str) -> Vec<bool> {
    label_sets.iter().map(|s| s.contains(label)).collect()
}

/// Sizes of the balanced sets; the paper's by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UtilitySizes {
    pub train: usize,
    pub val: usize,
    pub test: usize,
}

impl Default for UtilitySizes {
    fn default() -> Self {
        UtilitySizes {
            train: 2500,
            val: 250,
            test: 500,
        }
    }
}

/// Indices of the records chosen for one label, each set half positive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalancedSplit {
    /// Into the source records (real training split or synthetic data), disjoint from `val`.
    pub train: Vec<usize>,
    pub val: Vec<usize>,
    /// Into the real test records.
    pub test: Vec<usize>,
    /// Set when a set had to be smaller than asked for.
    pub note: Option<String>,
}

fn shuffled(positive: &[bool], want: bool, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..positive.len()).filter(|&i| positive[i] == want).collect();
    idx.shuffle(rng);
    idx
}

/// Picks balanced training and validation records for `label` from the source records (`source_positive`,
/// one flag per record) and balanced test records from the real test records (`test_positive`).
///
/// When a class has too few records, the sets shrink in proportion (staying balanced) and `note` says so;
/// a class with fewer than two source records, or no test record, is an error. The test records depend only on
/// `test_positive` and `seed`, so classifiers trained on real and on synthetic records face the same test set
/// when called with the same seed.
pub fn balanced_split(
    label: &str,
    source_positive: &[bool],
    test_positive: &[bool],
    sizes: UtilitySizes,
    seed: u64,
) -> Result<BalancedSplit, EvalError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(1);
    let pos = shuffled(source_positive, true, &mut rng);
    let neg = shuffled(source_positive, false, &mut rng);
    let available = pos.len().min(neg.len());
    if available < 2 {
        return Err(EvalError::Invalid {
            what: format!("utility data for label `{label}`"),
            message: format!(
                "{} positive and {} negative source records; need at least 2 of each for balanced training and validation sets",
                pos.len(),
                neg.len()
            ),
        });
    }
    let (want_train, want_val) = (sizes.train / 2, sizes.val / 2);
    let mut notes = Vec::new();
    let (n_train, n_val) = if available >= want_train + want_val {
        (want_train, want_val)
    } else {
        let scale = available as f64 / (want_train + want_val).max(1) as f64;
        let val = ((want_val as f64 * scale).floor() as usize).max(1);
        let train = available - val;
        notes.push(format!(
            "only {available} records of the smaller class in the source: training/validation scaled from {}/{} to {}/{}",
            2 * want_train,
            2 * want_val,
            2 * train,
            2 * val
        ));
        (train, val)
    };
    let mut train: Vec<usize> = pos[..n_train].iter().chain(&neg[..n_train]).copied().collect();
    let mut val: Vec<usize> = pos[n_train..n_train + n_val]
        .iter()
        .chain(&neg[n_train..n_train + n_val])
        .copied()
        .collect();

    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(2);
    let tpos = shuffled(test_positive, true, &mut rng);
    let tneg = shuffled(test_positive, false, &mut rng);
    let want_test = sizes.test / 2;
    let n_test = want_test.min(tpos.len()).min(tneg.len());
    if n_test == 0 {
        return Err(EvalError::Invalid {
            what: format!("utility test data for label `{label}`"),
            message: format!(
                "{} positive and {} negative real test records; need at least one of each",
                tpos.len(),
                tneg.len()
            ),
        });
    }
    if n_test < want_test {
        notes.push(format!(
            "only {} records of the smaller class in the real test split: test set of {} instead of {}",
            n_test,
            2 * n_test,
            2 * want_test
        ));
    }
    let mut test: Vec<usize> = tpos[..n_test].iter().chain(&tneg[..n_test]).copied().collect();
    train.sort_unstable();
    val.sort_unstable();
    test.sort_unstable();
    Ok(BalancedSplit {
        train,
        val,
        test,
        note: (!notes.is_empty()).then(|| notes.join("; ")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_and_f1_by_hand() {
        let t = [true, true, false, false, true];
        let p = [true, false, false, true, true];
        // Correct: positions 0, 2, 4 -> 3/5.
        assert_eq!(accuracy(&t, &p), 0.6);
        // TP = 2 (0, 4), FP = 1 (3), FN = 1 (1): F1 = 4 / (4 + 1 + 1) = 2/3.
        assert!((f1(&t, &p) - 2.0 / 3.0).abs() < 1e-12);
        // No positives anywhere: 0 (sklearn's zero_division).
        assert_eq!(f1(&[false, false], &[false, false]), 0.0);
        assert_eq!(accuracy(&[], &[]), 0.0);
    }

    #[test]
    fn auroc_by_ranks_with_ties() {
        // Scores 0.1(neg) 0.4(pos) 0.4(neg) 0.8(pos): pairs (pos, neg): (0.4, 0.1) win, (0.4, 0.4) tie = 1/2,
        // (0.8, 0.1) win, (0.8, 0.4) win -> 3.5 / 4 = 0.875.
        let t = [false, true, false, true];
        let s = [0.1, 0.4, 0.4, 0.8];
        assert_eq!(auroc(&t, &s), Some(0.875));
        // Perfect and inverted orderings.
        assert_eq!(auroc(&[false, true], &[0.2, 0.9]), Some(1.0));
        assert_eq!(auroc(&[true, false], &[0.2, 0.9]), Some(0.0));
        // All tied: 0.5.
        assert_eq!(auroc(&[true, false, true], &[0.3, 0.3, 0.3]), Some(0.5));
        assert_eq!(auroc(&[true, true], &[0.3, 0.5]), None);
    }

    #[test]
    fn scores_from_probabilities() {
        let t = [true, false, true, false];
        let s = [0.9, 0.6, 0.4, 0.1];
        let sc = ClassifierScores::from_scores(&t, &s, 0.5);
        // Predictions: T, T, F, F -> correct 0 and 3: accuracy 0.5; TP 1, FP 1, FN 1: F1 0.5.
        assert_eq!(sc.accuracy, 0.5);
        assert_eq!(sc.f1, 0.5);
        // Positive scores 0.9, 0.4 vs negative 0.6, 0.1: wins (0.9,0.6), (0.9,0.1), (0.4,0.1) = 3/4.
        assert_eq!(sc.auroc, Some(0.75));
    }

    #[test]
    fn balanced_split_full_size() {
        // 10,000 source records, every 4th positive: 2,500 positives, enough for 1,250 + 125 of each class.
        let src: Vec<bool> = (0..10_000).map(|i| i % 4 == 0).collect();
        let test: Vec<bool> = (0..2000).map(|i| i % 3 == 0).collect();
        let s = balanced_split("x", &src, &test, UtilitySizes::default(), 7).unwrap();
        assert_eq!(s.train.len(), 2500);
        assert_eq!(s.val.len(), 250);
        assert_eq!(s.test.len(), 500);
        assert_eq!(s.train.iter().filter(|&&i| src[i]).count(), 1250);
        assert_eq!(s.val.iter().filter(|&&i| src[i]).count(), 125);
        assert_eq!(s.test.iter().filter(|&&i| test[i]).count(), 250);
        assert!(s.train.iter().all(|i| s.val.binary_search(i).is_err()));
        assert_eq!(s.note, None);
        // Same seed and test flags, other source: same test records.
        let other: Vec<bool> = (0..5000).map(|i| i % 2 == 0).collect();
        let s2 = balanced_split("x", &other, &test, UtilitySizes::default(), 7).unwrap();
        assert_eq!(s.test, s2.test);
    }

    #[test]
    fn balanced_split_scales_down_with_note() {
        // 110 positives: 110 per class available of the 1375 wanted -> val 125 * 0.08 = 10, train 100.
        let src: Vec<bool> = (0..1000).map(|i| i < 110).collect();
        let test: Vec<bool> = (0..100).map(|i| i < 30).collect();
        let s = balanced_split("x", &src, &test, UtilitySizes::default(), 1).unwrap();
        assert_eq!(s.train.len(), 200);
        assert_eq!(s.val.len(), 20);
        assert_eq!(s.test.len(), 60);
        assert_eq!(s.train.iter().filter(|&&i| src[i]).count(), 100);
        let note = s.note.unwrap();
        assert!(note.contains("scaled from 2500/250 to 200/20"), "{note}");
        assert!(note.contains("test set of 60 instead of 500"), "{note}");
        let err = balanced_split("rare", &[true, false, false], &test, UtilitySizes::default(), 1).unwrap_err();
        assert!(err.to_string().contains("`rare`"), "{err}");
    }
}
