//! One epoch of a run: its training steps (plain or DP-SGD), the validation loss, the best weights and the
//! resumable state saved.

use super::*;

/// What every epoch of a run works with.
pub(super) struct Run<'a> {
    pub(super) args: &'a TrainArgs,
    pub(super) setup: &'a Setup,
    pub(super) model: &'a Halo,
    pub(super) vs: &'a nn::VarStore,
    pub(super) adam: &'a mut Adam,
    pub(super) log: std::fs::File,
}

impl Run<'_> {
    /// One epoch: the training steps, the validation loss, the best weights and the resumable state saved.
    pub(super) fn epoch(&mut self, epoch: usize, state: &mut TrainState) -> Result<()> {
        let started = Instant::now();
        let (train_loss, dp_line) = match &self.setup.private {
            None => (self.train_steps(epoch)?, None),
            Some(private) => {
                let (loss, summary) = self.private_steps(epoch, private)?;
                (loss, Some(summary))
            }
        };
        let (args, encoding) = (self.args, &self.setup.encoding);
        let val = &self.setup.corpus.val;
        let val_loss = if val.is_empty() {
            train_loss
        } else {
            score::score_sequences(self.model, val, encoding, args.settings.batch_size * 2, args.device)
                .scores()
                .bce
        };
        if !train_loss.is_finite() || !val_loss.is_finite() {
            // Checked before anything is saved: the files keep the last good epoch's state.
            bail!(
                "training diverged at epoch {epoch} (train loss {train_loss}, validation loss {val_loss}); {}; try \
                 a smaller --lr",
                if state.best_epoch > 0 {
                    format!("the best weights (epoch {}) are kept", state.best_epoch)
                } else {
                    "no weights were saved".to_string()
                }
            );
        }
        let seconds = started.elapsed().as_secs_f64();
        state.epochs_done = epoch;
        state.step = self.adam.step;
        // Under differential privacy the weights are the last epoch's: choosing an epoch by validation loss
        // would be one more look at the data, outside the accounting.
        let improved = val_loss < state.best_val_loss || self.setup.private.is_some();
        if improved {
            state.best_val_loss = val_loss;
            state.best_epoch = epoch;
            save_weights(&args.out.join(ck::WEIGHTS), self.vs, &[])?;
        }
        let records = self.setup.corpus.train.len();
        // The log line first, in one write: a kill after it and before the state is saved leaves a line that
        // the resume drops (`resume::trim_log`), never a state without its line.
        let mut line = serde_json::json!({
            "epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "best": improved,
            "seconds": seconds, "records_per_s": records as f64 / seconds,
        });
        if let Some(summary) = &dp_line {
            line["dp"] = serde_json::to_value(summary)?;
        }
        self.log.write_all(format!("{line}\n").as_bytes())?;
        self.log.flush()?;
        save_last(&args.out, self.vs, self.adam, state)?;
        if !args.quiet {
            let privacy = dp_line.as_ref().map_or(String::new(), |s| {
                format!(
                    "  epsilon {:.3}, {:.0}% of records clipped (median norm {:.3})",
                    s.epsilon,
                    100.0 * s.clipped_share,
                    s.median_norm
                )
            });
            eprintln!(
                "epoch {epoch:>3}/{}: train loss {train_loss:.5}  val loss {val_loss:.5}{}  {seconds:.1}s ({:.0} records/s){privacy}",
                args.epochs,
                if improved && dp_line.is_none() { " *" } else { "" },
                records as f64 / seconds
            );
        }
        Ok(())
    }

    /// The epoch's training steps, in an order seeded by (seed, epoch) so that a resumed run sees the same
    /// batches and dropout masks as an uninterrupted one; the mean training loss.
    fn train_steps(&mut self, epoch: usize) -> Result<f64> {
        let (args, train) = (self.args, &self.setup.corpus.train);
        let mut order: Vec<usize> = (0..train.len()).collect();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
            args.settings.seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64),
        );
        order.shuffle(&mut rng);
        tch::manual_seed(args.settings.seed.wrapping_mul(1_000_033).wrapping_add(epoch as u64) as i64);
        let n_batches = order.len().div_ceil(args.settings.batch_size);
        let show_progress = !args.quiet && std::io::stderr().is_terminal();
        let bar = progress_bar(n_batches as u64, epoch, args.epochs, show_progress);
        let mut loss_sum = 0.0;
        for chunk in order.chunks(args.settings.batch_size) {
            let sequences: Vec<_> = chunk.iter().map(|i| train.get(*i)).collect();
            let refs: Vec<_> = sequences.iter().collect();
            let batch = data::make_batch(&refs, &self.setup.encoding, args.device);
            self.adam.zero_grad();
            let loss = score::loss(self.model, &batch, args.settings.noise());
            loss.backward();
            self.adam.step();
            let l = loss.double_value(&[]);
            if !l.is_finite() {
                bail!(
                    "training diverged at epoch {epoch} (loss {l}); the files keep the state after epoch {}; try a \
                     smaller --lr",
                    epoch - 1
                );
            }
            loss_sum += l * chunk.len() as f64;
            bar.set_message(format!("loss {l:.5}"));
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok(loss_sum / train.len() as f64)
    }
}

/// What an epoch of DP-SGD did, in its log line.
#[derive(Debug, serde::Serialize)]
struct DpEpoch {
    /// Spent after this epoch's last step (the initialisation included).
    epsilon: f64,
    /// Records drawn this epoch (Poisson sampling: about one pass).
    records_drawn: usize,
    /// Share of the drawn records whose gradient norm exceeded the bound.
    clipped_share: f64,
    median_norm: f64,
}

impl Run<'_> {
    /// The epoch's DP-SGD steps (`crate::dp`): global steps (epoch - 1) * steps_per_epoch + 1 ..= epoch *
    /// steps_per_epoch, each a Poisson sample of the records, their clipped gradients summed, Gaussian noise
    /// of standard deviation sigma C added, divided by the expected batch size q N (the standard choice, so
    /// that the scale does not depend on the batch drawn), then Adam's update. The sample, the dropout masks
    /// and the noise of a step are seeded by (seed, step). Returns the mean training loss per scored entry.
    fn private_steps(&mut self, epoch: usize, private: &Private) -> Result<(f64, DpEpoch)> {
        let (args, train, plan) = (self.args, &self.setup.corpus.train, &private.plan);
        let seed = args.settings.seed;
        let first = (epoch as u64 - 1) * plan.steps_per_epoch + 1;
        let last = (epoch as u64 * plan.steps_per_epoch).min(plan.planned_steps);
        let show_progress = !args.quiet && std::io::stderr().is_terminal();
        let bar = progress_bar(last + 1 - first, epoch, args.epochs, show_progress);
        let noise_std = plan.noise_multiplier * plan.max_grad_norm;
        let expected_batch = plan.sample_rate * plan.records as f64;
        let (mut loss_sum, mut entries) = (0.0, 0.0);
        let mut norms: Vec<f64> = Vec::new();
        for step in first..=last {
            if self.adam.step as u64 != step - 1 {
                bail!("internal: DP step {step} after optimizer step {}", self.adam.step);
            }
            let drawn = dp::sampling::poisson_batch(plan.records, plan.sample_rate, seed, step);
            tch::manual_seed(dp::sampling::step_seed(seed, step));
            self.adam.zero_grad();
            let (mut sequences, mut record_of) = (Vec::new(), Vec::new());
            for (r, &record) in drawn.iter().enumerate() {
                for &i in &private.records[record] {
                    sequences.push(train.get(i));
                    record_of.push(r);
                }
            }
            if !sequences.is_empty() {
                let refs: Vec<_> = sequences.iter().collect();
                let batch = data::make_batch(&refs, &self.setup.encoding, args.device);
                let records = Records::new(&record_of, args.device);
                let clipped =
                    dp::clipped_backward(self.model, &batch, &records, args.settings.noise(), plan.max_grad_norm);
                let l = clipped.losses.sum(Kind::Double).double_value(&[]);
                if !l.is_finite() {
                    bail!(
                        "training diverged at epoch {epoch} (loss {l}); the files keep the state after epoch {}; try \
                         a smaller --lr",
                        epoch - 1
                    );
                }
                loss_sum += l;
                entries += batch.rows.size()[0] as f64 * self.setup.encoding.vocab_size() as f64;
                norms.extend(Vec::<f64>::try_from(clipped.norms.to_kind(Kind::Double))?);
            }
            // Noise drawn in the optimizer's (name) order after the step's seed and dropout: reproducible.
            self.adam.step_with(|p| {
                let g = p.grad();
                let sum = if g.defined() { g } else { p.zeros_like() };
                Some((sum + p.randn_like() * noise_std) / expected_batch)
            });
            bar.inc(1);
        }
        bar.finish_and_clear();
        let clipped = norms.iter().filter(|n| **n > plan.max_grad_norm).count();
        norms.sort_by(f64::total_cmp);
        let summary = DpEpoch {
            epsilon: plan.epsilon_after(last, &private.spent_before),
            records_drawn: norms.len(),
            clipped_share: clipped as f64 / norms.len().max(1) as f64,
            median_norm: norms.get(norms.len() / 2).copied().unwrap_or(0.0),
        };
        Ok((loss_sum / entries.max(1.0), summary))
    }
}

fn progress_bar(len: u64, epoch: usize, epochs: usize, visible: bool) -> indicatif::ProgressBar {
    if !visible {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "epoch {epoch}/{epochs} [{{bar:30}}] {{pos}}/{{len}} batches {{per_sec}} {{msg}}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}
