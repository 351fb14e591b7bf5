//! The training shares the sampling calibration aims at: of each gap bucket, visit size and visit type. A
//! bucket held by fewer than `options.min_patients` patients counts as empty, so no share rests on fewer
//! patients than a vocabulary entry. Under differential privacy (`EncodingOptions::dp`) each patient counts
//! at most `max_visits_per_patient` of its most recent visits, and the shares come from noisy counts
//! (`halo_core::privacy::statistics`) instead.

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

    /// Under differential privacy: each bucket's share of the noisy counts (noise of standard deviation
    /// `std` added to each count, negative ones taken as 0), drawn from `rng` in bucket order; empty when
    /// nothing is left.
    fn noisy_shares(self, std: f64, rng: &mut crate::privacy::statistics::GaussianNoise) -> Vec<f64> {
        let noisy: Vec<f64> = self
            .counts
            .iter()
            .map(|&c| (c as f64 + std * rng.standard_normal()).max(0.0))
            .collect();
        let total: f64 = noisy.iter().sum();
        if total <= 0.0 {
            return Vec::new();
        }
        noisy.iter().map(|c| c / total).collect()
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

/// The three shares of [`TrainingShares::count`], counted one training patient at a time (what a streamed
/// pass over the records needs).
pub struct TrainingShares<'e> {
    encoding: &'e Encoding,
    index: HashMap<String, u32>,
    gaps: Option<BucketCounts>,
    sizes: Option<BucketCounts>,
    /// The visit-type group's first index and counts.
    types: Option<(usize, BucketCounts)>,
}

impl<'e> TrainingShares<'e> {
    pub fn new(encoding: &'e Encoding) -> TrainingShares<'e> {
        let gap_buckets = encoding.gap_edges_days.len().saturating_sub(1);
        let size_buckets = encoding.visit_size_edges.len().saturating_sub(1);
        let type_group = encoding.visit_groups.iter().find(|g| g.name == VisitGroup::VISIT_TYPE);
        TrainingShares {
            encoding,
            index: encoding.index(),
            gaps: (encoding.options.gaps && gap_buckets > 0).then(|| BucketCounts::new(gap_buckets)),
            sizes: (size_buckets > 0).then(|| BucketCounts::new(size_buckets)),
            types: type_group.map(|g| (g.first, BucketCounts::new(g.len))),
        }
    }

    /// Adds one training patient.
    pub fn add(&mut self, p: &Patient) {
        let enc = self.encoding;
        // Under DP a patient counts at most this many of its most recent visits (and gaps).
        let cap = enc
            .options
            .dp
            .as_ref()
            .map_or(usize::MAX, |dp| dp.max_visits_per_patient);
        if let Some(gaps) = &mut self.gaps {
            // All the record's visits, as the data has them (the model sees only the most recent ones of a
            // long record).
            let days = visit_days(p);
            let recent = &days[days.len().saturating_sub(cap.saturating_add(1))..];
            gaps.add_patient(recent.windows(2).filter_map(|pair| match pair {
                [Some(a), Some(b)] => Some(bucket_of(&enc.gap_edges_days, b - a)),
                _ => None,
            }));
        }
        let encoded = &p.visits[enc.options.first_encoded_visit(p.visits.len())..];
        let encoded = &encoded[encoded.len().saturating_sub(cap)..];
        if let Some(sizes) = &mut self.sizes {
            let labs = enc.options.labs.then_some(&enc.lab_edges);
            sizes.add_patient(encoded.iter().map(|visit| {
                let mut codes = BTreeSet::new();
                visit_codes(visit, &self.index, labs, &mut codes, &mut 0);
                bucket_of(&enc.visit_size_edges, codes.len() as f64)
            }));
        }
        if let Some((first, types)) = &mut self.types {
            let type_of = enc.visit_type_encoder(&self.index);
            types.add_patient(encoded.iter().filter_map(|v| type_of(v).map(|j| j as usize - *first)));
        }
    }

    /// (gap bucket, visit size, visit type) shares; each empty without its group.
    pub fn finish(self) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        use crate::privacy::statistics::NoiseStream;
        if let Some(dp) = &self.encoding.options.dp {
            // Sensitivity: one patient adds at most `max_visits_per_patient` to one histogram's counts.
            let noise = dp
                .noise()
                .expect("differential privacy settings checked when the encoding was fitted");
            let cap = dp.max_visits_per_patient as f64;
            let noisy = |c: Option<BucketCounts>, sigma: f64, stream| {
                c.map(|c| c.noisy_shares(sigma * cap, &mut dp.rng(stream)))
                    .unwrap_or_default()
            };
            return (
                noisy(self.gaps, noise.gap_shares_sigma, NoiseStream::GapShares),
                Vec::new(),
                noisy(
                    self.types.map(|(_, c)| c),
                    noise.visit_type_shares_sigma,
                    NoiseStream::VisitTypeShares,
                ),
            );
        }
        let k = self.encoding.options.min_patients;
        let shares = |c: Option<BucketCounts>| c.map(|c| c.shares(k)).unwrap_or_default();
        (
            shares(self.gaps),
            shares(self.sizes),
            shares(self.types.map(|(_, c)| c)),
        )
    }

    /// The shares over `patients`.
    pub fn count<'a>(
        encoding: &Encoding,
        patients: impl IntoIterator<Item = &'a Patient>,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let mut shares = TrainingShares::new(encoding);
        for p in patients {
            shares.add(p);
        }
        shares.finish()
    }
}

impl Encoding {
    /// Share of each gap bucket among the gaps between consecutive dated visits of `patients` (all their
    /// visits, as the data has them; the model sees only the most recent ones of a long record), the target
    /// of the sampling calibration. Empty without gaps.
    pub fn gap_bucket_shares<'a>(&self, patients: impl IntoIterator<Item = &'a Patient>) -> Vec<f64> {
        TrainingShares::count(self, patients).0
    }

    /// Share of each visit-size bucket among the training visits that are encoded, the target of the
    /// sampling calibration's size weights. Empty without the size group.
    pub fn visit_size_shares<'a>(&self, patients: impl IntoIterator<Item = &'a Patient>) -> Vec<f64> {
        TrainingShares::count(self, patients).1
    }

    /// Share of each value of the visit-type group among the training visits that are encoded, the target
    /// of the sampling calibration's visit-type weights. Empty without the group.
    pub fn visit_type_shares<'a>(&self, patients: impl IntoIterator<Item = &'a Patient>) -> Vec<f64> {
        TrainingShares::count(self, patients).2
    }
}
