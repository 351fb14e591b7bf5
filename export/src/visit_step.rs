//! `visit_transformer_step.onnx`: one visit with a key/value cache. `embedded` [batch, E], the visit's
//! embedding the sampler sums from `visit_embeddings.f32` (`graph::EMBEDDED_STEP_FORMAT`; it stands for the
//! `visit` [batch, V] and `seen` inputs of older formats, described next), and, per layer i,
//! `past_key.{i}` [batch, n_head, head_dim, past_len] (keys kept transposed, as attention reads them) and
//! `past_value.{i}` [batch, n_head, past_len, head_dim] -> `history` [batch, E] and `present_key.{i}`,
//! `present_value.{i}` (past_len + 1). The visit's position is past_len; past_len = 0 starts a sequence. A
//! model with `ModelConfig::seen_codes` also takes `seen` [batch, V], the union of the record's visits up to
//! and including `visit`. One tensor per layer and role, so that a step copies the cache once, in the
//! concatenation that appends its position (`graph::SPLIT_CACHE_FORMAT`).

use crate::blocks::{Blocks, StepCache};
use crate::builder::{Attr, Dim, GraphBuilder};
use crate::checkpoint::Checkpoint;
use crate::Precision;
use halo_core::manifest::graph;

pub fn build(ck: &Checkpoint, precision: Precision) -> GraphBuilder {
    let c = &ck.config;
    let mut b = GraphBuilder::new("halo_visit_transformer_step", precision);
    let embedded = b.input(graph::IN_EMBEDDED, &[Dim::Param("batch"), Dim::Fixed(c.n_embd)]);
    let (h, hd) = (c.n_head, c.head_dim());
    let key_dims = |len| [Dim::Param("batch"), Dim::Fixed(h), Dim::Fixed(hd), Dim::Param(len)];
    let value_dims = |len| [Dim::Param("batch"), Dim::Fixed(h), Dim::Param(len), Dim::Fixed(hd)];
    let mut caches = Vec::with_capacity(c.n_layer);
    for i in 0..c.n_layer {
        let past_key_t = b.input(&graph::past_key(i), &key_dims("past_len"));
        let past_value = b.input(&graph::past_value(i), &value_dims("past_len"));
        caches.push((past_key_t, past_value));
    }
    let history = b.output(graph::OUT_HISTORY, &[Dim::Param("batch"), Dim::Fixed(c.n_embd)]);
    let caches: Vec<StepCache> = caches
        .into_iter()
        .enumerate()
        .map(|(i, (past_key_t, past_value))| StepCache {
            past_key_t,
            past_value,
            present_key_t: b.output(&graph::present_key(i), &key_dims("present_len")),
            present_value: b.output(&graph::present_value(i), &value_dims("present_len")),
        })
        .collect();
    let blocks = Blocks::new(&mut b, ck);

    // position = past_len, as a [1] index into the position table.
    let position = b.node(
        "Shape",
        "position",
        &[&caches[0].past_value],
        &[("start", Attr::Int(2)), ("end", Attr::Int(3))],
    );
    let table = blocks.position_table(&mut b);
    let pos = b.node(
        "Gather",
        "position_embedding",
        &[&table, &position],
        &[("axis", Attr::Int(0))],
    );
    let axis1 = b.const_i64("axis1", &[1], &[1]);
    let emb = b.node("Unsqueeze", "embedded_visits", &[&embedded, &axis1], &[]);
    let mut x = b.add("x0", &emb, &pos);
    for (i, cache) in caches.iter().enumerate() {
        x = blocks.block(&mut b, i, &x, Some(cache), None);
    }
    let out = blocks.layer_norm(&mut b, &x, "transformer.ln_f");
    b.node_to("Squeeze", &history, &[&out, &axis1], &[]);
    b
}
