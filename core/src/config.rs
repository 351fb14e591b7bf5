//! Model configuration: the serde form is the on-disk contract (`config.json`), `HaloConfig` the validated one.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// `config.json` of a checkpoint; also embedded in a model directory's manifest.
/// Field names follow the reference implementation's HALOConfig.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    /// Longest sequence the model sees: start visit + label visit + up to `n_ctx - 2` visits.
    pub n_ctx: usize,
    /// Rows of the position embedding (>= n_ctx).
    pub n_positions: usize,
    pub layer_norm_epsilon: f64,
    pub total_vocab_size: usize,
    pub code_vocab_size: usize,
    pub label_vocab_size: usize,
    pub special_vocab_size: usize,
    /// HALO-Coarse ablation: no code-level module, visits predicted independently from the history.
    #[serde(default)]
    pub coarse: bool,
    /// The visit transformer also embeds the codes seen so far in the record (the union of its visits up to
    /// and including each one, `transformer.seen_embed_mat`), so that a code recorded once (a diagnosis on the
    /// visit it was made) stays in view at every later visit. Absent in the reference's checkpoints.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub seen_codes: bool,
    /// Every visit's logits also get a learnt bias per value of the record's label visit
    /// (`ehr_head.label_bias.weight` [V, L]: logit j of a visit += the sum of column d over the record's label
    /// codes d): a direct path from the record's sex (and its other labels) to each code. Through the
    /// transformer alone the demo's model gave a fifth of its prenatal codes to men (docs/records.md).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub label_bias: bool,
}

/// Size presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// The paper's: n_embd 768, 12 layers, 12 heads, n_ctx 48.
    Paper,
    /// n_embd 128, 2 layers, 4 heads, n_ctx 64: trains in minutes on a CPU. The longer context keeps whole
    /// records more often (Synthea-1k: 94% of records fit in 62 visits, 85% in the paper's 46), and sampled
    /// records can be no longer than the context (demo: visits per record -12.3% against the training records
    /// at n_ctx 48, +0.9% at 64).
    Small,
}

impl std::str::FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Preset, String> {
        crate::keyword::parse_keyword(s, "preset", &[("small", Preset::Small), ("paper", Preset::Paper)])
    }
}

/// What a preset sets: the model's size and the learning rate it trains with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PresetSettings {
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_ctx: usize,
    pub learning_rate: f64,
}

impl Preset {
    pub fn settings(self) -> PresetSettings {
        let (n_embd, n_layer, n_head, n_ctx, learning_rate) = match self {
            Preset::Paper => (768, 12, 12, 48, 1e-4),
            Preset::Small => (128, 2, 4, 64, 1e-3),
        };
        PresetSettings {
            n_embd,
            n_layer,
            n_head,
            n_ctx,
            learning_rate,
        }
    }
}

impl ModelConfig {
    pub fn new(preset: Preset, code_vocab_size: usize, label_vocab_size: usize) -> ModelConfig {
        let PresetSettings {
            n_embd,
            n_layer,
            n_head,
            n_ctx,
            ..
        } = preset.settings();
        ModelConfig {
            n_embd,
            n_layer,
            n_head,
            n_ctx,
            n_positions: n_ctx + 8,
            layer_norm_epsilon: 1e-5,
            total_vocab_size: code_vocab_size + label_vocab_size + 3,
            code_vocab_size,
            label_vocab_size,
            special_vocab_size: 3,
            coarse: false,
            seen_codes: false,
            label_bias: false,
        }
    }

    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// Width of the code-level module: history vector plus visit.
    pub fn head_width(&self) -> usize {
        self.n_embd + self.total_vocab_size
    }

    /// Hidden units of auto1 that the logits read: the last of its `head_width()` outputs feeds no logit.
    pub fn head_hidden_used(&self) -> usize {
        self.head_width() - 1
    }

    /// Output row of auto2 that is the logit of code 0 (code j's is this + j): output r predicts input
    /// r + 1, and the visit's codes start after the n_embd history inputs.
    pub fn first_logit_row(&self) -> usize {
        self.n_embd - 1
    }

    /// The outputs of auto2 that are logits, one per vocabulary entry in order.
    pub fn logit_rows(&self) -> std::ops::Range<usize> {
        self.first_logit_row()..self.first_logit_row() + self.total_vocab_size
    }

    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |field: &str, msg: String| Err(Error::field(path, field, msg));
        if self.n_embd == 0 || self.n_head == 0 || !self.n_embd.is_multiple_of(self.n_head) {
            return bad(
                "n_head",
                format!(
                    "n_embd {} must be a positive multiple of n_head {}",
                    self.n_embd, self.n_head
                ),
            );
        }
        if self.n_ctx < 3 || self.n_positions < self.n_ctx {
            return bad(
                "n_ctx",
                format!("need 3 <= n_ctx ({}) <= n_positions ({})", self.n_ctx, self.n_positions),
            );
        }
        if self.special_vocab_size != 3 || self.total_vocab_size != self.code_vocab_size + self.label_vocab_size + 3 {
            return bad(
                "total_vocab_size",
                format!(
                    "{} != code {} + label {} + 3",
                    self.total_vocab_size, self.code_vocab_size, self.label_vocab_size
                ),
            );
        }
        if self.layer_norm_epsilon.is_nan() || self.layer_norm_epsilon <= 0.0 {
            return bad("layer_norm_epsilon", "must be positive".into());
        }
        Ok(())
    }

    /// Names and shapes of every parameter, in the reference implementation's state_dict naming.
    /// The one weight-name scheme used by the trainer, the exporter and the tests.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (e, v, d) = (self.n_embd, self.total_vocab_size, self.head_width());
        let mut out = vec![
            ("transformer.vis_embed_mat.weight".to_string(), vec![e, v]),
            (
                "transformer.pos_embed_mat.weight".to_string(),
                vec![self.n_positions, e],
            ),
        ];
        if self.seen_codes {
            out.push(("transformer.seen_embed_mat.weight".to_string(), vec![e, v]));
        }
        for i in 0..self.n_layer {
            let p = format!("transformer.h.{i}");
            out.extend([
                (format!("{p}.ln_1.weight"), vec![e]),
                (format!("{p}.ln_1.bias"), vec![e]),
                (format!("{p}.attn.c_attn.weight"), vec![e, 3 * e]),
                (format!("{p}.attn.c_attn.bias"), vec![3 * e]),
                (format!("{p}.attn.c_proj.weight"), vec![e, e]),
                (format!("{p}.attn.c_proj.bias"), vec![e]),
                (format!("{p}.ln_2.weight"), vec![e]),
                (format!("{p}.ln_2.bias"), vec![e]),
                (format!("{p}.mlp.c_fc.weight"), vec![e, 4 * e]),
                (format!("{p}.mlp.c_fc.bias"), vec![4 * e]),
                (format!("{p}.mlp.c_proj.weight"), vec![4 * e, e]),
                (format!("{p}.mlp.c_proj.bias"), vec![e]),
            ]);
        }
        out.push(("transformer.ln_f.weight".to_string(), vec![e]));
        out.push(("transformer.ln_f.bias".to_string(), vec![e]));
        if self.coarse {
            out.push(("ehr_head.weight".to_string(), vec![v, e]));
            out.push(("ehr_head.bias".to_string(), vec![v]));
        } else {
            for name in ["auto1", "auto2"] {
                out.push((format!("ehr_head.{name}.weight"), vec![d, d]));
                out.push((format!("ehr_head.{name}.bias"), vec![d]));
            }
        }
        if self.label_bias {
            out.push(("ehr_head.label_bias.weight".to_string(), vec![v, self.label_vocab_size]));
        }
        out
    }

    pub fn read(path: &Path) -> Result<ModelConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg: ModelConfig = serde_json::from_str(&text)
            .map_err(|e| Error::line(path, e.line(), format!("not a HALO config.json: {e}")))?;
        cfg.validate(path)?;
        Ok(cfg)
    }
}
