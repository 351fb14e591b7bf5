//! The training shares the sampling calibration aims at: of each gap bucket, visit size and visit type, and of
//! each value of the demographic categories (sex, race, ..., birth decade) among the patients. A bucket held by
//! fewer than `options.min_patients` patients counts as empty, so no share rests on fewer patients than a
//! vocabulary entry. Under differential privacy (`EncodingOptions::dp`) each patient counts at most
//! `max_visits_per_patient` of its visits (spread over the record), and the shares come from noisy counts
//! (`halo_core::privacy::statistics`) instead; the demographic shares are left out there (no budget is spent on
//! them, and the label visit is drawn as the model gives it).

use super::*;
use crate::privacy::statistics::spread;
use std::ops::Range;

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

    /// Each bucket's share of all the counts, `None` for a bucket of fewer than `min_patients` patients (its
    /// share is not published; the others are still shares of the whole); all `None` when the counts' patients
    /// are fewer than `min_patients`.
    fn published_shares(&self, patients: usize, min_patients: usize) -> Vec<Option<f64>> {
        let total: usize = self.counts.iter().sum();
        self.counts
            .iter()
            .zip(&self.patients_with)
            .map(|(&c, &n)| {
                (patients >= min_patients && n >= min_patients && total > 0).then(|| c as f64 / total as f64)
            })
            .collect()
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

/// The shares the sampling calibration aims at (each empty where the encoding has nothing to share).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shares {
    /// Of each gap bucket among the gaps between consecutive dated visits.
    pub gaps: Vec<f64>,
    /// Of each visit-size bucket among the visits encoded.
    pub visit_sizes: Vec<f64>,
    /// Of each value of the visit-type group among the visits encoded.
    pub visit_types: Vec<f64>,
    /// Per demographic category ([`Encoding::demographic_categories`], in order): of each of its values among
    /// the patients that have one.
    pub demographics: Vec<Vec<f64>>,
    /// Per birth decade (the `birth_year` category's values, in order): of each calendar bucket among the
    /// first encoded visits of that decade's patients, `None` where fewer than `min_patients` patients hold
    /// it. Empty without the calendar and age groups or birth decades, and under differential privacy.
    pub first_calendar: Vec<Vec<Option<f64>>>,
}

/// The shares of [`TrainingShares::count`], counted one training patient at a time (what a streamed pass over
/// the records needs).
pub struct TrainingShares<'e> {
    encoding: &'e Encoding,
    index: HashMap<String, u32>,
    gaps: Option<BucketCounts>,
    sizes: Option<BucketCounts>,
    /// The visit-type group's first index and counts.
    types: Option<(usize, BucketCounts)>,
    /// Per demographic category: its first vocabulary index and the counts of its values.
    demographics: Vec<(usize, BucketCounts)>,
    first_calendar: Option<FirstCalendarCounts>,
}

/// The birth decades' vocabulary indices, and per decade the counts of its patients' first visits' calendar
/// buckets and its patients.
type FirstCalendarCounts = (Range<usize>, Vec<(BucketCounts, usize)>);

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
            demographics: encoding
                .demographic_categories
                .iter()
                .map(|c| (encoding.code_vocab_size + c.first, BucketCounts::new(c.len)))
                .collect(),
            first_calendar: Self::first_calendar_counts(encoding),
        }
    }

    /// Empty counts of the first visits' calendar buckets per birth decade, where the encoding draws them
    /// (`Encoding::has_first_visit_dates`) and not under differential privacy.
    fn first_calendar_counts(encoding: &Encoding) -> Option<FirstCalendarCounts> {
        let decades = encoding
            .demographic_categories
            .iter()
            .find(|c| c.name == DemographicCategory::BirthYear.as_str())?;
        let calendar = encoding.visit_groups.iter().find(|g| g.name == VisitGroup::CALENDAR)?;
        let first = encoding.code_vocab_size + decades.first;
        (encoding.has_first_visit_dates() && encoding.options.dp.is_none()).then(|| {
            let counts = (0..decades.len).map(|_| (BucketCounts::new(calendar.len), 0)).collect();
            (first..first + decades.len, counts)
        })
    }

    /// Adds one training patient.
    pub fn add(&mut self, p: &Patient) {
        let enc = self.encoding;
        // Under DP a patient counts at most this many of its visits (and gaps), spread over its record.
        let cap = enc
            .options
            .dp
            .as_ref()
            .map_or(usize::MAX, |dp| dp.max_visits_per_patient);
        if let Some(gaps) = &mut self.gaps {
            // All the record's visits, as the data has them (the model sees only the most recent ones of a
            // long record).
            let days = visit_days(p);
            let gaps_of: Vec<Option<f64>> = days
                .windows(2)
                .map(|pair| match pair {
                    [Some(a), Some(b)] => Some(b - a),
                    _ => None,
                })
                .collect();
            gaps.add_patient(
                spread(gaps_of.len(), cap).filter_map(|i| gaps_of[i].map(|gap| bucket_of(&enc.gap_edges_days, gap))),
            );
        }
        let encoded = &p.visits[enc.options.first_encoded_visit(p.visits.len())..];
        let encoded: Vec<&Visit> = spread(encoded.len(), cap).map(|i| &encoded[i]).collect();
        if let Some(sizes) = &mut self.sizes {
            sizes.add_patient(encoded.iter().map(|visit| {
                let mut codes = BTreeSet::new();
                visit_codes(visit, &self.index, enc.lab_encoding(), &mut codes, &mut 0);
                bucket_of(&enc.visit_size_edges, codes.len() as f64)
            }));
        }
        if let Some((first, types)) = &mut self.types {
            let type_of = enc.visit_type_encoder(&self.index);
            types.add_patient(encoded.iter().filter_map(|v| type_of(v).map(|j| j as usize - *first)));
        }
        if let Some((decades, counts)) = &mut self.first_calendar {
            let decade = enc
                .demographic_labels(p, &self.index)
                .into_iter()
                .map(|j| j as usize)
                .find(|j| decades.contains(j));
            let first = enc.options.first_encoded_visit(p.visits.len());
            let year = visit_years(p).get(first).copied().flatten();
            if let (Some(decade), Some(year)) = (decade, year) {
                let (buckets, patients) = &mut counts[decade - decades.start];
                buckets.add_patient([enc.calendar_bucket(year)]);
                *patients += 1;
            }
        }
        if !self.demographics.is_empty() {
            let values = enc.demographic_labels(p, &self.index);
            for (first, counts) in &mut self.demographics {
                let range = *first..*first + counts.counts.len();
                counts.add_patient(
                    values
                        .iter()
                        .map(|&j| j as usize)
                        .filter(|j| range.contains(j))
                        .map(|j| j - *first),
                );
            }
        }
    }

    /// The shares; each empty without its group.
    pub fn finish(self) -> Shares {
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
            return Shares {
                gaps: noisy(self.gaps, noise.gap_shares_sigma, NoiseStream::GapShares),
                visit_types: noisy(
                    self.types.map(|(_, c)| c),
                    noise.visit_type_shares_sigma,
                    NoiseStream::VisitTypeShares,
                ),
                ..Shares::default()
            };
        }
        let k = self.encoding.options.min_patients;
        let shares = |c: Option<BucketCounts>| c.map(|c| c.shares(k)).unwrap_or_default();
        Shares {
            gaps: shares(self.gaps),
            visit_sizes: shares(self.sizes),
            visit_types: shares(self.types.map(|(_, c)| c)),
            demographics: self.demographics.into_iter().map(|(_, c)| c.shares(k)).collect(),
            first_calendar: self
                .first_calendar
                .map(|(_, counts)| counts.iter().map(|(c, n)| c.published_shares(*n, k)).collect())
                .unwrap_or_default(),
        }
    }

    /// The shares over `patients`.
    pub fn count<'a>(encoding: &Encoding, patients: impl IntoIterator<Item = &'a Patient>) -> Shares {
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
        TrainingShares::count(self, patients).gaps
    }

    /// Share of each visit-size bucket among the training visits that are encoded, the target of the
    /// sampling calibration's size weights. Empty without the size group.
    pub fn visit_size_shares<'a>(&self, patients: impl IntoIterator<Item = &'a Patient>) -> Vec<f64> {
        TrainingShares::count(self, patients).visit_sizes
    }

    /// Share of each value of the visit-type group among the training visits that are encoded, the target
    /// of the sampling calibration's visit-type weights. Empty without the group.
    pub fn visit_type_shares<'a>(&self, patients: impl IntoIterator<Item = &'a Patient>) -> Vec<f64> {
        TrainingShares::count(self, patients).visit_types
    }
}
