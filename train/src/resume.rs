//! What `--resume` checks: the settings a run was started with ([`RunSettings`]: the data's digest and
//! every option that shapes the result, stored in `train_state.json`) must equal the resuming command's,
//! compared field by field, and `log.jsonl` is cut back to the whole lines of the epochs the state holds.

use crate::train::{TrainArgs, TrainSettings};
use anyhow::{bail, Context, Result};
use halo_core::label_spec::LabelSpec;
use halo_core::record::Patient;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// Everything that shapes a run's result except `--epochs` (which a resume may raise), the device, the
/// threads and the output: what `train_state.json` records and `--resume` compares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    /// sha256 of the records as read ([`halo_prepare::RecordDigest`]).
    pub data_digest: String,
    /// How the records were read (a run from a corpus: how the corpus was).
    pub format: Option<halo_core::Format>,
    pub meds_visit_window_seconds: Option<i64>,
    /// sha256 of the label spec and split file given (not their paths: a moved file is the same input).
    pub label_spec_sha256: Option<String>,
    pub split_file_sha256: Option<String>,
    #[serde(flatten)]
    pub train: TrainSettings,
}

/// Settings as `train_state.json` holds them: this form, or the flag-keyed strings of runs from before it
/// (compared no more: such a run resumes with a note).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SavedSettings {
    Fields(Box<RunSettings>),
    Older(BTreeMap<String, String>),
}

impl Default for SavedSettings {
    fn default() -> SavedSettings {
        SavedSettings::Older(BTreeMap::new())
    }
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of the records as read (their JSONL lines, in order): the same data in another file layout
/// digests the same, changed data does not.
pub fn data_digest(patients: &[Patient]) -> Result<String> {
    let mut digest = halo_prepare::RecordDigest::default();
    for p in patients {
        digest.add(p)?;
    }
    Ok(digest.finish())
}

fn file_digest(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex(&Sha256::digest(&bytes)))
}

/// The settings of a run of `args` on records digesting to `data_digest`; `encoding` replaces the asked-for
/// encoding options (a run from a corpus takes the corpus's).
pub fn settings_of(
    args: &TrainArgs,
    data_digest: &str,
    encoding: Option<&halo_core::encoding::EncodingOptions>,
) -> Result<RunSettings> {
    let label_spec_sha256 = args
        .label_spec
        .as_deref()
        .map(|p| match LabelSpec::builtin_text(p) {
            Some(text) => Ok(hex(&Sha256::digest(text.as_bytes()))),
            None => file_digest(p),
        })
        .transpose()?;
    let mut train = args.settings.clone();
    if let Some(encoding) = encoding {
        train.encoding = encoding.clone();
    }
    train.lr = Some(train.lr.unwrap_or(train.preset.settings().learning_rate));
    Ok(RunSettings {
        data_digest: data_digest.to_string(),
        format: args.format,
        meds_visit_window_seconds: args.read.meds_visit_window_seconds,
        label_spec_sha256,
        split_file_sha256: args.split_file.as_deref().map(file_digest).transpose()?,
        train,
    })
}

/// Refuses to resume when a setting differs, naming each one by its field (`dropout`, `encoding.min_patients`).
pub fn check_same(out: &Path, saved: &SavedSettings, now: &RunSettings) -> Result<()> {
    let saved = match saved {
        SavedSettings::Fields(saved) => saved,
        SavedSettings::Older(_) => {
            eprintln!(
                "halo train: note: {} records its settings in an older form (or none); resuming without checking \
                 them",
                out.display()
            );
            return Ok(());
        }
    };
    let (was, is) = (
        leaves(&serde_json::to_value(saved)?),
        leaves(&serde_json::to_value(now)?),
    );
    // Over the fields of both: a setting only one of them has (`dp.epsilon`) differs too; absent and null
    // are the same (not set).
    let set = |v: Option<&serde_json::Value>| v.filter(|v| !v.is_null()).cloned();
    let keys: std::collections::BTreeSet<&String> = was.keys().chain(is.keys()).collect();
    let differ: Vec<String> = keys
        .into_iter()
        .filter(|k| set(was.get(*k)) != set(is.get(*k)))
        .map(|k| {
            let (a, b) = differing_parts(&shown(was.get(k)), &shown(is.get(k)));
            format!("{k}: was {a}, now {b}")
        })
        .collect();
    if !differ.is_empty() {
        bail!(
            "--resume: the run in {} was started with other settings, so continuing it would not give the run \
             asked for:\n  {}\nResume with the original data and options, or start a new run in another --out",
            out.display(),
            differ.join("\n  ")
        );
    }
    Ok(())
}

/// A JSON value's leaves by dotted path (`encoding.min_patients`).
fn leaves(v: &serde_json::Value) -> BTreeMap<String, serde_json::Value> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, serde_json::Value>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&path, v, out);
                }
            }
            leaf => {
                out.insert(prefix.to_string(), leaf.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", v, &mut out);
    out
}

/// A value as a user types it: strings bare, absent and null as "not set".
fn shown(v: Option<&serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => "not set".into(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Values longer than this are shown as their differing part with some context.
const WHOLE_VALUE_CHARS: usize = 70;
const CONTEXT_CHARS: usize = 24;

/// The two values to print: whole when short, else the part where they differ with `CONTEXT_CHARS` around it.
fn differing_parts(was: &str, now: &str) -> (String, String) {
    let (a, b): (Vec<char>, Vec<char>) = (was.chars().collect(), now.chars().collect());
    if a.len() <= WHOLE_VALUE_CHARS && b.len() <= WHOLE_VALUE_CHARS {
        return (was.to_string(), now.to_string());
    }
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let max_suffix = a.len().min(b.len()) - prefix;
    let suffix = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take(max_suffix)
        .take_while(|(x, y)| x == y)
        .count();
    let start = prefix.saturating_sub(CONTEXT_CHARS);
    let part = |v: &[char]| {
        let end = (v.len() - suffix + CONTEXT_CHARS).min(v.len());
        let mut out = String::new();
        if start > 0 {
            out.push_str("...");
        }
        out.extend(&v[start..end]);
        if end < v.len() {
            out.push_str("...");
        }
        out
    };
    (part(&a), part(&b))
}

/// Keeps only the whole lines of `log.jsonl` for epochs up to `epochs_done` (a kill may have torn the last
/// line, or logged an epoch whose state was not saved), rewritten atomically.
pub fn trim_log(path: &Path, epochs_done: usize) -> Result<()> {
    let Ok(text) = std::fs::read(path) else {
        return Ok(());
    };
    let mut kept = Vec::new();
    for line in text.split_inclusive(|&b| b == b'\n') {
        if !line.ends_with(b"\n") {
            break;
        }
        let epoch = serde_json::from_slice::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v.get("epoch").and_then(|e| e.as_u64()));
        match epoch {
            Some(e) if e as usize <= epochs_done => kept.extend_from_slice(line),
            _ => break,
        }
    }
    if kept.len() != text.len() {
        halo_core::fsutil::write_atomic(path, &kept)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> RunSettings {
        RunSettings {
            data_digest: "ab".repeat(32),
            format: None,
            meds_visit_window_seconds: None,
            label_spec_sha256: None,
            split_file_sha256: None,
            train: TrainSettings::default(),
        }
    }

    fn saved_fields(saved: &SavedSettings) -> RunSettings {
        match saved {
            SavedSettings::Fields(fields) => (**fields).clone(),
            SavedSettings::Older(_) => unreachable!(),
        }
    }

    #[test]
    fn a_torn_or_unsaved_log_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log.jsonl");
        std::fs::write(&log, "{\"epoch\":1}\n{\"epoch\":2}\n{\"epoch\":3}\n{\"epo").unwrap();
        trim_log(&log, 2).unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "{\"epoch\":1}\n{\"epoch\":2}\n");
    }

    #[test]
    fn differing_settings_are_named_by_field_with_their_values_as_typed() {
        let saved = settings();
        let mut now = settings();
        now.train.lr = Some(0.01);
        now.train.n_embd = Some(64);
        now.format = Some(halo_core::Format::Jsonl);
        now.label_spec_sha256 = Some("cd".repeat(32));
        now.train.encoding.min_patients = 5;
        let saved = SavedSettings::Fields(Box::new(saved));
        let err = check_same(Path::new("ck"), &saved, &now).unwrap_err().to_string();
        assert!(err.contains("lr: was not set, now 0.01"), "{err}");
        assert!(err.contains("n_embd: was not set, now 64"), "{err}");
        assert!(err.contains("format: was not set, now jsonl"), "{err}");
        assert!(
            err.contains(&format!("label_spec_sha256: was not set, now {}", "cd".repeat(32))),
            "{err}"
        );
        assert!(err.contains("encoding.min_patients: was 10, now 5"), "{err}");
        let mut private = saved_fields(&saved);
        private.train.dp = Some(crate::settings::DpSettings {
            epsilon: 8.0,
            delta: None,
            max_grad_norm: 1.0,
        });
        let err = check_same(Path::new("ck"), &saved, &private).unwrap_err().to_string();
        assert!(err.contains("dp.epsilon: was not set, now 8.0"), "{err}");
        assert!(err.contains("dp.max_grad_norm: was not set, now 1.0"), "{err}");
        let mut other = private.clone();
        other.train.dp.as_mut().unwrap().max_grad_norm = 2.0;
        let private_saved = SavedSettings::Fields(Box::new(private.clone()));
        let err = check_same(Path::new("ck"), &private_saved, &other)
            .unwrap_err()
            .to_string();
        assert!(err.contains("dp.max_grad_norm: was 1.0, now 2.0"), "{err}");
        assert!(!err.contains("dp.epsilon"), "{err}");
        let err = check_same(Path::new("ck"), &private_saved, &saved_fields(&saved))
            .unwrap_err()
            .to_string();
        assert!(err.contains("dp.epsilon: was 8.0, now not set"), "{err}");
        assert!(!err.contains("dropout"), "only what differs is named: {err}");
        assert!(check_same(Path::new("ck"), &SavedSettings::Fields(Box::new(now.clone())), &now).is_ok());
    }

    #[test]
    fn settings_round_trip_and_older_records_resume_with_a_note() {
        let s = settings();
        let text = serde_json::to_string(&SavedSettings::Fields(Box::new(s.clone()))).unwrap();
        assert_eq!(
            serde_json::from_str::<SavedSettings>(&text).unwrap(),
            SavedSettings::Fields(Box::new(s.clone()))
        );
        let older: SavedSettings = serde_json::from_str(r#"{"--lr": "0.001"}"#).unwrap();
        assert!(matches!(older, SavedSettings::Older(_)));
        assert!(check_same(Path::new("ck"), &older, &s).is_ok());
    }
}
