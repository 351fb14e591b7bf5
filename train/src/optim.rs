//! Adam (torch.optim.Adam's update; with weight decay, torch.optim.AdamW's decoupled decay of the weight
//! matrices, as nanoGPT applies it: parameters of two or more dimensions) with state that can be saved and restored, so a
//! killed run resumes exactly where it stopped.

use anyhow::{Context, Result};
use std::path::Path;
use tch::Tensor;

pub struct Adam {
    pub lr: f64,
    weight_decay: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    pub step: i64,
    /// (name, parameter, first moment, second moment), sorted by name.
    state: Vec<(String, Tensor, Tensor, Tensor)>,
}

impl Adam {
    pub fn new(vs: &tch::nn::VarStore, lr: f64, weight_decay: f64) -> Adam {
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let state = vars
            .into_iter()
            .map(|(name, p)| {
                let m = p.zeros_like();
                let v = p.zeros_like();
                (name, p, m, v)
            })
            .collect();
        Adam {
            lr,
            weight_decay,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            step: 0,
            state,
        }
    }

    pub fn zero_grad(&mut self) {
        for (_, p, _, _) in &self.state {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }

    /// One update from the parameters' gradients.
    pub fn step(&mut self) {
        self.step_with(|p| {
            let g = p.grad();
            g.defined().then_some(g)
        });
    }

    /// One update from the gradient `gradient(p)` gives each parameter (in name order; `None`: none, the
    /// parameter and its moments stay as they are).
    pub fn step_with(&mut self, mut gradient: impl FnMut(&Tensor) -> Option<Tensor>) {
        let _guard = tch::no_grad_guard();
        self.step += 1;
        let bc1 = 1.0 - self.beta1.powi(self.step as i32);
        let bc2 = 1.0 - self.beta2.powi(self.step as i32);
        for (_, p, m, v) in &mut self.state {
            let Some(g) = gradient(p) else {
                continue;
            };
            *m = &*m * self.beta1 + &g * (1.0 - self.beta1);
            *v = &*v * self.beta2 + g.square() * (1.0 - self.beta2);
            let update = (&*m / bc1) / ((&*v / bc2).sqrt() + self.eps) * self.lr;
            let mut target = p.shallow_clone();
            if self.weight_decay > 0.0 && p.dim() >= 2 {
                let _ = target.g_mul_scalar_(1.0 - self.lr * self.weight_decay);
            }
            let _ = target.g_sub_(&update);
        }
    }

    /// Both moments of every parameter as `adam.exp_avg.<name>` and `adam.exp_avg_sq.<name>`.
    pub fn named_state(&self) -> Vec<(String, Tensor)> {
        let mut named = Vec::new();
        for (name, _, m, v) in &self.state {
            named.push((format!("adam.exp_avg.{name}"), m.shallow_clone()));
            named.push((format!("adam.exp_avg_sq.{name}"), v.shallow_clone()));
        }
        named
    }

    pub fn load_state(
        &mut self,
        saved: &std::collections::HashMap<String, Tensor>,
        step: i64,
        path: &Path,
    ) -> Result<()> {
        let _guard = tch::no_grad_guard();
        for (name, _, m, v) in &mut self.state {
            for (prefix, slot) in [("adam.exp_avg", m), ("adam.exp_avg_sq", v)] {
                let key = format!("{prefix}.{name}");
                let t = saved
                    .get(&key)
                    .with_context(|| format!("{}: `{key}` missing (not a resumable checkpoint)", path.display()))?;
                slot.copy_(t);
            }
        }
        self.step = step;
        Ok(())
    }
}
