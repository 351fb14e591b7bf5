//! Records in the compact form every metric works on: code strings interned to dense `u32` ids, each visit a
//! sorted list of distinct ids, all stored in flat arrays (no per-visit allocation).

pub use halo_core::interner::{fold_mul, FastHasher, FastMap, Interner};
use halo_core::record::Patient;
use std::ops::Range;

/// Records as visits of sorted, distinct code ids. A code listed twice in one visit counts once.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// Record `r` holds visits `record_visits[r]..record_visits[r + 1]`.
    record_visits: Vec<usize>,
    /// Visit `v` holds codes `codes[visit_codes[v]..visit_codes[v + 1]]`.
    visit_codes: Vec<usize>,
    codes: Vec<u32>,
}

impl Corpus {
    /// Interns the records' codes (new codes get new ids) and stores the records.
    pub fn build<'p>(patients: impl IntoIterator<Item = &'p Patient>, interner: &mut Interner) -> Corpus {
        let mut corpus = Corpus::empty();
        for p in patients {
            for visit in &p.visits {
                corpus.push_visit(visit.codes.iter().map(|c| interner.intern(c)));
            }
            corpus.end_record();
        }
        corpus
    }

    /// Builds a corpus from visits of ids directly (unit tests).
    #[cfg(test)]
    pub(crate) fn from_ids(records: &[Vec<Vec<u32>>]) -> Corpus {
        let mut corpus = Corpus::empty();
        for r in records {
            for v in r {
                corpus.push_visit(v.iter().copied());
            }
            corpus.end_record();
        }
        corpus
    }

    fn empty() -> Corpus {
        Corpus {
            record_visits: vec![0],
            visit_codes: vec![0],
            codes: Vec::new(),
        }
    }

    /// Appends a visit to the current record, its codes sorted and deduplicated.
    fn push_visit(&mut self, ids: impl Iterator<Item = u32>) {
        let start = self.codes.len();
        self.codes.extend(ids);
        self.codes[start..].sort_unstable();
        let distinct = dedup_sorted(&mut self.codes[start..]);
        self.codes.truncate(start + distinct);
        self.visit_codes.push(self.codes.len());
    }

    fn end_record(&mut self) {
        self.record_visits.push(self.visit_codes.len() - 1);
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.record_visits.len() - 1
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn n_visits(&self) -> usize {
        self.visit_codes.len() - 1
    }
    /// Total code occurrences (distinct per visit).
    pub fn n_codes(&self) -> usize {
        self.codes.len()
    }
    /// Every code occurrence, record after record.
    pub fn codes(&self) -> &[u32] {
        &self.codes
    }
    /// Visit numbers of record `r`.
    #[inline]
    pub fn visits_of(&self, r: usize) -> Range<usize> {
        self.record_visits[r]..self.record_visits[r + 1]
    }
    /// Codes of visit `v`, sorted and distinct.
    #[inline]
    pub fn visit(&self, v: usize) -> &[u32] {
        &self.codes[self.visit_codes[v]..self.visit_codes[v + 1]]
    }
    /// All code occurrences of record `r` (visit after visit).
    #[inline]
    pub fn record_codes(&self, r: usize) -> &[u32] {
        let visits = self.visits_of(r);
        &self.codes[self.visit_codes[visits.start]..self.visit_codes[visits.end]]
    }
    /// Every distinct code record `r` ever has, sorted.
    pub fn code_set(&self, r: usize) -> Vec<u32> {
        let mut set = self.record_codes(r).to_vec();
        set.sort_unstable();
        set.dedup();
        set
    }
}

/// Moves the distinct values of a sorted slice to its front and returns how many there are.
fn dedup_sorted(xs: &mut [u32]) -> usize {
    if xs.is_empty() {
        return 0;
    }
    let mut w = 1;
    for r in 1..xs.len() {
        if xs[r] != xs[w - 1] {
            xs[w] = xs[r];
            w += 1;
        }
    }
    w
}

/// Distinct code sets of chosen records, flat: the input of the nearest-neighbour searches.
#[derive(Debug, Clone, Default)]
pub struct CodeSets {
    offsets: Vec<usize>,
    codes: Vec<u32>,
}

impl CodeSets {
    pub fn new() -> CodeSets {
        CodeSets {
            offsets: vec![0],
            codes: Vec::new(),
        }
    }
    /// Code sets of records `indices` of `corpus`.
    pub fn of(corpus: &Corpus, indices: &[usize]) -> CodeSets {
        let mut sets = CodeSets::new();
        for &r in indices {
            sets.push(&corpus.code_set(r));
        }
        sets
    }
    /// Appends one set (sorted, distinct ids).
    pub fn push(&mut self, set: &[u32]) {
        self.codes.extend_from_slice(set);
        self.offsets.push(self.codes.len());
    }
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    #[inline]
    pub fn get(&self, i: usize) -> &[u32] {
        &self.codes[self.offsets[i]..self.offsets[i + 1]]
    }
    /// One past the largest id, for sizing a bitset.
    pub fn id_bound(&self) -> usize {
        self.codes.iter().max().map_or(0, |&m| m as usize + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use halo_core::record::Visit;

    fn patient(visits: &[&[&str]]) -> Patient {
        Patient {
            id: "p".into(),
            visits: visits
                .iter()
                .map(|v| Visit {
                    codes: v.iter().map(|c| c.to_string()).collect(),
                    ..Visit::default()
                })
                .collect(),
            ..Patient::default()
        }
    }

    #[test]
    fn corpus_sorts_and_dedups_visits() {
        let mut interner = Interner::default();
        let ps = [patient(&[&["b", "a", "b"], &["c"]]), patient(&[&["a"]])];
        let c = Corpus::build(&ps, &mut interner);
        // ids by first appearance: b=0, a=1, c=2.
        assert_eq!(interner.get("b"), Some(0));
        assert_eq!(interner.get("a"), Some(1));
        assert_eq!(interner.name(2), "c");
        assert_eq!(c.len(), 2);
        assert_eq!(c.n_visits(), 3);
        assert_eq!(c.visit(0), &[0, 1]);
        assert_eq!(c.visit(1), &[2]);
        assert_eq!(c.visits_of(1), 2..3);
        assert_eq!(c.record_codes(0), &[0, 1, 2]);
        assert_eq!(c.code_set(1), vec![1]);
    }
}
