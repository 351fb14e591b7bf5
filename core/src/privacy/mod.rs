//! Differential privacy: the accountant (Rényi DP of the Gaussian and the Poisson-subsampled Gaussian
//! mechanisms, composed and converted to (ε, δ)), the noise multiplier DP-SGD needs for a target ε, and the
//! ledger of a model's private releases ([`PrivacyLedger`], `privacy.json` and the manifest's `privacy`).
//!
//! The accountant is checked against Google's `dp-accounting` package (its `RdpAccountant`) by
//! tests/tests/privacy_accountant.rs on a grid of sample rates, noise multipliers, steps and deltas.

mod accountant;
mod ledger;
pub mod statistics;

pub use ledger::{describe, Mechanism, PrivacyLedger, NOT_DIFFERENTIALLY_PRIVATE, PRIVACY_FILE};

use crate::{Error, Result};

/// The orders α at which Rényi DP is tracked: the default orders of `dp-accounting`'s RDP accountant
/// (1.1 to 10.9 by 0.1, 11 to 63, and 128, 256, 512, 1024), so that the minimum over orders is taken over the
/// same set as that package's.
pub fn orders() -> &'static [f64] {
    static ORDERS: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    ORDERS.get_or_init(|| {
        let fine = (11..110).map(|tenths| tenths as f64 / 10.0);
        let whole = (11..64).map(f64::from);
        fine.chain(whole).chain([128.0, 256.0, 512.0, 1024.0]).collect()
    })
}

/// The largest noise multiplier [`sgd_noise_for`] tries before it reports that the target cannot be met.
pub const MAX_NOISE_MULTIPLIER: f64 = 1e3;

/// Rényi DP of a sequence of mechanisms: its ε at each of the fixed [`orders`]. Composition adds them.
#[derive(Debug, Clone, PartialEq)]
pub struct Rdp {
    epsilons: Vec<f64>,
}

impl Rdp {
    /// Nothing released yet.
    pub fn zero() -> Rdp {
        Rdp {
            epsilons: vec![0.0; orders().len()],
        }
    }

    /// `steps` compositions of the Poisson-subsampled Gaussian mechanism: each record enters a step with
    /// probability `q`, and Gaussian noise of standard deviation `sigma` times the L2 sensitivity is added
    /// to the sum (Mironov, Talwar & Zhang 2019, "Rényi Differential Privacy of the Sampled Gaussian
    /// Mechanism"). q = 0 releases nothing; q = 1 is the plain Gaussian mechanism; sigma = 0 is no privacy.
    pub fn subsampled_gaussian(q: f64, sigma: f64, steps: u64) -> Rdp {
        assert!((0.0..=1.0).contains(&q), "sample rate {q} outside [0, 1]");
        assert!(sigma >= 0.0, "noise multiplier {sigma} is negative");
        if q == 0.0 || steps == 0 {
            return Rdp::zero();
        }
        if q == 1.0 {
            return Rdp::gaussian(sigma, steps);
        }
        if sigma == 0.0 {
            return Rdp::infinite();
        }
        let epsilons = orders()
            .iter()
            .map(|&alpha| steps as f64 * accountant::log_a(q, sigma, alpha) / (alpha - 1.0))
            .collect();
        Rdp { epsilons }
    }

    /// The Gaussian mechanism with noise multiplier `sigma` (standard deviation over L2 sensitivity),
    /// composed `count` times: ε(α) = count · α / (2σ²) (Mironov 2017, "Rényi Differential Privacy",
    /// Proposition 7).
    pub fn gaussian(sigma: f64, count: u64) -> Rdp {
        assert!(sigma >= 0.0, "noise multiplier {sigma} is negative");
        if count == 0 {
            return Rdp::zero();
        }
        if sigma == 0.0 {
            return Rdp::infinite();
        }
        let epsilons = orders()
            .iter()
            .map(|&alpha| count as f64 * alpha / (2.0 * sigma * sigma))
            .collect();
        Rdp { epsilons }
    }

    /// Both mechanisms run on the same records (RDP composes by adding, order by order).
    pub fn compose(&self, other: &Rdp) -> Rdp {
        let epsilons = self.epsilons.iter().zip(&other.epsilons).map(|(a, b)| a + b).collect();
        Rdp { epsilons }
    }

    /// The smallest ε over the orders such that the composition is (ε, δ)-DP, and the order that gives it.
    /// The conversion is `dp-accounting`'s: ε = ρ + ln(1 − 1/α) − ln(δ α) / (α − 1) (Canonne, Kamath &
    /// Steinke 2020, "The Discrete Gaussian for Differential Privacy", Proposition 12), for α > 1.01, and ε = 0
    /// at an order where δ ≥ sqrt(1 − e^{−ρ}) (the Rényi divergence bounds the KL divergence, which bounds
    /// the total variation distance). Infinite when no order gives a finite ε.
    pub fn epsilon(&self, delta: f64) -> (f64, f64) {
        assert!(delta > 0.0 && delta < 1.0, "delta {delta} outside (0, 1)");
        let mut best = (f64::INFINITY, orders()[0]);
        for (&alpha, &rho) in orders().iter().zip(&self.epsilons) {
            let epsilon = if rho.is_nan() {
                f64::INFINITY
            } else if rho <= 0.0 || delta * delta + (-rho).exp_m1() > 0.0 {
                0.0
            } else if alpha > 1.01 {
                rho + (-1.0 / alpha).ln_1p() - (delta * alpha).ln() / (alpha - 1.0)
            } else {
                f64::INFINITY
            };
            if epsilon < best.0 {
                best = (epsilon, alpha);
            }
        }
        (best.0.max(0.0), best.1)
    }

    /// ε at each of the [`orders`].
    pub fn epsilons(&self) -> &[f64] {
        &self.epsilons
    }

    fn infinite() -> Rdp {
        Rdp {
            epsilons: vec![f64::INFINITY; orders().len()],
        }
    }
}

/// The smallest noise multiplier σ (to a relative 1e-4, by bisection on ln σ; the returned σ always meets
/// the target) such that `prior` composed with `steps` steps of the Poisson-subsampled Gaussian at rate `q`
/// stays within `target_epsilon` at `delta`. An error when even σ = [`MAX_NOISE_MULTIPLIER`] does not.
pub fn sgd_noise_for(target_epsilon: f64, delta: f64, q: f64, steps: u64, prior: &Rdp) -> Result<f64> {
    if !(target_epsilon > 0.0 && target_epsilon.is_finite()) {
        return Err(Error::Invalid(format!(
            "target epsilon {target_epsilon}: expected a positive number"
        )));
    }
    if !(delta > 0.0 && delta < 1.0) {
        return Err(Error::Invalid(format!("delta {delta}: expected a number in (0, 1)")));
    }
    if !(q > 0.0 && q <= 1.0) {
        return Err(Error::Invalid(format!("sample rate {q}: expected a number in (0, 1]")));
    }
    let epsilon_at = |sigma: f64| {
        prior
            .compose(&Rdp::subsampled_gaussian(q, sigma, steps))
            .epsilon(delta)
            .0
    };
    let prior_epsilon = prior.epsilon(delta).0;
    let at_max = epsilon_at(MAX_NOISE_MULTIPLIER);
    if at_max > target_epsilon {
        return Err(Error::Invalid(format!(
            "target epsilon {target_epsilon} at delta {delta} cannot be met with {steps} steps at sample rate {q:.4}: \
             even noise multiplier {MAX_NOISE_MULTIPLIER} gives epsilon {at_max:.3} (the data's statistics already \
             spent {prior_epsilon:.3}); raise the target or train fewer steps"
        )));
    }
    // ε falls as σ grows: keep ε(hi) <= target < ε(lo).
    let (mut lo, mut hi) = (1e-3_f64, MAX_NOISE_MULTIPLIER);
    if epsilon_at(lo) <= target_epsilon {
        return Ok(lo);
    }
    while hi / lo > 1.0 + 1e-4 {
        let mid = (lo * hi).sqrt();
        if epsilon_at(mid) <= target_epsilon {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_scale_matches_the_issue() {
        // Synthea-1k: N = 807, batch 48, 20 epochs = round(20 · 807 / 48) = 336 steps, σ = 1, δ = 1e-5:
        // dp-accounting's RdpAccountant gives 8.207 at order 3.3.
        let (epsilon, order) = Rdp::subsampled_gaussian(48.0 / 807.0, 1.0, 336).epsilon(1e-5);
        assert!((epsilon - 8.207).abs() < 0.01, "epsilon {epsilon}");
        assert_eq!(order, 3.3);
    }

    #[test]
    fn composition_adds_and_gaussian_is_the_full_sample_case() {
        let a = Rdp::subsampled_gaussian(0.05, 1.2, 100);
        let b = Rdp::gaussian(20.0, 3);
        let both = a.compose(&b);
        for i in 0..orders().len() {
            assert_eq!(both.epsilons()[i], a.epsilons()[i] + b.epsilons()[i]);
        }
        assert!(both.epsilon(1e-5).0 > a.epsilon(1e-5).0);
        assert_eq!(Rdp::subsampled_gaussian(1.0, 2.0, 7), Rdp::gaussian(2.0, 7));
        assert_eq!(Rdp::zero().epsilon(1e-5).0, 0.0);
        assert_eq!(Rdp::gaussian(0.0, 1).epsilon(1e-5).0, f64::INFINITY);
    }

    #[test]
    fn noise_for_target_is_the_smallest_that_meets_it() {
        let (q, steps, delta) = (48.0 / 807.0, 336, 1e-5);
        let sigma = sgd_noise_for(8.207, delta, q, steps, &Rdp::zero()).unwrap();
        assert!((sigma - 1.0).abs() < 2e-3, "sigma {sigma}");
        let at = |s: f64| Rdp::subsampled_gaussian(q, s, steps).epsilon(delta).0;
        assert!(at(sigma) <= 8.207);
        assert!(at(sigma * 0.999) > 8.207);
        // A prior spends part of the budget: more noise is needed for the same total.
        let prior = Rdp::gaussian(5.0, 4);
        let with_prior = sgd_noise_for(8.207, delta, q, steps, &prior).unwrap();
        assert!(with_prior > sigma);
        assert!(
            prior
                .compose(&Rdp::subsampled_gaussian(q, with_prior, steps))
                .epsilon(delta)
                .0
                <= 8.207
        );
        // A prior that alone exceeds the target cannot be met.
        let err = sgd_noise_for(1.0, delta, q, steps, &Rdp::gaussian(0.5, 1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot be met"), "{err}");
    }
}
