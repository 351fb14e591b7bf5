//! The bundle's archive: its files (from disk, model files never through a symbolic link, or bytes) and the
//! reproducible gzip-compressed tar they are written to.

use anyhow::{bail, Context, Result};
use halo_core::fsutil::{self, Target};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One file of the bundle: its path inside the bundle and where its bytes come from.
pub(super) struct Entry {
    pub(super) path: String,
    content: Content,
    executable: bool,
}

enum Content {
    File(PathBuf),
    /// A model file: opened without following a symbolic link (one that replaced the file after the check
    /// is refused, not followed).
    ModelFile(PathBuf),
    Bytes(Vec<u8>),
}

/// Opens a file to ship; a model file only when it is not a symbolic link.
fn open_content(path: &Path, no_follow: bool) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    if no_follow {
        options.custom_flags(libc::O_NOFOLLOW);
    }
    let file = options.open(path).with_context(|| {
        format!(
            "reading {}{}",
            path.display(),
            if no_follow {
                " (a model file, never a symbolic link)"
            } else {
                ""
            }
        )
    })?;
    if no_follow && !file.metadata()?.is_file() {
        bail!(
            "{}: not a plain file; a model directory holds plain files only",
            path.display()
        );
    }
    Ok(file)
}

impl Entry {
    pub(super) fn file(path: impl Into<String>, source: PathBuf, executable: bool) -> Entry {
        Entry {
            path: path.into(),
            content: Content::File(source),
            executable,
        }
    }

    pub(super) fn model_file(path: impl Into<String>, source: PathBuf) -> Entry {
        Entry {
            path: path.into(),
            content: Content::ModelFile(source),
            executable: false,
        }
    }

    pub(super) fn bytes(path: impl Into<String>, bytes: Vec<u8>) -> Entry {
        Entry {
            path: path.into(),
            content: Content::Bytes(bytes),
            executable: false,
        }
    }

    pub(super) fn sha256(&self) -> Result<String> {
        use sha2::Digest;
        let (path, no_follow) = match &self.content {
            Content::Bytes(b) => return Ok(halo_core::manifest::sha256_hex(b)),
            Content::File(p) => (p, false),
            Content::ModelFile(p) => (p, true),
        };
        let mut hasher = sha2::Sha256::new();
        std::io::copy(&mut open_content(path, no_follow)?, &mut hasher)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }
}

/// Writes the entries as `folder/<path>` into a gzip-compressed tar at `out`, through a temporary sibling
/// renamed at the end (never over a file that appeared meanwhile). Owner 0, the given modification time,
/// sorted order: the same inputs give the same archive.
pub(super) fn write_archive(out: &Path, folder: &str, entries: &[Entry], mtime: u64) -> Result<()> {
    halo_core::fsutil::sweep_stale_temps(out);
    let tmp = halo_core::fsutil::temp_sibling(out);
    let result = (|| -> Result<()> {
        let file = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let gz = flate2::write::GzEncoder::new(std::io::BufWriter::new(file), flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        let header = |size: u64, mode: u32, kind: tar::EntryType| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(size);
            h.set_mode(mode);
            h.set_mtime(mtime);
            h.set_uid(0);
            h.set_gid(0);
            h
        };
        let mut folders: Vec<String> = vec![folder.to_string()];
        for e in entries {
            let mut parts: Vec<&str> = e.path.split('/').collect();
            parts.pop();
            for i in 1..=parts.len() {
                let dir = format!("{folder}/{}", parts[..i].join("/"));
                if !folders.contains(&dir) {
                    folders.push(dir);
                }
            }
        }
        for dir in &folders {
            let mut h = header(0, 0o755, tar::EntryType::Directory);
            tar.append_data(&mut h, format!("{dir}/"), std::io::empty())?;
        }
        for e in entries {
            let mode = if e.executable { 0o755 } else { 0o644 };
            let path = format!("{folder}/{}", e.path);
            match &e.content {
                Content::Bytes(b) => {
                    let mut h = header(b.len() as u64, mode, tar::EntryType::Regular);
                    tar.append_data(&mut h, &path, b.as_slice())?;
                }
                Content::File(p) | Content::ModelFile(p) => {
                    let f = open_content(p, matches!(e.content, Content::ModelFile(_)))?;
                    let mut h = header(f.metadata()?.len(), mode, tar::EntryType::Regular);
                    tar.append_data(&mut h, &path, f)?;
                }
            }
        }
        let gz = tar.into_inner()?;
        let mut writer = gz.finish()?;
        writer.flush()?;
        writer.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        fsutil::publish(&tmp, out, Target::Absent)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
