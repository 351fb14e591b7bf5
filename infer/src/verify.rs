//! The verify digest: sha256 of the first records sampled at a fixed seed on the CPU, stored in the
//! manifest by `halo export` and compared by `halo-sample verify` to check that a copied model directory
//! and the local ONNX Runtime reproduce the exporter's records.

use crate::error::{Error, Result};
use crate::model::Model;
use crate::{generate, record_line, Plan, Sampled};
use halo_core::manifest::{sha256_hex, VerifyDigest, MANIFEST};
use std::path::Path;

/// Short digest of one sampled visit (its vocabulary indices).
fn visit_digest(codes: &[u32]) -> String {
    let text: Vec<String> = codes.iter().map(|c| c.to_string()).collect();
    sha256_hex(text.join(",").as_bytes())[..16].to_string()
}

/// Digest of sampled records (in index order, starting at 0).
pub fn digest_of(seed: u64, records: &[Sampled]) -> VerifyDigest {
    VerifyDigest {
        seed,
        count: records.len(),
        records: records.iter().map(|s| sha256_hex(&record_line(&s.patient))).collect(),
        visits: records
            .iter()
            .map(|s| {
                std::iter::once(visit_digest(&s.raw.labels))
                    .chain(s.raw.visits.iter().map(|v| visit_digest(v)))
                    .collect()
            })
            .collect(),
    }
}

/// Samples records `0..count` at `seed` with a loaded model and returns their digest.
pub fn digest_with(model: &mut Model, seed: u64, count: usize) -> Result<VerifyDigest> {
    digest_with_progress(model, seed, count, &mut |_| {})
}

/// Batch size of the digest `halo export` stores.
pub fn digest_batch_size(count: usize) -> usize {
    count.clamp(1, 64)
}

/// As [`digest_with`], calling `progress` with the number of records sampled so far after each batch.
pub fn digest_with_progress(
    model: &mut Model,
    seed: u64,
    count: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<VerifyDigest> {
    digest_at_batch_size(model, seed, count, digest_batch_size(count), progress)
}

/// The digest of records `0..count` sampled in batches of `batch_size`. When the batch is larger than
/// `count`, records up to `batch_size` are sampled (so that the graphs run at that batch size) and the
/// first `count` digested; a record does not depend on the others of its batch.
fn digest_at_batch_size(
    model: &mut Model,
    seed: u64,
    count: usize,
    batch_size: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<VerifyDigest> {
    let mut all = Vec::with_capacity(count);
    generate(
        model,
        &Plan {
            seed,
            records: 0..count.max(batch_size) as u64,
            batch_size,
            conditions: None,
        },
        |batch| {
            all.extend(batch);
            progress(all.len().min(count));
            Ok(())
        },
    )?;
    all.truncate(count);
    Ok(digest_of(seed, &all))
}

/// Loads `model_dir` on the CPU ([`Model::load_on_cpu`]) and returns the digest of records `0..count` at
/// `seed`.
pub fn verify_digest(model_dir: &Path, seed: u64, count: usize) -> Result<VerifyDigest> {
    digest_with(&mut Model::load_on_cpu(model_dir)?, seed, count)
}

/// Where a record first differs from the stored digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// Labels or demographics (the sampled label visit).
    LabelVisit,
    /// Visit `n` (1-based) has other codes.
    Visit(usize),
    /// All visits the digest knows agree, but the record has a different number of visits.
    VisitCount { expected: usize, actual: usize },
    /// Same codes everywhere, but decoded values (times, lab values) differ.
    Decoding,
    /// The digest stores no per-visit information (older manifest).
    Unknown,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::LabelVisit => write!(f, "from its label visit (labels/demographics)"),
            Difference::Visit(n) => write!(f, "from visit {n}"),
            Difference::VisitCount { expected, actual } => {
                write!(f, "in its number of visits ({actual}, expected {expected})")
            }
            Difference::Decoding => write!(
                f,
                "in decoded values only (times or lab values; the sampled codes agree)"
            ),
            Difference::Unknown => write!(f, "(the manifest has no per-visit digests)"),
        }
    }
}

/// Differing records a report lists one by one (per batch size); the others are counted.
pub const SHOWN_MISMATCHES: usize = 5;

/// A record whose digest differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub record: usize,
    pub difference: Difference,
}

/// Batch sizes `halo-sample verify` samples at: the digest's own, one record at a time, and the sampler's
/// default (a model whose graphs behaved differently at another batch size would show there).
pub fn verify_batch_sizes(count: usize) -> Vec<usize> {
    let mut sizes = vec![digest_batch_size(count), 1, 256];
    sizes.dedup();
    sizes
}

/// The records sampled at one batch size, compared with the digest.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchCheck {
    pub batch_size: usize,
    pub actual: VerifyDigest,
    pub mismatches: Vec<Mismatch>,
}

/// Result of `halo-sample verify`: one check per batch size of [`verify_batch_sizes`].
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyOutcome {
    pub expected: VerifyDigest,
    pub checks: Vec<BatchCheck>,
}

impl VerifyOutcome {
    pub fn identical(&self) -> bool {
        self.checks.iter().all(|c| c.mismatches.is_empty())
    }
}

/// Compares an actual digest with the expected one.
pub fn compare(expected: &VerifyDigest, actual: &VerifyDigest) -> Vec<Mismatch> {
    let mut out = Vec::new();
    for i in 0..expected.records.len().max(actual.records.len()) {
        if expected.records.get(i) == actual.records.get(i) {
            continue;
        }
        let difference = match (expected.visits.get(i), actual.visits.get(i)) {
            (Some(e), Some(a)) => match e.iter().zip(a).position(|(x, y)| x != y) {
                Some(0) => Difference::LabelVisit,
                Some(k) => Difference::Visit(k),
                None if e.len() != a.len() => Difference::VisitCount {
                    expected: e.len().saturating_sub(1),
                    actual: a.len().saturating_sub(1),
                },
                None => Difference::Decoding,
            },
            _ => Difference::Unknown,
        };
        out.push(Mismatch { record: i, difference });
    }
    out
}

/// Samples the manifest's verify records at each batch size of [`verify_batch_sizes`] with a model loaded
/// on the CPU and compares them.
pub fn verify(model: &mut Model) -> Result<VerifyOutcome> {
    let Some(expected) = model.manifest.verify.clone() else {
        return Err(Error::model(
            &model.dir.join(MANIFEST),
            "has no `verify` digest (export the model again with a current `halo export`)",
        ));
    };
    if expected.records.len() != expected.count {
        return Err(Error::model(
            &model.dir.join(MANIFEST),
            format!(
                "field `verify.records` has {} digests but `verify.count` is {}",
                expected.records.len(),
                expected.count
            ),
        ));
    }
    let mut checks = Vec::new();
    for batch_size in verify_batch_sizes(expected.count) {
        let actual = digest_at_batch_size(model, expected.seed, expected.count, batch_size, &mut |_| {})?;
        let mismatches = compare(&expected, &actual);
        checks.push(BatchCheck {
            batch_size,
            actual,
            mismatches,
        });
    }
    Ok(VerifyOutcome { expected, checks })
}
