//! What `--resume` checks: the settings a run was started with (the data's digest and every option that
//! shapes the result, stored in `train_state.json`) must equal the resuming command's, and `log.jsonl` is
//! cut back to the whole lines of the epochs the state holds.

use crate::train::TrainArgs;
use anyhow::{bail, Context, Result};
use halo_core::label_spec::LabelSpec;
use halo_core::record::Patient;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// The settings of a run, by name, as text (so that differences can be named).
pub type RunSettings = BTreeMap<String, String>;

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

/// Everything that shapes a run's result except `--epochs` (which a resume may raise) and the device.
pub fn settings_of(args: &TrainArgs, data_digest: &str) -> Result<RunSettings> {
    let mut s = RunSettings::new();
    let mut put = |k: &str, v: String| {
        s.insert(k.to_string(), v);
    };
    put("data (sha256 of the records as read)", data_digest.to_string());
    put("--format", format!("{:?}", args.format));
    put(
        "--meds-visit-window",
        format!("{:?}", args.read.meds_visit_window_seconds),
    );
    put("--preset", format!("{:?}", args.preset));
    put(
        "--lr",
        format!("{}", args.lr.unwrap_or(args.preset.settings().learning_rate)),
    );
    put("--batch-size", args.batch_size.to_string());
    put("--seed", args.seed.to_string());
    for (k, v) in [
        ("--n-embd", args.n_embd),
        ("--n-layer", args.n_layer),
        ("--n-head", args.n_head),
        ("--n-ctx", args.n_ctx),
    ] {
        put(k, format!("{v:?}"));
    }
    put("--coarse", args.coarse.to_string());
    put("--no-seen-codes", (!args.seen_codes).to_string());
    put("--dropout", args.dropout.to_string());
    put("--weight-decay", args.weight_decay.to_string());
    put("--reference-init", args.reference_init.to_string());
    put(
        "--label-spec (sha256)",
        args.label_spec
            .as_deref()
            .map(|p| match LabelSpec::builtin_text(p) {
                Some(text) => Ok(hex(&Sha256::digest(text.as_bytes()))),
                None => file_digest(p),
            })
            .transpose()?
            .unwrap_or_default(),
    );
    put(
        "--split-file (sha256)",
        args.split_file
            .as_deref()
            .map(file_digest)
            .transpose()?
            .unwrap_or_default(),
    );
    put("encoding options", serde_json::to_string(&args.encoding)?);
    Ok(s)
}

/// Settings added after runs began recording theirs, with the value every earlier run had, so that such a
/// run resumes with its original options.
const SETTINGS_BEFORE_RECORDED: &[(&str, &str)] = &[("--no-seen-codes", "true")];

/// Refuses to resume when a setting differs, naming each one.
pub fn check_same(out: &Path, saved: &RunSettings, now: &RunSettings) -> Result<()> {
    if saved.is_empty() {
        eprintln!(
            "halo train: note: {} records no settings (written before they were kept); resuming without checking \
             them",
            out.display()
        );
        return Ok(());
    }
    let saved_value = |k: &str| {
        saved.get(k).map(String::as_str).or_else(|| {
            SETTINGS_BEFORE_RECORDED
                .iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| *v)
        })
    };
    let differ: Vec<String> = now
        .iter()
        .filter(|(k, v)| saved_value(k) != Some(v.as_str()))
        .map(|(k, v)| {
            let (was, now) = match saved_value(k) {
                Some(was) => differing_parts(&as_typed(was), &as_typed(v)),
                None => ("not recorded".to_string(), as_typed(v)),
            };
            format!("{k}: was {was}, now {now}")
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

/// A recorded value as a user types it: the records keep Rust's debug form of optional settings (`Some(64)`,
/// `None`, `Some(Jsonl)`), which is kept so that earlier runs still match.
fn as_typed(v: &str) -> String {
    let inner = v.strip_prefix("Some(").and_then(|r| r.strip_suffix(')')).unwrap_or(v);
    match inner {
        "" | "None" => "not set".into(),
        // An enum's debug name (`Jsonl`, `Small`) is its command-line value in lower case.
        name if name.starts_with(|c: char| c.is_ascii_uppercase())
            && name.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            name.to_ascii_lowercase()
        }
        value => value.to_string(),
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

    #[test]
    fn a_torn_or_unsaved_log_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        std::fs::write(&path, "{\"epoch\":1}\n{\"epoch\":2}\n{\"epoch\":3}\n{\"epo").unwrap();
        trim_log(&path, 2).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"epoch\":1}\n{\"epoch\":2}\n"
        );
    }

    #[test]
    fn differing_settings_are_named() {
        let saved: RunSettings = [("--lr".to_string(), "0.001".to_string())].into();
        let now: RunSettings = [("--lr".to_string(), "0.01".to_string())].into();
        let err = check_same(Path::new("ck"), &saved, &now).unwrap_err().to_string();
        assert!(err.contains("--lr: was 0.001, now 0.01"), "{err}");
        assert!(check_same(Path::new("ck"), &saved, &saved).is_ok());
    }

    /// Values as a user types them, and the whole differing part of a long value.
    #[test]
    fn differing_values_are_shown_as_typed_and_whole() {
        let encoding = |k: usize| {
            format!(
                "{{\"gaps\":true,\"labs\":true,\"demographics\":true,\"code_order\":\"shuffled\",\"order_seed\":0,\"lab_buckets\":5,\"max_visits\":46,\"min_patients\":{k}}}"
            )
        };
        let saved: RunSettings = [
            ("--n-embd".to_string(), "Some(64)".to_string()),
            ("--format".to_string(), "Some(Jsonl)".to_string()),
            ("--label-spec (sha256)".to_string(), String::new()),
            ("encoding options".to_string(), encoding(10)),
        ]
        .into();
        let now: RunSettings = [
            ("--n-embd".to_string(), "None".to_string()),
            ("--format".to_string(), "None".to_string()),
            ("--label-spec (sha256)".to_string(), "ab".repeat(32)),
            ("encoding options".to_string(), encoding(5)),
        ]
        .into();
        let err = check_same(Path::new("ck"), &saved, &now).unwrap_err().to_string();
        assert!(err.contains("--n-embd: was 64, now not set"), "{err}");
        assert!(err.contains("--format: was jsonl, now not set"), "{err}");
        assert!(
            err.contains(&format!("--label-spec (sha256): was not set, now {}", "ab".repeat(32))),
            "{err}"
        );
        assert!(
            err.contains(
                "encoding options: was ...sits\":46,\"min_patients\":10}, now ...sits\":46,\"min_patients\":5}"
            ),
            "{err}"
        );
        assert!(!err.contains("Some(") && !err.contains("None"), "{err}");
    }

    /// A run recorded before the seen codes existed trained without them: it resumes with --no-seen-codes,
    /// and a resume that asks for them is refused.
    #[test]
    fn a_setting_recorded_later_takes_the_value_earlier_runs_had() {
        let saved: RunSettings = [("--lr".to_string(), "0.001".to_string())].into();
        let mut now = saved.clone();
        now.insert("--no-seen-codes".into(), "true".into());
        assert!(check_same(Path::new("ck"), &saved, &now).is_ok());
        now.insert("--no-seen-codes".into(), "false".into());
        let err = check_same(Path::new("ck"), &saved, &now).unwrap_err().to_string();
        assert!(err.contains("--no-seen-codes: was true, now false"), "{err}");
    }
}
