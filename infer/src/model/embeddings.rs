//! The step graph's input embeddings of format 8 (`graph::EMBEDDED_STEP_FORMAT`), which the sampler sums.

use crate::error::Result;
use crate::model_dir::read_values;
use std::path::Path;

/// What a step reads of the codes each record has seen up to and including the visit (models with
/// `seen_codes`; empty slices otherwise).
#[derive(Debug, Clone, Copy)]
pub enum Seen<'a> {
    /// The union of the record's visits, multi-hot [n, V]. A format 8 step sums the codes' embedding rows in
    /// ascending code order.
    Codes(&'a [f32]),
    /// Format 8: the seen-code embedding [n, E] as the sampler keeps it, the rows added as codes first appear
    /// ([`super::Model::add_newly_seen`]).
    Embedded(&'a [f32]),
}

/// The rows of `visit_embeddings.f32` (`graph::VISIT_EMBEDDINGS`): each code's visit embedding and, for a
/// model with seen codes, its seen-code embedding, E values each.
pub(crate) struct VisitEmbeddings {
    visit: Vec<f32>,
    pub(crate) seen: Vec<f32>,
    n_embd: usize,
}

impl VisitEmbeddings {
    pub(crate) fn read(
        dir: &Path,
        file: &halo_core::manifest::DataFile,
        e: usize,
        v: usize,
        seen_codes: bool,
    ) -> Result<VisitEmbeddings> {
        let tables = if seen_codes { 2 } else { 1 };
        let mut visit = read_values(
            dir,
            file,
            "files.visit_embeddings",
            tables * v * e,
            "the input embeddings'",
        )?;
        let seen = visit.split_off(v * e);
        Ok(VisitEmbeddings { visit, seen, n_embd: e })
    }

    /// `embedded` [n, E]: per row, the rows of the codes `visits` [n, V] holds, in ascending code order, plus
    /// the row's seen-code embedding (none for a model without seen codes).
    pub(crate) fn embed(&self, visits: &[f32], seen: Seen, embedded: &mut Vec<f32>) {
        let e = self.n_embd;
        let v = self.visit.len() / e;
        let n = visits.len() / v;
        embedded.clear();
        embedded.resize(n * e, 0.0);
        let mut from_seen = vec![0f32; e];
        for (r, out) in embedded.chunks_exact_mut(e).enumerate() {
            crate::native::add_rows(out, &visits[r * v..(r + 1) * v], &[], &self.visit);
            if self.seen.is_empty() {
                continue;
            }
            let from_seen = match seen {
                Seen::Embedded(rows) => &rows[r * e..(r + 1) * e],
                Seen::Codes(codes) => {
                    from_seen.iter_mut().for_each(|x| *x = 0.0);
                    crate::native::add_rows(&mut from_seen, &codes[r * v..(r + 1) * v], &[], &self.seen);
                    &from_seen
                }
            };
            for (o, s) in out.iter_mut().zip(from_seen) {
                *o += s;
            }
        }
    }
}
