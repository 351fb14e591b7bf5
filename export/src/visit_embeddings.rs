//! `visit_embeddings.f32` (model directory format 8): the step graph's input embeddings as rows the sampler
//! sums, in the layout of [`graph::VISIT_EMBEDDINGS`].

use crate::checkpoint::Checkpoint;
use crate::Precision;
use halo_core::manifest::graph;

/// The file's bytes: code c's column of the visit embedding, for every code, then of the seen-code embedding
/// (models with `seen_codes`); fp16-rounded in an fp16 export, as the graphs store weight matrices.
pub fn bytes(ck: &Checkpoint, precision: Precision) -> Vec<u8> {
    let c = &ck.config;
    let mut names = vec!["transformer.vis_embed_mat.weight"];
    if c.seen_codes {
        names.push("transformer.seen_embed_mat.weight");
    }
    let mut out = Vec::with_capacity(names.len() * c.total_vocab_size * c.n_embd * 4);
    for name in names {
        // [E, V]: row i holds input i's weight to every code.
        let t = ck.tensor(name);
        let (e, v) = (t.shape[0], t.shape[1]);
        debug_assert_eq!(
            (e, v),
            (c.n_embd, c.total_vocab_size),
            "{name} ({})",
            graph::VISIT_EMBEDDINGS
        );
        for code in 0..v {
            for i in 0..e {
                let w = t.data[i * v + code];
                let stored = match precision {
                    Precision::Fp32 => w,
                    Precision::Fp16 => half::f16::from_f32(w).to_f32(),
                };
                out.extend_from_slice(&stored.to_le_bytes());
            }
        }
    }
    out
}
