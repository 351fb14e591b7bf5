//! The training shares the sampling calibration aims at: of each gap bucket, visit size and visit type. A
//! bucket held by fewer than `options.min_patients` patients counts as empty, so no share rests on fewer
//! patients than a vocabulary entry.

use super::*;

/// Counts of buckets over patients, with how many patients hold each.
struct BucketCounts {
    counts: Vec<usize>,
    patients_with: Vec<usize>,
}

impl BucketCounts {
    fn new(buckets: usize) -> BucketCounts {
        BucketCounts {
            counts: vec![0; buckets],
            patients_with: vec![0; buckets],
        }
    }

    /// Adds one patient's buckets (out-of-range ones ignored).
    fn add_patient(&mut self, buckets: impl IntoIterator<Item = usize>) {
        let n = self.counts.len();
        let mut seen = vec![false; n];
        for k in buckets.into_iter().filter(|&k| k < n) {
            self.counts[k] += 1;
            seen[k] = true;
        }
        for (n, s) in self.patients_with.iter_mut().zip(seen) {
            *n += s as usize;
        }
    }

    /// Each bucket's share, buckets of fewer than `min_patients` patients counted as empty; empty when
    /// nothing is left.
    fn shares(mut self, min_patients: usize) -> Vec<f64> {
        for (c, n) in self.counts.iter_mut().zip(&self.patients_with) {
            if *n < min_patients {
                *c = 0;
            }
        }
        let total: usize = self.counts.iter().sum();
        if total == 0 {
            return Vec::new();
        }
        self.counts.iter().map(|&c| c as f64 / total as f64).collect()
    }
}

impl Encoding {
    /// Share of each gap bucket among the gaps between consecutive dated visits of `patients` (all their
    /// visits, as the data has them; the model sees only the most recent ones of a long record), the target
    /// of the sampling calibration. Empty without gaps.
    pub fn gap_bucket_shares<'a>(&self, patients: impl IntoIterator<Item = &'a Patient>) -> Vec<f64> {
        let buckets = self.gap_edges_days.len().saturating_sub(1);
        if !self.options.gaps || buckets == 0 {
            return Vec::new();
        }
        let mut counts = BucketCounts::new(buckets);
        for p in patients {
            counts.add_patient(visit_days(p).windows(2).filter_map(|pair| match pair {
                [Some(a), Some(b)] => Some(bucket_of(&self.gap_edges_days, b - a)),
                _ => None,
            }));
        }
        counts.shares(self.options.min_patients)
    }

    /// Share of each visit-size bucket among the training visits that are encoded, the target of the
    /// sampling calibration's size weights. Empty without the size group.
    pub fn visit_size_shares<'a>(&self, patients: impl IntoIterator<Item = &'a Patient>) -> Vec<f64> {
        let buckets = self.visit_size_edges.len().saturating_sub(1);
        if buckets == 0 {
            return Vec::new();
        }
        let index = self.index();
        let labs = self.options.labs.then_some(&self.lab_edges);
        self.visit_shares(patients, buckets, |visit| {
            let mut codes = BTreeSet::new();
            visit_codes(visit, &index, labs, &mut codes, &mut 0);
            Some(bucket_of(&self.visit_size_edges, codes.len() as f64))
        })
    }

    /// Share of each value of the visit-type group among the training visits that are encoded, the target
    /// of the sampling calibration's visit-type weights. Empty without the group.
    pub fn visit_type_shares<'a>(&self, patients: impl IntoIterator<Item = &'a Patient>) -> Vec<f64> {
        let Some(group) = self.visit_groups.iter().find(|g| g.name == VisitGroup::VISIT_TYPE) else {
            return Vec::new();
        };
        let index = self.index();
        let type_of = self.visit_type_encoder(&index);
        self.visit_shares(patients, group.len, |visit| {
            type_of(visit).map(|j| j as usize - group.first)
        })
    }

    /// Share of each of `buckets` buckets among the encoded visits of `patients`, a visit's bucket given by
    /// `bucket_of_visit`.
    fn visit_shares<'a>(
        &self,
        patients: impl IntoIterator<Item = &'a Patient>,
        buckets: usize,
        bucket_of_visit: impl Fn(&Visit) -> Option<usize>,
    ) -> Vec<f64> {
        let mut counts = BucketCounts::new(buckets);
        for p in patients {
            let encoded = &p.visits[self.options.first_encoded_visit(p.visits.len())..];
            counts.add_patient(encoded.iter().filter_map(&bucket_of_visit));
        }
        counts.shares(self.options.min_patients)
    }
}
