//! The privacy ledger: every differentially private release that went into a model, what each protects,
//! and the total (ε, δ) of their composition. Written as `privacy.json` by `halo prepare` (the data's
//! statistics) and by `halo train` (with DP-SGD on top) into the corpus and the checkpoint folder; copied
//! by `halo export` into the signed manifest; shown by `halo-sample --version` and `verify`, SITE.md,
//! bundle.json and the evaluation report.

use super::{orders, Rdp};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// File name of a ledger in a corpus folder and in a checkpoint folder.
pub const PRIVACY_FILE: &str = "privacy.json";

/// What every display says of a model without a ledger.
pub const NOT_DIFFERENTIALLY_PRIVATE: &str = "not trained with differential privacy";

/// The mechanisms of a model's releases, composed by the RDP accountant into one (ε, δ).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrivacyLedger {
    /// Each Gaussian mechanism run on the patients' records, in the order they ran.
    pub mechanisms: Vec<Mechanism>,
    pub delta: f64,
    /// ε of all mechanisms composed, at `delta`: the guarantee.
    pub total_epsilon: f64,
    /// How `total_epsilon` was computed.
    pub accountant: String,
}

/// One Gaussian mechanism: noise of standard deviation `noise_multiplier · sensitivity` added to a sum over
/// patients in which one patient changes the sum by at most `sensitivity` (L2), `count` times; with
/// `sample_rate`, each time over a Poisson sample of the patients (DP-SGD).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mechanism {
    /// Short name, e.g. `DP-SGD`, `vocabulary`.
    pub name: String,
    /// What it protects, in plain words (what is released from the patients' records).
    pub covers: String,
    /// ε of this mechanism alone at the ledger's δ (the shares do not add up to the total: RDP composes
    /// more tightly than adding ε).
    pub epsilon_alone: f64,
    pub noise_multiplier: f64,
    /// Probability that a patient enters a step (DP-SGD); absent: every patient, every time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<f64>,
    /// Steps of DP-SGD, or releases of the same statistic.
    pub count: u64,
    /// DP-SGD's bound on each patient's gradient norm (C).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_grad_norm: Option<f64>,
    /// How much one patient can change what is released (L2), in the released quantity's units.
    pub sensitivity: f64,
    /// δ spent outside the Gaussian mechanism: by a vocabulary's threshold on keys that only one patient
    /// holds (absent: none). The ledger's total ε is stated at its δ less these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_delta: Option<f64>,
}

impl Mechanism {
    /// The Gaussian mechanism on all patients (a noisy count or histogram), `count` times; `epsilon_alone`
    /// at `delta`.
    pub fn gaussian(name: &str, covers: &str, noise_multiplier: f64, sensitivity: f64, count: u64, delta: f64) -> Self {
        let mut m = Mechanism {
            name: name.to_string(),
            covers: covers.to_string(),
            epsilon_alone: 0.0,
            noise_multiplier,
            sample_rate: None,
            count,
            max_grad_norm: None,
            sensitivity,
            threshold_delta: None,
        };
        m.epsilon_alone = m.epsilon(delta);
        m
    }

    /// The same mechanism with `threshold_delta` of the ledger's `delta` spent by a threshold.
    pub fn with_threshold_delta(mut self, threshold_delta: f64, delta: f64) -> Self {
        self.threshold_delta = Some(threshold_delta);
        self.epsilon_alone = self.epsilon(delta);
        self
    }

    /// ε of this mechanism alone at a total `delta` (its threshold's δ taken off first).
    pub fn epsilon(&self, delta: f64) -> f64 {
        self.rdp().epsilon(delta - self.threshold_delta.unwrap_or(0.0)).0
    }

    /// DP-SGD: `steps` steps, each on a Poisson sample of the patients at `sample_rate`, each patient's
    /// gradient clipped to `max_grad_norm`, noise `noise_multiplier · max_grad_norm` added to the sum.
    pub fn dp_sgd(noise_multiplier: f64, sample_rate: f64, steps: u64, max_grad_norm: f64, delta: f64) -> Self {
        let mut m = Mechanism {
            name: "DP-SGD".to_string(),
            covers: "the model's weights: every training step's gradient, each patient's clipped to the norm bound"
                .to_string(),
            epsilon_alone: 0.0,
            noise_multiplier,
            sample_rate: Some(sample_rate),
            count: steps,
            max_grad_norm: Some(max_grad_norm),
            sensitivity: max_grad_norm,
            threshold_delta: None,
        };
        m.epsilon_alone = m.epsilon(delta);
        m
    }

    /// Its Rényi DP (the sensitivity is part of the noise multiplier's definition, so it does not enter).
    pub fn rdp(&self) -> Rdp {
        match self.sample_rate {
            Some(q) => Rdp::subsampled_gaussian(q, self.noise_multiplier, self.count),
            None => Rdp::gaussian(self.noise_multiplier, self.count),
        }
    }

    /// One line: name, what it covers, ε alone and its parameters.
    pub fn describe(&self) -> String {
        let mut parts = vec![
            format!("epsilon alone {:.3}", self.epsilon_alone),
            format!("noise multiplier {:.4}", self.noise_multiplier),
        ];
        if let Some(q) = self.sample_rate {
            parts.push(format!("sample rate {q:.4}"));
        }
        parts.push(match self.sample_rate {
            Some(_) => format!("{} steps", self.count),
            None => format!("{} release{}", self.count, if self.count == 1 { "" } else { "s" }),
        });
        match self.max_grad_norm {
            Some(c) => parts.push(format!("gradient norm bound {c}")),
            None => parts.push(format!("sensitivity {:.4}", self.sensitivity)),
        }
        format!("{} ({}): {}", self.name, self.covers, parts.join(", "))
    }
}

impl PrivacyLedger {
    /// The ledger of `mechanisms` at `delta`, its total computed by the accountant.
    pub fn new(mechanisms: Vec<Mechanism>, delta: f64) -> PrivacyLedger {
        let mut ledger = PrivacyLedger {
            mechanisms,
            delta,
            total_epsilon: 0.0,
            accountant: accountant_name(),
        };
        ledger.total_epsilon = ledger.rdp().epsilon(ledger.rdp_delta()).0;
        ledger
    }

    /// The δ the RDP composition is converted at: the ledger's δ less what thresholds spent. DP-SGD on top
    /// of this ledger finds its noise at this δ (`sgd_noise_for(target, ledger.rdp_delta(), q, steps,
    /// &ledger.rdp())`).
    pub fn rdp_delta(&self) -> f64 {
        self.delta - self.mechanisms.iter().filter_map(|m| m.threshold_delta).sum::<f64>()
    }

    /// This ledger with `mechanism` run after its others (what `halo train` does with the corpus's ledger).
    pub fn with(&self, mechanism: Mechanism) -> PrivacyLedger {
        let mut mechanisms = self.mechanisms.clone();
        mechanisms.push(mechanism);
        PrivacyLedger::new(mechanisms, self.delta)
    }

    /// All mechanisms composed: the `prior` of `sgd_noise_for` for a run on a corpus with this ledger.
    pub fn rdp(&self) -> Rdp {
        self.mechanisms
            .iter()
            .fold(Rdp::zero(), |total, m| total.compose(&m.rdp()))
    }

    /// Reads `privacy.json` at `path` and checks that its figures are what its mechanisms give.
    pub fn read(path: &Path) -> Result<PrivacyLedger> {
        let ledger: PrivacyLedger = crate::fsutil::read_json(path, "privacy ledger")?;
        ledger.check(path)?;
        Ok(ledger)
    }

    /// Reads `privacy.json` in `dir` when there is one.
    pub fn read_in(dir: &Path) -> Result<Option<PrivacyLedger>> {
        let path = dir.join(PRIVACY_FILE);
        if path.is_file() {
            Self::read(&path).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Writes it as `privacy.json` in `dir` (atomically).
    pub fn write_in(&self, dir: &Path) -> Result<()> {
        crate::fsutil::write_json_atomic(&dir.join(PRIVACY_FILE), self)
    }

    /// The stated ε (total and each mechanism's) must be what the accountant gives for the stated
    /// mechanisms, within a relative 1e-9: a ledger cannot claim less than its parameters give. `path`
    /// names the file in the error.
    pub fn check(&self, path: &Path) -> Result<()> {
        if !(self.delta > 0.0 && self.delta < 1.0 && self.rdp_delta() > 0.0) {
            return Err(Error::field(
                path,
                "delta",
                format!(
                    "{}: expected a number in (0, 1), above the thresholds' delta",
                    self.delta
                ),
            ));
        }
        let close = |stated: f64, computed: f64| (stated - computed).abs() <= 1e-9 * computed.abs().max(1e-12);
        for (i, m) in self.mechanisms.iter().enumerate() {
            let field = |name: &str| format!("mechanisms[{i}].{name}");
            if !(m.noise_multiplier >= 0.0 && m.sensitivity >= 0.0) {
                return Err(Error::field(
                    path,
                    &field("noise_multiplier"),
                    "noise multiplier and sensitivity must be non-negative numbers".to_string(),
                ));
            }
            if let Some(q) = m.sample_rate {
                if !(0.0..=1.0).contains(&q) {
                    return Err(Error::field(
                        path,
                        &field("sample_rate"),
                        format!("{q}: expected [0, 1]"),
                    ));
                }
            }
            let computed = m.epsilon(self.delta);
            if !close(m.epsilon_alone, computed) {
                return Err(Error::field(
                    path,
                    &field("epsilon_alone"),
                    format!("{} stated, but its parameters give {computed}", m.epsilon_alone),
                ));
            }
        }
        let computed = self.rdp().epsilon(self.rdp_delta()).0;
        if !close(self.total_epsilon, computed) {
            return Err(Error::field(
                path,
                "total_epsilon",
                format!(
                    "{} stated, but the mechanisms compose to {computed}",
                    self.total_epsilon
                ),
            ));
        }
        Ok(())
    }

    /// The total in one line: `differentially private: epsilon 8.00 at delta 1e-5 (N mechanisms, ...)`.
    pub fn headline(&self) -> String {
        format!(
            "trained with differential privacy: epsilon {:.2} at delta {:.0e} for each patient, {} mechanism{} composed \
             by {}",
            self.total_epsilon,
            self.delta,
            self.mechanisms.len(),
            if self.mechanisms.len() == 1 { "" } else { "s" },
            self.accountant
        )
    }
}

/// The accountant's description, with the orders it minimises over.
fn accountant_name() -> String {
    let o = orders();
    format!(
        "RDP (Mironov et al. 2019, the sampled Gaussian mechanism), orders {} to {} ({} orders, dp-accounting's \
         default), converted to (epsilon, delta) by Canonne, Kamath & Steinke 2020, Prop. 12",
        o[0],
        o[o.len() - 1],
        o.len()
    )
}

/// What a display shows of a model's privacy: the headline and one line per mechanism, or the one line
/// [`NOT_DIFFERENTIALLY_PRIVATE`].
pub fn describe(ledger: Option<&PrivacyLedger>) -> Vec<String> {
    match ledger {
        None => vec![NOT_DIFFERENTIALLY_PRIVATE.to_string()],
        Some(l) => std::iter::once(l.headline())
            .chain(l.mechanisms.iter().map(|m| format!("  {}", m.describe())))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo_ledger() -> PrivacyLedger {
        let delta = 1e-5;
        let vocabulary = Mechanism::gaussian(
            "vocabulary",
            "which codes enter the vocabulary: the noisy count of patients of each code",
            20.0,
            5.0,
            1,
            delta,
        );
        let sgd = Mechanism::dp_sgd(1.0, 48.0 / 807.0, 336, 1.0, delta);
        PrivacyLedger::new(vec![vocabulary], delta).with(sgd)
    }

    #[test]
    fn total_is_the_composition_and_survives_a_round_trip() {
        let ledger = demo_ledger();
        let composed = Rdp::gaussian(20.0, 1)
            .compose(&Rdp::subsampled_gaussian(48.0 / 807.0, 1.0, 336))
            .epsilon(1e-5)
            .0;
        assert_eq!(ledger.total_epsilon, composed);
        assert!(ledger.total_epsilon > ledger.mechanisms[1].epsilon_alone);
        assert!(ledger.total_epsilon < ledger.mechanisms.iter().map(|m| m.epsilon_alone).sum::<f64>());
        let dir = tempfile::tempdir().unwrap();
        ledger.write_in(dir.path()).unwrap();
        assert_eq!(PrivacyLedger::read_in(dir.path()).unwrap(), Some(ledger));
        assert_eq!(PrivacyLedger::read_in(&dir.path().join("absent")).unwrap(), None);
    }

    #[test]
    fn a_ledger_that_claims_less_than_its_mechanisms_give_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = demo_ledger();
        ledger.total_epsilon = 1.0;
        std::fs::write(dir.path().join(PRIVACY_FILE), serde_json::to_string(&ledger).unwrap()).unwrap();
        let err = PrivacyLedger::read_in(dir.path()).unwrap_err().to_string();
        assert!(err.contains("privacy.json") && err.contains("total_epsilon"), "{err}");
        let mut ledger = demo_ledger();
        ledger.mechanisms[1].noise_multiplier = 3.0;
        std::fs::write(dir.path().join(PRIVACY_FILE), serde_json::to_string(&ledger).unwrap()).unwrap();
        let err = PrivacyLedger::read_in(dir.path()).unwrap_err().to_string();
        assert!(err.contains("mechanisms[1].epsilon_alone"), "{err}");
    }

    #[test]
    fn description_names_the_total_and_every_mechanism() {
        let ledger = demo_ledger();
        let lines = describe(Some(&ledger));
        assert_eq!(lines.len(), 3);
        assert!(
            lines[0].contains(&format!("epsilon {:.2} at delta 1e-5", ledger.total_epsilon)),
            "{lines:?}"
        );
        assert!(
            lines[1].contains("vocabulary") && lines[1].contains("1 release"),
            "{lines:?}"
        );
        assert!(
            lines[2].contains("DP-SGD") && lines[2].contains("336 steps"),
            "{lines:?}"
        );
        assert!(lines[2].contains("sample rate 0.0595") && lines[2].contains("gradient norm bound 1"));
        assert_eq!(
            describe(None),
            vec!["not trained with differential privacy".to_string()]
        );
    }
}
