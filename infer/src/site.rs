//! A site bundle, the archive `halo package` writes for a partner site: its layout, `bundle.json`, and
//! `SHA256SUMS` (in `sha256sum`'s format), with the check `halo-sample verify` runs when it is started
//! from a bundle's `bin/`. One owner for the contract: the packer writes with these names and types, the
//! sampler checks with them.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Every file of the bundle (but this one) with its sha256, one `HEX  PATH` line each.
pub const SUMS: &str = "SHA256SUMS";
/// What the bundle is: [`BundleInfo`].
pub const BUNDLE_JSON: &str = "bundle.json";
/// The site's instructions.
pub const SITE_MD: &str = "SITE.md";
/// `halo-sample` and the ONNX Runtime libraries it loads.
pub const BIN: &str = "bin";
/// The model directory, unchanged.
pub const MODEL: &str = "model";
/// Licence notices of the toolkit and of ONNX Runtime.
pub const LICENSES: &str = "licenses";
/// Folders whose every file must be listed in [`SUMS`]: a file added there (a library next to the
/// binary, a graph in the model) is refused, not ignored.
pub const SEALED: [&str; 2] = [BIN, MODEL];
/// Version of this layout.
pub const BUNDLE_FORMAT: u32 = 1;

/// `bundle.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleInfo {
    pub bundle_format: u32,
    pub toolkit_version: String,
    pub git_commit: String,
    pub onnxruntime_version: String,
    /// `cpu` (the onnxruntime wheel) or `cuda` (onnxruntime-gpu).
    pub onnxruntime_build: String,
    /// sha256 of `model/manifest.json`, which names the sha256 of every other model file.
    pub model_manifest_sha256: String,
    pub model_signed: bool,
    /// UTC date the bundle was made (or SOURCE_DATE_EPOCH's).
    pub created: String,
    /// The newest glibc symbol version the binaries need (read off their dynamic symbols).
    pub min_glibc: String,
    /// Shared libraries the binaries need that the bundle does not carry (found on the site's system).
    pub system_libraries: Vec<String>,
    /// Measured while packaging.
    pub expected: ExpectedFigures,
    /// The model's differential privacy, as `halo_core::privacy::describe` words it from the manifest's
    /// ledger: the total (epsilon, delta) and one line per mechanism, or "not trained with differential
    /// privacy" (the ledger itself is in model/manifest.json).
    #[serde(default)]
    pub privacy: Vec<String>,
}

/// Figures measured on the packaging machine, for the site to compare with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpectedFigures {
    pub records_per_second: f64,
    pub threads: usize,
    pub batch_size: usize,
    pub jsonl_mb_per_1000_records: f64,
    /// `None` when the model gives no visit times (MEDS output is refused then).
    pub meds_mb_per_1000_records: Option<f64>,
    /// The packaging machine's CPU, as /proc/cpuinfo names it.
    pub cpu: String,
}

/// `SHA256SUMS` text for `(relative path, sha256)` pairs.
pub fn format_sums(entries: &[(String, String)]) -> String {
    entries.iter().map(|(path, sha)| format!("{sha}  {path}\n")).collect()
}

/// Parses `SHA256SUMS` (`HEX  PATH` or `HEX *PATH` lines), naming the line of a malformed one.
pub fn parse_sums(text: &str, path: &Path) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed = line
            .split_once("  ")
            .or_else(|| line.split_once(" *"))
            .and_then(|(sha, name)| {
                let ok = sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()) && is_bundle_path(name);
                ok.then(|| (name.to_string(), sha.to_ascii_lowercase()))
            });
        match parsed {
            Some(entry) => out.push(entry),
            None => {
                return Err(Error::model(
                    path,
                    format!(
                        "line {}: expected `SHA256  PATH` (64 hex digits, two spaces, a relative path), found `{line}`",
                        i + 1
                    ),
                ))
            }
        }
    }
    Ok(out)
}

/// A relative path inside the bundle: plain components only.
fn is_bundle_path(name: &str) -> bool {
    !name.is_empty()
        && name
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0') && !c.contains('\\'))
}

/// The bundle whose `bin/` holds `exe`: its root, when it has `SHA256SUMS` and `bundle.json`.
pub fn bundle_root_of(exe: &Path) -> Option<PathBuf> {
    let bin = exe.parent()?;
    if bin.file_name()? != BIN {
        return None;
    }
    let root = bin.parent()?;
    (root.join(SUMS).is_file() && root.join(BUNDLE_JSON).is_file()).then(|| root.to_path_buf())
}

/// Checks every file `SHA256SUMS` lists, and that `bin/` and `model/` hold nothing it does not list.
/// Returns the number of files checked; the error names the first file that is missing, changed or extra.
pub fn check_bundle(root: &Path) -> Result<usize> {
    let sums_path = root.join(SUMS);
    let text = std::fs::read_to_string(&sums_path).map_err(|e| Error::io(&sums_path, e))?;
    let entries = parse_sums(&text, &sums_path)?;
    for (name, sha) in &entries {
        let path = root.join(name);
        if !path.is_file() {
            return Err(Error::model(
                &path,
                format!("listed in {SUMS} but missing: the bundle was copied incompletely"),
            ));
        }
        let actual = crate::model::file_sha256(&path)?;
        if actual != *sha {
            return Err(Error::model(
                &path,
                format!("sha256 {actual} does not match {SUMS} ({sha}): the file was changed or damaged in transit"),
            ));
        }
    }
    let listed: std::collections::HashSet<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    for folder in SEALED {
        for file in files_under(&root.join(folder))? {
            let rel = file
                .strip_prefix(root)
                .map(|p| p.to_string_lossy().replace('\\', "/"))
                .unwrap_or_default();
            if !listed.contains(rel.as_str()) {
                return Err(Error::model(
                    &file,
                    format!("is not listed in {SUMS}: a file was added to the bundle after it was made"),
                ));
            }
        }
    }
    Ok(entries.len())
}

/// Every file under `dir`, recursively, sorted (symbolic links are listed, not followed).
pub fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && d == dir => return Ok(out),
            Err(e) => return Err(Error::io(&d, e)),
        };
        for e in entries {
            let e = e.map_err(|e| Error::io(&d, e))?;
            let kind = e.file_type().map_err(|err| Error::io(&e.path(), err))?;
            if kind.is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_round_trip_and_refuse_paths_outside_the_bundle() {
        let entries = vec![
            ("bin/halo-sample".to_string(), "a".repeat(64)),
            ("model/manifest.json".to_string(), "b".repeat(64)),
        ];
        let text = format_sums(&entries);
        assert_eq!(parse_sums(&text, Path::new("S")).unwrap(), entries);
        for bad in ["../etc/passwd", "/etc/passwd", "bin//x", "a/./b"] {
            let line = format!("{}  {bad}\n", "c".repeat(64));
            let err = parse_sums(&line, Path::new("S")).unwrap_err().to_string();
            assert!(err.contains("line 1"), "{bad}: {err}");
        }
        assert!(parse_sums("abc  bin/x\n", Path::new("S")).is_err());
    }
}
