//! The code-level module split for incremental sampling (model directory format version 2).
//!
//! auto1 is linear in `[history; visit]`, so its pre-activations for an empty visit come from the history
//! alone (`code_head_start.onnx`), and setting visit code k adds one column of the masked weight
//! (`code_head_columns.f32`, applied by the sampler). auto2 is lower-triangular, so the logit of code j
//! reads only hidden units up to E - 1 + j: `code_head_block.onnx` computes the logits of a block of codes
//! from a prefix of the pre-activations. Together they give the same logits as `code_head.onnx` (up to
//! float summation order) at a fraction of the work per drawn code.

use crate::builder::{Attr, Dim, GraphBuilder};
use crate::checkpoint::Checkpoint;
use crate::code_head::masked_rows_t;
use crate::Precision;
use halo_core::manifest::{graph, IncrementalHeadFiles};

/// `history` [batch, E] -> `pre` [batch, H]: auto1's pre-activations for an empty visit.
pub fn build_start(ck: &Checkpoint, precision: Precision) -> GraphBuilder {
    let c = &ck.config;
    let (e, d, hidden) = (c.n_embd, c.head_width(), c.head_hidden_used());
    let mut b = GraphBuilder::new("halo_code_head_start", precision);
    let history = b.input(graph::IN_HISTORY, &[Dim::Param("batch"), Dim::Fixed(e)]);
    let pre = b.output(graph::OUT_PRE, &[Dim::Param("batch"), Dim::Fixed(hidden)]);
    // The history rows (inputs 0..E) of the masked, transposed auto1 weight [D, H].
    let w1 = masked_rows_t(&ck.tensor("ehr_head.auto1.weight").data, d, 0, hidden);
    let w1 = b.weight(
        "ehr_head.auto1.weight_masked_t_history",
        &[e, hidden],
        &w1[..e * hidden],
    );
    let b1 = b.weight(
        "ehr_head.auto1.bias_used",
        &[hidden],
        &ck.tensor("ehr_head.auto1.bias").data[..hidden],
    );
    b.node_to("Gemm", &pre, &[&history, &w1, &b1], &[]);
    b
}

/// `pre` [batch, K], `first`, `end` [1] -> `logits` [batch, end - first] = relu(pre) @ W2[:K, first..end] + b2.
pub fn build_block(ck: &Checkpoint, precision: Precision) -> GraphBuilder {
    let c = &ck.config;
    let (d, v, hidden) = (c.head_width(), c.total_vocab_size, c.head_hidden_used());
    let mut b = GraphBuilder::new("halo_code_head_block", precision);
    let pre = b.input(graph::IN_PRE, &[Dim::Param("batch"), Dim::Param("prefix")]);
    let first = b.input_i64(graph::IN_FIRST, &[Dim::Fixed(1)]);
    let end = b.input_i64(graph::IN_END, &[Dim::Fixed(1)]);
    let logits = b.output(graph::OUT_LOGITS, &[Dim::Param("batch"), Dim::Param("codes")]);

    // auto2's logit rows, masked and transposed to [H, V] (hidden unit x code), as in code_head.onnx.
    let w2 = masked_rows_t(&ck.tensor("ehr_head.auto2.weight").data, d, c.first_logit_row(), v);
    let w2 = b.weight("ehr_head.auto2.weight_masked_t", &[hidden, v], &w2[..hidden * v]);
    let b2 = b.weight(
        "ehr_head.auto2.bias_logits",
        &[v],
        &ck.tensor("ehr_head.auto2.bias").data[c.first_logit_row()..c.first_logit_row() + v],
    );

    // The weight block: rows 0..K (K = the width of `pre`), columns first..end.
    let prefix = b.node("Shape", "prefix", &[&pre], &[("start", Attr::Int(1))]);
    let zero = b.const_i64("zero", &[1], &[0]);
    let starts = b.node("Concat", "block_starts", &[&zero, &first], &[("axis", Attr::Int(0))]);
    let ends = b.node("Concat", "block_ends", &[&prefix, &end], &[("axis", Attr::Int(0))]);
    let w_block = b.node("Slice", "w2_block", &[&w2, &starts, &ends], &[]);
    let b_block = b.node("Slice", "b2_block", &[&b2, &first, &end], &[]);
    let hidden_act = b.node("Relu", "auto1.relu", &[&pre], &[]);
    // Gemm, not MatMul: ONNX Runtime's MatMul takes another kernel for a single row, which rounds
    // differently, and records must not depend on how many rows share a block.
    b.node_to("Gemm", &logits, &[&hidden_act, &w_block, &b_block], &[]);
    b
}

/// The columns file: for each code k, rows E + k .. H of auto1's column E + k (what the mask keeps), in the
/// export precision, as little-endian f32.
pub fn columns(ck: &Checkpoint, precision: Precision) -> Vec<u8> {
    let c = &ck.config;
    let (e, d, v, hidden) = (c.n_embd, c.head_width(), c.total_vocab_size, c.head_hidden_used());
    let w1 = &ck.tensor("ehr_head.auto1.weight").data;
    let mut out = Vec::with_capacity(IncrementalHeadFiles::column_values(v) * 4);
    for k in 0..v {
        let col = e + k;
        for row in col..hidden {
            let w = w1[row * d + col];
            let w = match precision {
                Precision::Fp32 => w,
                Precision::Fp16 => half::f16::from_f32(w).to_f32(),
            };
            out.extend_from_slice(&w.to_le_bytes());
        }
    }
    debug_assert_eq!(out.len(), IncrementalHeadFiles::column_values(v) * 4);
    out
}
