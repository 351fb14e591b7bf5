//! Differentially private statistics of the data (`halo prepare --dp-epsilon`): what the vocabulary and the
//! calibration's training shares are fitted from when a model is trained with differential privacy.
//!
//! Each statistic is a Gaussian mechanism on a sum over patients in which one patient's contribution is
//! bounded, so that its L2 sensitivity is known:
//! - **vocabulary**: per key (a code, a lab, a visit type, a demographic value, a birth decade), the number
//!   of patients holding it. A patient counts once per key and for at most
//!   [`DpStatistics::max_codes_per_patient`] keys (demographic values and visit types first, then a seeded
//!   choice of its codes): L2 sensitivity sqrt(max_codes_per_patient). A key enters when its noisy count clears
//!   [`StatisticsNoise::vocabulary_threshold`]: at least `min_patients`, and high enough that a key held by a
//!   single patient (which the other data set lacks altogether, so the Gaussian mechanism alone does not cover
//!   it) enters with probability at most [`THRESHOLD_DELTA_SHARE`] of δ (Gaussian thresholding: Korolova et
//!   al. 2009, "Releasing search queries and clicks privately"; Wilson et al. 2020, "Differentially private SQL
//!   with bounded user contribution").
//! - **gap shares** and **visit-type shares**: histograms over public buckets (the public gap edges, the
//!   vocabulary's visit types) of at most [`DpStatistics::max_visits_per_patient`] of each patient's visits
//!   ([`spread`] over its record): L2 sensitivity max_visits_per_patient.
//! - **codes per visit** (what export's calibration aims the mean visit size at): the ratio of the noisy sums
//!   of codes and of visits over at most `max_visits_per_patient` (V) of each training patient's encoded
//!   visits (spread over the record: its most recent ones were 21% larger on the demo), each visit's codes counted up to `max_codes_per_patient` (K). Each patient adds
//!   (codes / (V K), visits / V), both in [0, 1]: L2 sensitivity sqrt(2) in those units. (A mean over
//!   patients of each one's mean would be less noisy, but on the demo it was 26% above the mean over visits
//!   that the calibration aims at.)
//!
//! The statistics' budget, `epsilon_share` at δ, is split between them by weights on 1/σ² (Gaussian
//! mechanisms compose in RDP as one Gaussian of 1/σ² = Σ 1/σ_i²), so the composition spends exactly the
//! share. Bucket edges are public under DP (gap and age edges closed at [`DP_MAX_GAP_DAYS`] and
//! [`DP_MAX_AGE_YEARS`], no within-bucket gap points; lab edges only from the label spec), so they spend
//! nothing.

use super::{Mechanism, Rdp};
use crate::error::{Error, Result};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Default share of the run's ε that the data's statistics spend (the rest is DP-SGD's).
pub const DEFAULT_EPSILON_SHARE: f64 = 0.1;
/// Default bound on the vocabulary keys one patient is counted for.
pub const DEFAULT_MAX_CODES_PER_PATIENT: usize = 32;
/// Default bound on the visits of one patient counted in the shares.
pub const DEFAULT_MAX_VISITS_PER_PATIENT: usize = 16;
/// Share of δ that the vocabulary's threshold spends on keys held by one patient alone.
pub const THRESHOLD_DELTA_SHARE: f64 = 0.1;
/// The public closing edge of the gap buckets under DP (10 years): longer gaps fall in the last bucket.
pub const DP_MAX_GAP_DAYS: f64 = 3650.0;
/// The public closing edge of the age buckets under DP.
pub const DP_MAX_AGE_YEARS: f64 = 100.0;

/// Weights (on 1/σ²) of the mechanisms in the statistics' budget.
const VOCABULARY_WEIGHT: f64 = 0.6;
const GAP_SHARES_WEIGHT: f64 = 0.1;
const VISIT_TYPE_SHARES_WEIGHT: f64 = 0.1;
const CODES_PER_VISIT_WEIGHT: f64 = 0.2;

/// What the data's statistics may spend, and the bounds on each patient's contribution to them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DpStatistics {
    /// ε of all the statistics together, at `delta` (by default [`DEFAULT_EPSILON_SHARE`] of the run's).
    pub epsilon_share: f64,
    /// The run's δ (the statistics and DP-SGD state their ε at the same δ).
    pub delta: f64,
    pub max_codes_per_patient: usize,
    pub max_visits_per_patient: usize,
    /// Seed of the noise: the same seed and records give the same corpus.
    pub seed: u64,
}

/// The noise of each statistic, derived from [`DpStatistics`] alone (never from the data).
#[derive(Debug, Clone, PartialEq)]
pub struct StatisticsNoise {
    /// Noise multipliers (standard deviation over L2 sensitivity).
    pub vocabulary_sigma: f64,
    pub gap_shares_sigma: f64,
    pub visit_type_shares_sigma: f64,
    pub codes_per_visit_sigma: f64,
    /// δ spent by the vocabulary's threshold on keys held by one patient.
    pub threshold_delta: f64,
}

/// Tags of the noise streams, one per statistic, so that each draws its own noise from the seed.
#[derive(Debug, Clone, Copy)]
pub enum NoiseStream {
    Vocabulary = 1,
    GapShares = 2,
    VisitTypeShares = 3,
    CodesPerVisit = 4,
}

impl DpStatistics {
    /// The statistics of a run with `--dp-epsilon epsilon --dp-delta delta`, with the default share and bounds.
    pub fn for_run(epsilon: f64, delta: f64, seed: u64) -> DpStatistics {
        DpStatistics {
            epsilon_share: DEFAULT_EPSILON_SHARE * epsilon,
            delta,
            max_codes_per_patient: DEFAULT_MAX_CODES_PER_PATIENT,
            max_visits_per_patient: DEFAULT_MAX_VISITS_PER_PATIENT,
            seed,
        }
    }

    /// Checks the settings; `what` names them in the error (e.g. `--dp-epsilon`).
    pub fn check(&self) -> Result<()> {
        if !(self.epsilon_share > 0.0 && self.epsilon_share.is_finite()) {
            return Err(Error::Invalid(format!(
                "the data's statistics' epsilon {}: expected a positive number",
                self.epsilon_share
            )));
        }
        if !(self.delta > 0.0 && self.delta < 1.0) {
            return Err(Error::Invalid(format!(
                "delta {}: expected a number in (0, 1)",
                self.delta
            )));
        }
        if self.max_codes_per_patient == 0 || self.max_visits_per_patient == 0 {
            return Err(Error::Invalid(
                "the bounds on each patient's codes and visits must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// The δ left for the RDP conversion once the vocabulary's threshold has taken its share.
    pub fn rdp_delta(&self) -> f64 {
        self.delta * (1.0 - THRESHOLD_DELTA_SHARE)
    }

    /// The noise multipliers: one Gaussian of noise multiplier σ spends `epsilon_share` at the RDP δ; the
    /// mechanisms split its 1/σ² by their weights.
    pub fn noise(&self) -> Result<StatisticsNoise> {
        self.check()?;
        let sigma = gaussian_noise_for(self.epsilon_share, self.rdp_delta())?;
        Ok(StatisticsNoise {
            vocabulary_sigma: sigma / VOCABULARY_WEIGHT.sqrt(),
            gap_shares_sigma: sigma / GAP_SHARES_WEIGHT.sqrt(),
            visit_type_shares_sigma: sigma / VISIT_TYPE_SHARES_WEIGHT.sqrt(),
            codes_per_visit_sigma: sigma / CODES_PER_VISIT_WEIGHT.sqrt(),
            threshold_delta: self.delta * THRESHOLD_DELTA_SHARE,
        })
    }

    /// The mechanisms the statistics run (the gap shares only with gap codes), with their ε alone at the
    /// run's δ: what `halo prepare` writes as the corpus's ledger.
    /// With `public_codes` the codes come from a public list and the vocabulary's counts are of visit types
    /// and demographic values only.
    pub fn mechanisms(&self, gaps: bool, public_codes: bool) -> Result<Vec<Mechanism>> {
        let noise = self.noise()?;
        let delta = self.delta;
        let what = match public_codes {
            true => {
                "which visit types and demographic values enter the vocabulary, whose codes come from a public list"
            }
            false => "which codes, labs, visit types and demographic values enter the vocabulary",
        };
        let vocabulary = Mechanism::gaussian(
            "vocabulary",
            &format!(
                "{what}: the noisy count of the patients holding each, every patient counted for at most {} of them",
                self.max_codes_per_patient
            ),
            noise.vocabulary_sigma,
            (self.max_codes_per_patient as f64).sqrt(),
            1,
            delta,
        )
        .with_threshold_delta(noise.threshold_delta, delta);
        let mut out = vec![vocabulary];
        if gaps {
            out.push(Mechanism::gaussian(
                "gap shares",
                &format!(
                    "the share of each gap bucket that export's calibration aims at: a noisy histogram of the gaps \
                     of at most {} visits of each patient, spread over its record",
                    self.max_visits_per_patient
                ),
                noise.gap_shares_sigma,
                self.max_visits_per_patient as f64,
                1,
                delta,
            ));
        }
        out.push(Mechanism::gaussian(
            "visit type shares",
            &format!(
                "the share of each visit type that export's calibration aims at: a noisy histogram of at most {} \
                 visits of each patient, spread over its record",
                self.max_visits_per_patient
            ),
            noise.visit_type_shares_sigma,
            self.max_visits_per_patient as f64,
            1,
            delta,
        ));
        out.push(Mechanism::gaussian(
            "codes per visit",
            &format!(
                "the mean codes per visit that export's calibration aims at: noisy sums of codes and visits over at \
                 most {} visits of each training patient, spread over its record, each visit's codes counted up to {} \
                 (sensitivity in units of those bounds)",
                self.max_visits_per_patient, self.max_codes_per_patient
            ),
            noise.codes_per_visit_sigma,
            std::f64::consts::SQRT_2,
            1,
            delta,
        ));
        Ok(out)
    }

    /// What a training patient adds to the sums of [`DpStatistics::noisy_codes_per_visit`], given its
    /// encoded visits' code counts (oldest first): (codes / (V K), visits / V) over V of its visits ([`spread`]),
    /// each visit's codes counted up to K.
    pub fn codes_per_visit_contribution(&self, visit_sizes: &[usize]) -> (f64, f64) {
        let (v, k) = (self.max_visits_per_patient, self.max_codes_per_patient);
        let counted: Vec<usize> = spread(visit_sizes.len(), v).collect();
        let codes: usize = counted.iter().map(|&i| visit_sizes[i].min(k)).sum();
        (codes as f64 / (v * k) as f64, counted.len() as f64 / v as f64)
    }

    /// The mean codes per visit from the sums of the training patients' contributions, each sum with the
    /// mechanism's noise (seeded).
    pub fn noisy_codes_per_visit(&self, (codes, visits): (f64, f64)) -> Result<f64> {
        let noise = self.noise()?;
        let std = noise.codes_per_visit_sigma * std::f64::consts::SQRT_2;
        let mut rng = self.rng(NoiseStream::CodesPerVisit);
        let noisy_codes = (codes + std * rng.standard_normal()).max(0.0);
        let noisy_visits = (visits + std * rng.standard_normal()).max(1e-9);
        Ok(self.max_codes_per_patient as f64 * (noisy_codes / noisy_visits).min(1.0))
    }

    /// A seeded source of standard normal noise for `stream`.
    pub fn rng(&self, stream: NoiseStream) -> GaussianNoise {
        GaussianNoise(rand_chacha::ChaCha8Rng::seed_from_u64(
            self.seed ^ (stream as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        ))
    }

    /// Whether `key` is among the `max_codes_per_patient` keys a patient with the `keys` is counted for,
    /// by a seeded hash of (seed, patient, key): the same choice whatever the order the keys come in.
    pub fn key_rank(&self, patient: &str, key: &str) -> u64 {
        let mut h = 0xcbf2_9ce4_8422_2325_u64 ^ self.seed;
        for b in patient.bytes().chain([0xff]).chain(key.bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3); // FNV-1a
        }
        // splitmix64's finaliser, so that nearby keys rank apart.
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^ (h >> 31)
    }
}

impl StatisticsNoise {
    /// The noisy count a key needs to enter the vocabulary: `min_patients`, or more where the noise is large,
    /// so that a patient's keys that nobody else holds (at most `max_codes` of them, each counted 1) enter
    /// together with probability at most `threshold_delta` (union bound over its keys:
    /// max_codes · P(1 + N(0, s²) >= τ) <= threshold_delta, with s the count's noise).
    pub fn vocabulary_threshold(&self, min_patients: usize, max_codes: usize) -> f64 {
        let s = self.vocabulary_sigma * (max_codes as f64).sqrt();
        let z = normal_upper_quantile(self.threshold_delta / max_codes as f64);
        (min_patients as f64).max(1.0 + s * z)
    }

    /// Standard deviation of a vocabulary count's noise.
    pub fn vocabulary_std(&self, max_codes: usize) -> f64 {
        self.vocabulary_sigma * (max_codes as f64).sqrt()
    }
}

/// The positions of at most `cap` of `len` items, spread evenly from the first to the last (all of them when
/// `len <= cap`): which visits of a patient the bounded statistics count.
pub fn spread(len: usize, cap: usize) -> impl Iterator<Item = usize> {
    let take = len.min(cap);
    (0..take).map(move |j| {
        if take == len {
            j
        } else {
            j * (len - 1) / (take - 1).max(1)
        }
    })
}

/// Seeded standard normal draws (Box–Muller on ChaCha8's uniforms).
pub struct GaussianNoise(rand_chacha::ChaCha8Rng);

impl GaussianNoise {
    pub fn standard_normal(&mut self) -> f64 {
        let u: f64 = 1.0 - self.0.random::<f64>(); // (0, 1]
        let v: f64 = self.0.random::<f64>();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// The noise multiplier of one Gaussian mechanism that is (epsilon, delta)-DP by the RDP conversion, to a
/// relative 1e-6 (bisection; the result meets the target).
pub fn gaussian_noise_for(epsilon: f64, delta: f64) -> Result<f64> {
    let at = |sigma: f64| Rdp::gaussian(sigma, 1).epsilon(delta).0;
    let (mut lo, mut hi) = (1e-3_f64, 1e4_f64);
    if at(hi) > epsilon {
        return Err(Error::Invalid(format!(
            "epsilon {epsilon} is too small to reach with one Gaussian mechanism (noise multiplier above {hi})"
        )));
    }
    while hi / lo > 1.0 + 1e-6 {
        let mid = (lo * hi).sqrt();
        if at(mid) <= epsilon {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi)
}

/// z with P(N(0, 1) >= z) = p, for 0 < p < 1/2 (bisection on the tail).
fn normal_upper_quantile(p: f64) -> f64 {
    let tail = |z: f64| super::accountant::ln_erfc(z / std::f64::consts::SQRT_2) - std::f64::consts::LN_2;
    let target = p.ln();
    let (mut lo, mut hi) = (0.0_f64, 40.0_f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if tail(mid) > target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statistics_spend_their_share_and_the_threshold_covers_single_patients() {
        let stats = DpStatistics::for_run(8.0, 1e-5, 7);
        let mechanisms = stats.mechanisms(true, false).unwrap();
        assert_eq!(mechanisms.len(), 4);
        let ledger = super::super::PrivacyLedger::new(mechanisms, 1e-5);
        // All four compose to the share (bisection to 1e-6 of σ).
        assert!(
            ledger.total_epsilon <= 0.8 && ledger.total_epsilon > 0.8 * 0.999,
            "{}",
            ledger.total_epsilon
        );
        let noise = stats.noise().unwrap();
        let composed = [
            noise.vocabulary_sigma,
            noise.gap_shares_sigma,
            noise.visit_type_shares_sigma,
            noise.codes_per_visit_sigma,
        ]
        .iter()
        .fold(Rdp::zero(), |total, &sigma| total.compose(&Rdp::gaussian(sigma, 1)));
        assert_eq!(ledger.total_epsilon, composed.epsilon(stats.rdp_delta()).0);
        assert_eq!(ledger.rdp_delta(), stats.rdp_delta());
        let tau = noise.vocabulary_threshold(10, 32);
        let s = noise.vocabulary_std(32);
        // A key held by one patient enters with probability at most threshold_delta / 32.
        let p = 0.5 * (super::super::accountant::ln_erfc((tau - 1.0) / s / std::f64::consts::SQRT_2)).exp();
        assert!(p <= noise.threshold_delta / 32.0 * 1.0001, "{p}");
        assert!(p >= noise.threshold_delta / 32.0 * 0.99, "{p}");
        assert!((normal_upper_quantile(0.025) - 1.959_963_985).abs() < 1e-6);
    }

    #[test]
    fn noise_is_seeded_and_standard() {
        let stats = DpStatistics::for_run(8.0, 1e-5, 7);
        let draw = |stats: &DpStatistics, stream| {
            let mut rng = stats.rng(stream);
            (0..20_000).map(|_| rng.standard_normal()).collect::<Vec<f64>>()
        };
        let a = draw(&stats, NoiseStream::Vocabulary);
        assert_eq!(a, draw(&stats, NoiseStream::Vocabulary));
        assert_ne!(a, draw(&stats, NoiseStream::GapShares));
        let mean = a.iter().sum::<f64>() / a.len() as f64;
        let var = a.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / a.len() as f64;
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "{mean} {var}");
    }
}
