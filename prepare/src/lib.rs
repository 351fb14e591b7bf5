//! halo-prepare: records streamed into a corpus on disk ([`halo_core::corpus`]) that training
//! memory-maps. Four stages, each timed: read (OMOP tables into a compact store; MEDS and JSONL whole), split
//! (one pass: ids, and the digest of the records), fit (one pass, two with visit-size buckets) and encode
//! (one pass, writing each record's sequences as it goes).

use anyhow::{bail, Context, Result};
use halo_core::corpus::{CorpusInfo, CorpusWriter, CORPUS_FORMAT_VERSION, INFO};
use halo_core::encoding::{Encoding, EncodingOptions, LabelSpec, Token, TrainingShares};
use halo_core::fsutil::{self, temp_sibling, write_json_atomic, Target};
use halo_core::manifest::{checkpoint as ck, TrainingSummary};
use halo_core::privacy::PrivacyLedger;
use halo_core::record::{Patient, Split};
use halo_core::source::Records;
use halo_core::split::{self, SplitAssignment};
use halo_core::{Format, ReadOptions};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub mod args;

/// What `halo prepare` (and `halo train --data`, which prepares into its checkpoint) is asked for.
#[derive(Debug, Clone)]
pub struct PrepareArgs {
    pub data: PathBuf,
    pub format: Option<Format>,
    pub read: ReadOptions,
    pub label_spec: Option<PathBuf>,
    pub split_file: Option<PathBuf>,
    /// Seed of the split (and of the shuffled code order, through `encoding.order_seed`).
    pub seed: u64,
    /// Resolved for the model's context (see [`encoding_options`]).
    pub encoding: EncodingOptions,
    pub quiet: bool,
}

/// The encoding options of a model with context `n_ctx`: `n_ctx - 2` visits a sequence, and windows of half
/// of that when asked for (any nonzero stride asks; windows need gaps: a later window's first visit is told
/// from a record's first by its gap).
pub fn encoding_options(asked: &EncodingOptions, n_ctx: usize) -> EncodingOptions {
    let mut options = asked.clone();
    options.max_visits = n_ctx - 2;
    options.window_stride = if options.window_stride > 0 && options.gaps {
        (options.max_visits / 2).max(1)
    } else {
        0
    };
    options
}

/// Seconds and peak memory of each stage, what `halo prepare` prints and its benchmark reports.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StageTimes {
    pub stages: Vec<Stage>,
    pub events: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Stage {
    pub name: &'static str,
    pub seconds: f64,
    /// Peak resident memory of the process so far (Linux; 0 elsewhere).
    pub peak_rss_mb: f64,
}

impl StageTimes {
    fn stage(&mut self, name: &'static str, started: Instant, quiet: bool) {
        let stage = Stage {
            name,
            seconds: started.elapsed().as_secs_f64(),
            peak_rss_mb: peak_rss_mb(),
        };
        if !quiet {
            let rate = match self.events {
                0 => String::new(),
                n => format!(" ({:.0} events/s)", n as f64 / stage.seconds.max(1e-9)),
            };
            eprintln!(
                "halo prepare: {name}: {:.1} s{rate}, peak RSS {:.0} MB",
                stage.seconds, stage.peak_rss_mb
            );
        }
        self.stages.push(stage);
    }
}

/// Peak resident set size of this process in MB (`VmHWM`), 0 where it cannot be read.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Reads `args.data`, fits the encoding and writes the corpus to `out` (a new folder, published whole).
pub fn prepare(args: &PrepareArgs, out: &Path) -> Result<StageTimes> {
    fsutil::check_fresh(out, Target::AbsentOrEmptyDir, "prepare into a new or empty folder")
        .map_err(anyhow::Error::from)?;
    let tmp = temp_sibling(out);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let result = prepare_into(args, &tmp);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    let times = result?;
    fsutil::publish(&tmp, out, Target::AbsentOrEmptyDir).context("moving the corpus into place")?;
    Ok(times)
}

fn prepare_into(args: &PrepareArgs, dir: &Path) -> Result<StageTimes> {
    let mut times = StageTimes::default();
    let started = Instant::now();
    let mut records = open(&args.data, args.format, &args.read)?;
    // Complete here for OMOP and JSONL; a MEDS source counts its events during the first pass.
    times.events = records.report().events;
    times.stage("read", started, args.quiet);

    let started = Instant::now();
    let FirstPass {
        ids,
        data_digest,
        labels_given,
    } = first_pass(&mut records)?;
    times.events = records.report().events;
    if !args.quiet {
        eprintln!(
            "halo prepare: read {} ({})",
            args.data.display(),
            serde_json::to_string(records.report())?
        );
    }
    if ids.is_empty() {
        bail!("{}: no patient with at least one visit", args.data.display());
    }
    let given = match &args.split_file {
        Some(p) => Some(split::read_split_file(p)?),
        None => None,
    };
    let n_records = ids.len();
    if let Some(dp) = &args.encoding.dp {
        dp.check()?;
        if dp.delta > 1.0 / n_records as f64 {
            bail!(
                "delta {} of the differential privacy is above 1 / {n_records} records: a mechanism could then \
                 release a whole record with probability delta; choose --dp-delta below {:.1e}",
                dp.delta,
                1.0 / n_records as f64
            );
        }
    }
    let split = split::assign_ids(ids, given.as_ref(), args.seed)?;
    times.stage("split", started, args.quiet);

    let started = Instant::now();
    let spec = match (&args.label_spec, labels_given) {
        (Some(p), _) => Some(LabelSpec::read(p)?),
        (None, true) => None,
        (None, false) => Some(LabelSpec::default_omop()),
    };
    let lookup = split.lookup();
    let in_train = |p: &Patient| lookup.get(p.id.as_str()) == Some(&Split::Train);
    let encoding = Encoding::fit_records(&mut records, &in_train, spec.as_ref(), args.encoding.clone())?;
    times.stage("fit", started, args.quiet);

    let started = Instant::now();
    let (info, summary) = encode_into(&mut records, &split, &encoding, spec.as_ref(), dir)?;
    let summary = TrainingSummary {
        records: n_records,
        source: args.data.display().to_string(),
        ..summary
    };
    if !args.quiet {
        report_encoding(&split, &encoding, &info);
    }
    let info = CorpusInfo {
        data_digest,
        read_report: records.report().clone(),
        ..info
    };
    write_json_atomic(&dir.join(ck::ENCODING), &encoding)?;
    write_json_atomic(&dir.join(ck::SPLIT), &split)?;
    write_json_atomic(&dir.join(ck::TRAINING), &summary)?;
    if let Some(spec) = &spec {
        write_json_atomic(&dir.join(ck::LABEL_SPEC), spec)?;
    }
    write_json_atomic(&dir.join(INFO), &info)?;
    if let Some(dp) = &encoding.options.dp {
        // What the corpus released of the records, for DP-SGD to compose on top of.
        let ledger = PrivacyLedger::new(
            dp.mechanisms(encoding.options.gaps, encoding.options.public_codes.is_some())?,
            dp.delta,
        );
        ledger.write_in(dir)?;
        if !args.quiet {
            for line in halo_core::privacy::describe(Some(&ledger)) {
                eprintln!(
                    "halo prepare: {}",
                    line.replace("trained with", "statistics fitted with")
                );
            }
        }
    }
    times.stage("encode", started, args.quiet);
    Ok(times)
}

/// Opens the records, with the file named on error.
pub fn open(path: &Path, format: Option<Format>, options: &ReadOptions) -> Result<Records> {
    Records::open(path, format, options).with_context(|| format!("reading records from {}", path.display()))
}

/// What the first pass over the records collects.
struct FirstPass {
    /// Each record's id and own split, in record order.
    ids: Vec<(String, Option<Split>)>,
    data_digest: String,
    labels_given: bool,
}

/// One pass: each record's id and own split, the digest of the records as read, and whether they carry
/// labels.
fn first_pass(records: &mut Records) -> Result<FirstPass> {
    let mut ids = Vec::new();
    let mut digest = RecordDigest::default();
    let mut labels_given = false;
    records.pass(&mut |p| {
        ids.push((p.id.clone(), p.split));
        labels_given |= p.labels.is_some();
        digest.add(p)
    })?;
    Ok(FirstPass {
        ids,
        data_digest: digest.finish(),
        labels_given,
    })
}

/// The digest of the records as read (what `--resume` compares), in one pass.
pub fn data_digest(records: &mut Records) -> Result<String> {
    let mut digest = RecordDigest::default();
    records.pass(&mut |p| digest.add(p))?;
    Ok(digest.finish())
}

/// Encodes every record of the split into corpus files in `dir` (one pass); the corpus information (without
/// digest and read report) and the training summary of the training split.
pub fn encode_into(
    records: &mut Records,
    split: &SplitAssignment,
    encoding: &Encoding,
    spec: Option<&LabelSpec>,
    dir: &Path,
) -> Result<(CorpusInfo, TrainingSummary)> {
    let lookup: HashMap<&str, Split> = split.lookup();
    let index = encoding.index();
    let mut writer = CorpusWriter::create(dir)?;
    let mut shares = TrainingShares::new(encoding);
    let (mut truncated, mut unknown) = (0, 0);
    let (mut train_sequences, mut train_visits, mut train_codes) = (0usize, 0usize, 0usize);
    // Under differential privacy: the bounded sums the noisy mean codes per visit is computed from.
    let mut dp_sums = (0.0_f64, 0.0_f64);
    records.pass(&mut |p| {
        let Some(&s) = lookup.get(p.id.as_str()) else {
            return Ok(());
        };
        if p.visits.len() > encoding.options.max_visits {
            truncated += 1;
        }
        let windows = encoding.encode_windows(p, &index, spec, &mut unknown);
        if s == Split::Train {
            shares.add(p);
            train_sequences += windows.len();
            train_visits += windows.iter().map(|w| w.visits.len()).sum::<usize>();
            train_codes += windows.iter().flat_map(|w| &w.visits).map(Vec::len).sum::<usize>();
            if let Some(dp) = &encoding.options.dp {
                let sizes: Vec<usize> = windows.iter().flat_map(|w| &w.visits).map(Vec::len).collect();
                let (codes, visits) = dp.codes_per_visit_contribution(&sizes);
                dp_sums = (dp_sums.0 + codes, dp_sums.1 + visits);
            }
        }
        writer.push_record(s, &p.id, &windows)
    })?;
    let splits = writer.finish()?;
    let shares = shares.finish();
    let mean_codes_per_visit = match &encoding.options.dp {
        Some(dp) => dp.noisy_codes_per_visit(dp_sums)?,
        None => train_codes as f64 / train_visits.max(1) as f64,
    };
    let summary = TrainingSummary {
        train_records: train_sequences,
        mean_visits: train_visits as f64 / train_sequences.max(1) as f64,
        mean_codes_per_visit,
        left_out: encoding.left_out,
        exclusive_label_groups: encoding.label_groups.iter().map(|g| g.name.clone()).collect(),
        gap_bucket_shares: shares.gaps,
        visit_size_shares: shares.visit_sizes,
        visit_type_shares: shares.visit_types,
        demographic_shares: shares.demographics,
        first_calendar_shares: shares.first_calendar,
        ..Default::default()
    };
    let info = CorpusInfo {
        format_version: CORPUS_FORMAT_VERSION,
        truncated_records: truncated,
        unknown_codes: unknown,
        splits,
        ..Default::default()
    };
    Ok((info, summary))
}

fn report_encoding(split: &SplitAssignment, encoding: &Encoding, info: &CorpusInfo) {
    let sequences: usize = info.splits.values().map(|s| s.sequences).sum();
    eprintln!(
        "halo prepare: split {} ({} train / {} val / {} test); {} records longer than {} visits{}",
        split.source,
        split.train.len(),
        split.val.len(),
        split.test.len(),
        info.truncated_records,
        encoding.options.max_visits,
        match encoding.options.window_stride {
            0 => " kept their most recent visits".to_string(),
            stride => format!(
                ", learnt in windows every {stride} visits ({sequences} sequences; sampled records go up to {} visits)",
                encoding.record_visit_limit
            ),
        }
    );
    let left = encoding.left_out;
    eprintln!(
        "halo prepare: small-cell rule (--min-patients {}): left out {} codes, {} labs, {} demographic values and \
         {} visit types seen in fewer patients",
        encoding.options.min_patients, left.codes, left.labs, left.demographic_values, left.visit_types
    );
    if let Some(public) = &encoding.options.public_codes {
        let kept = encoding.tokens[..encoding.code_vocab_size]
            .iter()
            .filter(|t| matches!(t, Token::Code { .. }))
            .count();
        eprintln!(
            "halo prepare: codes from the public list ({} codes, sha256 {}): {kept} in the vocabulary{}",
            public.count,
            &public.sha256[..12],
            match encoding.options.dp {
                Some(_) =>
                    " (every listed code, seen or not: under differential privacy no count chooses them)".to_string(),
                None => format!("; {} codes of the data are not on it", left.not_listed),
            }
        );
    }
    if !encoding.label_groups.is_empty() {
        let names: Vec<&str> = encoding.label_groups.iter().map(|g| g.name.as_str()).collect();
        eprintln!(
            "halo prepare: labels that partition the records, sampled as exclusive groups: {}",
            names.join(", ")
        );
    }
    if !encoding.derived_labels.is_empty() {
        let unset = encoding.derived_labels.iter().filter(|d| d.codes.is_empty()).count();
        eprintln!(
            "halo prepare: {} labels derived from codes by the label spec (the sampler sets them from the sampled \
             codes){}",
            encoding.derived_labels.len(),
            if unset > 0 {
                format!("; {unset} of them have no code in the vocabulary and are never set")
            } else {
                String::new()
            }
        );
    }
}

/// A writer that only hashes.
struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// sha256 of the records as read (their JSONL lines, in order), one record at a time: what `--resume`
/// compares. The same data in another file layout digests the same, changed data does not.
pub struct RecordDigest(HashWriter);

impl Default for RecordDigest {
    fn default() -> RecordDigest {
        RecordDigest(HashWriter(Sha256::new()))
    }
}

impl RecordDigest {
    pub fn add(&mut self, p: &Patient) -> halo_core::Result<()> {
        halo_core::jsonl::write_record(&mut self.0, p)
            .map_err(|e| halo_core::Error::Invalid(format!("hashing a record: {e}")))
    }

    pub fn finish(self) -> String {
        hex(&self.0 .0.finalize())
    }
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
