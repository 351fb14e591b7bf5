//! What a visit-transformer step reads of a batch's codes: each row's visit as its list of codes, the codes
//! each row has seen so far, and for format 8 (`graph::EMBEDDED_STEP_FORMAT`) the input embeddings the
//! sampler sums.

use crate::error::Result;
use crate::model_dir::read_values;
use std::path::Path;

/// The codes each row of a batch has seen so far, one bit per vocabulary index.
#[derive(Debug, Clone, Default)]
pub struct SeenCodes {
    /// 64-bit words per row.
    words: usize,
    bits: Vec<u64>,
}

impl SeenCodes {
    /// `rows` rows, none seen, over a vocabulary of `vocab` indices.
    pub fn new(rows: usize, vocab: usize) -> SeenCodes {
        let words = vocab.div_ceil(64);
        SeenCodes {
            words,
            bits: vec![0; rows * words],
        }
    }

    pub fn rows(&self) -> usize {
        self.bits.len().checked_div(self.words).unwrap_or(0)
    }

    pub fn contains(&self, row: usize, code: u32) -> bool {
        let c = code as usize;
        self.bits[row * self.words + c / 64] >> (c % 64) & 1 == 1
    }

    /// Adds each row's codes (`visits[r]`: row r's).
    pub fn add(&mut self, visits: &[&[u32]]) {
        for (row, codes) in self.bits.chunks_exact_mut(self.words.max(1)).zip(visits) {
            for &c in *codes {
                row[c as usize / 64] |= 1 << (c % 64);
            }
        }
    }

    /// Row `row`'s codes, ascending.
    pub fn codes(&self, row: usize) -> impl Iterator<Item = usize> + '_ {
        self.bits[row * self.words..(row + 1) * self.words]
            .iter()
            .enumerate()
            .flat_map(|(w, &word)| (0..64).filter(move |b| word >> b & 1 == 1).map(move |b| w * 64 + b))
    }

    /// Forgets every code (a new window).
    pub fn clear(&mut self) {
        self.bits.iter_mut().for_each(|w| *w = 0);
    }

    /// Keeps the rows where `keep` is true.
    pub fn keep_rows(&mut self, keep: &[bool]) {
        crate::sampler::keep_rows(&mut self.bits, self.words, keep);
    }
}

/// What a step reads of the codes each record has seen up to and including the visit (models with
/// `seen_codes`).
#[derive(Debug, Clone, Copy)]
pub enum Seen<'a> {
    /// The codes themselves. A format 8 step sums their embedding rows in ascending code order.
    Codes(&'a SeenCodes),
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

    /// `embedded` [n, E]: per row, the rows of its visit's codes (`visits[r]`, ascending), in that order, plus
    /// the row's seen-code embedding (none for a model without seen codes).
    pub(crate) fn embed(&self, visits: &[&[u32]], seen: Seen, embedded: &mut Vec<f32>) {
        let e = self.n_embd;
        embedded.clear();
        embedded.resize(visits.len() * e, 0.0);
        let mut from_seen = vec![0f32; e];
        for (r, (out, codes)) in embedded.chunks_exact_mut(e).zip(visits).enumerate() {
            add_table_rows(out, codes.iter().map(|&c| c as usize), &self.visit);
            if self.seen.is_empty() {
                continue;
            }
            let from_seen = match seen {
                Seen::Embedded(rows) => &rows[r * e..(r + 1) * e],
                Seen::Codes(codes) => {
                    from_seen.iter_mut().for_each(|x| *x = 0.0);
                    add_table_rows(&mut from_seen, codes.codes(r), &self.seen);
                    &from_seen
                }
            };
            crate::native::add_to(out, from_seen);
        }
    }
}

/// `out += table[c]` (rows of out's length) for each of `codes`, in that order: one sum per value, rounded as
/// IEEE 754 says at any vector width.
pub(crate) fn add_table_rows(out: &mut [f32], codes: impl Iterator<Item = usize>, table: &[f32]) {
    let e = out.len();
    for c in codes {
        crate::native::add_to(out, &table[c * e..(c + 1) * e]);
    }
}
