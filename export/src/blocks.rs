//! Pieces shared by the two visit-transformer graphs: the visit embedding, the pre-LN GPT-2 blocks and
//! the final LayerNorm, over activations of shape [batch, T, E].

use crate::builder::{Attr, GraphBuilder};
use crate::checkpoint::Checkpoint;
use halo_core::config::ModelConfig;

/// Keys and values of one layer, [batch, n_head, T, head_dim] each.
pub struct KeyValue {
    pub key: String,
    pub value: String,
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

    /// A parameter as a graph weight, named after the checkpoint tensor.
    fn param(&self, b: &mut GraphBuilder, name: &str) -> String {
        let t = self.ck.tensor(name);
        b.weight(name, &t.shape, &t.data)
    }

    /// `visits` [B, T, V] (or [B, V]) @ vis_embed_mat.weight^T -> [B, T, E] (or [B, E]).
    pub fn embed_visits(&self, b: &mut GraphBuilder, visits: &str) -> String {
        let t = self.ck.tensor("transformer.vis_embed_mat.weight");
        let (e, v) = (t.shape[0], t.shape[1]);
        let w = b.weight("transformer.vis_embed_mat.weight_t", &[v, e], &transpose(&t.data, e, v));
        b.node("MatMul", "embedded", &[visits, &w], &[])
    }

    /// The position embedding table [n_positions, E].
    pub fn position_table(&self, b: &mut GraphBuilder) -> String {
        self.param(b, "transformer.pos_embed_mat.weight")
    }

    pub fn layer_norm(&self, b: &mut GraphBuilder, x: &str, prefix: &str) -> String {
        let scale = self.param(b, &format!("{prefix}.weight"));
        let bias = self.param(b, &format!("{prefix}.bias"));
        let eps = self.config().layer_norm_epsilon as f32;
        b.node(
            "LayerNormalization",
            prefix,
            &[x, &scale, &bias],
            &[("axis", Attr::Int(-1)), ("epsilon", Attr::Float(eps))],
        )
    }

    /// y = x @ W + b with W [in, out] as stored (GPT-2 Conv1D layout).
    fn linear(&self, b: &mut GraphBuilder, x: &str, prefix: &str) -> String {
        let w = self.param(b, &format!("{prefix}.weight"));
        let bias = self.param(b, &format!("{prefix}.bias"));
        let xw = b.node("MatMul", &format!("{prefix}.matmul"), &[x, &w], &[]);
        b.node("Add", prefix, &[&xw, &bias], &[])
    }

    /// [B, T, E] -> [B, n_head, T, head_dim]
    fn heads(&self, b: &mut GraphBuilder, x: &str, hint: &str) -> String {
        let r = b.node("Reshape", &format!("{hint}.split"), &[x, &self.split_heads], &[]);
        b.node("Transpose", hint, &[&r], &[("perm", Attr::Ints(vec![0, 2, 1, 3]))])
    }

    /// Block `i`: x + attn(ln_1(x)), then + mlp(ln_2(x)). `past` holds earlier positions' keys and
    /// values (the step graph); `future` is a bool [T, T] mask of the positions a query may not see
    /// (the full graph). Returns the new activations and this call's keys and values including `past`.
    pub fn block(
        &self,
        b: &mut GraphBuilder,
        i: usize,
        x: &str,
        past: Option<&KeyValue>,
        future: Option<&str>,
    ) -> (String, KeyValue) {
        let p = format!("transformer.h.{i}");
        let c = self.config();
        let e = c.n_embd;

        // Attention. The 1/sqrt(head_dim) score scale is folded into the query columns of c_attn.
        let h = self.layer_norm(b, x, &format!("{p}.ln_1"));
        let scale = 1.0 / (c.head_dim() as f32).sqrt();
        let w = self.ck.tensor(&format!("{p}.attn.c_attn.weight"));
        let mut w_data = w.data.clone();
        for row in w_data.chunks_exact_mut(3 * e) {
            row[..e].iter_mut().for_each(|v| *v *= scale);
        }
        let mut bias_data = self.ck.tensor(&format!("{p}.attn.c_attn.bias")).data.clone();
        bias_data[..e].iter_mut().for_each(|v| *v *= scale);
        let w = b.weight(&format!("{p}.attn.c_attn.weight_qscaled"), &w.shape, &w_data);
        let bias = b.weight(&format!("{p}.attn.c_attn.bias_qscaled"), &[3 * e], &bias_data);
        let qkv = b.node("MatMul", &format!("{p}.attn.qkv.matmul"), &[&h, &w], &[]);
        let qkv = b.node("Add", &format!("{p}.attn.qkv"), &[&qkv, &bias], &[]);
        let parts = b.node_n(
            "Split",
            &format!("{p}.attn.qkv"),
            3,
            &[&qkv, &self.qkv_sizes],
            &[("axis", Attr::Int(-1))],
        );
        let q = self.heads(b, &parts[0], &format!("{p}.attn.q"));
        let mut k = self.heads(b, &parts[1], &format!("{p}.attn.k"));
        let mut v = self.heads(b, &parts[2], &format!("{p}.attn.v"));
        if let Some(past) = past {
            let axis = [("axis", Attr::Int(2))];
            k = b.node("Concat", &format!("{p}.attn.k_all"), &[&past.key, &k], &axis);
            v = b.node("Concat", &format!("{p}.attn.v_all"), &[&past.value, &v], &axis);
        }
        let kt = b.node(
            "Transpose",
            &format!("{p}.attn.k_t"),
            &[&k],
            &[("perm", Attr::Ints(vec![0, 1, 3, 2]))],
        );
        let mut scores = b.node("MatMul", &format!("{p}.attn.scores"), &[&q, &kt], &[]);
        if let Some(future) = future {
            let hidden = b.const_f32(&format!("{p}.attn.hidden"), &[], &[-1e9]);
            scores = b.node(
                "Where",
                &format!("{p}.attn.scores_masked"),
                &[future, &hidden, &scores],
                &[],
            );
        }
        let probs = b.node(
            "Softmax",
            &format!("{p}.attn.probs"),
            &[&scores],
            &[("axis", Attr::Int(-1))],
        );
        let ctx = b.node("MatMul", &format!("{p}.attn.context"), &[&probs, &v], &[]);
        let ctx = b.node(
            "Transpose",
            &format!("{p}.attn.context_t"),
            &[&ctx],
            &[("perm", Attr::Ints(vec![0, 2, 1, 3]))],
        );
        let ctx = b.node("Reshape", &format!("{p}.attn.merged"), &[&ctx, &self.merge_heads], &[]);
        let a = self.linear(b, &ctx, &format!("{p}.attn.c_proj"));
        let x = b.node("Add", &format!("{p}.after_attn"), &[x, &a], &[]);

        // MLP.
        let h = self.layer_norm(b, &x, &format!("{p}.ln_2"));
        let h = self.linear(b, &h, &format!("{p}.mlp.c_fc"));
        let h = b.node(
            "Gelu",
            &format!("{p}.mlp.gelu"),
            &[&h],
            &[("approximate", Attr::Str("tanh"))],
        );
        let m = self.linear(b, &h, &format!("{p}.mlp.c_proj"));
        let x = b.node("Add", &format!("{p}.out"), &[&x, &m], &[]);
        (x, KeyValue { key: k, value: v })
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
