//! Privacy: can the synthetic data (or the model) tell who was in the training data?
//!
//! Records are compared as the set of codes they ever have (multi-hot over the union vocabulary); the distance
//! is the Hamming distance between two such sets, `|a| + |b| - 2|a ∩ b|`. Nearest neighbours are found by brute
//! force: the query's codes are marked in a bitset of `u64` words and each candidate's codes are looked up in it,
//! queries split over threads. Sample sizes are capped (see [`crate::EvalOptions`]) and reported.
//!
//! - Membership inference, dataset attack (HALO's `evaluate_privacy_membership.py`): equal numbers of training
//!   records (members) and test records (non-members); each one's distance to its nearest synthetic record;
//!   "member" when the distance is below the median of all these distances. 0.5 accuracy = no leak.
//! - Membership inference, model attack: the same records' log-likelihoods under the model (given by the
//!   caller); "member" when above the median.
//! - Attribute inference (`evaluate_privacy_attribute.py`): an attacker knows a training record's labels and
//!   which of the most common codes it has, finds its k nearest records on those in the synthetic data, and
//!   predicts its other codes as those held by more than half the neighbours. Micro F1 over all attacked
//!   records, against the baseline of neighbours taken from real test records instead.
//! - Nearest-neighbour adversarial accuracy (Yale et al. 2020): `AA_XS = 0.5 * (mean[d_XS > d_XX] +
//!   mean[d_SX > d_SS])` with within-set distances leave-one-out; X = training (`AA_TS`) or test (`AA_ES`)
//!   records; privacy loss `AA_ES - AA_TS` (0 = the synthetic data is no closer to training records than to
//!   unseen ones).
//! - Exact copies: synthetic records whose visit sequence equals a training record's, against the same rate
//!   for test records (real patients can coincide by chance, especially short records).

use crate::corpus::{fold_mul, CodeSets, Corpus, FastHasher, FastMap};
use crate::error::EvalError;
use crate::EvalOptions;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::hash::BuildHasherDefault;

/// The data set a record comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Train,
    Test,
    Synthetic,
}

/// Random streams of the samples, so that each sample is fixed by the seed alone.
const STREAM_MEMBERS: u64 = 1;
const STREAM_NON_MEMBERS: u64 = 2;
const STREAM_REFERENCE: u64 = 3;
const STREAM_ATTRIBUTE: u64 = 4;
const STREAM_NNAA: u64 = 5;

/// `amount` distinct indices below `len`, drawn with the seed's random stream `stream`, in increasing order.
pub fn sample_indices(len: usize, amount: usize, seed: u64, stream: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    let mut idx = rand::seq::index::sample(&mut rng, len, amount.min(len)).into_vec();
    idx.sort_unstable();
    idx
}

/// The records the membership attacks judge: indices into the training and test records (those with visits,
/// in input order). Equal numbers of each: `min(privacy_sample, training, test)`.
pub fn membership_sample(n_train: usize, n_test: usize, options: &EvalOptions) -> (Vec<usize>, Vec<usize>) {
    let n = options.privacy_sample.min(n_train).min(n_test);
    (
        sample_indices(n_train, n, options.seed, STREAM_MEMBERS),
        sample_indices(n_test, n, options.seed, STREAM_NON_MEMBERS),
    )
}

/// numpy's `median`: the middle value, or the mean of the two middle values.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

/// Outcome of a membership attack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackResult {
    pub members: usize,
    pub non_members: usize,
    /// Fraction of attacked records classified correctly; 0.5 = a coin flip, the private outcome.
    pub accuracy: f64,
    /// Of the records predicted members, the fraction that are (None when none is predicted).
    pub precision: Option<f64>,
    /// Of the members, the fraction predicted members.
    pub recall: f64,
    /// The median the attack thresholds at.
    pub threshold: f64,
    pub mean_member: f64,
    pub mean_non_member: f64,
}

fn attack(members: &[f64], non_members: &[f64], predict_member: impl Fn(f64, f64) -> bool) -> Option<AttackResult> {
    let all: Vec<f64> = members.iter().chain(non_members).copied().collect();
    let threshold = median(&all)?;
    let tp = members.iter().filter(|&&x| predict_member(x, threshold)).count();
    let fp = non_members.iter().filter(|&&x| predict_member(x, threshold)).count();
    let tn = non_members.len() - fp;
    let mean = |xs: &[f64]| {
        if xs.is_empty() {
            0.0
        } else {
            xs.iter().sum::<f64>() / xs.len() as f64
        }
    };
    Some(AttackResult {
        members: members.len(),
        non_members: non_members.len(),
        accuracy: (tp + tn) as f64 / all.len() as f64,
        precision: (tp + fp > 0).then(|| tp as f64 / (tp + fp) as f64),
        recall: if members.is_empty() {
            0.0
        } else {
            tp as f64 / members.len() as f64
        },
        threshold,
        mean_member: mean(members),
        mean_non_member: mean(non_members),
    })
}

/// Dataset attack: a record is predicted a member when its distance to the nearest synthetic record is below
/// the median of all attacked records' distances.
pub fn distance_attack(member_distances: &[f64], non_member_distances: &[f64]) -> Option<AttackResult> {
    attack(member_distances, non_member_distances, |d, m| d < m)
}

/// Model attack: a record is predicted a member when its log-likelihood is above the median.
pub fn likelihood_attack(member_ll: &[f64], non_member_ll: &[f64]) -> Option<AttackResult> {
    attack(member_ll, non_member_ll, |ll, m| ll > m)
}

/// Hamming distance from each query set to its nearest reference set. With `leave_one_out`, queries and
/// references are the same sets and query `i` skips reference `i`. `u32::MAX` when there is no candidate.
pub fn nearest_distances(queries: &CodeSets, refs: &CodeSets, leave_one_out: bool, threads: usize) -> Vec<u32> {
    let words = queries.id_bound().max(refs.id_bound()).div_ceil(64);
    let n = queries.len();
    let mut out = vec![u32::MAX; n];
    if n == 0 {
        return out;
    }
    let chunk = n.div_ceil(threads.max(1));
    std::thread::scope(|scope| {
        for (ci, slice) in out.chunks_mut(chunk).enumerate() {
            scope.spawn(move || {
                let mut mark = vec![0u64; words];
                for (j, best_out) in slice.iter_mut().enumerate() {
                    let i = ci * chunk + j;
                    let q = queries.get(i);
                    for &c in q {
                        mark[c as usize >> 6] |= 1 << (c & 63);
                    }
                    let mut best = u32::MAX;
                    for r in 0..refs.len() {
                        if leave_one_out && r == i {
                            continue;
                        }
                        let rc = refs.get(r);
                        // Lower bound: the sizes' difference.
                        if (q.len() as i64 - rc.len() as i64).unsigned_abs() >= best as u64 {
                            continue;
                        }
                        let inter: u32 = rc
                            .iter()
                            .map(|&c| ((mark[c as usize >> 6] >> (c & 63)) & 1) as u32)
                            .sum();
                        best = best.min(q.len() as u32 + rc.len() as u32 - 2 * inter);
                    }
                    for &c in q {
                        mark[c as usize >> 6] = 0;
                    }
                    *best_out = best;
                }
            });
        }
    });
    out
}

/// Yale et al.'s adversarial accuracy `0.5 * (mean[d_xs > d_xx] + mean[d_sx > d_ss])`: how often a 1-NN
/// classifier tells real (x) from synthetic (s) records correctly. Inputs are per-record nearest distances.
pub fn adversarial_accuracy(d_xs: &[u32], d_xx: &[u32], d_sx: &[u32], d_ss: &[u32]) -> f64 {
    let rate = |a: &[u32], b: &[u32]| {
        assert_eq!(a.len(), b.len());
        if a.is_empty() {
            0.0
        } else {
            a.iter().zip(b).filter(|(x, y)| x > y).count() as f64 / a.len() as f64
        }
    };
    0.5 * (rate(d_xs, d_xx) + rate(d_sx, d_ss))
}

/// What an attribute-inference attacker knows about a record (a bitset over labels and common codes) and the
/// codes it tries to infer (sorted ids).
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeRecord {
    pub known: Vec<u64>,
    pub hidden: Vec<u32>,
}

fn bits_hamming(a: &[u64], b: &[u64]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

/// Micro F1 of the attack over all `attacked` records: each one's hidden codes predicted as those held by more
/// than `k / 2` of its `k` nearest `reference` records on the known attributes (ties: earlier reference first).
/// `None` when there is nothing to score (no hidden codes and no predictions).
pub fn attribute_f1(attacked: &[AttributeRecord], reference: &[AttributeRecord], k: usize) -> Option<f64> {
    let k = k.max(1).min(reference.len());
    if k == 0 {
        return None;
    }
    let (mut tp, mut fp, mut fneg) = (0usize, 0usize, 0usize);
    let mut dist: Vec<(u32, usize)> = Vec::with_capacity(reference.len());
    let mut votes: Vec<u32> = Vec::new();
    for a in attacked {
        dist.clear();
        dist.extend(
            reference
                .iter()
                .enumerate()
                .map(|(j, r)| (bits_hamming(&a.known, &r.known), j)),
        );
        if k < dist.len() {
            dist.select_nth_unstable(k - 1);
        }
        votes.clear();
        for &(_, j) in &dist[..k] {
            votes.extend_from_slice(&reference[j].hidden);
        }
        votes.sort_unstable();
        let mut predicted = Vec::new();
        for run in votes.chunk_by(|x, y| x == y) {
            if 2 * run.len() > k {
                predicted.push(run[0]);
            }
        }
        let hit = predicted.iter().filter(|c| a.hidden.binary_search(c).is_ok()).count();
        tp += hit;
        fp += predicted.len() - hit;
        fneg += a.hidden.len() - hit;
    }
    let denom = tp as f64 + 0.5 * (fp + fneg) as f64;
    (denom > 0.0).then(|| tp as f64 / denom)
}

/// A 128-bit fingerprint of a record's visit sequence (visits of sorted distinct code ids, in order). Two
/// independent 64-bit hashes: a false match among a million records has probability about 2^-88.
pub fn sequence_fingerprint(corpus: &Corpus, r: usize) -> u128 {
    let mut h1 = 0x243F_6A88_85A3_08D3u64;
    let mut h2 = 0x1319_8A2E_0370_7344u64;
    let mut feed = |x: u64| {
        h1 = fold_mul(h1 ^ x, 0x9E37_79B9_7F4A_7C15);
        h2 = fold_mul(h2 ^ x, 0xC2B2_AE3D_27D4_EB4F);
    };
    let visits = corpus.visits_of(r);
    feed(visits.len() as u64);
    for v in visits {
        let codes = corpus.visit(v);
        feed(codes.len() as u64 | 1 << 40);
        for &c in codes {
            feed(c as u64);
        }
    }
    ((h1 as u128) << 64) | h2 as u128
}

/// Records of `others` whose visit sequence equals some record's of `train`.
pub fn count_copies(train: &Corpus, others: &Corpus) -> usize {
    let known: HashSet<u128, BuildHasherDefault<FastHasher>> =
        (0..train.len()).map(|r| sequence_fingerprint(train, r)).collect();
    (0..others.len())
        .filter(|&r| known.contains(&sequence_fingerprint(others, r)))
        .count()
}

/// Membership-inference results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Membership {
    /// Synthetic records the dataset attack searches (a sample when the data set is larger than the cap).
    pub synthetic_reference: usize,
    pub dataset_attack: Option<AttackResult>,
    /// Present when the caller gave log-likelihoods of the attacked records.
    pub model_attack: Option<AttackResult>,
}

/// Attribute-inference results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeInference {
    pub k: usize,
    /// Training records attacked.
    pub attacked: usize,
    /// Records searched for neighbours, in the synthetic data and in the test-split baseline alike.
    pub reference: usize,
    /// Known attributes: labels and the most common codes.
    pub known_labels: usize,
    pub known_codes: usize,
    /// F1 with neighbours from the synthetic data.
    pub f1_synthetic: Option<f64>,
    /// F1 with neighbours from real test records: what an attacker learns without the synthetic data.
    pub f1_test_baseline: Option<f64>,
}

/// Nearest-neighbour adversarial accuracy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdversarialAccuracy {
    /// Records in each of the three samples (training, test, synthetic).
    pub n: usize,
    pub aa_train_synthetic: f64,
    pub aa_test_synthetic: f64,
    /// `AA_ES - AA_TS`.
    pub privacy_loss: f64,
}

/// Exact copies of real visit sequences.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExactCopies {
    pub synthetic_records: usize,
    pub synthetic_copies: usize,
    pub synthetic_rate: f64,
    pub test_records: usize,
    pub test_copies: usize,
    /// The chance rate: test records that equal a training record.
    pub test_rate: f64,
}

/// Every privacy result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Privacy {
    pub membership: Membership,
    pub attribute: Option<AttributeInference>,
    pub adversarial: Option<AdversarialAccuracy>,
    pub exact_copies: ExactCopies,
    /// Sample sizes and other caveats.
    pub notes: Vec<String>,
}

/// Runs every privacy evaluation. `labels(side, i)` gives the labels of record `i` of that side's corpus;
/// `log_likelihoods` (members first, then non-members, as [`membership_sample`] orders them) enables the
/// model attack.
pub fn privacy(
    train: &Corpus,
    test: &Corpus,
    synthetic: &Corpus,
    labels: &dyn Fn(Side, usize) -> BTreeSet<String>,
    options: &EvalOptions,
) -> Result<Privacy, EvalError> {
    let threads = options.threads.max(1);
    let mut notes = Vec::new();

    // Membership inference.
    let (members, non_members) = membership_sample(train.len(), test.len(), options);
    let n_ref = options.privacy_reference.min(synthetic.len());
    let reference = sample_indices(synthetic.len(), n_ref, options.seed, STREAM_REFERENCE);
    let ref_sets = CodeSets::of(synthetic, &reference);
    let to_f64 = |d: Vec<u32>| d.into_iter().map(|x| x as f64).collect::<Vec<_>>();
    let d_members = to_f64(nearest_distances(
        &CodeSets::of(train, &members),
        &ref_sets,
        false,
        threads,
    ));
    let d_non = to_f64(nearest_distances(
        &CodeSets::of(test, &non_members),
        &ref_sets,
        false,
        threads,
    ));
    let dataset_attack = distance_attack(&d_members, &d_non);
    notes.push(format!(
        "membership inference: {} training and {} test records attacked (cap {}), nearest neighbour among {} of {} synthetic records (cap {})",
        members.len(),
        non_members.len(),
        options.privacy_sample,
        n_ref,
        synthetic.len(),
        options.privacy_reference
    ));
    let model_attack = match &options.log_likelihoods {
        None => None,
        Some(ll) => {
            let expected = members.len() + non_members.len();
            if ll.len() != expected {
                return Err(EvalError::Length {
                    what: "log-likelihoods of the attacked records",
                    expected,
                    got: ll.len(),
                    hint: "one per record of attacked_records(), members first",
                });
            }
            if let Some(i) = ll.iter().position(|x| x.is_nan()) {
                return Err(EvalError::Invalid {
                    what: "log-likelihoods of the attacked records".into(),
                    message: format!("value {i} is NaN"),
                });
            }
            likelihood_attack(&ll[..members.len()], &ll[members.len()..])
        }
    };

    // Attribute inference.
    let attribute = attribute_inference(train, test, synthetic, labels, options);
    if let Some(a) = &attribute {
        notes.push(format!(
            "attribute inference: {} training records attacked (cap {}), k = {}, {} reference records from the synthetic data and from the test split",
            a.attacked, options.privacy_sample, a.k, a.reference
        ));
    }

    // Nearest-neighbour adversarial accuracy.
    let n = options
        .privacy_sample
        .min(train.len())
        .min(test.len())
        .min(synthetic.len());
    let adversarial = (n >= 2).then(|| {
        let t = CodeSets::of(train, &sample_indices(train.len(), n, options.seed, STREAM_NNAA));
        let e = CodeSets::of(test, &sample_indices(test.len(), n, options.seed, STREAM_NNAA + 10));
        let s = CodeSets::of(
            synthetic,
            &sample_indices(synthetic.len(), n, options.seed, STREAM_NNAA + 20),
        );
        let nd = |q: &CodeSets, r: &CodeSets, loo| nearest_distances(q, r, loo, threads);
        let d_ss = nd(&s, &s, true);
        let aa_ts = adversarial_accuracy(&nd(&t, &s, false), &nd(&t, &t, true), &nd(&s, &t, false), &d_ss);
        let aa_es = adversarial_accuracy(&nd(&e, &s, false), &nd(&e, &e, true), &nd(&s, &e, false), &d_ss);
        AdversarialAccuracy {
            n,
            aa_train_synthetic: aa_ts,
            aa_test_synthetic: aa_es,
            privacy_loss: aa_es - aa_ts,
        }
    });
    if n >= 2 {
        notes.push(format!(
            "adversarial accuracy: {n} records each from the training split, the test split and the synthetic data (cap {})",
            options.privacy_sample
        ));
    }

    // Exact copies, over the whole data sets.
    let synthetic_copies = count_copies(train, synthetic);
    let test_copies = count_copies(train, test);
    let rate = |k: usize, n: usize| if n == 0 { 0.0 } else { k as f64 / n as f64 };
    let exact_copies = ExactCopies {
        synthetic_records: synthetic.len(),
        synthetic_copies,
        synthetic_rate: rate(synthetic_copies, synthetic.len()),
        test_records: test.len(),
        test_copies,
        test_rate: rate(test_copies, test.len()),
    };

    Ok(Privacy {
        membership: Membership {
            synthetic_reference: n_ref,
            dataset_attack,
            model_attack,
        },
        attribute,
        adversarial,
        exact_copies,
        notes,
    })
}

fn attribute_inference(
    train: &Corpus,
    test: &Corpus,
    synthetic: &Corpus,
    labels: &dyn Fn(Side, usize) -> BTreeSet<String>,
    options: &EvalOptions,
) -> Option<AttributeInference> {
    let n_attacked = options.privacy_sample.min(train.len());
    let n_ref = options.privacy_sample.min(test.len()).min(synthetic.len());
    if n_attacked == 0 || n_ref == 0 {
        return None;
    }
    let attacked = sample_indices(train.len(), n_attacked, options.seed, STREAM_ATTRIBUTE);
    let ref_syn = sample_indices(synthetic.len(), n_ref, options.seed, STREAM_ATTRIBUTE + 10);
    let ref_test = sample_indices(test.len(), n_ref, options.seed, STREAM_ATTRIBUTE + 20);

    // The most common codes of the attacked records (by records holding them; ties by id).
    let mut freq: FastMap<u32, usize> = FastMap::default();
    for &r in &attacked {
        for c in train.code_set(r) {
            *freq.entry(c).or_default() += 1;
        }
    }
    let mut common: Vec<(u32, usize)> = freq.into_iter().collect();
    common.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    common.truncate(options.attribute_common_codes);
    let common: BTreeMap<u32, usize> = common.iter().enumerate().map(|(j, (c, _))| (*c, j)).collect();

    let label_sets = |side: Side, idx: &[usize]| idx.iter().map(|&r| labels(side, r)).collect::<Vec<_>>();
    let l_att = label_sets(Side::Train, &attacked);
    let l_syn = label_sets(Side::Synthetic, &ref_syn);
    let l_test = label_sets(Side::Test, &ref_test);
    let names: BTreeMap<&String, usize> = l_att
        .iter()
        .chain(&l_syn)
        .chain(&l_test)
        .flatten()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .enumerate()
        .map(|(i, n)| (n, i))
        .collect();
    let words = (names.len() + common.len()).div_ceil(64).max(1);
    let record = |corpus: &Corpus, r: usize, ls: &BTreeSet<String>| {
        let mut known = vec![0u64; words];
        let mut set_bit = |b: usize| known[b / 64] |= 1 << (b % 64);
        for l in ls {
            set_bit(names[l]);
        }
        let mut hidden = Vec::new();
        for c in corpus.code_set(r) {
            match common.get(&c) {
                Some(&j) => set_bit(names.len() + j),
                None => hidden.push(c),
            }
        }
        AttributeRecord { known, hidden }
    };
    let build = |corpus: &Corpus, idx: &[usize], ls: &[BTreeSet<String>]| {
        idx.iter()
            .zip(ls)
            .map(|(&r, l)| record(corpus, r, l))
            .collect::<Vec<_>>()
    };
    let att = build(train, &attacked, &l_att);
    let syn = build(synthetic, &ref_syn, &l_syn);
    let tst = build(test, &ref_test, &l_test);
    let k = options.attribute_k.max(1);
    Some(AttributeInference {
        k,
        attacked: att.len(),
        reference: n_ref,
        known_labels: names.len(),
        known_codes: common.len(),
        f1_synthetic: attribute_f1(&att, &syn, k),
        f1_test_baseline: attribute_f1(&att, &tst, k),
    })
}
