//! From records on disk to encoded splits and to batches of multi-hot tensors.

use anyhow::{Context, Result};
use halo_core::encoding::{EncodedPatient, Encoding, LabelSpec, Token};
use halo_core::record::DemographicCategory;
use halo_core::record::{Dataset, Patient, Split};
use halo_core::split::SplitAssignment;
use halo_core::{Format, ReadOptions};
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// Encoded sequences of one split (one per record, or one per window), with their records' ids.
#[derive(Debug, Default)]
pub struct EncodedSplit {
    pub ids: Vec<String>,
    pub patients: Vec<EncodedPatient>,
}

/// What encoding had to change, reported to the user.
#[derive(Debug, Default, serde::Serialize)]
pub struct EncodeReport {
    /// Records longer than the context: split into windows, or (without windows) cut to their most
    /// recent `n_ctx - 2` visits.
    pub truncated_records: usize,
    /// Sequences the model learns from: one per record, more for records split into windows.
    pub sequences: usize,
    /// Code or label occurrences not in the vocabulary (only when encoding new data with a fitted encoding).
    pub unknown_codes: usize,
}

pub fn read(path: &Path, format: Option<Format>, options: &ReadOptions) -> Result<Dataset> {
    halo_core::read_dataset(path, format, options).with_context(|| format!("reading records from {}", path.display()))
}

/// Encodes the patients of each split.
pub fn encode_splits(
    patients: &[Patient],
    split: &SplitAssignment,
    encoding: &Encoding,
    spec: Option<&LabelSpec>,
) -> (HashMap<Split, EncodedSplit>, EncodeReport) {
    let index = encoding.index();
    let lookup = split.lookup();
    let mut out: HashMap<Split, EncodedSplit> = HashMap::new();
    let mut report = EncodeReport::default();
    for p in patients {
        let Some(s) = lookup.get(p.id.as_str()) else {
            continue;
        };
        if p.visits.len() > encoding.options.max_visits {
            report.truncated_records += 1;
        }
        let windows = encoding.encode_windows(p, &index, spec, &mut report.unknown_codes);
        report.sequences += windows.len();
        let entry = out.entry(*s).or_default();
        for w in windows {
            entry.ids.push(p.id.clone());
            entry.patients.push(w);
        }
    }
    (out, report)
}

/// Log-odds of each vocabulary entry over the scored rows of `patients` (label visit, real visits, end
/// code on the last), smoothed by half a count so unseen entries get a finite, very negative value.
pub fn prior_logits<P: std::borrow::Borrow<EncodedPatient>>(
    patients: impl IntoIterator<Item = P>,
    encoding: &Encoding,
) -> Tensor {
    let mut counts = vec![0f64; encoding.vocab_size()];
    let mut rows = 0f64;
    for p in patients {
        let p = p.borrow();
        rows += (p.visits.len() + 1) as f64;
        for c in p.labels.iter().chain(p.visits.iter().flatten()) {
            counts[*c as usize] += 1.0;
        }
        if !p.continues {
            counts[encoding.end_index()] += 1.0;
        }
    }
    let logits: Vec<f32> = counts
        .iter()
        .map(|c| {
            let p = (c + 0.5) / (rows + 1.0);
            (p / (1.0 - p)).ln() as f32
        })
        .collect();
    Tensor::from_slice(&logits)
}

/// One batch: inputs [B, L, V] (start visit, label visit, visits, pad visits) and the mask [B, L-1] of the
/// scored rows of the shifted targets (the label visit and every real visit).
pub struct Batch {
    pub visits: Tensor,
    pub mask: Tensor,
    /// Flattened [B * (L-1)] indices of the scored rows, in row-major order.
    pub rows: Tensor,
    /// The codes of the visit each scored row predicts, as embedding-bag indices and offsets.
    pub bag_codes: Tensor,
    pub bag_offsets: Tensor,
}

/// Builds a batch padded to its longest record; the end code goes on each record's last real visit, except
/// in a window that the record goes on after.
pub fn make_batch(patients: &[&EncodedPatient], encoding: &Encoding, device: Device) -> Batch {
    let v = encoding.vocab_size() as i64;
    let b = patients.len() as i64;
    let l = patients.iter().map(|p| p.visits.len()).max().unwrap_or(0) as i64 + 2;
    let mut hot: Vec<i64> = Vec::new();
    let mut mask = vec![0f32; (b * (l - 1)) as usize];
    let (mut rows, mut bag_codes, mut bag_offsets) = (Vec::new(), Vec::new(), Vec::new());
    for (i, p) in patients.iter().enumerate() {
        // Scored rows predict the label visit, then each real visit (the last one with the end code).
        let n_visits = p.visits.len();
        for t in 0..=n_visits {
            rows.push(i as i64 * (l - 1) + t as i64);
            bag_offsets.push(bag_codes.len() as i64);
            let codes = if t == 0 { &p.labels } else { &p.visits[t - 1] };
            bag_codes.extend(codes.iter().map(|c| *c as i64));
            if t == n_visits && !p.continues {
                bag_codes.push(encoding.end_index() as i64);
            }
        }
        let row = |t: i64| (i as i64 * l + t) * v;
        hot.push(row(0) + encoding.start_index() as i64);
        hot.extend(p.labels.iter().map(|c| row(1) + *c as i64));
        let t_last = p.visits.len() as i64 + 1;
        for (t, visit) in p.visits.iter().enumerate() {
            hot.extend(visit.iter().map(|c| row(t as i64 + 2) + *c as i64));
        }
        if !p.continues {
            hot.push(row(t_last) + encoding.end_index() as i64);
        }
        for t in t_last + 1..l {
            hot.push(row(t) + encoding.pad_index() as i64);
        }
        for t in 0..t_last {
            mask[i * (l - 1) as usize + t as usize] = 1.0;
        }
    }
    let index = Tensor::from_slice(&hot).to_device(device);
    let visits = Tensor::zeros([b * l * v], (Kind::Float, device))
        .index_fill(0, &index, 1.0)
        .view([b, l, v]);
    let mask = Tensor::from_slice(&mask).to_device(device).view([b, l - 1]);
    Batch {
        visits,
        mask,
        rows: Tensor::from_slice(&rows).to_device(device),
        bag_codes: Tensor::from_slice(&bag_codes).to_device(device),
        bag_offsets: Tensor::from_slice(&bag_offsets).to_device(device),
    }
}

/// Whether the label bias of vocabulary entry `j` starts from the data and learns: the codes drawn on their
/// own, not a visit group's (gap, age, visit type, size, calendar: a sex's share of short gaps, high while
/// pregnant, would shorten every gap of its records) nor the special codes.
pub fn label_bias_learns(encoding: &Encoding, j: usize) -> bool {
    j < encoding.code_vocab_size && !encoding.visit_groups.iter().any(|g| g.range().contains(&j))
}

/// [`label_bias_learns`] for every vocabulary entry.
pub fn label_bias_rows(encoding: &Encoding) -> Vec<bool> {
    (0..encoding.vocab_size())
        .map(|j| label_bias_learns(encoding, j))
        .collect()
}

/// Visits of pseudo-count by which [`label_bias_init`] shrinks a sex's rate of a code towards its rate over
/// all records (a code no man holds starts about log(visits of men / 100) below its marginal log-odds, not
/// at minus infinity).
const LABEL_BIAS_SHRINKAGE_VISITS: f64 = 100.0;

/// The label bias's start (`ModelConfig::label_bias`, [V, L]): for each value of the first demographic
/// category (the sex), each code's log-odds over the visits of the records holding it, shrunk towards its
/// rate over all visits, minus its log-odds over all visits (the output bias starts at those, `prior_logits`);
/// zero elsewhere. So a code that one sex never holds starts rare for the other, instead of waiting for the
/// transformer to learn it in a few hundred steps.
pub fn label_bias_init<P: std::borrow::Borrow<EncodedPatient>>(
    patients: impl IntoIterator<Item = P>,
    encoding: &Encoding,
) -> Tensor {
    let (v, l, c) = (
        encoding.vocab_size(),
        encoding.label_vocab_size,
        encoding.code_vocab_size,
    );
    let mut out = vec![0f32; v * l];
    let sex = encoding.demographic_categories.first().filter(|cat| {
        encoding.tokens.get(c + cat.first).is_some_and(|t| {
            matches!(
                t,
                Token::Demographic {
                    category: DemographicCategory::Sex,
                    ..
                }
            )
        })
    });
    if let Some(sex) = sex {
        let values = c + sex.first..c + sex.first + sex.len;
        let (mut all, mut all_visits) = (vec![0f64; v], 0f64);
        let mut per_value = vec![(vec![0f64; v], 0f64); sex.len];
        for p in patients {
            let p = p.borrow();
            let Some(value) = p.labels.iter().map(|x| *x as usize).find(|x| values.contains(x)) else {
                continue;
            };
            let (counts, visits) = &mut per_value[value - values.start];
            for &code in p.visits.iter().flatten() {
                all[code as usize] += 1.0;
                counts[code as usize] += 1.0;
            }
            all_visits += p.visits.len() as f64;
            *visits += p.visits.len() as f64;
        }
        let log_odds = |p: f64| {
            let p = p.clamp(1e-9, 1.0 - 1e-9);
            (p / (1.0 - p)).ln()
        };
        for (s, (counts, visits)) in per_value.iter().enumerate() {
            for j in (0..c).filter(|&j| label_bias_learns(encoding, j)) {
                let marginal = all[j] / all_visits.max(1.0);
                let rate =
                    (counts[j] + LABEL_BIAS_SHRINKAGE_VISITS * marginal) / (visits + LABEL_BIAS_SHRINKAGE_VISITS);
                out[j * l + sex.first + s] = (log_odds(rate) - log_odds(marginal)) as f32;
            }
        }
    }
    Tensor::from_slice(&out).view([v as i64, l as i64])
}
