//! The HALO model on libtorch, readable in one sitting. Parameter names and shapes are the reference
//! implementation's state_dict (see `ModelConfig::parameter_shapes`), so checkpoints interoperate with it;
//! a model with `ModelConfig::seen_codes` adds one matrix, `transformer.seen_embed_mat`, that it lacks.
//!
//! visits [B, T, V] (and the codes seen so far, their running union) --visit transformer--> history [B, T, E]
//! code module: row t >= 1 is `concat(history[t-1], visits[t])` -> masked MLP -> logits of visit t.

use crate::dp::{Layout, Part, Tape};
use halo_core::config::ModelConfig;
use tch::nn::{self, Init, Path};
use tch::{Kind, Tensor};

/// GPT-2's Conv1D: weight [in, out], y = x W + b.
#[derive(Debug)]
struct Conv1D {
    weight: Tensor,
    bias: Tensor,
}

impl Conv1D {
    fn load(p: Path, n_in: i64, n_out: i64) -> Conv1D {
        Conv1D {
            weight: p.var("weight", &[n_in, n_out], Init::Randn { mean: 0.0, stdev: 0.02 }),
            bias: p.var("bias", &[n_out], Init::Const(0.0)),
        }
    }

    /// `x W + b`, kept on `tape` when there is one.
    fn forward(&self, x: &Tensor, tape: Option<&Tape>) -> Tensor {
        let y = x.matmul(&self.weight) + &self.bias;
        if let Some(tape) = tape {
            tape.keep(&y, Layout::Sequence, vec![Part::weight(x), Part::Bias]);
        }
        y
    }

    /// `residual + x W + b`, summed in that order (the order every checkpoint and fixture was trained with);
    /// in training with dropout `p > 0` (or with a tape), `residual + dropout(x W + b)`.
    fn add_to(&self, residual: &Tensor, x: &Tensor, p: f64, tape: Option<&Tape>) -> Tensor {
        if p > 0.0 || tape.is_some() {
            residual + dropout(self.forward(x, tape), p)
        } else {
            residual + x.matmul(&self.weight) + &self.bias
        }
    }
}

/// Dropout `p` of training; `x` itself, untouched, when `p` is 0.
/// The noise of a training step (all zero outside training).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Noise {
    /// Dropout on the visit embeddings, the transformer's branches and the code module's hidden layer.
    pub dropout: f64,
    /// Probability that a code of a visit is hidden from the code module's input, the visit so far that each
    /// code is conditioned on, though not from its targets (see `TrainSettings::prefix_dropout`).
    pub prefix_dropout: f64,
}

impl Noise {
    pub const NONE: Noise = Noise {
        dropout: 0.0,
        prefix_dropout: 0.0,
    };
}

fn dropout(x: Tensor, p: f64) -> Tensor {
    if p > 0.0 {
        x.dropout(p, true)
    } else {
        x
    }
}

/// Causal multi-head self-attention over visits; `forward` returns the heads merged, before `c_proj`.
#[derive(Debug)]
struct Attention {
    c_attn: Conv1D,
    c_proj: Conv1D,
    n_head: i64,
}

impl Attention {
    fn load(p: Path, cfg: &ModelConfig) -> Attention {
        let e = cfg.n_embd as i64;
        Attention {
            c_attn: Conv1D::load(&p / "c_attn", e, 3 * e),
            c_proj: Conv1D::load(&p / "c_proj", e, e),
            n_head: cfg.n_head as i64,
        }
    }

    fn forward(&self, x: &Tensor, causal: &Tensor, tape: Option<&Tape>) -> Tensor {
        let (b, t, e) = x.size3().unwrap();
        let head_dim = e / self.n_head;
        let heads = |z: &Tensor| z.view([b, t, self.n_head, head_dim]).transpose(1, 2);
        let qkv = self.c_attn.forward(x, tape).split(e, 2);
        let (q, k, v) = (heads(&qkv[0]), heads(&qkv[1]), heads(&qkv[2]));
        let scores = q.matmul(&k.transpose(-2, -1)) / (head_dim as f64).sqrt();
        // The reference writes w*b - 1e10*(1-b); masked_fill gives the same softmax.
        let scores = scores.masked_fill(causal, -1e10);
        let a = scores.softmax(-1, Kind::Float).matmul(&v);
        a.transpose(1, 2).contiguous().view([b, t, e])
    }
}

/// The feed-forward part; `forward` returns the hidden activations, before `c_proj`.
#[derive(Debug)]
struct Mlp {
    c_fc: Conv1D,
    c_proj: Conv1D,
}

impl Mlp {
    fn load(p: Path, cfg: &ModelConfig) -> Mlp {
        let e = cfg.n_embd as i64;
        Mlp {
            c_fc: Conv1D::load(&p / "c_fc", e, 4 * e),
            c_proj: Conv1D::load(&p / "c_proj", 4 * e, e),
        }
    }

    fn forward(&self, x: &Tensor, tape: Option<&Tape>) -> Tensor {
        self.c_fc.forward(x, tape).gelu("tanh")
    }
}

/// Pre-LN GPT-2 block over visits.
#[derive(Debug)]
struct Block {
    ln_1: LayerNorm,
    attn: Attention,
    ln_2: LayerNorm,
    mlp: Mlp,
}

impl Block {
    fn load(p: Path, cfg: &ModelConfig) -> Block {
        Block {
            ln_1: layer_norm(&p / "ln_1", cfg),
            attn: Attention::load(&p / "attn", cfg),
            ln_2: layer_norm(&p / "ln_2", cfg),
            mlp: Mlp::load(&p / "mlp", cfg),
        }
    }

    /// x + attn(ln_1(x)), then + mlp(ln_2(x)); each branch's projection is added by its `c_proj` (with
    /// dropout `p` on the branch in training).
    fn forward(&self, x: &Tensor, causal: &Tensor, p: f64, tape: Option<&Tape>) -> Tensor {
        let attended = self.attn.forward(&self.ln_1.forward(x, tape), causal, tape);
        let x = self.attn.c_proj.add_to(x, &attended, p, tape);
        let hidden = self.mlp.forward(&self.ln_2.forward(&x, tape), tape);
        self.mlp.c_proj.add_to(&x, &hidden, p, tape)
    }
}

/// GPT-2's layer norm over the embedding.
#[derive(Debug)]
struct LayerNorm {
    inner: nn::LayerNorm,
    eps: f64,
}

impl LayerNorm {
    /// libtorch's fused layer norm; with a tape, the normalization and the affine part apart, so that the
    /// normalized input of the weight can be kept.
    fn forward(&self, x: &Tensor, tape: Option<&Tape>) -> Tensor {
        let Some(tape) = tape else {
            return x.apply(&self.inner);
        };
        let (weight, bias) = (self.inner.ws.as_ref(), self.inner.bs.as_ref());
        let (weight, bias) = (weight.expect("affine"), bias.expect("affine"));
        let normalized = x.layer_norm(
            &self.inner.normalized_shape,
            None::<Tensor>,
            None::<Tensor>,
            self.eps,
            true,
        );
        let y = &normalized * weight + bias;
        tape.keep(&y, Layout::Sequence, vec![Part::Scale { normalized }, Part::Bias]);
        y
    }
}

fn layer_norm(p: Path, cfg: &ModelConfig) -> LayerNorm {
    let c = nn::LayerNormConfig {
        eps: cfg.layer_norm_epsilon,
        ..Default::default()
    };
    LayerNorm {
        inner: nn::layer_norm(p, vec![cfg.n_embd as i64], c),
        eps: cfg.layer_norm_epsilon,
    }
}

/// The visit-level transformer: visits [B, T, V] -> history [B, T, E].
#[derive(Debug)]
pub struct VisitTransformer {
    vis_embed: Tensor,
    /// Embedding of the codes seen so far ([`ModelConfig::seen_codes`]).
    seen_embed: Option<Tensor>,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
}

impl VisitTransformer {
    pub fn load(p: Path, cfg: &ModelConfig) -> VisitTransformer {
        let (e, v) = (cfg.n_embd as i64, cfg.total_vocab_size as i64);
        let bound = 1.0 / (v as f64).sqrt();
        let vis_embed = (&p / "vis_embed_mat").var("weight", &[e, v], Init::Uniform { lo: -bound, up: bound });
        let seen_embed = cfg
            .seen_codes
            .then(|| (&p / "seen_embed_mat").var("weight", &[e, v], Init::Uniform { lo: -bound, up: bound }));
        let pos_embed = (&p / "pos_embed_mat").var(
            "weight",
            &[cfg.n_positions as i64, e],
            Init::Randn { mean: 0.0, stdev: 1.0 },
        );
        let blocks = (0..cfg.n_layer).map(|i| Block::load(&p / "h" / i, cfg)).collect();
        VisitTransformer {
            vis_embed,
            seen_embed,
            pos_embed,
            blocks,
            ln_f: layer_norm(&p / "ln_f", cfg),
        }
    }

    pub fn forward(&self, visits: &Tensor) -> Tensor {
        self.forward_with_dropout(visits, 0.0)
    }

    /// `forward` in training: dropout `p` on the embeddings and on each block's branches (GPT-2's places).
    pub fn forward_with_dropout(&self, visits: &Tensor, p: f64) -> Tensor {
        self.forward_taped(visits, p, None)
    }

    /// `forward_with_dropout`, keeping each layer's input and output on `tape` when there is one.
    pub fn forward_taped(&self, visits: &Tensor, p: f64, tape: Option<&Tape>) -> Tensor {
        let t = visits.size()[1];
        let device = visits.device();
        let positions = Tensor::arange(t, (Kind::Int64, device));
        let mut embedded = visits.matmul(&self.vis_embed.tr()) + self.pos_embed.index_select(0, &positions);
        let mut parts = vec![Part::weight(visits), Part::Position];
        if let Some(seen_embed) = &self.seen_embed {
            // Visits are 0/1, so the running count capped at 1 is the union up to each one.
            let seen = seen_codes(visits);
            embedded += seen.matmul(&seen_embed.tr());
            parts.push(Part::weight(&seen));
        }
        if let Some(tape) = tape {
            tape.keep(&embedded, Layout::Sequence, parts);
        }
        let mut x = dropout(embedded, p);
        let causal = Tensor::ones([t, t], (Kind::Bool, device)).triu(1);
        for block in &self.blocks {
            x = block.forward(&x, &causal, p, tape);
        }
        self.ln_f.forward(&x, tape)
    }
}

/// visits [B, T, V] (0/1) -> the codes seen in visits 0..=t at each t, [B, T, V].
pub fn seen_codes(visits: &Tensor) -> Tensor {
    visits.cumsum(1, Kind::Float).clamp_max(1.0)
}

/// Linear layer whose weight [out, in] is masked to in <= out: HALO's autoregressive code module layer.
#[derive(Debug)]
pub struct AutoregressiveLinear {
    weight: Tensor,
    bias: Tensor,
    mask: Tensor,
}

impl AutoregressiveLinear {
    fn load(p: Path, d: i64) -> AutoregressiveLinear {
        let bound = 1.0 / (d as f64).sqrt();
        let weight = p.var("weight", &[d, d], Init::Uniform { lo: -bound, up: bound });
        let bias = p.var("bias", &[d], Init::Uniform { lo: -bound, up: bound });
        let mask = Tensor::ones([d, d], (Kind::Float, p.device())).tril(0);
        AutoregressiveLinear { weight, bias, mask }
    }

    /// Applies the layer keeping only output rows `rows` (all when `None`); with a tape, keeps the layer on
    /// it (rows: the scored rows of a batch).
    fn forward(&self, x: &Tensor, rows: Option<(i64, i64)>, tape: Option<&Tape>) -> Tensor {
        let w = &self.weight * &self.mask;
        let (y, first_row) = match rows {
            None => (x.matmul(&w.tr()) + &self.bias, 0),
            Some((start, len)) => (
                x.matmul(&w.narrow(0, start, len).tr()) + self.bias.narrow(0, start, len),
                start,
            ),
        };
        if let Some(tape) = tape {
            // Output row o (of the whole layer) uses inputs i <= o.
            let weight = Part::Weight {
                input: x.shallow_clone(),
                mask_offset: Some(first_row),
            };
            tape.keep(&y, Layout::ScoredRows, vec![weight, Part::Bias]);
        }
        y
    }
}

/// The code-level module: (history of the previous position, current visit) -> logits of every code.
#[derive(Debug)]
pub enum CodeHead {
    Fine {
        auto1: AutoregressiveLinear,
        auto2: AutoregressiveLinear,
        /// (first row, count) of auto2's outputs that are the logits (`ModelConfig::logit_rows`).
        logit_rows: (i64, i64),
    },
    /// HALO-Coarse: every code predicted from the history alone.
    Coarse { weight: Tensor, bias: Tensor },
}

impl CodeHead {
    pub fn load(p: Path, cfg: &ModelConfig) -> CodeHead {
        let (e, v) = (cfg.n_embd as i64, cfg.total_vocab_size as i64);
        if cfg.coarse {
            let bound = 1.0 / (e as f64).sqrt();
            return CodeHead::Coarse {
                weight: p.var("weight", &[v, e], Init::Uniform { lo: -bound, up: bound }),
                bias: p.var("bias", &[v], Init::Uniform { lo: -bound, up: bound }),
            };
        }
        let d = e + v;
        let rows = cfg.logit_rows();
        CodeHead::Fine {
            auto1: AutoregressiveLinear::load(&p / "auto1", d),
            auto2: AutoregressiveLinear::load(&p / "auto2", d),
            logit_rows: (rows.start as i64, rows.len() as i64),
        }
    }

    /// Same as `forward` on rows given as bags of code indices (`codes`, `offsets` as in embedding_bag)
    /// instead of multi-hot visits: the first layer then sums a handful of weight columns per row instead of
    /// multiplying by a mostly-zero [N, V] matrix. Identical results; much less work in training.
    /// In training, dropout applies to the hidden layer (the code module holds most of the parameters,
    /// and with them most of what a model can memorize of single records), and each code of the input is
    /// hidden with probability `noise.prefix_dropout`.
    /// With a tape, each layer is kept on it (rows: the scored rows of a batch).
    pub fn forward_bags(
        &self,
        history: &Tensor,
        codes: &Tensor,
        offsets: &Tensor,
        noise: Noise,
        tape: Option<&Tape>,
    ) -> Tensor {
        match self {
            CodeHead::Coarse { weight, bias } => {
                let y = history.matmul(&weight.tr()) + bias;
                if let Some(tape) = tape {
                    tape.keep(&y, Layout::ScoredRows, vec![Part::weight(history), Part::Bias]);
                }
                y
            }
            CodeHead::Fine {
                auto1: l1,
                auto2,
                logit_rows,
            } => {
                let e = history.size()[1];
                let d = l1.weight.size()[0];
                let w1 = &l1.weight * &l1.mask;
                let from_history = history.matmul(&w1.narrow(1, 0, e).tr());
                let visit_columns = w1.narrow(1, e, d - e).tr().contiguous();
                // The codes the input keeps: all, or each with probability 1 - prefix_dropout (as weights of the
                // bags' sums).
                let kept = (noise.prefix_dropout > 0.0).then(|| {
                    Tensor::empty([codes.size()[0]], (Kind::Float, codes.device()))
                        .bernoulli_float_(1.0 - noise.prefix_dropout)
                });
                let bag = |table: &Tensor| {
                    let (sum, _, _, _) = Tensor::embedding_bag(
                        table,
                        codes,
                        offsets,
                        false,
                        0,
                        false,
                        kept.as_ref().map(Tensor::shallow_clone),
                        false,
                    );
                    sum
                };
                let from_visit = bag(&visit_columns);
                let before_relu = from_history + from_visit + &l1.bias;
                if let Some(tape) = tape {
                    // auto1's input as a dense row: the history, then the visit's codes as a multi-hot
                    // (the bags summed over an identity matrix).
                    let identity = Tensor::eye(d - e, (Kind::Float, history.device()));
                    let visits = bag(&identity);
                    let weight = Part::Weight {
                        input: Tensor::cat(&[history, &visits], 1),
                        mask_offset: Some(0),
                    };
                    tape.keep(&before_relu, Layout::ScoredRows, vec![weight, Part::Bias]);
                }
                let h = dropout(before_relu.relu(), noise.dropout);
                auto2.forward(&h, Some(*logit_rows), tape)
            }
        }
    }

    /// history [.., E] of the previous position and visits [.., V] -> logits [.., V].
    pub fn forward(&self, history: &Tensor, visits: &Tensor) -> Tensor {
        match self {
            CodeHead::Coarse { weight, bias } => history.matmul(&weight.tr()) + bias,
            CodeHead::Fine {
                auto1,
                auto2,
                logit_rows,
            } => {
                let x = Tensor::cat(&[history, visits], -1);
                let h = auto1.forward(&x, None, None).relu();
                // Only the logit rows are computed.
                auto2.forward(&h, Some(*logit_rows), None)
            }
        }
    }
}

/// HALO: visit transformer plus code-level module.
#[derive(Debug)]
pub struct Halo {
    pub config: ModelConfig,
    pub transformer: VisitTransformer,
    pub head: CodeHead,
    /// `ehr_head.label_bias.weight` [V, L] of a model with `ModelConfig::label_bias`.
    pub label_bias: Option<Tensor>,
    /// In training, which rows of the label bias learn ([V, 1], 1 or 0; `Halo::restrict_label_bias`): the
    /// others stay at their start.
    label_bias_rows: Option<Tensor>,
}

impl Halo {
    /// Creates the variables under `root` with the reference's names (`transformer.*`, `ehr_head.*`).
    pub fn load(root: &Path, config: &ModelConfig) -> Halo {
        Halo {
            transformer: VisitTransformer::load(root / "transformer", config),
            head: CodeHead::load(root / "ehr_head", config),
            label_bias: config.label_bias.then(|| {
                (root / "ehr_head" / "label_bias").var(
                    "weight",
                    &[config.total_vocab_size as i64, config.label_vocab_size as i64],
                    Init::Const(0.0),
                )
            }),
            label_bias_rows: None,
            config: config.clone(),
        }
    }

    /// visits [B, T, V] -> logits [B, T-1, V]: row t predicts visit t+1 from history up to t.
    pub fn forward(&self, visits: &Tensor) -> Tensor {
        let (b, t, v) = visits.size3().unwrap();
        let history = self.transformer.forward(visits);
        let logits = self
            .head
            .forward(&history.narrow(1, 0, t - 1), &visits.narrow(1, 1, t - 1));
        match self.row_label_bias(visits) {
            Some(bias) => logits + bias.view([b, t - 1, v]),
            None => logits,
        }
    }

    /// Lets only the rows of the label bias where `rows` (one per vocabulary entry) is true learn (their
    /// gradient through the others is zero, so those keep their start).
    pub fn restrict_label_bias(&mut self, rows: &[bool]) {
        let mask: Vec<f32> = rows.iter().map(|&r| f32::from(u8::from(r))).collect();
        let device = self.label_bias.as_ref().map_or(tch::Device::Cpu, |w| w.device());
        self.label_bias_rows = Some(Tensor::from_slice(&mask).view([-1, 1]).to_device(device));
    }

    /// With a label bias: per row of the shifted targets [B * (T-1), V], the bias of its record's label
    /// codes (read from the label visit, `visits[:, 1]`); zero on the row that predicts the label visit.
    fn row_label_bias(&self, visits: &Tensor) -> Option<Tensor> {
        let weight = self.label_bias.as_ref()?;
        let (b, t, _) = visits.size3().unwrap();
        let (c, l) = (self.config.code_vocab_size as i64, self.config.label_vocab_size as i64);
        let weight = match &self.label_bias_rows {
            Some(rows) => weight * rows,
            None => weight.shallow_clone(),
        };
        let per_record = visits.select(1, 1).narrow(1, c, l).matmul(&weight.tr());
        let visit_rows = Tensor::ones([t - 1], (Kind::Float, visits.device()));
        let _ = visit_rows.narrow(0, 0, 1).fill_(0.0);
        let per_row = per_record.unsqueeze(1) * visit_rows.view([1, t - 1, 1]);
        Some(per_row.reshape([b * (t - 1), -1]))
    }

    /// Sets the output bias of every code's logit (the `[V]` slice the code module emits) to `logits`.
    /// Used to start training from each code's training log-odds: Adam moves a bias by about `lr` per step,
    /// so from the default init (logit near 0, probability 0.5 for every code) it takes thousands of steps
    /// to learn that most codes are rare; starting from the prior, the steps go to the conditionals instead.
    pub fn set_output_bias(&self, logits: &Tensor) {
        let _guard = tch::no_grad_guard();
        let mut slice = match &self.head {
            CodeHead::Coarse { bias, .. } => bias.shallow_clone(),
            CodeHead::Fine {
                auto2,
                logit_rows: (first, count),
                ..
            } => auto2.bias.narrow(0, *first, *count),
        };
        slice.copy_(&logits.to_device(slice.device()));
    }

    /// Logits of the scored rows of a batch, with the first code-module layer fed by code bags.
    pub fn forward_batch(&self, batch: &crate::data::Batch) -> Tensor {
        self.forward_batch_with_noise(batch, Noise::NONE)
    }

    /// `forward_batch` in training, with `noise` (see `VisitTransformer::forward_with_dropout` and
    /// `CodeHead::forward_bags`).
    pub fn forward_batch_with_noise(&self, batch: &crate::data::Batch, noise: Noise) -> Tensor {
        self.forward_batch_taped(batch, noise, None)
    }

    /// `forward_batch_with_noise`, keeping every layer's input and output on `tape` when there is one
    /// (per-record gradient norms, `crate::dp`).
    pub fn forward_batch_taped(&self, batch: &crate::data::Batch, noise: Noise, tape: Option<&Tape>) -> Tensor {
        let (b, t, _) = batch.visits.size3().unwrap();
        let history = self.transformer.forward_taped(&batch.visits, noise.dropout, tape);
        let e = history.size()[2];
        let h = history
            .narrow(1, 0, t - 1)
            .reshape([b * (t - 1), e])
            .index_select(0, &batch.rows);
        let logits = self
            .head
            .forward_bags(&h, &batch.bag_codes, &batch.bag_offsets, noise, tape);
        match self.row_label_bias(&batch.visits) {
            Some(bias) => logits + bias.index_select(0, &batch.rows),
            None => logits,
        }
    }
}
