//! Writing files so that nothing is ever left half-written: write to a temporary sibling, then rename.

use crate::error::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Temporary sibling path of `path` (same folder, so the rename is atomic).
pub fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Removes temporary siblings of `path` (`.<name>.<pid>.tmp`, files or folders) left by processes that no
/// longer run (killed before they could clean up); returns how many. Those of live processes are kept.
pub fn sweep_stale_temps(path: &Path) -> usize {
    let (Some(name), Some(parent)) = (path.file_name().and_then(|n| n.to_str()), path.parent()) else {
        return 0;
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return 0;
    };
    let prefix = format!(".{name}.");
    let mut removed = 0;
    for e in entries.flatten() {
        let file_name = e.file_name();
        let Some(pid) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|rest| rest.strip_suffix(".tmp"))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let p = e.path();
        let gone = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        removed += usize::from(gone.is_ok());
    }
    removed
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_sibling(path);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// Writes `value` as pretty JSON to `path` atomically.
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::file(path, e.to_string()))?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Reads and parses a JSON file, naming the file and line on error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::line(path, e.line(), format!("not a valid {what}: {e}")))
}

/// Opens a file for reading, gzip-decompressing it when its name ends in `.gz`.
pub fn open_maybe_gz(path: &Path) -> Result<Box<dyn std::io::Read>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let is_gz = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    Ok(if is_gz {
        Box::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file)))
    } else {
        Box::new(file)
    })
}

/// The time stamped into outputs (MEDS `created_at`, OMOP `cdm_source` dates): now, or `SOURCE_DATE_EPOCH`
/// (seconds since 1970, the reproducible-builds convention) when set, so that two runs can give the same bytes.
pub fn stamp_time() -> Result<chrono::DateTime<chrono::Utc>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v
            .trim()
            .parse::<i64>()
            .ok()
            .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
            .ok_or_else(|| Error::Invalid(format!("SOURCE_DATE_EPOCH is `{v}`, expected whole seconds since 1970"))),
        Err(_) => Ok(chrono::Utc::now()),
    }
}
