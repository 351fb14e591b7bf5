//! halo-infer: samples synthetic patient records from a HALO model directory (written by `halo export`)
//! with ONNX Runtime. No libtorch.
//!
//! - [`runtime`]: finds and loads the ONNX Runtime library, creates CPU or CUDA sessions.
//! - [`model`]: a loaded model directory (manifest, checksums, the step and code-head sessions).
//! - [`sampler`]: exact ancestral sampling, batched, one random stream per record.
//! - [`decode`]: sampled vocabulary indices -> [`halo_core::record::Patient`].
//! - [`conditions`]: `--condition` (fixed labels or label proportions).
//! - [`calibrate`]: the sampling calibration `halo export` fits (one logit offset for codes drawn on their own).
//! - [`verify`]: the digest of the first records at a fixed seed, stored in the manifest by
//!   `halo export` ([`verify_digest`]) and checked by `halo-sample verify`.
//!
//! # Reproducibility
//! Record `i` depends only on the seed, `i` and the model: its random numbers come from its own
//! ChaCha20 stream (seeded from the seed, stream number `i`). On the CPU the output is identical for any
//! batch size, thread count and shard split. On CUDA, floating-point reductions may be ordered
//! differently from run to run and from the CPU; a record changes when a code's probability moves to
//! the other side of the uniform number drawn for it, so CUDA output is not guaranteed bitwise
//! reproducible (it is still a correct sample).

pub mod calibrate;
mod code_module;
pub mod conditions;
pub mod decode;
pub mod error;
mod heap;
mod kv_cache;
pub mod model;
mod model_dir;
pub mod native;
pub mod output;
pub mod runtime;
pub mod sampler;
pub mod site;
pub mod trust;
pub mod verify;
mod walk;

pub use conditions::Conditions;
pub use error::{Error, Result};
pub use model::{CodeModule, Model};
pub use runtime::{Device, SessionOptions};
pub use sampler::{RawRecord, SampleStats};
pub use verify::verify_digest;

use halo_core::record::Patient;
use std::ops::Range;

/// The toolkit version this sampler belongs to.
pub const TOOLKIT_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit it was built from (`unknown` outside a git checkout).
pub const GIT_COMMIT: &str = env!("HALO_GIT_COMMIT");

/// What to sample.
#[derive(Debug, Clone)]
pub struct Plan {
    pub seed: u64,
    /// Global indices of the records to sample.
    pub records: Range<u64>,
    /// Records sampled together (one batch of the graphs).
    pub batch_size: usize,
    pub conditions: Option<Conditions>,
}

/// One sampled record: its vocabulary indices and the decoded patient.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    pub raw: RawRecord,
    pub patient: Patient,
}

/// Shard `index` (0-based) of `count` equal parts of a cohort (`--shard K/N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// A shard, checked: `0 <= index < count`.
    pub fn new(index: u64, count: u64) -> Result<Shard> {
        if count == 0 || index >= count {
            return Err(Error::Invalid(format!(
                "--shard {index}/{count}: expected K/N with 0 <= K < N (shards are numbered from 0)"
            )));
        }
        Ok(Shard { index, count })
    }

    /// Records `[K * ceil(total / N), min((K + 1) * ceil(total / N), total))` of a cohort of `total`.
    pub fn records(self, total: u64) -> Range<u64> {
        let per = total.div_ceil(self.count);
        let start = (self.index * per).min(total);
        let end = ((self.index + 1) * per).min(total);
        start..end
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Shard, String> {
        let (k, n) = s
            .split_once('/')
            .and_then(|(k, n)| Some((k.trim().parse().ok()?, n.trim().parse().ok()?)))
            .ok_or_else(|| format!("`{s}`: expected K/N, e.g. 0/4"))?;
        Shard::new(k, n).map_err(|e| e.to_string())
    }
}

/// Samples `plan.records` batch by batch under the model directory's own calibration, calling `on_batch`
/// with each batch's records in index order.
pub fn generate<F>(model: &mut Model, plan: &Plan, on_batch: F) -> Result<SampleStats>
where
    F: FnMut(Vec<Sampled>) -> Result<()>,
{
    let calibration = model.manifest.calibration.clone();
    generate_with(model, plan, calibration.as_ref(), on_batch)
}

/// As [`generate`], under `calibration` (`None`: none) instead of the directory's own.
pub fn generate_with<F>(
    model: &mut Model,
    plan: &Plan,
    calibration: Option<&halo_core::manifest::SamplingCalibration>,
    on_batch: F,
) -> Result<SampleStats>
where
    F: FnMut(Vec<Sampled>) -> Result<()>,
{
    generate_on(std::slice::from_mut(model), plan, calibration, on_batch)
}

/// As [`generate_with`], with `workers` (models loaded from one directory, [`Model::load_workers`]) sampling
/// batches side by side, one thread each, each taking the next batch as it finishes one; `on_batch` still
/// sees every batch in index order. A record does not depend on which worker samples it, so the output is
/// the one a single model writes.
///
/// Why: single-threaded workers keep every core busy through the whole loop, where one model shares the
/// cores only inside each graph run and each visit's code module (`halo-sample bench`, 2 cores, the demo
/// model: docs/sampler.md).
pub fn generate_on<F>(
    workers: &mut [Model],
    plan: &Plan,
    calibration: Option<&halo_core::manifest::SamplingCalibration>,
    mut on_batch: F,
) -> Result<SampleStats>
where
    F: FnMut(Vec<Sampled>) -> Result<()>,
{
    let sampling = sampler::Sampling {
        seed: plan.seed,
        conditions: plan.conditions.as_ref(),
        calibration,
    };
    if plan.batch_size == 0 {
        return Err(Error::Invalid("--batch-size must be at least 1".to_string()));
    }
    let batch_of = |k: u64| {
        let start = plan.records.start + k * plan.batch_size as u64;
        start..(start + plan.batch_size as u64).min(plan.records.end)
    };
    let batches = (plan.records.end.saturating_sub(plan.records.start)).div_ceil(plan.batch_size as u64);
    let mut stats = SampleStats::default();
    if let [model] = workers {
        for k in 0..batches {
            let (sampled, batch_stats) = sample_decoded(model, &sampling, batch_of(k))?;
            stats.absorb(&batch_stats);
            on_batch(sampled)?;
        }
        return Ok(stats);
    }
    if workers.is_empty() {
        return Err(Error::Invalid("no model to sample with".to_string()));
    }
    // Batches are handed out as tickets, at most two per worker ahead of the next one to write, so the
    // batches waiting for an earlier one to finish stay few.
    let ahead = 2 * workers.len() as u64;
    let (ticket_tx, ticket_rx) = std::sync::mpsc::channel::<u64>();
    let ticket_rx = std::sync::Mutex::new(ticket_rx);
    let (ticket_rx, sampling, batch_of) = (&ticket_rx, &sampling, &batch_of);
    // The tickets' sender moves into the scope: however it ends, the workers see it dropped and stop.
    std::thread::scope(move |scope| {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        for model in workers.iter_mut() {
            let done_tx = done_tx.clone();
            scope.spawn(move || loop {
                let ticket = ticket_rx.lock().map(|rx| rx.recv());
                let Ok(Ok(k)) = ticket else { break };
                if done_tx.send((k, sample_decoded(model, sampling, batch_of(k)))).is_err() {
                    break;
                }
            });
        }
        drop(done_tx);
        let mut issued = 0;
        while issued < batches.min(ahead) {
            ticket_tx.send(issued).expect("workers wait for tickets");
            issued += 1;
        }
        let mut waiting = std::collections::BTreeMap::new();
        let mut next = 0;
        while next < batches {
            let Ok((k, result)) = done_rx.recv() else {
                return Err(Error::Invalid("a sampling worker stopped".to_string()));
            };
            waiting.insert(k, result);
            while let Some(result) = waiting.remove(&next) {
                let (sampled, batch_stats) = result?;
                stats.absorb(&batch_stats);
                on_batch(sampled)?;
                next += 1;
                if issued < batches {
                    ticket_tx.send(issued).expect("workers wait for tickets");
                    issued += 1;
                }
            }
        }
        Ok(stats)
    })
}

/// Samples and decodes one batch.
fn sample_decoded(
    model: &mut Model,
    sampling: &sampler::Sampling,
    records: Range<u64>,
) -> Result<(Vec<Sampled>, SampleStats)> {
    let mut stats = SampleStats::default();
    let batch = sampler::sample_batch(model, sampling, records, &mut stats)?;
    let enc = &model.manifest.encoding;
    let sampled = batch
        .into_iter()
        .map(|(raw, mut rng)| {
            let patient = decode::decode(enc, &raw, &mut rng);
            Sampled { raw, patient }
        })
        .collect();
    Ok((sampled, stats))
}

/// A record's JSONL line, exactly as written (JSON plus a newline).
pub fn record_line(p: &Patient) -> Vec<u8> {
    let mut buf = Vec::new();
    halo_core::jsonl::write_record(&mut buf, p).expect("writing to memory");
    buf
}
