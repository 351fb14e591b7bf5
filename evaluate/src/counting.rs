//! Counting codes and pairs of codes, sparsely and fast.
//!
//! Codes are few (thousands to tens of thousands): a dense array over code ids. Pairs are many (a visit of 15
//! codes has 105 same-visit pairs; a data set has millions of distinct pairs), and a hash map of that size
//! misses the cache on every update. So pairs are counted by sorting, in passes: each pass takes the pairs
//! whose first code falls in a range of code ids (ranges planned so that a pass holds a bounded number of
//! occurrences), radix-sorts their keys and reduces equal keys to counts. The passes' outputs, in range order,
//! form one table sorted by key: lookups by binary search, comparisons of two tables by a merge-join. Memory:
//! the distinct pairs plus one pass's occurrences; never a vocabulary-by-vocabulary matrix.

use crate::corpus::Corpus;
use std::ops::Range;

/// How often a key occurs: in how many visits (or transitions) and in how many records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub visits: u32,
    pub records: u32,
}

/// Sorted, distinct keys with their counts.
pub type Run = Vec<(u64, Counts)>;

/// What an occurrence counts in, stored in the two low bits of a sorted item.
const VISIT: u64 = 0b01;
const RECORD: u64 = 0b10;

/// Occurrences sorted in one pass (per thread): 2^23 items, 64 MiB plus as much scratch.
pub const PASS_BUDGET: usize = 1 << 23;

/// Which pairs of codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pairs {
    /// Unordered pairs of distinct codes of one visit, key `a * bound + b` with `a < b`.
    SameVisit,
    /// A code of visit t-1 and a code of visit t, key `a * bound + b`.
    ConsecutiveVisit,
}

/// Number of bits of values below `bound`.
pub fn bits_for(bound: u64) -> u32 {
    64 - bound.saturating_sub(1).leading_zeros()
}

/// Visit and record counts of every code (ids below `bound`).
pub fn count_unigrams(corpus: &Corpus, bound: u32) -> Run {
    let mut counts = vec![Counts::default(); bound as usize];
    let mut seen = Vec::new();
    for r in 0..corpus.len() {
        let visits = corpus.visits_of(r);
        for &c in corpus.record_codes(r) {
            counts[c as usize].visits += 1;
        }
        seen.clear();
        seen.extend_from_slice(corpus.record_codes(r));
        if visits.len() > 1 {
            seen.sort_unstable();
            seen.dedup();
        }
        for &c in &seen {
            counts[c as usize].records += 1;
        }
    }
    counts
        .into_iter()
        .enumerate()
        .filter(|(_, c)| c.visits > 0)
        .map(|(k, c)| (k as u64, c))
        .collect()
}

/// Visit and record counts of every pair (code ids below `bound`), sorted by key, on `threads` threads.
pub fn count_pairs(corpus: &Corpus, bound: u32, pairs: Pairs, threads: usize, budget: usize) -> Run {
    assert!(bound <= 1 << 30, "{bound} distinct codes: pair keys need bound² < 2^62");
    let passes = plan_passes(&first_code_weights(corpus, bound, pairs), budget.max(1));
    let threads = threads.clamp(1, passes.len().max(1));
    // Thread t takes passes t, t + threads, ...
    let mut runs: Vec<(usize, Run)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let passes = &passes;
                scope.spawn(move || {
                    let mut buffers = Buffers::default();
                    passes
                        .iter()
                        .enumerate()
                        .skip(t)
                        .step_by(threads)
                        .map(|(i, range)| (i, count_pass(corpus, bound, pairs, range.clone(), &mut buffers)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("counting thread panicked"))
            .collect()
    });
    runs.sort_unstable_by_key(|(i, _)| *i);
    let mut out = Vec::with_capacity(runs.iter().map(|(_, r)| r.len()).sum());
    for (_, run) in runs {
        out.extend(run);
    }
    out
}

/// Upper bound of the occurrences (visit and record) each first code brings to a pass.
fn first_code_weights(corpus: &Corpus, bound: u32, pairs: Pairs) -> Vec<usize> {
    let mut w = vec![0usize; bound as usize];
    for r in 0..corpus.len() {
        let visits = corpus.visits_of(r);
        // Several visits: visit occurrences plus at most as many record occurrences.
        let per = if visits.len() > 1 { 2 } else { 1 };
        for v in visits.clone() {
            let codes = corpus.visit(v);
            match pairs {
                Pairs::SameVisit => {
                    for (i, &a) in codes.iter().enumerate() {
                        w[a as usize] += (codes.len() - i - 1) * per;
                    }
                }
                Pairs::ConsecutiveVisit if v > visits.start => {
                    for &a in corpus.visit(v - 1) {
                        w[a as usize] += codes.len() * 2;
                    }
                }
                Pairs::ConsecutiveVisit => {}
            }
        }
    }
    w
}

/// Consecutive ranges of first codes of at most `budget` occurrences each (a single code may exceed it).
fn plan_passes(weights: &[usize], budget: usize) -> Vec<Range<u32>> {
    let mut passes = Vec::new();
    let (mut start, mut acc) = (0u32, 0usize);
    for (a, &w) in weights.iter().enumerate() {
        if acc > 0 && acc + w > budget {
            passes.push(start..a as u32);
            start = a as u32;
            acc = 0;
        }
        acc += w;
    }
    if acc > 0 {
        passes.push(start..weights.len() as u32);
    }
    passes
}

/// Buffers reused across the passes of one thread.
#[derive(Default)]
struct Buffers {
    items: Vec<u64>,
    scratch: Vec<u64>,
    seen: Vec<u64>,
}

/// Counts the pairs whose first code is in `range`.
fn count_pass(corpus: &Corpus, bound: u32, pairs: Pairs, range: Range<u32>, buf: &mut Buffers) -> Run {
    let b = bound as u64;
    let base = range.start as u64 * b;
    let key_bound = (range.end - range.start) as u64 * b;
    let in_range =
        |codes: &[u32]| codes.partition_point(|&c| c < range.start)..codes.partition_point(|&c| c < range.end);
    let Buffers { items, scratch, seen } = buf;
    items.clear();
    for r in 0..corpus.len() {
        let visits = corpus.visits_of(r);
        // A one-visit record holds each pair of its visit once: one occurrence counts for both levels.
        let single = visits.len() == 1;
        let flags = if single { VISIT | RECORD } else { VISIT };
        seen.clear();
        for v in visits.clone() {
            let codes = corpus.visit(v);
            match pairs {
                Pairs::SameVisit => {
                    for i in in_range(codes) {
                        let first = codes[i] as u64 * b - base;
                        for &c in &codes[i + 1..] {
                            let k = first + c as u64;
                            items.push(k << 2 | flags);
                            if !single {
                                seen.push(k);
                            }
                        }
                    }
                }
                Pairs::ConsecutiveVisit if v > visits.start => {
                    let prev = corpus.visit(v - 1);
                    for &a in &prev[in_range(prev)] {
                        let first = a as u64 * b - base;
                        for &c in codes {
                            let k = first + c as u64;
                            items.push(k << 2 | VISIT);
                            seen.push(k);
                        }
                    }
                }
                Pairs::ConsecutiveVisit => {}
            }
        }
        // Record level: each distinct pair of the record once.
        if !seen.is_empty() {
            seen.sort_unstable();
            seen.dedup();
            items.extend(seen.iter().map(|k| k << 2 | RECORD));
        }
    }
    radix_sort(items, scratch, bits_for(key_bound) + 2);
    let mut run: Run = Vec::new();
    for &item in items.iter() {
        let key = base + (item >> 2);
        let visits = (item & VISIT) as u32;
        let records = (item >> 1 & 1) as u32;
        match run.last_mut() {
            Some((k, c)) if *k == key => {
                c.visits += visits;
                c.records += records;
            }
            _ => run.push((key, Counts { visits, records })),
        }
    }
    run
}

/// LSD radix sort of `items` (values below `2^bits`), 11 bits a digit; `scratch` is reused between calls.
pub fn radix_sort(items: &mut Vec<u64>, scratch: &mut Vec<u64>, bits: u32) {
    const DIGIT: u32 = 11;
    const BUCKETS: usize = 1 << DIGIT;
    let digits = bits.div_ceil(DIGIT) as usize;
    // Every digit's histogram in one read of the items.
    let mut offsets = vec![[0usize; BUCKETS]; digits];
    for &x in items.iter() {
        for (d, hist) in offsets.iter_mut().enumerate() {
            hist[(x >> (d as u32 * DIGIT)) as usize & (BUCKETS - 1)] += 1;
        }
    }
    scratch.clear();
    scratch.resize(items.len(), 0);
    for (d, hist) in offsets.iter_mut().enumerate() {
        // A digit that is the same for every item leaves the order as it is.
        if hist.contains(&items.len()) {
            continue;
        }
        let mut sum = 0;
        for o in hist.iter_mut() {
            let n = *o;
            *o = sum;
            sum += n;
        }
        let shift = d as u32 * DIGIT;
        for &x in items.iter() {
            let bucket = (x >> shift) as usize & (BUCKETS - 1);
            scratch[hist[bucket]] = x;
            hist[bucket] += 1;
        }
        std::mem::swap(items, scratch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(visits: u32, records: u32) -> Counts {
        Counts { visits, records }
    }

    #[test]
    fn radix_sort_sorts() {
        let mut state = 99u64;
        let mut items: Vec<u64> = (0..10_000)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 20) & ((1 << 30) - 1)
            })
            .collect();
        let mut expected = items.clone();
        expected.sort_unstable();
        radix_sort(&mut items, &mut Vec::new(), 30);
        assert_eq!(items, expected);
        // A middle digit constant across items (skipped) and an empty input.
        let mut items = vec![(5 << 11) | 3 | (2 << 22), (5 << 11) | 1 | (1 << 22), (5 << 11) | 2];
        radix_sort(&mut items, &mut Vec::new(), 33);
        assert_eq!(
            items,
            vec![(5 << 11) | 2, (5 << 11) | 1 | (1 << 22), (5 << 11) | 3 | (2 << 22)]
        );
        radix_sort(&mut Vec::new(), &mut Vec::new(), 33);
    }

    #[test]
    fn passes_respect_the_budget() {
        // Weights 3, 0, 4, 1, 9, 2 with budget 5: [0, 2) = 3, [2, 4) = 5, [4, 5) = 9 (one code alone over
        // the budget), [5, 6) = 2.
        assert_eq!(plan_passes(&[3, 0, 4, 1, 9, 2], 5), vec![0..2, 2..4, 4..5, 5..6]);
        assert_eq!(plan_passes(&[0, 0], 5), Vec::<Range<u32>>::new());
    }

    #[test]
    fn pairs_by_hand_whatever_the_passes() {
        // Record 1: [0 1 2] -> [1 2]; record 2: [0 1]. Bound 3: key = a * 3 + b.
        // Same-visit: (0,1) visits r1.v1 and r2.v1 -> 2 visits, 2 records; (0,2) 1, 1; (1,2) r1.v1 and
        // r1.v2 -> 2 visits, 1 record.
        // Consecutive (r1 only): 0->1, 0->2, 1->1, 1->2, 2->1, 2->2 once each, 1 record.
        let corpus = Corpus::from_ids(&[vec![vec![0, 1, 2], vec![1, 2]], vec![vec![0, 1]]]);
        for budget in [1, 3, 1000] {
            for threads in [1, 2] {
                let same = count_pairs(&corpus, 3, Pairs::SameVisit, threads, budget);
                assert_eq!(same, vec![(1, c(2, 2)), (2, c(1, 1)), (5, c(2, 1))]);
                let cons = count_pairs(&corpus, 3, Pairs::ConsecutiveVisit, threads, budget);
                let keys: Vec<u64> = cons.iter().map(|e| e.0).collect();
                assert_eq!(keys, vec![1, 2, 4, 5, 7, 8]);
                assert!(cons.iter().all(|e| e.1 == c(1, 1)));
            }
        }
        // Unigrams: 0 in 2 visits / 2 records, 1 in 3 / 2, 2 in 2 / 1.
        assert_eq!(
            count_unigrams(&corpus, 3),
            vec![(0, c(2, 2)), (1, c(3, 2)), (2, c(2, 1))]
        );
        assert_eq!(bits_for(1), 0);
        assert_eq!(bits_for(6900 * 6900), 26);
    }
}
