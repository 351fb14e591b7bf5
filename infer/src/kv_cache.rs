//! The visit transformer's key/value cache between steps, as the sampler keeps it: the tensors ONNX Runtime wrote
//! (fed back without a copy), or rows gathered on the host when records leave a batch.

use crate::error::{Error, Result};

/// One tensor of the visit transformer's key/value cache between steps.
pub enum CachePart {
    /// Rows gathered on the host (the first step's empty cache, or after records left the batch).
    Host(Vec<f32>),
    /// The step's output, as ONNX Runtime wrote it (fed back without a copy).
    Runtime(ort::value::DynValue),
}

impl CachePart {
    /// The tensor's values, row-major.
    pub fn data(&self) -> Result<&[f32]> {
        match self {
            CachePart::Host(data) => Ok(data),
            CachePart::Runtime(value) => value
                .try_extract_tensor::<f32>()
                .map(|(_, data)| data)
                .map_err(|e| Error::Runtime(format!("reading the key/value cache: {e}"))),
        }
    }
}

/// The visit transformer's key/value cache between steps: one tensor [L, 2, n, H, len, hd] (format version 6
/// and before), or from [`halo_core::manifest::graph::SPLIT_CACHE_FORMAT`] on two per layer, keys [n, H, hd,
/// len] and values [n, H, len, hd]. Either way every part is `blocks` blocks (1, or L x key/value) of n rows of
/// H x len x hd values.
pub struct KvCache {
    pub parts: Vec<CachePart>,
    pub blocks: usize,
}

impl KvCache {
    /// The rows (records) where `keep` is true, each `row` values per block.
    pub fn keep_rows(&self, keep: &[bool], row: usize) -> Result<KvCache> {
        let n = keep.len();
        let kept = keep.iter().filter(|k| **k).count();
        let parts = self
            .parts
            .iter()
            .map(|part| {
                let data = part.data()?;
                let mut out = Vec::with_capacity(self.blocks * kept * row);
                for b in 0..self.blocks {
                    let base = b * n * row;
                    for (r, _) in keep.iter().enumerate().filter(|(_, k)| **k) {
                        out.extend_from_slice(&data[base + r * row..base + (r + 1) * row]);
                    }
                }
                Ok(CachePart::Host(out))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(KvCache {
            parts,
            blocks: self.blocks,
        })
    }
}
