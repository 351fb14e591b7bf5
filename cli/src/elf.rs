//! What a Linux shared object or executable needs at run time, read from its ELF dynamic section: the
//! libraries it links (`DT_NEEDED`) and the glibc symbol versions it requires (`.gnu.version_r`). Used by
//! `halo package` to state the oldest glibc a site needs and the libraries the site's system must provide.
//! Only 64-bit little-endian ELF (x86-64, aarch64 Linux).

use anyhow::{bail, Context, Result};
use std::path::Path;

/// The run-time needs of one ELF file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// Libraries named by `DT_NEEDED`, in file order.
    pub libraries: Vec<String>,
    /// glibc versions required (`GLIBC_2.34` -> [2, 34]), sorted, without duplicates.
    pub glibc: Vec<Vec<u32>>,
}

const SHT_DYNAMIC: u32 = 6;
const SHT_GNU_VERNEED: u32 = 0x6fff_fffe;
const DT_NEEDED: u64 = 1;

struct Section {
    kind: u32,
    offset: usize,
    size: usize,
    link: usize,
    info: usize,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The NUL-terminated string at `at` in the string table section.
fn string_in(b: &[u8], table: &Section, at: usize) -> Option<String> {
    let start = table.offset.checked_add(at)?;
    let end = table.offset.checked_add(table.size)?.min(b.len());
    let bytes = b.get(start..end)?;
    let len = bytes.iter().position(|&c| c == 0)?;
    Some(String::from_utf8_lossy(&bytes[..len]).into_owned())
}

/// Reads the needs of the ELF file at `path`.
pub fn needs(path: &Path) -> Result<Needs> {
    let b = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&b).with_context(|| format!("{}: not a readable 64-bit little-endian ELF file", path.display()))
}

fn parse(b: &[u8]) -> Result<Needs> {
    if b.get(..4) != Some(b"\x7fELF".as_slice()) || b.get(4) != Some(&2) || b.get(5) != Some(&1) {
        bail!("no 64-bit little-endian ELF header");
    }
    let bad = || anyhow::anyhow!("truncated or malformed section headers");
    let shoff = u64_at(b, 0x28).ok_or_else(bad)? as usize;
    let shentsize = u16_at(b, 0x3a).ok_or_else(bad)? as usize;
    let shnum = u16_at(b, 0x3c).ok_or_else(bad)? as usize;
    let mut sections = Vec::with_capacity(shnum);
    for i in 0..shnum {
        let at = shoff + i * shentsize;
        sections.push(Section {
            kind: u32_at(b, at + 4).ok_or_else(bad)?,
            offset: u64_at(b, at + 24).ok_or_else(bad)? as usize,
            size: u64_at(b, at + 32).ok_or_else(bad)? as usize,
            link: u32_at(b, at + 40).ok_or_else(bad)? as usize,
            info: u32_at(b, at + 44).ok_or_else(bad)? as usize,
        });
    }
    let mut needs = Needs::default();
    for s in &sections {
        let Some(strings) = sections.get(s.link) else {
            continue;
        };
        match s.kind {
            SHT_DYNAMIC => {
                for entry in (s.offset..s.offset + s.size).step_by(16) {
                    let tag = u64_at(b, entry).ok_or_else(bad)?;
                    if tag == 0 {
                        break;
                    }
                    if tag == DT_NEEDED {
                        let at = u64_at(b, entry + 8).ok_or_else(bad)? as usize;
                        needs.libraries.extend(string_in(b, strings, at));
                    }
                }
            }
            SHT_GNU_VERNEED => {
                // `info` Verneed entries, each with `vn_cnt` Vernaux entries naming a version.
                let mut need = s.offset;
                for _ in 0..s.info {
                    let count = u16_at(b, need + 2).ok_or_else(bad)? as usize;
                    let mut aux = need + u32_at(b, need + 8).ok_or_else(bad)? as usize;
                    for _ in 0..count {
                        let name = u32_at(b, aux + 8).ok_or_else(bad)? as usize;
                        if let Some(v) = string_in(b, strings, name).as_deref().and_then(glibc_version) {
                            needs.glibc.push(v);
                        }
                        aux += u32_at(b, aux + 12).ok_or_else(bad)? as usize;
                    }
                    let next = u32_at(b, need + 12).ok_or_else(bad)? as usize;
                    if next == 0 {
                        break;
                    }
                    need += next;
                }
            }
            _ => {}
        }
    }
    needs.glibc.sort();
    needs.glibc.dedup();
    Ok(needs)
}

/// `GLIBC_2.34` -> [2, 34]; other version names (GLIBCXX_, GCC_, ...) -> None.
fn glibc_version(name: &str) -> Option<Vec<u32>> {
    name.strip_prefix("GLIBC_")?
        .split('.')
        .map(|p| p.parse().ok())
        .collect::<Option<Vec<u32>>>()
}

/// `[2, 34]` -> `2.34`.
pub fn version_text(v: &[u32]) -> String {
    v.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_needs_of_this_test_binary() {
        // The test executable is itself a dynamically linked ELF file that needs libc.
        let exe = std::env::current_exe().unwrap();
        let n = needs(&exe).unwrap();
        assert!(n.libraries.iter().any(|l| l.starts_with("libc.so")), "{n:?}");
        let newest = n.glibc.last().expect("glibc versions");
        assert_eq!(newest[0], 2, "{n:?}");
        assert!(needs(Path::new(file!())).is_err(), "a source file is not ELF");
    }

    #[test]
    fn glibc_versions_parse_and_print() {
        assert_eq!(glibc_version("GLIBC_2.2.5"), Some(vec![2, 2, 5]));
        assert_eq!(glibc_version("GLIBCXX_3.4"), None);
        assert_eq!(version_text(&[2, 34]), "2.34");
    }
}
