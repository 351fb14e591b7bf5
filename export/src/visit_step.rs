//! `visit_transformer_step.onnx`: one visit with a key/value cache. `visit` [batch, V] and `past`
//! [n_layer, 2, batch, n_head, past_len, head_dim] -> `history` [batch, E] and `present` (past_len + 1).
//! The visit's position is past_len; past_len = 0 starts a sequence. A model with `ModelConfig::seen_codes`
//! also takes `seen` [batch, V], the union of the record's visits up to and including `visit`.

use crate::blocks::{Blocks, KeyValue};
use crate::builder::{Attr, Dim, GraphBuilder};
use crate::checkpoint::Checkpoint;
use crate::Precision;
use halo_core::manifest::graph;

pub fn build(ck: &Checkpoint, precision: Precision) -> GraphBuilder {
    let c = &ck.config;
    let mut b = GraphBuilder::new("halo_visit_transformer_step", precision);
    let visit = b.input(graph::IN_VISIT, &[Dim::Param("batch"), Dim::Fixed(c.total_vocab_size)]);
    let cache_dims = |len| {
        [
            Dim::Fixed(c.n_layer),
            Dim::Fixed(2),
            Dim::Param("batch"),
            Dim::Fixed(c.n_head),
            Dim::Param(len),
            Dim::Fixed(c.head_dim()),
        ]
    };
    let past = b.input(graph::IN_PAST, &cache_dims("past_len"));
    let seen = c
        .seen_codes
        .then(|| b.input(graph::IN_SEEN, &[Dim::Param("batch"), Dim::Fixed(c.total_vocab_size)]));
    let history = b.output(graph::OUT_HISTORY, &[Dim::Param("batch"), Dim::Fixed(c.n_embd)]);
    let present = b.output(graph::OUT_PRESENT, &cache_dims("present_len"));
    let blocks = Blocks::new(&mut b, ck);

    // position = past_len, as a [1] index into the position table.
    let position = b.node(
        "Shape",
        "position",
        &[&past],
        &[("start", Attr::Int(4)), ("end", Attr::Int(5))],
    );
    let table = blocks.position_table(&mut b);
    let pos = b.node(
        "Gather",
        "position_embedding",
        &[&table, &position],
        &[("axis", Attr::Int(0))],
    );
    let axis1 = b.const_i64("axis1", &[1], &[1]);
    let visits = b.node("Unsqueeze", "visits", &[&visit, &axis1], &[]);
    let emb = blocks.embed_visits(&mut b, &visits);
    let emb = match &seen {
        Some(seen) => {
            let seen = b.node("Unsqueeze", "seen_visits", &[seen, &axis1], &[]);
            blocks.add_seen(&mut b, &emb, Some(&seen))
        }
        None => emb,
    };
    let mut x = b.add("x0", &emb, &pos);

    let key_index = b.const_i64("key_index", &[], &[0]);
    let value_index = b.const_i64("value_index", &[], &[1]);
    let axes01 = b.const_i64("axes01", &[2], &[0, 1]);
    let gather0 = [("axis", Attr::Int(0))];
    let mut layers = Vec::with_capacity(c.n_layer);
    for i in 0..c.n_layer {
        let index = b.const_i64(&format!("layer_index.{i}"), &[], &[i as i64]);
        let layer = b.node("Gather", &format!("past.{i}"), &[&past, &index], &gather0);
        let past_kv = KeyValue {
            key: b.node("Gather", &format!("past.{i}.key"), &[&layer, &key_index], &gather0),
            value: b.node("Gather", &format!("past.{i}.value"), &[&layer, &value_index], &gather0),
        };
        let (next, kv) = blocks.block(&mut b, i, &x, Some(&past_kv), None);
        x = next;
        // [B, H, L, hd] -> [1, 1, B, H, L, hd], then key and value side by side -> [1, 2, ...].
        let k = b.node("Unsqueeze", &format!("present.{i}.key"), &[&kv.key, &axes01], &[]);
        let v = b.node("Unsqueeze", &format!("present.{i}.value"), &[&kv.value, &axes01], &[]);
        layers.push(b.node("Concat", &format!("present.{i}"), &[&k, &v], &[("axis", Attr::Int(1))]));
    }
    let layer_refs: Vec<&str> = layers.iter().map(String::as_str).collect();
    b.node_to("Concat", &present, &layer_refs, &[("axis", Attr::Int(0))]);

    let out = blocks.layer_norm(&mut b, &x, "transformer.ln_f");
    b.node_to("Squeeze", &history, &[&out, &axis1], &[]);
    b
}
