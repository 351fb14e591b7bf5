//! The visit transformer's key/value cache between steps, as the sampler keeps it: the tensors ONNX Runtime wrote
//! (fed back without a copy), or rows gathered on the host when records leave a batch.

use crate::error::{Error, Result};
use halo_core::manifest::{graph, Manifest};

/// One tensor of the visit transformer's key/value cache between steps.
pub enum CachePart {
    /// Rows gathered on the host (the first step's empty cache).
    Host(Vec<f32>),
    /// The step's output, as ONNX Runtime wrote it (fed back without a copy); `Some(len)` once rows left the
    /// batch: the rows kept were moved to its first `len` values.
    Runtime(ort::value::DynValue, Option<usize>),
}

impl CachePart {
    /// The tensor's values, row-major.
    pub fn data(&self) -> Result<&[f32]> {
        match self {
            CachePart::Host(data) => Ok(data),
            CachePart::Runtime(value, len) => value
                .try_extract_tensor::<f32>()
                .map(|(_, data)| &data[..len.unwrap_or(data.len())])
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
    /// Keeps the rows (records) where `keep` is true, `row` values each per block, moved in place to the front
    /// of each tensor (rows before the first that leaves stay where they are).
    pub fn keep_rows(&mut self, keep: &[bool], row: usize) -> Result<()> {
        let n = keep.len();
        let kept = keep.iter().filter(|k| **k).count();
        for part in &mut self.parts {
            let data: &mut [f32] = match part {
                CachePart::Host(data) => data,
                CachePart::Runtime(value, len) => {
                    *len = Some(self.blocks * kept * row);
                    value
                        .try_extract_tensor_mut::<f32>()
                        .map(|(_, data)| data)
                        .map_err(|e| Error::Runtime(format!("reading the key/value cache: {e}")))?
                }
            };
            // Every destination lies at or before its source, so moving in order overwrites nothing unread.
            let mut to = 0;
            for b in 0..self.blocks {
                for (r, _) in keep.iter().enumerate().filter(|(_, k)| **k) {
                    let from = (b * n + r) * row;
                    if from != to {
                        data.copy_within(from..from + row, to);
                    }
                    to += row;
                }
            }
            if let CachePart::Host(data) = part {
                data.truncate(to);
            }
        }
        Ok(())
    }
}

/// An axis of a cache tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheAxis {
    Fixed(usize),
    /// The batch's rows (records).
    Rows,
    /// The cache's length (positions so far).
    Len,
}

/// One tensor of a step graph's cache: the input it is fed as, the output that gives it one position longer,
/// and its axes.
#[derive(Debug, Clone)]
pub(crate) struct CacheTensor {
    pub input: String,
    pub output: String,
    pub axes: Vec<CacheAxis>,
}

impl CacheTensor {
    /// Its shape for `rows` rows at length `len`.
    pub fn shape(&self, rows: usize, len: usize) -> Vec<usize> {
        self.axes
            .iter()
            .map(|a| match *a {
                CacheAxis::Fixed(d) => d,
                CacheAxis::Rows => rows,
                CacheAxis::Len => len,
            })
            .collect()
    }

    /// Its dims as a graph declares them (`None`: dynamic).
    pub fn declared(&self) -> Vec<Option<usize>> {
        self.axes
            .iter()
            .map(|a| match *a {
                CacheAxis::Fixed(d) => Some(d),
                _ => None,
            })
            .collect()
    }

    /// Blocks of rows in it: the product of the axes before the rows.
    fn blocks(&self) -> usize {
        self.axes
            .iter()
            .take_while(|a| **a != CacheAxis::Rows)
            .map(|a| match *a {
                CacheAxis::Fixed(d) => d,
                _ => 1,
            })
            .product()
    }
}

/// The cache tensors of a model directory's step graph: one [L, 2, n, H, len, hd] before
/// [`graph::SPLIT_CACHE_FORMAT`], then per layer keys [n, H, hd, len] and values [n, H, len, hd].
pub(crate) fn cache_tensors(manifest: &Manifest) -> Vec<CacheTensor> {
    use CacheAxis::{Fixed, Len, Rows};
    let c = &manifest.model;
    let (l, h, hd) = (c.n_layer, c.n_head, c.head_dim());
    if manifest.format_version < graph::SPLIT_CACHE_FORMAT {
        return vec![CacheTensor {
            input: graph::IN_PAST.into(),
            output: graph::OUT_PRESENT.into(),
            axes: vec![Fixed(l), Fixed(2), Rows, Fixed(h), Len, Fixed(hd)],
        }];
    }
    (0..l)
        .flat_map(|i| {
            [
                CacheTensor {
                    input: graph::past_key(i),
                    output: graph::present_key(i),
                    axes: vec![Rows, Fixed(h), Fixed(hd), Len],
                },
                CacheTensor {
                    input: graph::past_value(i),
                    output: graph::present_value(i),
                    axes: vec![Rows, Fixed(h), Len, Fixed(hd)],
                },
            ]
        })
        .collect()
}

/// An empty cache (length 0) of `tensors`, the start of every sequence.
pub(crate) fn empty_cache(tensors: &[CacheTensor]) -> KvCache {
    KvCache {
        parts: tensors.iter().map(|_| CachePart::Host(Vec::new())).collect(),
        blocks: tensors.first().map_or(1, CacheTensor::blocks),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows leave from the middle and the front of each of two blocks: the kept rows end up at the front, in
    /// order, block after block.
    #[test]
    fn kept_rows_move_to_the_front_block_after_block() {
        let (n, row, blocks) = (5, 3, 2);
        let values: Vec<f32> = (0..blocks * n * row).map(|x| x as f32).collect();
        let mut cache = KvCache {
            parts: vec![CachePart::Host(values.clone())],
            blocks,
        };
        let keep = [false, true, false, true, true];
        cache.keep_rows(&keep, row).unwrap();
        let expected: Vec<f32> = (0..blocks)
            .flat_map(|b| [1, 3, 4].map(|r| (b * n + r) * row))
            .flat_map(|at| values[at..at + row].to_vec())
            .collect();
        assert_eq!(cache.parts[0].data().unwrap(), &expected[..]);
    }
}
