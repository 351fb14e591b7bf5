//! Writing files so that nothing is ever left half-written: write to a temporary sibling, then rename.

use crate::error::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Temporary sibling path of `path` (same folder, so the rename is atomic): `.<name>.<pid>.tmp`. It is
/// registered for [`remove_temporaries`].
pub fn temp_sibling(path: &Path) -> PathBuf {
    temp_sibling_named(path, "tmp")
}

/// As [`temp_sibling`] with another last part: `.<name>.<pid>.<suffix>` (`suffix` ends in `tmp`).
pub fn temp_sibling_named(path: &Path, suffix: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.{suffix}", std::process::id()));
    if let Ok(mut list) = TEMPORARIES.lock() {
        if !list.contains(&tmp) {
            list.push(tmp.clone());
        }
    }
    tmp
}

/// Every temporary path this process created (most are renamed or removed long before the end).
static TEMPORARIES: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Removes every temporary file or folder of this process that still exists; returns how many. For a
/// signal handler that ends the process: nothing half-written is left behind.
pub fn remove_temporaries() -> usize {
    let list = match TEMPORARIES.lock() {
        Ok(l) => l.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    let mut removed = 0;
    for p in list {
        let gone = match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p).is_ok(),
            Ok(_) => std::fs::remove_file(&p).is_ok(),
            Err(_) => false,
        };
        removed += usize::from(gone);
    }
    removed
}

/// Removes temporary siblings of `path` (`.<name>.<pid>.tmp`, `.<name>.<pid>.export.tmp`, files or folders) left by processes that no
/// longer run (killed before they could clean up); returns how many. Those of live processes are kept.
pub fn sweep_stale_temps(path: &Path) -> usize {
    let (Some(name), Some(parent)) = (path.file_name().and_then(|n| n.to_str()), path.parent()) else {
        return 0;
    };
    let prefix = format!(".{name}.");
    sweep(parent, |file_name| {
        file_name.strip_prefix(&prefix).filter(|rest| rest.ends_with("tmp"))
    })
}

/// Removes, in `folder`, every temporary of a process that no longer runs whose name ends in `.<pid>.<suffix>`
/// (`.<any name>.<pid>.<suffix>`), whatever output it was for: `halo export` sweeps its own kind
/// (`export.tmp`, a whole model directory) so that an export killed outright is removed by the next export
/// into the same folder, whichever directory that one writes.
pub fn sweep_stale_temps_in(folder: &Path, suffix: &str) -> usize {
    let ending = format!(".{suffix}");
    sweep(folder, |file_name| {
        let stem = file_name.strip_prefix('.')?.strip_suffix(ending.as_str())?;
        stem.rsplit_once('.').map(|(_, pid)| pid)
    })
}

/// Removes the entries of `folder` for which `rest` gives `<pid>.<...>` of a process that no longer runs.
fn sweep(folder: &Path, rest: impl Fn(&str) -> Option<&str>) -> usize {
    let folder = if folder.as_os_str().is_empty() {
        Path::new(".")
    } else {
        folder
    };
    let Ok(entries) = std::fs::read_dir(folder) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let file_name = e.file_name();
        let Some(pid) = file_name
            .to_str()
            .and_then(&rest)
            .and_then(|rest| rest.split('.').next())
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

/// Whether `path` is a folder with at least one entry.
pub fn is_nonempty_dir(path: &Path) -> bool {
    std::fs::read_dir(path).is_ok_and(|mut entries| entries.next().is_some())
}

/// What an output path may already be before a command writes there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Nothing at all (a file output, or a folder output that must not exist).
    Absent,
    /// Nothing, or an empty folder (which the output replaces).
    AbsentOrEmptyDir,
}

/// Refuses an output path that holds something `target` does not allow; the error names the path and
/// ends with `rule`, the command's own promise (e.g. "halo-sample never overwrites output").
pub fn check_fresh(path: &Path, target: Target, rule: &str) -> Result<()> {
    if path.symlink_metadata().is_err() {
        return Ok(());
    }
    let empty_dir = path.is_dir() && !is_nonempty_dir(path);
    if empty_dir && target == Target::AbsentOrEmptyDir {
        return Ok(());
    }
    let what = if path.is_dir() && !empty_dir {
        "already exists and is not empty"
    } else {
        "already exists"
    };
    Err(Error::file(path, format!("{what}; {rule}")))
}

/// Moves the finished temporary file or folder `tmp` to `path`, which must still be as `target` allows:
/// whatever appeared there meanwhile is never replaced (a file is published by a hard link, which fails
/// on an existing name, then its temporary name removed).
pub fn publish(tmp: &Path, path: &Path, target: Target) -> Result<()> {
    let appeared = || Error::file(path, "appeared meanwhile; not overwritten (nothing was written)");
    if tmp.is_file() {
        match std::fs::hard_link(tmp, path) {
            Ok(()) => {
                let _ = std::fs::remove_file(tmp);
                return Ok(());
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(appeared()),
            // File systems without hard links: check, then rename.
            Err(_) => {}
        }
    }
    check_fresh(path, target, "not overwritten").map_err(|_| appeared())?;
    if path.is_dir() {
        std::fs::remove_dir(path).map_err(|e| Error::io(path, e))?;
    }
    std::fs::rename(tmp, path).map_err(|e| Error::io(path, e))
}

/// Replaces what is at `path` (a folder, or nothing) by the finished folder `new`: the old folder is moved
/// aside, the new one moved in, and the old one deleted; if the move fails the old folder is put back.
pub fn replace_dir(new: &Path, path: &Path) -> Result<()> {
    if path.symlink_metadata().is_err() || (path.is_dir() && !is_nonempty_dir(path)) {
        return publish(new, path, Target::AbsentOrEmptyDir);
    }
    let old = temp_sibling_named(path, "old.tmp");
    std::fs::rename(path, &old).map_err(|e| Error::io(path, e))?;
    if let Err(e) = std::fs::rename(new, path) {
        let _ = std::fs::rename(&old, path);
        return Err(Error::io(path, e));
    }
    std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_temporaries_of_the_given_kind_and_of_dead_processes_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let dead = 4_000_000_000u32; // above any pid Linux hands out
        let live = std::process::id();
        let make_dir = |name: &str| {
            std::fs::create_dir(dir.path().join(name)).unwrap();
            std::fs::write(dir.path().join(name).join("manifest.json"), b"{}").unwrap();
        };
        make_dir(&format!(".model-a.{dead}.export.tmp"));
        make_dir(&format!(".my.model.{dead}.export.tmp"));
        make_dir(&format!(".model-b.{live}.export.tmp"));
        std::fs::write(dir.path().join(format!(".records.jsonl.{dead}.tmp")), b"").unwrap();
        make_dir(&format!("model.{dead}.export.tmp"));
        make_dir("model");
        assert_eq!(sweep_stale_temps_in(dir.path(), "export.tmp"), 2);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            vec![
                format!(".model-b.{live}.export.tmp"),
                format!(".records.jsonl.{dead}.tmp"),
                "model".to_string(),
                format!("model.{dead}.export.tmp"),
            ]
        );
        // The sibling sweep still removes a dead run's temporary of that one output.
        assert_eq!(sweep_stale_temps(&dir.path().join("records.jsonl")), 1);
    }
}
