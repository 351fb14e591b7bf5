//! The HALO model on libtorch, readable in one sitting. Parameter names and shapes are the reference
//! implementation's state_dict (see `ModelConfig::parameter_shapes`), so checkpoints interoperate with it.
//!
//! visits [B, T, V] --visit transformer--> history [B, T, E]
//! code module: row t >= 1 is concat(history[t-1], visits[t]) -> masked MLP -> logits of visit t.

use halo_core::config::ModelConfig;
use tch::nn::{self, Init, Path};
use tch::{Kind, Tensor};

/// Pre-LN GPT-2 block over visits.
#[derive(Debug)]
struct Block {
    ln_1: nn::LayerNorm,
    c_attn_w: Tensor,
    c_attn_b: Tensor,
    attn_proj_w: Tensor,
    attn_proj_b: Tensor,
    ln_2: nn::LayerNorm,
    c_fc_w: Tensor,
    c_fc_b: Tensor,
    mlp_proj_w: Tensor,
    mlp_proj_b: Tensor,
    n_head: i64,
}

fn layer_norm(p: Path, cfg: &ModelConfig) -> nn::LayerNorm {
    let c = nn::LayerNormConfig {
        eps: cfg.layer_norm_epsilon,
        ..Default::default()
    };
    nn::layer_norm(p, vec![cfg.n_embd as i64], c)
}

/// Conv1D of the reference: weight [in, out], y = x W + b.
fn conv1d(p: &Path, n_in: i64, n_out: i64) -> (Tensor, Tensor) {
    let w = p.var("weight", &[n_in, n_out], Init::Randn { mean: 0.0, stdev: 0.02 });
    let b = p.var("bias", &[n_out], Init::Const(0.0));
    (w, b)
}

impl Block {
    fn load(p: Path, cfg: &ModelConfig) -> Block {
        let e = cfg.n_embd as i64;
        let (c_attn_w, c_attn_b) = conv1d(&(&p / "attn" / "c_attn"), e, 3 * e);
        let (attn_proj_w, attn_proj_b) = conv1d(&(&p / "attn" / "c_proj"), e, e);
        let (c_fc_w, c_fc_b) = conv1d(&(&p / "mlp" / "c_fc"), e, 4 * e);
        let (mlp_proj_w, mlp_proj_b) = conv1d(&(&p / "mlp" / "c_proj"), 4 * e, e);
        Block {
            ln_1: layer_norm(&p / "ln_1", cfg),
            ln_2: layer_norm(&p / "ln_2", cfg),
            c_attn_w,
            c_attn_b,
            attn_proj_w,
            attn_proj_b,
            c_fc_w,
            c_fc_b,
            mlp_proj_w,
            mlp_proj_b,
            n_head: cfg.n_head as i64,
        }
    }

    fn forward(&self, x: &Tensor, causal: &Tensor) -> Tensor {
        let (b, t, e) = x.size3().unwrap();
        let hd = e / self.n_head;
        let qkv = x.apply(&self.ln_1).matmul(&self.c_attn_w) + &self.c_attn_b;
        let heads = |z: &Tensor| z.view([b, t, self.n_head, hd]).transpose(1, 2);
        let parts = qkv.split(e, 2);
        let (q, k, v) = (heads(&parts[0]), heads(&parts[1]), heads(&parts[2]));
        let scores = q.matmul(&k.transpose(-2, -1)) / (hd as f64).sqrt();
        // The reference writes w*b - 1e10*(1-b); masked_fill gives the same softmax.
        let scores = scores.masked_fill(causal, -1e10);
        let a = scores.softmax(-1, Kind::Float).matmul(&v);
        let a = a.transpose(1, 2).contiguous().view([b, t, e]);
        let x = x + a.matmul(&self.attn_proj_w) + &self.attn_proj_b;
        let h = (x.apply(&self.ln_2).matmul(&self.c_fc_w) + &self.c_fc_b).gelu("tanh");
        &x + h.matmul(&self.mlp_proj_w) + &self.mlp_proj_b
    }
}

/// The visit-level transformer: visits [B, T, V] -> history [B, T, E].
#[derive(Debug)]
pub struct VisitTransformer {
    vis_embed: Tensor,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    ln_f: nn::LayerNorm,
}

impl VisitTransformer {
    pub fn load(p: Path, cfg: &ModelConfig) -> VisitTransformer {
        let (e, v) = (cfg.n_embd as i64, cfg.total_vocab_size as i64);
        let bound = 1.0 / (v as f64).sqrt();
        let vis_embed = (&p / "vis_embed_mat").var("weight", &[e, v], Init::Uniform { lo: -bound, up: bound });
        let pos_embed = (&p / "pos_embed_mat").var(
            "weight",
            &[cfg.n_positions as i64, e],
            Init::Randn { mean: 0.0, stdev: 1.0 },
        );
        let blocks = (0..cfg.n_layer).map(|i| Block::load(&p / "h" / i, cfg)).collect();
        VisitTransformer {
            vis_embed,
            pos_embed,
            blocks,
            ln_f: layer_norm(&p / "ln_f", cfg),
        }
    }

    pub fn forward(&self, visits: &Tensor) -> Tensor {
        let t = visits.size()[1];
        let device = visits.device();
        let positions = Tensor::arange(t, (Kind::Int64, device));
        let mut x = visits.matmul(&self.vis_embed.tr()) + self.pos_embed.index_select(0, &positions);
        let causal = Tensor::ones([t, t], (Kind::Bool, device)).triu(1);
        for block in &self.blocks {
            x = block.forward(&x, &causal);
        }
        x.apply(&self.ln_f)
    }
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

    /// Applies the layer keeping only output rows `rows` (all when `None`).
    fn forward(&self, x: &Tensor, rows: Option<(i64, i64)>) -> Tensor {
        let w = &self.weight * &self.mask;
        match rows {
            None => x.matmul(&w.tr()) + &self.bias,
            Some((start, len)) => x.matmul(&w.narrow(0, start, len).tr()) + self.bias.narrow(0, start, len),
        }
    }
}

/// The code-level module: (history of the previous position, current visit) -> logits of every code.
#[derive(Debug)]
pub enum CodeHead {
    Fine {
        auto1: AutoregressiveLinear,
        auto2: AutoregressiveLinear,
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
        CodeHead::Fine {
            auto1: AutoregressiveLinear::load(&p / "auto1", d),
            auto2: AutoregressiveLinear::load(&p / "auto2", d),
        }
    }

    /// Same as `forward` on rows given as bags of code indices (`codes`, `offsets` as in embedding_bag)
    /// instead of multi-hot visits: the first layer then sums a handful of weight columns per row instead of
    /// multiplying by a mostly-zero [N, V] matrix. Identical results; much less work in training.
    pub fn forward_bags(&self, history: &Tensor, codes: &Tensor, offsets: &Tensor) -> Tensor {
        match self {
            CodeHead::Coarse { weight, bias } => history.matmul(&weight.tr()) + bias,
            CodeHead::Fine { auto1, auto2 } => {
                let l1 = auto1;
                let e = history.size()[1];
                let d = l1.weight.size()[0];
                let w1 = &l1.weight * &l1.mask;
                let from_history = history.matmul(&w1.narrow(1, 0, e).tr());
                let visit_columns = w1.narrow(1, e, d - e).tr().contiguous();
                let (from_visit, _, _, _) =
                    Tensor::embedding_bag::<Tensor>(&visit_columns, codes, offsets, false, 0, false, None, false);
                let h = (from_history + from_visit + &l1.bias).relu();
                auto2.forward(&h, Some((e - 1, d - e)))
            }
        }
    }

    /// history [.., E] of the previous position and visits [.., V] -> logits [.., V].
    pub fn forward(&self, history: &Tensor, visits: &Tensor) -> Tensor {
        match self {
            CodeHead::Coarse { weight, bias } => history.matmul(&weight.tr()) + bias,
            CodeHead::Fine { auto1, auto2 } => {
                let e = history.size().last().copied().unwrap();
                let v = visits.size().last().copied().unwrap();
                let x = Tensor::cat(&[history, visits], -1);
                let h = auto1.forward(&x, None).relu();
                // Only outputs E-1 .. E-1+V are logits; skip computing the others.
                auto2.forward(&h, Some((e - 1, v)))
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
}

impl Halo {
    /// Creates the variables under `root` with the reference's names (`transformer.*`, `ehr_head.*`).
    pub fn load(root: &Path, config: &ModelConfig) -> Halo {
        Halo {
            transformer: VisitTransformer::load(root / "transformer", config),
            head: CodeHead::load(root / "ehr_head", config),
            config: config.clone(),
        }
    }

    /// visits [B, T, V] -> logits [B, T-1, V]: row t predicts visit t+1 from history up to t.
    pub fn forward(&self, visits: &Tensor) -> Tensor {
        let t = visits.size()[1];
        let history = self.transformer.forward(visits);
        self.head
            .forward(&history.narrow(1, 0, t - 1), &visits.narrow(1, 1, t - 1))
    }

    /// Sets the output bias of every code's logit (the `[V]` slice the code module emits) to `logits`.
    /// Used to start training from each code's training log-odds: Adam moves a bias by about `lr` per step,
    /// so from the default init (logit near 0, probability 0.5 for every code) it takes thousands of steps
    /// to learn that most codes are rare; starting from the prior, the steps go to the conditionals instead.
    pub fn set_output_bias(&self, logits: &Tensor) {
        let _guard = tch::no_grad_guard();
        let v = self.config.total_vocab_size as i64;
        let e = self.config.n_embd as i64;
        let mut slice = match &self.head {
            CodeHead::Coarse { bias, .. } => bias.shallow_clone(),
            CodeHead::Fine { auto2, .. } => auto2.bias.narrow(0, e - 1, v),
        };
        slice.copy_(&logits.to_device(slice.device()));
    }

    /// Logits of the scored rows of a batch, with the first code-module layer fed by code bags.
    pub fn forward_batch(&self, batch: &crate::data::Batch) -> Tensor {
        let (b, t, _) = batch.visits.size3().unwrap();
        let history = self.transformer.forward(&batch.visits);
        let e = history.size()[2];
        let h = history
            .narrow(1, 0, t - 1)
            .reshape([b * (t - 1), e])
            .index_select(0, &batch.rows);
        self.head.forward_bags(&h, &batch.bag_codes, &batch.bag_offsets)
    }

    /// Logits of selected rows only: `rows` indexes the flattened [B * (T-1)] predicted visits.
    /// Returns (logits [N, V], the visits they predict [N, V]). The code module, which dominates the
    /// cost, then runs on real visits only, not on padding.
    pub fn forward_rows(&self, visits: &Tensor, rows: &Tensor) -> (Tensor, Tensor) {
        let (b, t, v) = visits.size3().unwrap();
        let history = self.transformer.forward(visits);
        let e = history.size()[2];
        let h = history
            .narrow(1, 0, t - 1)
            .reshape([b * (t - 1), e])
            .index_select(0, rows);
        let x = visits
            .narrow(1, 1, t - 1)
            .reshape([b * (t - 1), v])
            .index_select(0, rows);
        (self.head.forward(&h, &x), x)
    }
}
