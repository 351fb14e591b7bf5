//! What a model directory holds, and reading its files checked against the manifest: each file's sha256,
//! nothing in the folder that the manifest does not name, and the bytes a session is made from being the
//! bytes that were checked.

use crate::error::{Error, Result};
use crate::runtime;
use halo_core::manifest::{IncrementalHeadFiles, Manifest, OnnxFile, MANIFEST, SIGNATURE};
use sha2::Digest;
use std::io::Read;
use std::path::Path;

/// Hex sha256 of a file, read in chunks.
pub fn file_sha256(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Checks that each file named by the manifest exists and has the manifest's sha256 (the names were
/// checked to be plain file names when the manifest was read).
pub fn check_files(dir: &Path, manifest: &Manifest) -> Result<()> {
    for (field, name, sha256) in manifest.files.all() {
        check_one(dir, field.trim_end_matches(".name"), name, sha256)?;
    }
    Ok(())
}

/// [`check_files`] for every file but those named in `skip` (checked as they are loaded).
pub(crate) fn check_files_except(dir: &Path, manifest: &Manifest, skip: &[&str]) -> Result<()> {
    for (field, name, sha256) in manifest.files.all() {
        if !skip.contains(&name) {
            check_one(dir, field.trim_end_matches(".name"), name, sha256)?;
        }
    }
    Ok(())
}

fn check_one(dir: &Path, field: &str, name: &str, sha256: &str) -> Result<()> {
    let path = dir.join(name);
    if !path.is_file() {
        return Err(missing(&path, field));
    }
    compare_sha256(&path, field, &file_sha256(&path)?, sha256)
}

fn missing(path: &Path, field: &str) -> Error {
    Error::model(
        path,
        format!("missing (named by {MANIFEST} `{field}`); the model directory is incomplete, export it again with `halo export`"),
    )
}

fn compare_sha256(path: &Path, field: &str, actual: &str, expected: &str) -> Result<()> {
    if actual.eq_ignore_ascii_case(expected) {
        return Ok(());
    }
    Err(Error::model(
        path,
        format!(
            "sha256 {actual} does not match {MANIFEST} `{field}.sha256` {expected}: the file was changed or \
             truncated after export (copy the model directory again, or re-export it)"
        ),
    ))
}

/// Reads a file the manifest names and checks its sha256 on the bytes read: what is loaded is what was
/// checked, with no window in which the file could be swapped.
fn read_checked(dir: &Path, field: &str, name: &str, sha256: &str) -> Result<Vec<u8>> {
    let path = dir.join(name);
    if !path.is_file() {
        return Err(missing(&path, field));
    }
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    compare_sha256(&path, field, &halo_core::manifest::sha256_hex(&bytes), sha256)?;
    Ok(bytes)
}

/// A graph of the manifest, read and checked ([`read_checked`]), with its external weights if any.
pub(crate) fn read_graph(dir: &Path, field: &str, file: &OnnxFile) -> Result<runtime::GraphBytes> {
    let bytes = read_checked(dir, &format!("{field}.name"), &file.name, &file.sha256)?;
    let external = match &file.external_data {
        Some(d) => {
            let data = read_checked(dir, &format!("{field}.external_data.name"), &d.name, &d.sha256)?;
            Some((d.name.clone(), std::sync::Arc::<[u8]>::from(data)))
        }
        None => None,
    };
    Ok(runtime::GraphBytes {
        path: dir.join(&file.name),
        bytes,
        external,
    })
}

/// Reads a model directory's manifest, saying clearly when the folder is not a model directory.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    if dir.is_dir() && !dir.join(MANIFEST).exists() {
        return Err(Error::model(
            dir,
            format!("not a model directory: it has no {MANIFEST} (expected a folder written by `halo export`)"),
        ));
    }
    Ok(Manifest::read(dir)?)
}

/// The names a model directory may hold: manifest.json, its signature (whether present or not) and the files
/// the manifest names.
pub fn model_file_names(manifest: &Manifest) -> Vec<String> {
    let mut names = vec![MANIFEST.to_string(), SIGNATURE.to_string()];
    names.extend(manifest.files.all().into_iter().map(|(_, name, _)| name.to_string()));
    names
}

/// Checks that `dir` holds only the plain files of [`model_file_names`]: a file the manifest does not name
/// is covered by no sha256 and no signature, so a folder, a symbolic link (which a copy or an archive would
/// follow to wherever it points) or any other extra entry is refused, every one named.
pub fn check_only_named_files(dir: &Path, manifest: &Manifest) -> Result<()> {
    let allowed = model_file_names(manifest);
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut refused = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // file_type() does not follow a symbolic link.
        let kind = entry.file_type().map_err(|e| Error::io(&entry.path(), e))?;
        let what = if kind.is_symlink() {
            "a symbolic link"
        } else if kind.is_dir() {
            "a folder"
        } else if !kind.is_file() {
            "not a plain file"
        } else if !allowed.contains(&name) {
            "a file manifest.json does not name"
        } else {
            continue;
        };
        refused.push(format!("`{name}` ({what})"));
    }
    if refused.is_empty() {
        return Ok(());
    }
    refused.sort();
    Err(Error::model(
        dir,
        format!(
            "holds {}: a model directory holds only {MANIFEST}, {SIGNATURE} and the plain files the manifest \
             names (nothing else is covered by its sha256s or signature); remove them, or copy or export the \
             model again",
            refused.join(", ")
        ),
    ))
}

/// Reads the columns file of the incremental code module (format 2 to 4): V (V - 1) / 2 values.
pub(crate) fn read_columns(dir: &Path, file: &halo_core::manifest::DataFile, v: usize) -> Result<Vec<f32>> {
    let want = IncrementalHeadFiles::column_values(v);
    read_values(
        dir,
        file,
        "files.code_head_incremental.columns",
        want,
        &format!("V (V - 1) / 2 for V = {v}:"),
    )
}

/// Reads a file of exactly `want` little-endian f32 values (`what` says whose, in messages). Read in chunks
/// straight into the values, so that loading never holds the file's bytes and its values at once (hundreds
/// of MiB at paper size). The file's sha256 is checked on the bytes read.
pub(crate) fn read_values(
    dir: &Path,
    file: &halo_core::manifest::DataFile,
    field: &str,
    want: usize,
    what: &str,
) -> Result<Vec<f32>> {
    let path = &dir.join(&file.name);
    if !path.is_file() {
        return Err(missing(path, field));
    }
    let mut reader = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = reader.metadata().map_err(|e| Error::io(path, e))?.len();
    if len != want as u64 * 4 {
        return Err(Error::model(
            path,
            format!("holds {len} bytes, expected {} ({what} {want} f32 values)", want * 4),
        ));
    }
    let mut values = Vec::with_capacity(want);
    let mut chunk = vec![0u8; 1 << 20];
    let mut hasher = sha2::Sha256::new();
    while values.len() < want {
        let n = ((want - values.len()) * 4).min(chunk.len());
        reader.read_exact(&mut chunk[..n]).map_err(|e| Error::io(path, e))?;
        hasher.update(&chunk[..n]);
        values.extend(
            chunk[..n]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
    }
    let actual: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    compare_sha256(path, field, &actual, &file.sha256)?;
    Ok(values)
}
