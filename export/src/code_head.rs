//! `code_head.onnx`: the code-level module. `history` [batch, E] (history vector of the previous
//! position) and `visit` [batch, V] (the visit's codes so far) -> `logits` [batch, V].
//!
//! The autoregressive masks (output r sees inputs c <= r) are folded into the weights, and only what the
//! logits need is computed: the logits are outputs E-1..E-1+V of auto2, which see hidden units up to
//! D-2 only, so auto1 computes D-1 hidden units and auto2 only V outputs.

use crate::blocks::transpose;
use crate::builder::{Attr, Dim, GraphBuilder};
use crate::checkpoint::Checkpoint;
use crate::Precision;
use halo_core::manifest::graph;

pub fn build(ck: &Checkpoint, precision: Precision) -> GraphBuilder {
    let c = &ck.config;
    let (e, v) = (c.n_embd, c.total_vocab_size);
    let mut b = GraphBuilder::new("halo_code_head", precision);
    let history = b.input(graph::IN_HISTORY, &[Dim::Param("batch"), Dim::Fixed(e)]);
    let visit = b.input(graph::IN_VISIT, &[Dim::Param("batch"), Dim::Fixed(v)]);
    let logits = b.output(graph::OUT_LOGITS, &[Dim::Param("batch"), Dim::Fixed(v)]);

    if c.coarse {
        // HALO-Coarse: every code from the history alone; `visit` is accepted and unused.
        let w = ck.tensor("ehr_head.weight");
        let w = b.weight("ehr_head.weight_t", &[e, v], &transpose(&w.data, v, e));
        let bias = b.weight("ehr_head.bias", &[v], &ck.tensor("ehr_head.bias").data);
        b.node_to("Gemm", &logits, &[&history, &w, &bias], &[]);
        return b;
    }

    let d = c.head_width();
    let hidden = d - 1;
    let input = b.node("Concat", "head_input", &[&history, &visit], &[("axis", Attr::Int(1))]);
    // auto1: rows 0..D-1 of the masked [D, D] weight, transposed to [D, D-1].
    let w1 = masked_rows_t(&ck.tensor("ehr_head.auto1.weight").data, d, 0, hidden);
    let w1 = b.weight("ehr_head.auto1.weight_masked_t", &[d, hidden], &w1);
    let b1 = b.weight(
        "ehr_head.auto1.bias_used",
        &[hidden],
        &ck.tensor("ehr_head.auto1.bias").data[..hidden],
    );
    let h1 = b.node("Gemm", "auto1", &[&input, &w1, &b1], &[]);
    let h1 = b.node("Relu", "auto1.relu", &[&h1], &[]);
    // auto2: the logit rows of the masked weight, columns 0..D-1, transposed to [D-1, V].
    let logit_rows = ck.config.logit_rows();
    let w2_full = masked_rows_t(&ck.tensor("ehr_head.auto2.weight").data, d, logit_rows.start, v);
    let w2: Vec<f32> = w2_full[..hidden * v].to_vec();
    debug_assert!(w2_full[hidden * v..].iter().all(|x| *x == 0.0));
    let w2 = b.weight("ehr_head.auto2.weight_masked_t", &[hidden, v], &w2);
    let b2 = b.weight(
        "ehr_head.auto2.bias_logits",
        &[v],
        &ck.tensor("ehr_head.auto2.bias").data[logit_rows],
    );
    b.node_to("Gemm", &logits, &[&h1, &w2, &b2], &[]);
    b
}

/// Rows `first..first+count` of the lower-triangular-masked [d, d] weight (row r keeps columns <= r),
/// transposed: [d, count], so that `input @ result` gives those outputs.
pub(crate) fn masked_rows_t(w: &[f32], d: usize, first: usize, count: usize) -> Vec<f32> {
    assert_eq!(w.len(), d * d);
    let mut out = vec![0.0; d * count];
    for (j, r) in (first..first + count).enumerate() {
        for col in 0..=r {
            out[col * count + j] = w[r * d + col];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn masked_rows_keep_the_lower_triangle() {
        // w = [[1,2,3],[4,5,6],[7,8,9]], masked = [[1,0,0],[4,5,0],[7,8,9]]; rows 1..3 transposed.
        let w: Vec<f32> = (1..=9).map(|x| x as f32).collect();
        let t = super::masked_rows_t(&w, 3, 1, 2);
        assert_eq!(t, [4.0, 7.0, 5.0, 8.0, 0.0, 9.0]);
    }
}
