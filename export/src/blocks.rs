//! Pieces shared by the two visit-transformer graphs: the visit embedding, the pre-LN GPT-2 blocks and
//! the final LayerNorm, over activations of shape [batch, T, E].

use crate::builder::{Attr, GraphBuilder};
use crate::checkpoint::Checkpoint;
use halo_core::config::ModelConfig;

/// One layer's key/value cache in the step graph: the earlier positions' keys, transposed [batch, n_head,
/// head_dim, past_len], and values [batch, n_head, past_len, head_dim] (graph inputs), and the names of the
/// graph outputs the step's concatenations write (the same with the step's position added).
pub struct StepCache {
    pub past_key_t: String,
    pub past_value: String,
    pub present_key_t: String,
    pub present_value: String,
}

/// Shape constants used by every layer, added once per graph.
pub struct Blocks<'a> {
    ck: &'a Checkpoint,
    /// [0, 0, n_head, head_dim]: split the last axis into heads.
    split_heads: String,
    /// [0, 0, n_embd]: merge heads back.
    merge_heads: String,
    /// [E, E, E]: the q, k, v parts of c_attn's output.
    qkv_sizes: String,
}

impl<'a> Blocks<'a> {
    pub fn new(b: &mut GraphBuilder, ck: &'a Checkpoint) -> Blocks<'a> {
        let c = &ck.config;
        let (e, h, hd) = (c.n_embd as i64, c.n_head as i64, c.head_dim() as i64);
        Blocks {
            ck,
            split_heads: b.const_i64("shape.split_heads", &[4], &[0, 0, h, hd]),
            merge_heads: b.const_i64("shape.merge_heads", &[3], &[0, 0, e]),
            qkv_sizes: b.const_i64("qkv_sizes", &[3], &[e, e, e]),
        }
    }

    fn config(&self) -> &ModelConfig {
        &self.ck.config
    }

    /// A parameter as a graph weight, named (like the checkpoint tensor) by its path in the current scope.
    fn param(&self, b: &mut GraphBuilder, name: &str) -> String {
        let t = self.ck.tensor(&b.scoped_name(name));
        b.weight(name, &t.shape, &t.data)
    }

    /// `visits` [B, T, V] (or [B, V]) @ vis_embed_mat.weight^T -> [B, T, E] (or [B, E]).
    pub fn embed_visits(&self, b: &mut GraphBuilder, visits: &str) -> String {
        let t = self.ck.tensor("transformer.vis_embed_mat.weight");
        let (e, v) = (t.shape[0], t.shape[1]);
        let w = b.weight("transformer.vis_embed_mat.weight_t", &[v, e], &transpose(&t.data, e, v));
        b.matmul("embedded", visits, &w)
    }

    /// `embedded` plus, for a model with `ModelConfig::seen_codes`, `seen` @ seen_embed_mat.weight^T
    /// (`seen` as `visits`: the codes seen up to each visit). `embedded` itself without.
    pub fn add_seen(&self, b: &mut GraphBuilder, embedded: &str, seen: Option<&str>) -> String {
        let Some(seen) = seen else {
            return embedded.to_string();
        };
        let t = self.ck.tensor("transformer.seen_embed_mat.weight");
        let (e, v) = (t.shape[0], t.shape[1]);
        let w = b.weight(
            "transformer.seen_embed_mat.weight_t",
            &[v, e],
            &transpose(&t.data, e, v),
        );
        let from_seen = b.matmul("seen_embedded", seen, &w);
        b.add("embedded_with_seen", embedded, &from_seen)
    }

    /// The position embedding table [n_positions, E].
    pub fn position_table(&self, b: &mut GraphBuilder) -> String {
        self.param(b, "transformer.pos_embed_mat.weight")
    }

    /// LayerNorm `name` (its weight and bias in the current scope).
    pub fn layer_norm(&self, b: &mut GraphBuilder, x: &str, name: &str) -> String {
        let scale = self.param(b, &format!("{name}.weight"));
        let bias = self.param(b, &format!("{name}.bias"));
        b.layer_norm(name, x, &scale, &bias, self.config().layer_norm_epsilon as f32)
    }

    /// GPT-2's Conv1D `name`: x @ W + b, W [in, out] as stored.
    fn conv1d(&self, b: &mut GraphBuilder, x: &str, name: &str) -> String {
        let w = self.param(b, &format!("{name}.weight"));
        let bias = self.param(b, &format!("{name}.bias"));
        let xw = b.matmul(&format!("{name}.matmul"), x, &w);
        b.add(name, &xw, &bias)
    }

    /// Block `i`: x + attn(ln_1(x)), then + mlp(ln_2(x)), as `Block::forward` of the trainer's model.rs.
    /// `cache` holds earlier positions' keys and values (the step graph), which the block extends into its
    /// outputs; `future` is a bool [T, T] mask of the positions a query may not see (the full graph). Returns
    /// the new activations.
    pub fn block(
        &self,
        b: &mut GraphBuilder,
        i: usize,
        x: &str,
        cache: Option<&StepCache>,
        future: Option<&str>,
    ) -> String {
        b.scoped(&format!("transformer.h.{i}"), |b| {
            let h = self.layer_norm(b, x, "ln_1");
            let a = b.scoped("attn", |b| self.attention(b, &h, cache, future));
            let x = b.add("after_attn", x, &a);
            let h = self.layer_norm(b, &x, "ln_2");
            let m = b.scoped("mlp", |b| self.mlp(b, &h));
            b.add("out", &x, &m)
        })
    }

    /// Causal self-attention, output projection included. The 1/sqrt(head_dim) score scale is folded
    /// into the query columns of c_attn.
    fn attention(&self, b: &mut GraphBuilder, x: &str, cache: Option<&StepCache>, future: Option<&str>) -> String {
        let c = self.config();
        let e = c.n_embd;
        let scale = 1.0 / (c.head_dim() as f32).sqrt();
        let w = self.ck.tensor(&b.scoped_name("c_attn.weight"));
        let mut w_data = w.data.clone();
        for row in w_data.chunks_exact_mut(3 * e) {
            row[..e].iter_mut().for_each(|v| *v *= scale);
        }
        let mut bias_data = self.ck.tensor(&b.scoped_name("c_attn.bias")).data.clone();
        bias_data[..e].iter_mut().for_each(|v| *v *= scale);
        let w = b.weight("c_attn.weight_qscaled", &w.shape, &w_data);
        let bias = b.weight("c_attn.bias_qscaled", &[3 * e], &bias_data);

        let qkv = b.matmul("qkv.matmul", x, &w);
        let qkv = b.add("qkv", &qkv, &bias);
        let parts = b.split("qkv", &qkv, &self.qkv_sizes, 3, -1);
        let q = self.heads(b, &parts[0], "q");
        let k = self.heads(b, &parts[1], "k");
        let v = self.heads(b, &parts[2], "v");
        let kt = b.transpose("k_t", &k, &[0, 1, 3, 2]);
        // The step graph: this position's key and value appended to the cache, straight into the outputs (the
        // keys stay transposed, as the scores read them).
        let (kt, v) = match cache {
            Some(cache) => {
                let axis3 = [("axis", Attr::Int(3))];
                b.node_to("Concat", &cache.present_key_t, &[&cache.past_key_t, &kt], &axis3);
                let axis2 = [("axis", Attr::Int(2))];
                b.node_to("Concat", &cache.present_value, &[&cache.past_value, &v], &axis2);
                (cache.present_key_t.clone(), cache.present_value.clone())
            }
            None => (kt, v),
        };
        let mut scores = b.matmul("scores", &q, &kt);
        if let Some(future) = future {
            let hidden = b.const_f32("hidden", &[], &[-1e9]);
            scores = b.select("scores_masked", future, &hidden, &scores);
        }
        let probs = b.softmax("probs", &scores, -1);
        let context = b.matmul("context", &probs, &v);
        let context = b.transpose("context_t", &context, &[0, 2, 1, 3]);
        let merged = b.reshape("merged", &context, &self.merge_heads);
        self.conv1d(b, &merged, "c_proj")
    }

    /// [B, T, E] -> [B, n_head, T, head_dim]
    fn heads(&self, b: &mut GraphBuilder, x: &str, name: &str) -> String {
        let split = b.reshape(&format!("{name}.split"), x, &self.split_heads);
        b.transpose(name, &split, &[0, 2, 1, 3])
    }

    /// The feed-forward part, output projection included.
    fn mlp(&self, b: &mut GraphBuilder, x: &str) -> String {
        let h = self.conv1d(b, x, "c_fc");
        let h = b.gelu_tanh("gelu", &h);
        self.conv1d(b, &h, "c_proj")
    }
}

/// Transposes a row-major [rows, cols] matrix.
pub fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    assert_eq!(data.len(), rows * cols);
    let mut out = vec![0.0; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn transpose_moves_rows_to_columns() {
        assert_eq!(
            super::transpose(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3),
            [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
    }
}
