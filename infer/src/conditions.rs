//! Conditional generation: label codes fixed (or drawn with given proportions) before the rest of a
//! record's label visit is sampled conditionally on them.
//!
//! Forms of `--condition`:
//! - a comma list `name=1,name=0,SEX/F=1` applied to every record;
//! - a JSONL file, one object a line, record `i` using line `i mod lines`:
//!   `{"labels": {"diabetes": 1, "SEX/F": 0}}` fixes codes, `{"proportions": {"diabetes": 0.3}}` gives
//!   each record the code with that probability (drawn from the record's own random stream); a line may
//!   hold both keys.
//!
//! Names are the vocabulary's display names of label codes: phenotype labels by their name,
//! demographic codes as `SEX/F`, `RACE/white`, `ETHNICITY/...`, `BIRTH_YEAR/1970-1979`.

use crate::error::{Error, Result};
use halo_core::encoding::{Encoding, LabelCategory};
use rand::Rng;
use rand_chacha::ChaCha20Rng;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// A code of a category, or an independent label, drawn with a probability.
#[derive(Debug, Clone, PartialEq)]
enum Proportion {
    /// An independent label code (label-local index) present with probability `p`.
    Label { code: usize, p: f64 },
    /// Values of one demographic category with probabilities (summing to at most 1): one draw picks
    /// a value, or none of them (then the model samples among the category's other values).
    Category { values: Vec<(usize, f64)> },
}

/// One set of conditions: fixed label codes and proportions.
#[derive(Debug, Clone, Default, PartialEq)]
struct ConditionSet {
    /// label-local index -> forced value
    fixed: BTreeMap<usize, bool>,
    proportions: Vec<Proportion>,
}

/// Parsed `--condition`: one or more condition sets, record `i` using set `i mod len`.
#[derive(Debug, Clone, PartialEq)]
pub struct Conditions {
    sets: Vec<ConditionSet>,
    label_vocab_size: usize,
    /// Demographic categories (first label-local index, length): a value fixed to 1 fixes the others to 0.
    categories: Vec<(usize, usize)>,
    /// Where the conditions came from, for messages.
    pub source: String,
}

/// What a record's label visit is conditioned on: per label code (label-local index), `None` = sampled,
/// `Some(v)` = forced to `v`.
pub type Forced = Vec<Option<bool>>;

struct Names<'a> {
    by_name: HashMap<String, usize>,
    encoding: &'a Encoding,
}

impl<'a> Names<'a> {
    fn new(encoding: &'a Encoding) -> Names<'a> {
        let c = encoding.code_vocab_size;
        let by_name = (0..encoding.label_vocab_size)
            .map(|i| (encoding.tokens[c + i].to_string(), i))
            .collect();
        Names { by_name, encoding }
    }

    fn lookup(&self, name: &str, source: &str) -> Result<usize> {
        let name = name.trim();
        if let Some(i) = self.by_name.get(name) {
            return Ok(*i);
        }
        // Category prefixes are written upper case by the vocabulary; accept any case for them.
        if let Some((cat, value)) = name.split_once('/') {
            let key = format!("{}/{value}", cat.to_uppercase());
            if let Some(i) = self.by_name.get(&key) {
                return Ok(*i);
            }
        }
        let c = self.encoding.code_vocab_size;
        let valid: Vec<String> = (0..self.encoding.label_vocab_size)
            .map(|i| self.encoding.tokens[c + i].to_string())
            .collect();
        let shown = valid.iter().take(12).cloned().collect::<Vec<_>>().join(", ");
        let more = if valid.len() > 12 {
            format!(" and {} more", valid.len() - 12)
        } else {
            String::new()
        };
        Err(Error::Condition {
            source_name: source.to_string(),
            message: if valid.is_empty() {
                format!("unknown label `{name}`: this model has no label codes to condition on")
            } else {
                format!("unknown label `{name}`; this model's labels are: {shown}{more}")
            },
        })
    }

    fn category_of(&self, code: usize) -> Option<&'a LabelCategory> {
        self.encoding
            .exclusive_label_categories()
            .find(|c| code >= c.first && code < c.first + c.len)
    }
}

fn parse_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) if n.as_f64() == Some(0.0) => Some(false),
        Value::Number(n) if n.as_f64() == Some(1.0) => Some(true),
        Value::String(s) => match s.trim() {
            "0" | "false" => Some(false),
            "1" | "true" => Some(true),
            _ => None,
        },
        _ => None,
    }
}

impl Conditions {
    /// Parses `--condition`: an existing file is read as JSONL, anything else as a comma list.
    pub fn parse(arg: &str, encoding: &Encoding) -> Result<Conditions> {
        let path = Path::new(arg);
        if path.is_file() {
            return Conditions::from_file(path, encoding);
        }
        if !arg.contains('=') {
            return Err(Error::Condition {
                source_name: format!("`{arg}`"),
                message: "is neither an existing file nor a list like `diabetes=1,SEX/F=1`".into(),
            });
        }
        Conditions::from_list(arg, encoding)
    }

    /// A comma list `name=0|1,...` applied to every record.
    pub fn from_list(list: &str, encoding: &Encoding) -> Result<Conditions> {
        let source = format!("`{list}`");
        let names = Names::new(encoding);
        let mut set = ConditionSet::default();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let Some((name, value)) = item.rsplit_once('=') else {
                return Err(Error::Condition {
                    source_name: source,
                    message: format!("`{item}` is not of the form name=0 or name=1"),
                });
            };
            let code = names.lookup(name, &source)?;
            let value = parse_bool(&Value::String(value.to_string())).ok_or_else(|| Error::Condition {
                source_name: source.clone(),
                message: format!("`{item}`: the value must be 0 or 1"),
            })?;
            if set.fixed.insert(code, value).is_some() {
                return Err(Error::Condition {
                    source_name: source,
                    message: format!("`{}` is given twice", name.trim()),
                });
            }
        }
        check_set(&set, &names, &source)?;
        Ok(Conditions {
            sets: vec![set],
            label_vocab_size: encoding.label_vocab_size,
            categories: categories(encoding),
            source,
        })
    }

    /// A JSONL file: one `{"labels": {...}, "proportions": {...}}` object a line.
    pub fn from_file(path: &Path, encoding: &Encoding) -> Result<Conditions> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let names = Names::new(encoding);
        let mut sets = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let at = format!("{}:{}", path.display(), i + 1);
            let bad = |message: String| Error::Condition {
                source_name: at.clone(),
                message,
            };
            let value: Value = serde_json::from_str(line).map_err(|e| {
                bad(format!(
                    "not JSON ({e}); expected {{\"labels\": {{name: 0 or 1}}}} or {{\"proportions\": {{name: 0.3}}}}"
                ))
            })?;
            let Value::Object(obj) = value else {
                return Err(bad("expected a JSON object with `labels` and/or `proportions`".into()));
            };
            let mut set = ConditionSet::default();
            for (key, v) in &obj {
                let Value::Object(map) = v else {
                    return Err(bad(format!("`{key}` must be an object of label names")));
                };
                match key.as_str() {
                    "labels" => {
                        for (name, v) in map {
                            let code = names.lookup(name, &at)?;
                            let value =
                                parse_bool(v).ok_or_else(|| bad(format!("labels.{name} is {v}; expected 0 or 1")))?;
                            set.fixed.insert(code, value);
                        }
                    }
                    "proportions" => {
                        let mut by_category: BTreeMap<usize, Vec<(usize, f64)>> = BTreeMap::new();
                        for (name, v) in map {
                            let code = names.lookup(name, &at)?;
                            let p = v.as_f64().filter(|p| (0.0..=1.0).contains(p)).ok_or_else(|| {
                                bad(format!("proportions.{name} is {v}; expected a number between 0 and 1"))
                            })?;
                            match names.category_of(code) {
                                Some(cat) => by_category.entry(cat.first).or_default().push((code, p)),
                                None => set.proportions.push(Proportion::Label { code, p }),
                            }
                        }
                        for (first, mut values) in by_category {
                            let cat = names.category_of(first).expect("category");
                            values.sort_by_key(|(c, _)| *c);
                            let sum: f64 = values.iter().map(|(_, p)| p).sum();
                            if sum > 1.0 + 1e-9 {
                                return Err(bad(format!(
                                    "proportions of {} values sum to {sum}, more than 1 (a record has one {})",
                                    cat.name, cat.name
                                )));
                            }
                            if values.len() == cat.len && (sum - 1.0).abs() > 1e-6 {
                                return Err(bad(format!(
                                    "proportions list every {} value, so they must sum to 1 (they sum to {sum})",
                                    cat.name
                                )));
                            }
                            set.proportions.push(Proportion::Category { values });
                        }
                    }
                    other => {
                        return Err(bad(format!(
                            "unknown key `{other}` (expected `labels` and/or `proportions`)"
                        )))
                    }
                }
            }
            for p in &set.proportions {
                let codes: Vec<usize> = match p {
                    Proportion::Label { code, .. } => vec![*code],
                    Proportion::Category { values } => values.iter().map(|(c, _)| *c).collect(),
                };
                if let Some(cat) = codes.first().and_then(|c| names.category_of(*c)) {
                    let range = cat.first..cat.first + cat.len;
                    if set.fixed.iter().any(|(c, v)| *v && range.contains(c)) {
                        return Err(bad(format!(
                            "{} is fixed in `labels`, so it cannot also be given proportions",
                            cat.name
                        )));
                    }
                }
                for code in codes {
                    if set.fixed.contains_key(&code) {
                        return Err(bad(format!(
                            "`{}` is both fixed in `labels` and given a proportion",
                            encoding.tokens[encoding.code_vocab_size + code]
                        )));
                    }
                }
            }
            check_set(&set, &names, &at)?;
            sets.push(set);
        }
        if sets.is_empty() {
            return Err(Error::Condition {
                source_name: path.display().to_string(),
                message: "no conditions (expected one JSON object a line)".into(),
            });
        }
        Ok(Conditions {
            sets,
            label_vocab_size: encoding.label_vocab_size,
            categories: categories(encoding),
            source: path.display().to_string(),
        })
    }

    /// Number of condition sets (lines).
    pub fn len(&self) -> usize {
        self.sets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// The forced label codes of record `index`; proportions are drawn from the record's stream.
    pub fn for_record(&self, index: u64, rng: &mut ChaCha20Rng) -> Forced {
        let set = &self.sets[(index % self.sets.len() as u64) as usize];
        let mut forced: Forced = vec![None; self.label_vocab_size];
        for (code, v) in &set.fixed {
            forced[*code] = Some(*v);
        }
        for p in &set.proportions {
            match p {
                Proportion::Label { code, p } => {
                    let u: f64 = rng.random();
                    forced[*code] = Some(u < *p);
                }
                Proportion::Category { values } => {
                    let u: f64 = rng.random();
                    let mut acc = 0.0;
                    let mut chosen = None;
                    for (code, p) in values {
                        acc += p;
                        if u < acc {
                            chosen = Some(*code);
                            break;
                        }
                    }
                    // Rounding can leave u just above a sum of exactly 1 when every value is listed.
                    let total: f64 = values.iter().map(|(_, p)| p).sum();
                    if chosen.is_none() && (total - 1.0).abs() <= 1e-6 {
                        chosen = values.iter().rev().find(|(_, p)| *p > 0.0).map(|(c, _)| *c);
                    }
                    for (code, _) in values {
                        forced[*code] = Some(Some(*code) == chosen);
                    }
                }
            }
        }
        for &(first, len) in &self.categories {
            if forced[first..first + len].contains(&Some(true)) {
                for f in &mut forced[first..first + len] {
                    if *f != Some(true) {
                        *f = Some(false);
                    }
                }
            }
        }
        forced
    }
}

fn categories(encoding: &Encoding) -> Vec<(usize, usize)> {
    encoding
        .exclusive_label_categories()
        .map(|c| (c.first, c.len))
        .collect()
}

/// A category can hold at most one fixed value and must keep at least one possible value; a label derived from
/// codes none of which is in the vocabulary is never set, so it cannot be asked for.
fn check_set(set: &ConditionSet, names: &Names, source: &str) -> Result<()> {
    let enc = names.encoding;
    let asked: Vec<usize> = set
        .fixed
        .iter()
        .filter(|(_, v)| **v)
        .map(|(c, _)| *c)
        .chain(set.proportions.iter().filter_map(|p| match p {
            Proportion::Label { code, p } if *p > 0.0 => Some(*code),
            _ => None,
        }))
        .collect();
    for code in asked {
        if enc.derived_labels.iter().any(|d| d.label == code && d.codes.is_empty()) {
            return Err(Error::Condition {
                source_name: source.to_string(),
                message: format!(
                    "`{}` can never be set: the label spec derives it from codes, and none of them is in this \
                     model's vocabulary (too rare in training, or absent), so no sampled record has it; ask for it \
                     only as 0, or leave it out",
                    enc.tokens[enc.code_vocab_size + code]
                ),
            });
        }
    }
    for cat in names.encoding.exclusive_label_categories() {
        let range = cat.first..cat.first + cat.len;
        let ones: Vec<usize> = set
            .fixed
            .iter()
            .filter(|(c, v)| range.contains(c) && **v)
            .map(|(c, _)| *c)
            .collect();
        let zeros = set.fixed.iter().filter(|(c, v)| range.contains(c) && !**v).count();
        let token = |c: usize| names.encoding.tokens[names.encoding.code_vocab_size + c].to_string();
        if ones.len() > 1 {
            return Err(Error::Condition {
                source_name: source.to_string(),
                message: format!(
                    "{} and {} are both set to 1, but a record has one {}",
                    token(ones[0]),
                    token(ones[1]),
                    cat.name
                ),
            });
        }
        if ones.is_empty() && zeros == cat.len {
            return Err(Error::Condition {
                source_name: source.to_string(),
                message: format!(
                    "every {} value is set to 0, but a record has one {}",
                    cat.name, cat.name
                ),
            });
        }
    }
    Ok(())
}
