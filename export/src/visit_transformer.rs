//! `visit_transformer.onnx`: the whole visit sequence at once, `visits` [batch, visits, V] ->
//! `history` [batch, visits, E]. Positions 0..T-1 and the causal mask come from the input's length.

use crate::blocks::Blocks;
use crate::builder::{Attr, Dim, GraphBuilder};
use crate::checkpoint::Checkpoint;
use crate::Precision;
use halo_core::manifest::graph;

pub fn build(ck: &Checkpoint, precision: Precision) -> GraphBuilder {
    let c = &ck.config;
    let mut b = GraphBuilder::new("halo_visit_transformer", precision);
    let visits = b.input(
        graph::IN_VISITS,
        &[
            Dim::Param("batch"),
            Dim::Param("visits"),
            Dim::Fixed(c.total_vocab_size),
        ],
    );
    let history = b.output(
        graph::OUT_HISTORY,
        &[Dim::Param("batch"), Dim::Param("visits"), Dim::Fixed(c.n_embd)],
    );
    let blocks = Blocks::new(&mut b, ck);

    // positions = 0..T-1 with T = visits.shape[1].
    let len = b.node(
        "Shape",
        "length",
        &[&visits],
        &[("start", Attr::Int(1)), ("end", Attr::Int(2))],
    );
    let axis0 = b.const_i64("axis0", &[1], &[0]);
    let len = b.node("Squeeze", "length_scalar", &[&len, &axis0], &[]);
    let zero = b.const_i64("zero", &[], &[0]);
    let one = b.const_i64("one", &[], &[1]);
    let positions = b.node("Range", "positions", &[&zero, &len, &one], &[]);

    // future[i][j] = j > i: what query i may not attend to.
    let axis1 = b.const_i64("axis1", &[1], &[1]);
    let rows = b.node("Unsqueeze", "positions_rows", &[&positions, &axis1], &[]);
    let cols = b.node("Unsqueeze", "positions_cols", &[&positions, &axis0], &[]);
    let future = b.node("Greater", "future", &[&cols, &rows], &[]);

    let table = blocks.position_table(&mut b);
    let pos = b.node(
        "Gather",
        "position_embedding",
        &[&table, &positions],
        &[("axis", Attr::Int(0))],
    );
    let emb = blocks.embed_visits(&mut b, &visits);
    // The codes seen up to each visit: visits are 0/1, so min(cumulative sum, 1).
    let seen = c.seen_codes.then(|| {
        let visit_axis = b.const_i64("visit_axis", &[], &[1]);
        let count = b.node("CumSum", "seen_count", &[&visits, &visit_axis], &[]);
        let one = b.const_f32("one_f", &[], &[1.0]);
        b.node("Min", "seen", &[&count, &one], &[])
    });
    let emb = blocks.add_seen(&mut b, &emb, seen.as_deref());
    let mut x = b.add("x0", &emb, &pos);
    for i in 0..c.n_layer {
        x = blocks.block(&mut b, i, &x, None, Some(&future));
    }
    let out = blocks.layer_norm(&mut b, &x, "transformer.ln_f");
    b.node_to("Identity", &history, &[&out], &[]);
    b
}
