//! A DP-SGD run's plan, fixed before its first step: the sample rate, the steps, the noise that keeps the
//! whole run within the asked-for (epsilon, delta), and what every step spends.

use crate::dp::prior::PRIOR_CLIP_NORM;
use crate::settings::DpSettings;
use anyhow::{bail, Result};
use halo_core::privacy::statistics::gaussian_noise_for;
use halo_core::privacy::{sgd_noise_for, Mechanism, PrivacyLedger, Rdp};

/// Share of the run's epsilon that the output-bias initialisation (`crate::dp::prior`) spends alone: its
/// noise multiplier is the smallest whose mechanism alone stays within it (2.2 at epsilon 8). The initial
/// biases carry most of what a DP model on few records gets right, the codes' frequencies (on the demo, visit
/// unigram R² 0.941 from exact biases against 0.859 from the earlier noise multiplier 10), while composed by
/// RDP it costs DP-SGD little (sigma 1.025 -> 1.046 at epsilon 8); docs/dp-sgd.md.
pub const PRIOR_EPSILON_SHARE: f64 = 0.25;

/// What a DP run does and spends; recorded in `train_state.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DpPlan {
    /// Training records (the privacy unit: a record's windows count as one).
    pub records: usize,
    /// q = batch size / records: each record enters each step with this probability.
    pub sample_rate: f64,
    /// records / batch size, rounded up (each record is drawn about once an epoch).
    pub steps_per_epoch: u64,
    pub planned_steps: u64,
    /// sigma: the noise's standard deviation over the clipping bound.
    pub noise_multiplier: f64,
    pub max_grad_norm: f64,
    pub delta: f64,
    /// The delta the Rényi DP is converted at: `delta` less what the corpus's vocabulary thresholds spent
    /// (`PrivacyLedger::rdp_delta`).
    pub rdp_delta: f64,
    pub target_epsilon: f64,
    /// The epsilon of the whole plan (output-bias initialisation and every planned step) at `delta`.
    pub epsilon: f64,
    /// The Rényi order that gives `epsilon`.
    pub rdp_order: f64,
    /// sigma of the output-bias initialisation (`None`: the biases start from the reference's init, which
    /// reads no data).
    pub prior_noise_multiplier: Option<f64>,
}

impl DpPlan {
    /// The plan of a run of `epochs` epochs at `batch_size` on `records` records; `before`: what the records
    /// already spent before training (the prepared corpus's ledger), composed into the budget. delta: as
    /// asked, else the corpus ledger's, else min(1e-5, 1 / records).
    pub fn new(
        settings: &DpSettings,
        records: usize,
        batch_size: usize,
        epochs: usize,
        noisy_prior: bool,
        before: Option<&PrivacyLedger>,
    ) -> Result<DpPlan> {
        if records == 0 {
            bail!("differential privacy needs training records");
        }
        let delta = settings
            .delta
            .or(before.map(|l| l.delta))
            .unwrap_or((1.0 / records as f64).min(1e-5));
        let thresholds: f64 = before
            .iter()
            .flat_map(|l| &l.mechanisms)
            .filter_map(|m| m.threshold_delta)
            .sum();
        let rdp_delta = delta - thresholds;
        if rdp_delta <= 0.0 {
            bail!(
                "--dp-delta {delta}: the corpus's vocabulary thresholds spent {thresholds} of delta already; give a \
                 larger one"
            );
        }
        let prior = before.map_or_else(Rdp::zero, |l| l.rdp());
        if batch_size > records {
            bail!("--batch-size {batch_size} exceeds the {records} training records: DP-SGD samples a share of them");
        }
        let sample_rate = batch_size as f64 / records as f64;
        let steps_per_epoch = records.div_ceil(batch_size) as u64;
        let planned_steps = steps_per_epoch * epochs as u64;
        let prior_noise_multiplier = match noisy_prior {
            true => Some(
                gaussian_noise_for(PRIOR_EPSILON_SHARE * settings.epsilon, rdp_delta)
                    .map_err(|e| anyhow::anyhow!("--dp-epsilon {}: the output biases' share: {e}", settings.epsilon))?,
            ),
            false => None,
        };
        let spent_before = match prior_noise_multiplier {
            Some(sigma) => prior.compose(&Rdp::gaussian(sigma, 1)),
            None => prior.clone(),
        };
        let noise_multiplier = sgd_noise_for(settings.epsilon, rdp_delta, sample_rate, planned_steps, &spent_before)
            .map_err(|e| anyhow::anyhow!("--dp-epsilon {}: {e}", settings.epsilon))?;
        let spent = spent_before.compose(&Rdp::subsampled_gaussian(sample_rate, noise_multiplier, planned_steps));
        let (epsilon, rdp_order) = spent.epsilon(rdp_delta);
        Ok(DpPlan {
            records,
            sample_rate,
            steps_per_epoch,
            planned_steps,
            noise_multiplier,
            max_grad_norm: settings.max_grad_norm,
            delta,
            rdp_delta,
            target_epsilon: settings.epsilon,
            epsilon,
            rdp_order,
            prior_noise_multiplier,
        })
    }

    /// The run's ledger: what the records spent before training (`before`, the prepared corpus's ledger,
    /// restated at this plan's delta), the output-bias initialisation and the planned DP-SGD steps.
    pub fn ledger(&self, before: Option<&PrivacyLedger>) -> PrivacyLedger {
        let mut mechanisms: Vec<Mechanism> = before.map(|l| l.mechanisms.clone()).unwrap_or_default();
        for m in &mut mechanisms {
            m.epsilon_alone = m.epsilon(self.delta);
        }
        if let Some(sigma) = self.prior_noise_multiplier {
            mechanisms.push(Mechanism::gaussian(
                "output biases",
                &format!(
                    "the code module's initial output biases: each code's share of a patient's visits, the \
                     patient's shares clipped to L2 norm {PRIOR_CLIP_NORM}, summed over patients"
                ),
                sigma,
                PRIOR_CLIP_NORM,
                1,
                self.delta,
            ));
        }
        mechanisms.push(Mechanism::dp_sgd(
            self.noise_multiplier,
            self.sample_rate,
            self.planned_steps,
            self.max_grad_norm,
            self.delta,
        ));
        PrivacyLedger::new(mechanisms, self.delta)
    }

    /// The epsilon (at the plan's delta) spent after `steps` steps, the initialisation included.
    pub fn epsilon_after(&self, steps: u64, prior: &Rdp) -> f64 {
        let mut spent = prior.clone();
        if let Some(sigma) = self.prior_noise_multiplier {
            spent = spent.compose(&Rdp::gaussian(sigma, 1));
        }
        spent
            .compose(&Rdp::subsampled_gaussian(
                self.sample_rate,
                self.noise_multiplier,
                steps,
            ))
            .epsilon(self.rdp_delta)
            .0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_meets_its_target_and_spends_it_step_by_step() {
        let settings = DpSettings {
            epsilon: 8.0,
            delta: None,
            max_grad_norm: 1.0,
        };
        let plan = DpPlan::new(&settings, 807, 48, 20, true, None).unwrap();
        assert_eq!(plan.delta, 1e-5);
        assert_eq!((plan.steps_per_epoch, plan.planned_steps), (17, 340));
        assert!(plan.epsilon <= 8.0 && plan.epsilon > 7.9, "{plan:?}");
        // dp-accounting gives 8.2 at sigma 1 and 336 steps without the initialisation: sigma is near 1.
        assert!((0.95..1.1).contains(&plan.noise_multiplier), "{plan:?}");
        let half = plan.epsilon_after(170, &Rdp::zero());
        assert!(half < plan.epsilon && half > 0.0);
        assert!((plan.epsilon_after(340, &Rdp::zero()) - plan.epsilon).abs() < 1e-9);
        // The ledger states the plan: both mechanisms, the same total.
        let ledger = plan.ledger(None);
        assert_eq!(ledger.mechanisms.len(), 2);
        assert!((ledger.total_epsilon - plan.epsilon).abs() < 1e-9, "{ledger:?}");
        assert_eq!(ledger.mechanisms[1].count, 340);
        // A corpus's ledger is spent before training: sigma rises to keep the total; its delta (less what
        // its threshold spent) is the run's.
        let vocabulary = Mechanism::gaussian("vocabulary", "codes", 5.0, 1.0, 1, 1e-6).with_threshold_delta(1e-7, 1e-6);
        let corpus = PrivacyLedger::new(vec![vocabulary], 1e-6);
        let after = DpPlan::new(&settings, 807, 48, 20, true, Some(&corpus)).unwrap();
        assert!(after.noise_multiplier > plan.noise_multiplier);
        assert_eq!((after.delta, after.rdp_delta), (1e-6, 1e-6 - 1e-7));
        let ledger = after.ledger(Some(&corpus));
        assert_eq!(ledger.mechanisms.len(), 3);
        assert!((ledger.total_epsilon - after.epsilon).abs() < 1e-9 && ledger.total_epsilon <= 8.0);
        ledger.check(std::path::Path::new("privacy.json")).unwrap();
        // delta is at most 1 / records.
        let large = DpPlan::new(&settings, 200_000, 4_000, 1, false, None).unwrap();
        assert_eq!(large.delta, 5e-6);
        assert!(DpPlan::new(&settings, 20, 30, 1, false, None).is_err());
    }

    #[test]
    fn the_output_biases_spend_their_share_at_every_epsilon() {
        for epsilon in [0.5, 1.0, 3.0, 8.0] {
            let settings = DpSettings {
                epsilon,
                delta: None,
                max_grad_norm: 1.0,
            };
            let plan = DpPlan::new(&settings, 807, 48, 20, true, None).unwrap();
            let prior = &plan.ledger(None).mechanisms[0];
            assert_eq!(
                (prior.name.as_str(), prior.sensitivity),
                ("output biases", PRIOR_CLIP_NORM)
            );
            let share = prior.epsilon_alone / epsilon;
            assert!(
                share <= PRIOR_EPSILON_SHARE && share > 0.99 * PRIOR_EPSILON_SHARE,
                "{epsilon}: {share}"
            );
            assert!(plan.epsilon <= epsilon && plan.epsilon > 0.98 * epsilon, "{plan:?}");
        }
    }
}
