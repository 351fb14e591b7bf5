//! Train/validation/test assignment: given by the records or a split file, else seeded per patient.

use crate::error::{Error, Result};
use crate::record::{Patient, Split};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Where a split came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitSource {
    /// From the records' own `split`, or a split file.
    Given,
    /// A seeded shuffle per patient.
    Seeded,
    /// No records (a checkpoint with random weights): every part is empty.
    #[serde(rename = "none (random weights)")]
    RandomWeights,
}

impl std::fmt::Display for SplitSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SplitSource::Given => "given",
            SplitSource::Seeded => "seeded",
            SplitSource::RandomWeights => "none (random weights)",
        })
    }
}

/// The split that training used, saved as `split.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitAssignment {
    pub source: SplitSource,
    pub seed: u64,
    pub train: Vec<String>,
    pub val: Vec<String>,
    pub test: Vec<String>,
}

impl SplitAssignment {
    pub fn of(&self, split: Split) -> &[String] {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
            Split::Test => &self.test,
        }
    }
    pub fn lookup(&self) -> HashMap<&str, Split> {
        let mut m = HashMap::new();
        for s in [Split::Train, Split::Val, Split::Test] {
            for id in self.of(s) {
                m.insert(id.as_str(), s);
            }
        }
        m
    }
}

/// Reads `id,split` lines (CSV with optional header) or a JSON object id -> split.
pub fn read_split_file(path: &Path) -> Result<HashMap<String, Split>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut out = HashMap::new();
    if text.trim_start().starts_with('{') {
        let m: BTreeMap<String, String> = serde_json::from_str(&text)
            .map_err(|e| Error::line(path, e.line(), format!("expected a JSON object id -> split: {e}")))?;
        for (id, s) in m {
            let split = Split::parse(&s)
                .ok_or_else(|| Error::field(path, &id, format!("unknown split `{s}` (expected train, val or test)")))?;
            out.insert(id, split);
        }
        return Ok(out);
    }
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (i == 0 && line.to_ascii_lowercase().starts_with("id,")) {
            continue;
        }
        let (id, s) = line
            .split_once(',')
            .ok_or_else(|| Error::line(path, i + 1, "expected `id,split`"))?;
        let split = Split::parse(s.trim()).ok_or_else(|| {
            Error::line(
                path,
                i + 1,
                format!("unknown split `{}` (expected train, val or test)", s.trim()),
            )
        })?;
        out.insert(id.trim().to_string(), split);
    }
    Ok(out)
}

/// The seed `halo train` splits with unless told otherwise; `halo evaluate` without a checkpoint assumes it.
pub const DEFAULT_SEED: u64 = 4;

/// Assigns splits: given ones win (from the split file, else the records' own `split`);
/// otherwise a seeded shuffle gives 0.8/0.2 train/test, then 0.9/0.1 of train into train/validation.
pub fn assign(patients: &[Patient], given: Option<&HashMap<String, Split>>, seed: u64) -> Result<SplitAssignment> {
    let records: Vec<(String, Option<Split>)> = patients.iter().map(|p| (p.id.clone(), p.split)).collect();
    assign_ids(records, given, seed)
}

/// [`assign`] from each record's id and own split, in record order (what a streamed pass collects).
pub fn assign_ids(
    records: Vec<(String, Option<Split>)>,
    given: Option<&HashMap<String, Split>>,
    seed: u64,
) -> Result<SplitAssignment> {
    let any_given = given.is_some() || records.iter().any(|(_, s)| s.is_some());
    let mut a = SplitAssignment {
        source: if any_given {
            SplitSource::Given
        } else {
            SplitSource::Seeded
        },
        seed,
        train: vec![],
        val: vec![],
        test: vec![],
    };
    if any_given {
        for (id, own) in records {
            let split = given.and_then(|g| g.get(&id).copied()).or(own).ok_or_else(|| {
                Error::Invalid(format!(
                    "patient `{id}` has no split while others do (give every record a split, or none)"
                ))
            })?;
            match split {
                Split::Train => a.train.push(id),
                Split::Val => a.val.push(id),
                Split::Test => a.test.push(id),
            }
        }
        return Ok(a);
    }
    let mut ids: Vec<String> = records.into_iter().map(|(id, _)| id).collect();
    ids.sort();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    ids.shuffle(&mut rng);
    let n_test = (ids.len() as f64 * 0.2).round() as usize;
    let rest = ids.len() - n_test;
    let n_val = (rest as f64 * 0.1).round() as usize;
    a.test = ids[..n_test].to_vec();
    a.val = ids[n_test..n_test + n_val].to_vec();
    a.train = ids[n_test + n_val..].to_vec();
    Ok(a)
}
