//! A prepared corpus: records encoded once (`halo prepare`) into flat token arrays that training
//! memory-maps, so that what training holds does not grow with the data (nanoGPT's train.bin, per split).
//!
//! # Layout of a corpus folder
//! - `corpus.json` ([`CorpusInfo`]): format version, the digest of the records as read, what reading and
//!   encoding reported, and per split its records, sequences and tokens.
//! - `encoding.json`, `split.json`, `label_spec.json` (when labels come from a spec), `training.json`: as in
//!   a checkpoint ([`crate::manifest::checkpoint`]); training copies them.
//! - per split (`train`, `val`, `test`): `<split>.tokens`, little-endian `u32`s, one sequence after another,
//!   each `[continues, n_labels, labels.., n_visits, visit lengths.., codes of every visit..]`;
//!   `<split>.offsets`, little-endian `u64` token offsets, one per sequence plus the end; `<split>.ids`, the
//!   record id of each sequence, one a line.
//!
//! A corpus stays on the training machine (it holds every record, encoded): nothing that leaves reads it.

use crate::encoding::EncodedPatient;
use crate::error::{Error, Result};
use crate::record::{ReadReport, Split};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Version of the corpus layout; [`Corpus::open`] refuses others.
pub const CORPUS_FORMAT_VERSION: u32 = 1;
pub const INFO: &str = "corpus.json";

/// `corpus.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CorpusInfo {
    pub format_version: u32,
    /// sha256 of the records as read, written as JSONL one after another: what `--resume` compares.
    pub data_digest: String,
    pub read_report: ReadReport,
    /// Records longer than the context (cut to their most recent visits, or split into windows).
    pub truncated_records: usize,
    /// Code occurrences not in the vocabulary (encoding with an encoding fitted elsewhere).
    pub unknown_codes: usize,
    pub splits: BTreeMap<String, SplitInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitInfo {
    pub records: usize,
    pub sequences: usize,
    pub tokens: u64,
}

fn split_file(dir: &Path, split: Split, ext: &str) -> PathBuf {
    dir.join(format!("{}.{ext}", split.as_str()))
}

/// Writes one split's sequences.
struct SplitWriter {
    tokens: BufWriter<File>,
    ids: BufWriter<File>,
    offsets: Vec<u64>,
    records: usize,
    path: PathBuf,
}

impl SplitWriter {
    fn create(dir: &Path, split: Split) -> Result<SplitWriter> {
        let path = split_file(dir, split, "tokens");
        let create = |p: PathBuf| File::create(&p).map(BufWriter::new).map_err(|e| Error::io(&p, e));
        Ok(SplitWriter {
            tokens: create(path.clone())?,
            ids: create(split_file(dir, split, "ids"))?,
            offsets: vec![0],
            records: 0,
            path,
        })
    }

    fn push(&mut self, id: &str, sequence: &EncodedPatient) -> Result<()> {
        let words = sequence_words(sequence);
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        self.tokens.write_all(&bytes).map_err(|e| Error::io(&self.path, e))?;
        let end = self.offsets.last().copied().unwrap_or(0) + words.len() as u64;
        self.offsets.push(end);
        writeln!(self.ids, "{id}").map_err(|e| Error::io(&self.path, e))
    }

    fn finish(mut self, dir: &Path, split: Split) -> Result<SplitInfo> {
        self.tokens.flush().map_err(|e| Error::io(&self.path, e))?;
        self.ids.flush().map_err(|e| Error::io(&self.path, e))?;
        let bytes: Vec<u8> = self.offsets.iter().flat_map(|o| o.to_le_bytes()).collect();
        let path = split_file(dir, split, "offsets");
        std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))?;
        Ok(SplitInfo {
            records: self.records,
            sequences: self.offsets.len() - 1,
            tokens: self.offsets.last().copied().unwrap_or(0),
        })
    }
}

/// Writes the sequences of a corpus into a folder (the caller writes the JSON files and publishes the
/// folder once it is complete).
pub struct CorpusWriter {
    dir: PathBuf,
    splits: Vec<(Split, SplitWriter)>,
}

impl CorpusWriter {
    pub fn create(dir: &Path) -> Result<CorpusWriter> {
        let splits = [Split::Train, Split::Val, Split::Test]
            .into_iter()
            .map(|s| Ok((s, SplitWriter::create(dir, s)?)))
            .collect::<Result<_>>()?;
        Ok(CorpusWriter {
            dir: dir.to_path_buf(),
            splits,
        })
    }

    /// Adds one record's sequences (its windows, or itself) to `split`.
    pub fn push_record(&mut self, split: Split, id: &str, sequences: &[EncodedPatient]) -> Result<()> {
        let (_, w) = self
            .splits
            .iter_mut()
            .find(|(s, _)| *s == split)
            .expect("every split has a writer");
        w.records += 1;
        for s in sequences {
            w.push(id, s)?;
        }
        Ok(())
    }

    /// Flushes the token files and writes the offsets; per split, its counts.
    pub fn finish(self) -> Result<BTreeMap<String, SplitInfo>> {
        let mut out = BTreeMap::new();
        for (split, w) in self.splits {
            out.insert(split.as_str().to_string(), w.finish(&self.dir, split)?);
        }
        Ok(out)
    }
}

/// One split's sequences, memory-mapped (an empty split has no file to map).
pub struct Sequences {
    tokens: TokenBytes,
    offsets: Vec<u64>,
}

enum TokenBytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl TokenBytes {
    fn bytes(&self) -> &[u8] {
        match self {
            TokenBytes::Mapped(map) => map,
            TokenBytes::Owned(bytes) => bytes,
        }
    }
}

/// A sequence as the token file holds it.
fn sequence_words(p: &EncodedPatient) -> Vec<u32> {
    let mut words: Vec<u32> =
        Vec::with_capacity(3 + p.labels.len() + p.visits.iter().map(|v| v.len() + 1).sum::<usize>());
    words.push(u32::from(p.continues));
    words.push(p.labels.len() as u32);
    words.extend(&p.labels);
    words.push(p.visits.len() as u32);
    words.extend(p.visits.iter().map(|v| v.len() as u32));
    for v in &p.visits {
        words.extend(v);
    }
    words
}

impl Sequences {
    fn open(dir: &Path, split: Split) -> Result<Sequences> {
        let offsets_path = split_file(dir, split, "offsets");
        let bytes = std::fs::read(&offsets_path).map_err(|e| Error::io(&offsets_path, e))?;
        if bytes.len() % 8 != 0 || bytes.is_empty() {
            return Err(Error::file(
                &offsets_path,
                "is not a list of 64-bit offsets (a corpus written by `halo prepare`; prepare it again)",
            ));
        }
        let offsets: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        let tokens_path = split_file(dir, split, "tokens");
        let file = File::open(&tokens_path).map_err(|e| Error::io(&tokens_path, e))?;
        let len = file.metadata().map_err(|e| Error::io(&tokens_path, e))?.len();
        let end = *offsets.last().expect("not empty");
        if len != end * 4 || offsets.windows(2).any(|w| w[0] > w[1]) {
            return Err(Error::file(
                &tokens_path,
                format!(
                    "holds {len} bytes, but its offsets end at token {end} ({} bytes): the corpus is damaged or \
                     half-written; prepare it again",
                    end * 4
                ),
            ));
        }
        // SAFETY: the corpus is written once by `halo prepare` and only read afterwards; a file truncated
        // under a running training would fault, as reading a changing file would give garbage either way.
        let tokens = match len {
            0 => TokenBytes::Owned(Vec::new()),
            _ => TokenBytes::Mapped(unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(&tokens_path, e))?),
        };
        let sequences = Sequences { tokens, offsets };
        if let Some(i) = (0..sequences.len()).find(|&i| !sequences.well_formed(i)) {
            return Err(Error::file(
                &tokens_path,
                format!("sequence {i} does not hold what its header says: the corpus is damaged; prepare it again"),
            ));
        }
        Ok(sequences)
    }

    /// Whether sequence `i`'s counts (labels, visits, each visit's length) add up to its length, so that
    /// [`Sequences::get`] can decode it.
    fn well_formed(&self, i: usize) -> bool {
        let (from, to) = (self.offsets[i] as usize, self.offsets[i + 1] as usize);
        let bytes = &self.tokens.bytes()[from * 4..to * 4];
        let word = |k: usize| {
            bytes
                .get(k * 4..k * 4 + 4)
                .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        };
        let n = to - from;
        let (Some(continues), Some(n_labels)) = (word(0), word(1)) else {
            return false;
        };
        let at_visits = 2 + n_labels as usize;
        let Some(n_visits) = word(at_visits) else {
            return false;
        };
        let lengths_end = at_visits + 1 + n_visits as usize;
        if continues > 1 || lengths_end > n {
            return false;
        }
        let codes: usize = (at_visits + 1..lengths_end).filter_map(word).map(|l| l as usize).sum();
        lengths_end + codes == n
    }

    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sequence `i`, decoded.
    pub fn get(&self, i: usize) -> EncodedPatient {
        let (from, to) = (self.offsets[i] as usize, self.offsets[i + 1] as usize);
        let bytes = &self.tokens.bytes()[from * 4..to * 4];
        let mut words = bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")));
        let mut next = || words.next().expect("a sequence as written");
        let continues = next() == 1;
        let n_labels = next() as usize;
        let labels: Vec<u32> = (0..n_labels).map(|_| next()).collect();
        let n_visits = next() as usize;
        let lengths: Vec<usize> = (0..n_visits).map(|_| next() as usize).collect();
        let visits = lengths.iter().map(|&n| (0..n).map(|_| next()).collect()).collect();
        EncodedPatient {
            labels,
            visits,
            continues,
        }
    }

    /// Every sequence, decoded one at a time.
    pub fn iter(&self) -> impl Iterator<Item = EncodedPatient> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

/// An opened corpus: its info and its splits' sequences.
pub struct Corpus {
    pub dir: PathBuf,
    pub info: CorpusInfo,
    pub train: Sequences,
    pub val: Sequences,
    pub test: Sequences,
}

impl Corpus {
    pub fn open(dir: &Path) -> Result<Corpus> {
        let info: CorpusInfo = crate::fsutil::read_json(&dir.join(INFO), "corpus information")?;
        if info.format_version != CORPUS_FORMAT_VERSION {
            return Err(Error::field(
                &dir.join(INFO),
                "format_version",
                format!(
                    "is {}, this halo reads {CORPUS_FORMAT_VERSION}: prepare the corpus again with this halo",
                    info.format_version
                ),
            ));
        }
        Ok(Corpus {
            dir: dir.to_path_buf(),
            train: Sequences::open(dir, Split::Train)?,
            val: Sequences::open(dir, Split::Val)?,
            test: Sequences::open(dir, Split::Test)?,
            info,
        })
    }

    /// Each record id of `split` with the index of its first sequence (a record's only one, or its first
    /// window: what `Encoding::encode` gives).
    pub fn first_sequences(&self, split: Split) -> Result<std::collections::HashMap<String, usize>> {
        let path = split_file(&self.dir, split, "ids");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let mut first = std::collections::HashMap::new();
        for (i, id) in text.lines().enumerate() {
            first.entry(id.to_string()).or_insert(i);
        }
        if first.values().any(|&i| i >= self.split(split).len()) || text.lines().count() != self.split(split).len() {
            return Err(Error::file(
                &path,
                "does not name one record a sequence: the corpus is damaged; prepare it again",
            ));
        }
        Ok(first)
    }

    /// The sequences of each record of `split` (its windows, in order), records in the order of their first
    /// sequence: the privacy unit of DP-SGD is the record.
    pub fn record_sequences(&self, split: Split) -> Result<Vec<Vec<usize>>> {
        let path = split_file(&self.dir, split, "ids");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        if text.lines().count() != self.split(split).len() {
            return Err(Error::file(
                &path,
                "does not name one record a sequence: the corpus is damaged; prepare it again",
            ));
        }
        let mut record_of: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        let mut records: Vec<Vec<usize>> = Vec::new();
        for (i, id) in text.lines().enumerate() {
            let r = *record_of.entry(id).or_insert_with(|| {
                records.push(Vec::new());
                records.len() - 1
            });
            records[r].push(i);
        }
        Ok(records)
    }

    pub fn split(&self, split: Split) -> &Sequences {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
            Split::Test => &self.test,
        }
    }
}
