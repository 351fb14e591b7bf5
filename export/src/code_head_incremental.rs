//! The code-level module split for incremental sampling (model directory format version 2).
//!
//! auto1 is linear in `[history; visit]`, so its pre-activations for an empty visit come from the history
//! alone (`code_head_start.onnx`), and setting visit code k adds one column of the masked weight
//! (`code_head_columns.f32`, applied by the sampler). auto2 is lower-triangular, so the logit of code j
//! reads only hidden units up to E - 1 + j: each `code_head_block_NNNN.onnx` computes the logits of one
//! block of codes from a prefix of the pre-activations, with that block's weights as constants (so ONNX
//! Runtime packs them once, and no run copies a weight). Together they give the same logits as `code_head.onnx` (up to
//! float summation order) at a fraction of the work per drawn code.

use crate::builder::{Dim, GraphBuilder};
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

/// Codes per block of the incremental code module: a multiple of 64 whose blocks cost about 16K
/// multiply-adds per row at mid-vocabulary (a graph run has a fixed cost of some microseconds, so a block
/// should not be much cheaper than that), and 64 for large vocabularies.
pub fn block_len(config: &halo_core::config::ModelConfig) -> usize {
    const ALIGN: usize = 64;
    const MACS: usize = 1 << 14;
    let mid_prefix = config.n_embd + config.total_vocab_size / 2;
    (MACS / mid_prefix.max(1))
        .next_multiple_of(ALIGN)
        .clamp(ALIGN, config.total_vocab_size.next_multiple_of(ALIGN))
}

/// Block `b` (codes `codes`): `pre` [batch, K] -> `logits` [batch, codes.len()] = relu(pre) @ W2[:K, codes] +
/// `b2[codes]`, with K = E + codes.end - 1 and the masked weight block a constant.
pub fn build_block(ck: &Checkpoint, precision: Precision, b: usize, codes: std::ops::Range<usize>) -> GraphBuilder {
    let c = &ck.config;
    let d = c.head_width();
    let prefix = c.n_embd + codes.end - 1;
    let mut g = GraphBuilder::new(&format!("halo_code_head_block_{b}"), precision);
    let pre = g.input(graph::IN_PRE, &[Dim::Param("batch"), Dim::Fixed(prefix)]);
    let logits = g.output(graph::OUT_LOGITS, &[Dim::Param("batch"), Dim::Fixed(codes.len())]);
    // auto2's logit rows of these codes, masked and transposed to [D, L] (hidden unit x code); rows from K on
    // are zero (masked) and left out.
    let first_row = c.first_logit_row() + codes.start;
    let w = masked_rows_t(&ck.tensor("ehr_head.auto2.weight").data, d, first_row, codes.len());
    let w = g.weight(
        "ehr_head.auto2.weight_masked_t_block",
        &[prefix, codes.len()],
        &w[..prefix * codes.len()],
    );
    let bias = g.weight(
        "ehr_head.auto2.bias_block",
        &[codes.len()],
        &ck.tensor("ehr_head.auto2.bias").data[first_row..first_row + codes.len()],
    );
    let hidden = g.node("Relu", "auto1.relu", &[&pre], &[]);
    g.node_to("Gemm", &logits, &[&hidden, &w, &bias], &[]);
    g
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
