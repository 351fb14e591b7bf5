//! HALO's matrix representation: the vocabulary of codes, labels and special codes, and the
//! encoding of a patient as a label visit plus visits of code indices.
//!
//! Vocabulary layout (the reference implementation's): `[medical codes | label codes | start, end, pad]`.
//! Medical codes include the bucket codes for continuous values: the gap since the previous visit
//! (`GAP/<lo>-<hi>d`), the age at the first visit (`AGE/<lo>-<hi>y`) and each lab value
//! (`LAB/<lab code>/q<k>`, next to the lab's presence code). Label codes are the phenotype labels followed
//! by the demographic codes (`SEX/..`, `RACE/..`, `ETHNICITY/..`, `BIRTH/<decade>`), each demographic
//! category contiguous so that a sampler can keep categories exclusive.

use crate::buckets::{bucket_of, closed_edges, closing_value, quantile_edges};
use crate::error::{Error, Result};
use crate::record::{Patient, Visit};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::Path;

/// Order of medical codes inside the vocabulary, which is the autoregressive order within a visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CodeOrder {
    /// Seeded shuffle, as the reference implementation does.
    #[default]
    Shuffled,
    /// Most frequent first (ties lexical).
    Frequency,
    /// Lexical by code string.
    Lexical,
}

impl CodeOrder {
    pub fn parse(s: &str) -> Option<CodeOrder> {
        match s {
            "shuffled" => Some(CodeOrder::Shuffled),
            "frequency" => Some(CodeOrder::Frequency),
            "lexical" => Some(CodeOrder::Lexical),
            _ => None,
        }
    }
}

/// One vocabulary entry, structured so that decoding never parses strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Token {
    /// A medical code, kept exactly as the source spelled it.
    Code {
        code: String,
    },
    /// Days since the previous visit fall in `gap_edges_days[bucket]..gap_edges_days[bucket + 1]`.
    Gap {
        bucket: usize,
    },
    /// Age in years at the first visit falls in `age_edges_years[bucket]..[bucket + 1]`.
    Age {
        bucket: usize,
    },
    /// The lab's value falls in `lab_edges[code][bucket]..[bucket + 1]`.
    Lab {
        code: String,
        bucket: usize,
    },
    /// A phenotype label.
    Label {
        name: String,
    },
    /// A demographic value; `category` is one of sex, race, ethnicity, birth_year.
    Demographic {
        category: String,
        value: String,
    },
    Start,
    End,
    Pad,
}

/// Demographic categories in vocabulary order.
pub const DEMOGRAPHIC_CATEGORIES: [&str; 4] = ["sex", "race", "ethnicity", "birth_year"];

/// What the encoding includes; switches for comparisons that do not want a part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncodingOptions {
    pub gaps: bool,
    pub labs: bool,
    pub demographics: bool,
    pub code_order: CodeOrder,
    pub order_seed: u64,
    /// Number of quantile buckets per lab when the label spec gives no edges.
    pub lab_buckets: usize,
    /// Most recent visits kept per record: `n_ctx - 2`.
    pub max_visits: usize,
    /// The small-cell rule: a code, `src:` value, lab or demographic value seen in fewer distinct patients
    /// is left out of the vocabulary, and bucket edges come only from groups of at least this many
    /// patients, so that nothing of a single patient ships in a model directory. Encodings written
    /// before the rule read as 1 (everything kept).
    #[serde(default = "min_patients_of_old_encodings")]
    pub min_patients: usize,
}

/// Default minimum number of patients behind anything the vocabulary or a bucket edge carries.
pub const DEFAULT_MIN_PATIENTS: usize = 10;

fn min_patients_of_old_encodings() -> usize {
    1
}

impl Default for EncodingOptions {
    fn default() -> Self {
        EncodingOptions {
            gaps: true,
            labs: true,
            demographics: true,
            code_order: CodeOrder::Shuffled,
            order_seed: 0,
            lab_buckets: 5,
            max_visits: 46,
            min_patients: DEFAULT_MIN_PATIENTS,
        }
    }
}

/// A phenotype label defined by codes: exact codes, or prefixes written with a trailing `*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelSpec {
    /// label name -> codes or code prefixes (`condition/3168*`).
    pub labels: BTreeMap<String, Vec<String>>,
    /// Optional fixed bucket edges per lab code (ascending, at least two).
    #[serde(default)]
    pub lab_edges: BTreeMap<String, Vec<f64>>,
    /// Optional gap bucket edges in days (ascending, starting at 0).
    #[serde(default)]
    pub gap_edges_days: Option<Vec<f64>>,
}

impl LabelSpec {
    /// Chronic phenotypes for OMOP CDM data coded with standard concept ids (as Synthea's is).
    pub fn default_omop() -> LabelSpec {
        let spec: &[(&str, &[&str])] = &[
            ("hypertension", &["condition/316866", "condition/320128"]),
            (
                "diabetes",
                &["condition/201826", "condition/201254", "condition/443238"],
            ),
            ("prediabetes", &["condition/37018196", "condition/4311629"]),
            ("hyperlipidemia", &["condition/432867", "condition/437827"]),
            ("obesity", &["condition/433736", "condition/162864005"]),
            ("asthma", &["condition/317009"]),
            ("copd", &["condition/255573", "condition/261325"]),
            ("coronary_heart_disease", &["condition/317576", "condition/4329847"]),
            (
                "chronic_kidney_disease",
                &[
                    "condition/46271022",
                    "condition/443601",
                    "condition/443611",
                    "condition/443612",
                ],
            ),
            ("chronic_sinusitis", &["condition/257012"]),
            ("anemia", &["condition/439777"]),
            ("osteoarthritis", &["condition/80180", "condition/4079750"]),
            ("atrial_fibrillation", &["condition/313217"]),
        ];
        LabelSpec {
            labels: spec
                .iter()
                .map(|(name, codes)| (name.to_string(), codes.iter().map(|c| c.to_string()).collect()))
                .collect(),
            lab_edges: BTreeMap::new(),
            gap_edges_days: None,
        }
    }

    pub fn read(path: &Path) -> Result<LabelSpec> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let spec: LabelSpec = serde_json::from_str(&text).map_err(|e| {
            Error::line(
                path,
                e.line(),
                format!("not a label spec ({e}); expected {{\"labels\": {{name: [codes or prefix*]}}}}"),
            )
        })?;
        for (lab, edges) in &spec.lab_edges {
            if edges.len() < 2
                || edges
                    .windows(2)
                    .any(|w| w[0].partial_cmp(&w[1]) != Some(std::cmp::Ordering::Less))
            {
                return Err(Error::field(
                    path,
                    &format!("lab_edges.{lab}"),
                    "expected at least two strictly ascending numbers",
                ));
            }
        }
        Ok(spec)
    }

    /// Labels of a patient from its codes.
    pub fn labels_of(&self, patient: &Patient) -> BTreeSet<String> {
        let codes: BTreeSet<&str> = patient.all_codes().collect();
        let mut out = BTreeSet::new();
        for (name, patterns) in &self.labels {
            let hit = patterns.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => codes.iter().any(|c| c.starts_with(prefix)),
                None => codes.contains(p.as_str()),
            });
            if hit {
                out.insert(name.clone());
            }
        }
        out
    }
}

/// Default gap bucket edges in days; the last bucket is closed by the largest gap seen in training.
pub const DEFAULT_GAP_EDGES_DAYS: [f64; 12] = [0.0, 1.0, 2.0, 7.0, 14.0, 30.0, 60.0, 90.0, 180.0, 365.0, 730.0, 1825.0];
/// Default age bucket width in years for the age at the first visit.
pub const AGE_BUCKET_YEARS: f64 = 5.0;

/// A contiguous run of label codes (relative to the first label code).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelCategory {
    pub name: String,
    pub first: usize,
    pub len: usize,
}

/// A group of medical codes of which a visit holds exactly one where the group applies and none elsewhere
/// (the gap since the previous visit, the age at the first visit): samplers draw it as one categorical.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitGroup {
    pub name: String,
    /// Vocabulary index of the group's first code; its codes are contiguous.
    pub first: usize,
    pub len: usize,
    pub on: GroupVisits,
}

/// Which visits hold a [`VisitGroup`]'s one code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupVisits {
    FirstVisit,
    LaterVisits,
}

impl VisitGroup {
    pub fn range(&self) -> std::ops::Range<usize> {
        self.first..self.first + self.len
    }

    /// Whether the group's one code belongs in visit `t` (0 = the first visit).
    pub fn applies_to(&self, t: usize) -> bool {
        match self.on {
            GroupVisits::FirstVisit => t == 0,
            GroupVisits::LaterVisits => t > 0,
        }
    }
}

/// The fitted encoding: vocabulary, bucket edges and options. Saved as `encoding.json` in a checkpoint
/// and embedded in a model directory's manifest; everything needed to encode and decode records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Encoding {
    pub options: EncodingOptions,
    pub tokens: Vec<Token>,
    pub code_vocab_size: usize,
    pub label_vocab_size: usize,
    /// Demographic categories among the label codes (phenotype labels are independent, not listed).
    pub demographic_categories: Vec<LabelCategory>,
    /// Given labels that partition the training records (every record has exactly one of them: `GENDER/F`,
    /// `GENDER/M`), grouped by the name before their last `/`; sampled like a demographic category.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub label_groups: Vec<LabelCategory>,
    /// Exclusive groups among the medical codes: the gap bucket (every visit after the first) and the age
    /// bucket (the first visit), each listed only when every training record has it where it applies.
    /// Empty in encodings fitted before groups existed (their samplers walk those codes one by one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub visit_groups: Vec<VisitGroup>,
    pub gap_edges_days: Vec<f64>,
    pub age_edges_years: Vec<f64>,
    pub lab_edges: BTreeMap<String, Vec<f64>>,
    /// Whether the labels came from the records themselves (JSONL `labels`) instead of a label spec.
    pub labels_given: bool,
    /// What the small-cell rule left out (counts only).
    #[serde(default)]
    pub left_out: LeftOut,
}

/// Distinct values the small-cell rule ([`EncodingOptions::min_patients`]) left out of a vocabulary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftOut {
    pub codes: usize,
    pub labs: usize,
    pub demographic_values: usize,
}

/// A patient as HALO sees it: label codes, then visits of code indices (each sorted, distinct).
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedPatient {
    pub labels: Vec<u32>,
    pub visits: Vec<Vec<u32>>,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Code { code } => write!(f, "{code}"),
            Token::Gap { bucket } => write!(f, "GAP/{bucket}"),
            Token::Age { bucket } => write!(f, "AGE/{bucket}"),
            Token::Lab { code, bucket } => write!(f, "LAB/{code}/q{bucket}"),
            Token::Label { name } => write!(f, "{name}"),
            Token::Demographic { category, value } => {
                write!(f, "{}/{value}", category.to_uppercase())
            }
            Token::Start => write!(f, "<start>"),
            Token::End => write!(f, "<end>"),
            Token::Pad => write!(f, "<pad>"),
        }
    }
}

/// Day offsets of a patient's visits from its first one, from `day` or `time`.
pub fn visit_days(patient: &Patient) -> Vec<Option<f64>> {
    let first_time = patient
        .visits
        .first()
        .and_then(|v| v.time.as_deref())
        .and_then(parse_time);
    patient
        .visits
        .iter()
        .map(|v| {
            v.day.or_else(|| {
                let t = parse_time(v.time.as_deref()?)?;
                Some((t - first_time?).num_seconds() as f64 / 86_400.0)
            })
        })
        .collect()
}

/// Parses `YYYY-MM-DD`, `YYYYMMDD`, `YYYY-MM-DDTHH:MM[:SS[.f]]` (or a space instead of `T`), optionally
/// with a UTC offset (the local time is kept).
pub fn parse_time(s: &str) -> Option<chrono::NaiveDateTime> {
    let s = s.trim();
    // A plain date, the commonest form in OMOP tables, without trying the datetime forms first.
    if s.len() == 10 {
        if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            return d.and_hms_opt(0, 0, 0);
        }
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t);
        }
    }
    // With a UTC offset (`+02:00`, `-0500`, `Z`): the local wall-clock time is kept, as a visit's day is.
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.naive_local());
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(t) = chrono::DateTime::parse_from_str(s, fmt) {
            return Some(t.naive_local());
        }
    }
    let date = s
        .get(..10)
        .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        // Compact dates (`20200115`) as some database exports write them.
        .or_else(|| (s.len() == 8).then(|| chrono::NaiveDate::parse_from_str(s, "%Y%m%d").ok())?);
    date.and_then(|d| d.and_hms_opt(0, 0, 0))
}

fn birth_year(patient: &Patient) -> Option<i32> {
    patient.demographics.birth_year.or_else(|| {
        patient
            .demographics
            .birth_date
            .as_deref()
            .and_then(parse_time)
            .map(|t| chrono::Datelike::year(&t))
    })
}

fn birth_time(patient: &Patient) -> Option<chrono::NaiveDateTime> {
    if let Some(t) = patient.demographics.birth_date.as_deref().and_then(parse_time) {
        return Some(t);
    }
    let y = patient.demographics.birth_year?;
    chrono::NaiveDate::from_ymd_opt(y, 7, 1)?.and_hms_opt(0, 0, 0)
}

impl Encoding {
    /// The exclusive categories among the label codes (label-local indices): demographic categories, then
    /// partitioning label groups. A record holds at most one code of each (exactly one when sampled).
    pub fn exclusive_label_categories(&self) -> impl Iterator<Item = &LabelCategory> {
        self.demographic_categories.iter().chain(&self.label_groups)
    }

    /// Fits the vocabulary on all patients (codes held by at least `options.min_patients` of them) and the
    /// bucket edges on the training patients.
    pub fn fit(
        all: &[Patient],
        train: &[&Patient],
        spec: Option<&LabelSpec>,
        options: EncodingOptions,
    ) -> Result<Encoding> {
        let k = options.min_patients.max(1);
        let mut left_out = LeftOut::default();
        // Continuous values: edges from the training split.
        let mut gaps: Vec<f64> = Vec::new();
        let mut ages: Vec<f64> = Vec::new();
        // Per lab: its values and the number of distinct patients they come from.
        let mut lab_values: BTreeMap<String, (Vec<f64>, usize)> = BTreeMap::new();
        for p in train {
            let days = visit_days(p);
            // A patient's largest gap stands for them (the closing edge is about patients, not visits).
            let largest = days
                .windows(2)
                .filter_map(|w| Some(w[1]? - w[0]?))
                .fold(None, |m: Option<f64>, g| Some(m.map_or(g, |m| m.max(g))));
            gaps.extend(largest);
            ages.extend(age_at_first_visit(p));
            if options.labs {
                let mut seen = BTreeSet::new();
                for v in &p.visits {
                    for lab in &v.labs {
                        let entry = lab_values.entry(lab.code.clone()).or_default();
                        entry.0.push(lab.value);
                        if seen.insert(lab.code.as_str()) {
                            entry.1 += 1;
                        }
                    }
                }
            }
        }
        let (any_gap, any_age) = (!gaps.is_empty(), !ages.is_empty());
        let max_gap = closing_value(&mut gaps, k);
        let max_age = closing_value(&mut ages, k);
        let gap_base = spec
            .and_then(|s| s.gap_edges_days.clone())
            .unwrap_or_else(|| DEFAULT_GAP_EDGES_DAYS.to_vec());
        let gap_edges_days = closed_edges(&gap_base, max_gap);
        let age_base: Vec<f64> = (0..24).map(|i| i as f64 * AGE_BUCKET_YEARS).collect();
        let age_edges_years = closed_edges(&age_base, max_age);
        let mut lab_edges = BTreeMap::new();
        for (code, (mut values, patients)) in lab_values {
            if patients < k {
                left_out.labs += 1;
                continue;
            }
            let edges = match spec.and_then(|s| s.lab_edges.get(&code)) {
                Some(e) => e.clone(),
                None => quantile_edges(&mut values, options.lab_buckets.max(1), patients, k),
            };
            lab_edges.insert(code, edges);
        }
        if let Some(spec) = spec {
            for (code, edges) in &spec.lab_edges {
                lab_edges.entry(code.clone()).or_insert_with(|| edges.clone());
            }
        }

        // Medical codes, with frequencies for the `frequency` order.
        let mut freq: HashMap<&str, usize> = HashMap::new();
        let mut patients_with: HashMap<&str, usize> = HashMap::new();
        for p in all {
            let mut seen = BTreeSet::new();
            for v in &p.visits {
                for c in &v.codes {
                    *freq.entry(c.as_str()).or_default() += 1;
                    if seen.insert(c.as_str()) {
                        *patients_with.entry(c.as_str()).or_default() += 1;
                    }
                }
            }
        }
        left_out.codes = patients_with.values().filter(|&&n| n < k).count();
        let mut medical: Vec<Token> = patients_with
            .iter()
            .filter(|(_, &n)| n >= k)
            .map(|(c, _)| Token::Code { code: c.to_string() })
            .collect();
        for (code, edges) in &lab_edges {
            for bucket in 0..edges.len() - 1 {
                medical.push(Token::Lab {
                    code: code.clone(),
                    bucket,
                });
            }
        }
        let key = |t: &Token| t.to_string();
        medical.sort_by_key(key);
        match options.code_order {
            CodeOrder::Lexical => {}
            CodeOrder::Frequency => {
                let count = |t: &Token| match t {
                    Token::Code { code } => freq.get(code.as_str()).copied().unwrap_or(0),
                    Token::Lab { code, .. } => freq.get(code.as_str()).copied().unwrap_or(0),
                    _ => 0,
                };
                medical.sort_by(|a, b| count(b).cmp(&count(a)).then_with(|| a.to_string().cmp(&b.to_string())));
            }
            CodeOrder::Shuffled => {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(options.order_seed);
                medical.shuffle(&mut rng);
            }
        }
        // Time codes come first in a visit: gap, then age (first visit only).
        let mut tokens = Vec::new();
        let mut visit_groups = Vec::new();
        // Every kept visit after the first has a gap when both days are known; the first kept one an age
        // when the birth is known. A group is exclusive only when the training records always have it.
        let (mut always_gap, mut always_age) = (true, true);
        for p in train {
            let keep_from = p.visits.len().saturating_sub(options.max_visits);
            let days = visit_days(p);
            always_gap &= p.visits.len() - keep_from < 2 || days[keep_from..].iter().all(Option::is_some);
            always_age &= p.visits.is_empty() || age_at_visit(p, keep_from).is_some();
        }
        // Only when the training records have dates at all.
        if options.gaps && any_gap {
            if always_gap {
                visit_groups.push(VisitGroup {
                    name: "gap".into(),
                    first: tokens.len(),
                    len: gap_edges_days.len() - 1,
                    on: GroupVisits::LaterVisits,
                });
            }
            tokens.extend((0..gap_edges_days.len() - 1).map(|bucket| Token::Gap { bucket }));
        }
        if options.gaps && any_age {
            if always_age {
                visit_groups.push(VisitGroup {
                    name: "age".into(),
                    first: tokens.len(),
                    len: age_edges_years.len() - 1,
                    on: GroupVisits::FirstVisit,
                });
            }
            tokens.extend((0..age_edges_years.len() - 1).map(|bucket| Token::Age { bucket }));
        }
        tokens.extend(medical);
        let code_vocab_size = tokens.len();

        // Labels: given in the records, or from the spec.
        let labels_given = all.iter().any(|p| p.labels.is_some());
        let mut label_groups = Vec::new();
        let label_names: Vec<String> = if labels_given {
            let mut names = Vec::new();
            let mut seen = BTreeSet::new();
            for p in all {
                for name in p.labels.iter().flat_map(|l| l.keys()) {
                    if seen.insert(name.clone()) {
                        names.push(name.clone());
                    }
                }
            }
            // Labels that partition the records (GENDER/F, GENDER/M) sit together and form a group.
            let partitions = partition_groups(&names, train);
            let mut ordered: Vec<String> = Vec::with_capacity(names.len());
            for name in &names {
                if ordered.contains(name) {
                    continue;
                }
                match partitions.iter().find(|(_, members)| members.contains(name)) {
                    Some((prefix, members)) => {
                        label_groups.push(LabelCategory {
                            name: prefix.clone(),
                            first: ordered.len(),
                            len: members.len(),
                        });
                        ordered.extend(members.iter().cloned());
                    }
                    None => ordered.push(name.clone()),
                }
            }
            ordered
        } else {
            spec.map(|s| s.labels.keys().cloned().collect()).unwrap_or_default()
        };
        tokens.extend(label_names.into_iter().map(|name| Token::Label { name }));
        let mut demographic_categories = Vec::new();
        if options.demographics {
            for category in DEMOGRAPHIC_CATEGORIES {
                let mut counts: BTreeMap<String, usize> = BTreeMap::new();
                for value in all.iter().filter_map(|p| demographic_value(p, category)) {
                    *counts.entry(value).or_default() += 1;
                }
                left_out.demographic_values += counts.values().filter(|&&n| n < k).count();
                let values: BTreeSet<String> = counts.into_iter().filter(|(_, n)| *n >= k).map(|(v, _)| v).collect();
                if values.is_empty() {
                    continue;
                }
                demographic_categories.push(LabelCategory {
                    name: category.to_string(),
                    first: tokens.len() - code_vocab_size,
                    len: values.len(),
                });
                tokens.extend(values.into_iter().map(|value| Token::Demographic {
                    category: category.to_string(),
                    value,
                }));
            }
        }
        let label_vocab_size = tokens.len() - code_vocab_size;
        tokens.extend([Token::Start, Token::End, Token::Pad]);
        Ok(Encoding {
            options,
            tokens,
            code_vocab_size,
            label_vocab_size,
            demographic_categories,
            label_groups,
            visit_groups,
            gap_edges_days,
            age_edges_years,
            lab_edges,
            labels_given,
            left_out,
        })
    }

    /// An encoding of plain codes and labels only (no time, lab or demographic codes), in the given order:
    /// for fixtures, tests and benchmarks that build a vocabulary by hand.
    pub fn plain(codes: Vec<String>, labels: Vec<String>, max_visits: usize) -> Encoding {
        let (code_vocab_size, label_vocab_size) = (codes.len(), labels.len());
        let mut tokens: Vec<Token> = codes.into_iter().map(|code| Token::Code { code }).collect();
        tokens.extend(labels.into_iter().map(|name| Token::Label { name }));
        tokens.extend([Token::Start, Token::End, Token::Pad]);
        Encoding {
            options: EncodingOptions {
                max_visits,
                // Given by hand, not fitted on patients.
                min_patients: 1,
                ..Default::default()
            },
            tokens,
            code_vocab_size,
            label_vocab_size,
            demographic_categories: Vec::new(),
            label_groups: Vec::new(),
            visit_groups: Vec::new(),
            gap_edges_days: vec![0.0, 1.0],
            age_edges_years: vec![0.0, 5.0],
            lab_edges: BTreeMap::new(),
            labels_given: true,
            left_out: LeftOut::default(),
        }
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }
    pub fn start_index(&self) -> usize {
        self.code_vocab_size + self.label_vocab_size
    }
    pub fn end_index(&self) -> usize {
        self.start_index() + 1
    }
    pub fn pad_index(&self) -> usize {
        self.start_index() + 2
    }

    /// Token string -> index, for encoding.
    pub fn index(&self) -> HashMap<String, u32> {
        self.tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (token_key(t), i as u32))
            .collect()
    }

    /// Encodes one patient. Codes unknown to the vocabulary are counted in `unknown`.
    pub fn encode(
        &self,
        patient: &Patient,
        index: &HashMap<String, u32>,
        spec: Option<&LabelSpec>,
        unknown: &mut usize,
    ) -> EncodedPatient {
        let mut labels = BTreeSet::new();
        let label_names: Vec<String> = match (&patient.labels, self.labels_given) {
            (Some(given), _) => given.iter().filter(|(_, v)| **v).map(|(k, _)| k.clone()).collect(),
            (None, false) => spec
                .map(|s| s.labels_of(patient).into_iter().collect())
                .unwrap_or_default(),
            (None, true) => Vec::new(),
        };
        for name in label_names {
            match index.get(&token_key(&Token::Label { name })) {
                Some(i) => {
                    labels.insert(*i);
                }
                None => *unknown += 1,
            }
        }
        for cat in &self.demographic_categories {
            if let Some(value) = demographic_value(patient, &cat.name) {
                if let Some(i) = index.get(&token_key(&Token::Demographic {
                    category: cat.name.clone(),
                    value,
                })) {
                    labels.insert(*i);
                }
            }
        }

        let keep_from = patient.visits.len().saturating_sub(self.options.max_visits);
        let days = visit_days(patient);
        let age = age_at_visit(patient, keep_from);
        let mut visits = Vec::with_capacity(patient.visits.len() - keep_from);
        for (t, visit) in patient.visits.iter().enumerate().skip(keep_from) {
            let mut codes = BTreeSet::new();
            if self.options.gaps {
                if t > keep_from {
                    if let (Some(a), Some(b)) = (days[t - 1], days[t]) {
                        let bucket = bucket_of(&self.gap_edges_days, b - a);
                        codes.extend(index.get(&token_key(&Token::Gap { bucket })));
                    }
                } else if let Some(age) = age {
                    let bucket = bucket_of(&self.age_edges_years, age);
                    codes.extend(index.get(&token_key(&Token::Age { bucket })));
                }
            }
            self.encode_visit_codes(visit, index, &mut codes, unknown);
            visits.push(codes.into_iter().collect());
        }
        EncodedPatient {
            labels: labels.into_iter().collect(),
            visits,
        }
    }

    fn encode_visit_codes(
        &self,
        visit: &Visit,
        index: &HashMap<String, u32>,
        codes: &mut BTreeSet<u32>,
        unknown: &mut usize,
    ) {
        for c in &visit.codes {
            match index.get(c.as_str()) {
                Some(i) => {
                    codes.insert(*i);
                }
                None => *unknown += 1,
            }
        }
        if self.options.labs {
            for lab in &visit.labs {
                if let Some(edges) = self.lab_edges.get(&lab.code) {
                    let bucket = bucket_of(edges, lab.value);
                    codes.extend(index.get(&token_key(&Token::Lab {
                        code: lab.code.clone(),
                        bucket,
                    })));
                }
            }
        }
    }

    /// Checks the structure after reading it from disk.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let v = self.tokens.len();
        if v != self.code_vocab_size + self.label_vocab_size + 3 {
            return Err(Error::field(
                path,
                "tokens",
                format!("{v} tokens, expected code_vocab_size + label_vocab_size + 3"),
            ));
        }
        if self.tokens[self.start_index()] != Token::Start
            || self.tokens[self.end_index()] != Token::End
            || self.tokens[self.pad_index()] != Token::Pad
        {
            return Err(Error::field(
                path,
                "tokens",
                "the last three tokens must be start, end, pad",
            ));
        }
        Ok(())
    }
}

/// Key under which a token is found in `Encoding::index`: medical codes by their own string, so that a
/// record's codes are looked up directly; everything else by its kind-prefixed display form.
pub fn token_key(t: &Token) -> String {
    match t {
        Token::Code { code } => code.clone(),
        other => format!("\u{1}{other}"),
    }
}

fn demographic_value(p: &Patient, category: &str) -> Option<String> {
    let d = &p.demographics;
    match category {
        "sex" => d.sex.clone(),
        "race" => d.race.clone(),
        "ethnicity" => d.ethnicity.clone(),
        "birth_year" => birth_year(p).map(|y| {
            let decade = y.div_euclid(10) * 10;
            format!("{decade}-{}", decade + 9)
        }),
        _ => None,
    }
    .filter(|s| !s.is_empty())
}

/// Groups of given labels sharing the name before their last `/` (at least two) of which every training
/// record with labels has exactly one set: (prefix, members in first-seen order).
fn partition_groups(names: &[String], train: &[&Patient]) -> Vec<(String, Vec<String>)> {
    let mut by_prefix: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for name in names {
        if let Some((prefix, _)) = name.rsplit_once('/') {
            by_prefix.entry(prefix).or_default().push(name.clone());
        }
    }
    let labelled: Vec<&BTreeMap<String, bool>> = train.iter().filter_map(|p| p.labels.as_ref()).collect();
    by_prefix
        .into_iter()
        .filter(|(_, members)| members.len() >= 2)
        .filter(|(_, members)| {
            !labelled.is_empty()
                && labelled
                    .iter()
                    .all(|l| members.iter().filter(|m| l.get(*m) == Some(&true)).count() == 1)
        })
        .map(|(prefix, members)| (prefix.to_string(), members))
        .collect()
}

fn age_at_first_visit(p: &Patient) -> Option<f64> {
    age_at_visit(p, 0)
}

fn age_at_visit(p: &Patient, t: usize) -> Option<f64> {
    let birth = birth_time(p)?;
    let at = parse_time(p.visits.get(t)?.time.as_deref()?)?;
    Some(((at - birth).num_days() as f64 / 365.25).max(0.0))
}
