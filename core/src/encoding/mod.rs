//! HALO's matrix representation: the vocabulary of codes, labels and special codes, and the
//! encoding of a patient as a label visit plus visits of code indices.
//!
//! Vocabulary layout (the reference implementation's): `[medical codes | label codes | start, end, pad]`.
//! Medical codes include the bucket codes for continuous values: the calendar year of the previous visit
//! (`YEAR/<bucket>`, set by the sampler, never drawn), the gap since the previous visit (`GAP/<lo>-<hi>d`), the age at the first visit (`AGE/<lo>-<hi>y`), the visit's type (`VISIT_TYPE/9201`,
//! `VISIT_TYPE/<other>` for a type left out or absent) and each lab value
//! (`LAB/<lab code>/q<k>`, next to the lab's presence code). Label codes are the phenotype labels followed
//! by the demographic codes (`SEX/..`, `RACE/..`, `ETHNICITY/..`, `BIRTH/<decade>`), each demographic
//! category contiguous so that a sampler can keep categories exclusive.

use crate::buckets::{bucket_of, closed_edges, closing_value, within_bucket_points, LabSample};
use crate::error::{Error, Result};
pub use crate::record::DemographicCategory;
use crate::record::{BirthDecade, Patient, Visit};
use crate::time::{age_at_visit, birth_year, visit_days, visit_years};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::Path;

pub use crate::label_spec::LabelSpec;

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
    /// bucket (the first visit), each listed only when every training record has it where it applies, and
    /// the visit type (every visit, listed when any training visit has a kept type).
    /// Empty in encodings fitted before groups existed (their samplers walk those codes one by one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub visit_groups: Vec<VisitGroup>,
    /// Labels that the label spec derives from codes, with the vocabulary codes that set each: a sampler
    /// sets such a label exactly when the record's sampled codes hold one of them, so that labels agree
    /// with codes as they do in the data. Empty for labels given with the records (and in encodings
    /// fitted before derived labels existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub derived_labels: Vec<DerivedLabel>,
    pub gap_edges_days: Vec<f64>,
    /// Per gap bucket, the training gaps' distribution inside it as [`GAP_SEGMENTS`] or fewer evenly
    /// spaced quantiles, small-cell rule applied (`buckets::within_bucket_points`): a sampled gap's day is
    /// drawn between them, so that a wide bucket (the last one spans years) gives days as the data has them
    /// rather than uniform over the bucket, which made records half again as long as the data's. Empty in
    /// encodings fitted before (their records keep the uniform draw), and empty for a bucket with too few
    /// patients.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gap_quantiles_days: Vec<Vec<f64>>,
    pub age_edges_years: Vec<f64>,
    /// Edges of the visit-size buckets: a visit of n codes (medical codes and lab buckets, not the group
    /// codes) is in the bucket whose edges hold it, the last bucket open above. Quantiles of the training
    /// visits' sizes, top-coded like the lab edges. Empty without the size group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub visit_size_edges: Vec<f64>,
    /// Edges of the calendar group ([`Token::Calendar`], [`EncodingOptions::calendar`]): years, the first
    /// bucket open below and the last open above. Empty without the group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calendar_edges_years: Vec<f64>,
    pub lab_edges: BTreeMap<String, Vec<f64>>,
    /// Whether the labels came from the records themselves (JSONL `labels`) instead of a label spec.
    pub labels_given: bool,
    /// What the small-cell rule left out (counts only).
    #[serde(default)]
    pub left_out: LeftOut,
    /// Whether a sampled lab value's code is listed among its visit's codes, as every training visit lists it
    /// (the OMOP and MEDS readers always do; JSONL records may not). Not fitted under differential privacy
    /// (false), being one fact about every record.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lab_codes_listed: bool,
    /// Whether a lab code is encoded by its values ([`EncodingOptions::imply_lab_codes`], where the lab codes
    /// are listed): a visit's code token of a lab is set only where the visit lists the code with no value of
    /// it, so that a code and its value are one draw, not two that the sampler can part (the demo's model
    /// drew 0.6 lab codes a visit without a value, and 0.7 values whose code it did not draw, where the data
    /// has none). The sampler lists a value's code as it does under `lab_codes_listed`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lab_codes_implied: bool,
    /// Whether a visit holds at most one bucket of a lab: the sampler goes past a lab's other buckets once it
    /// draws one. Fitted with `lab_codes_implied` where fewer than [`LAB_VALUED_TWICE_SHARE`] of the training
    /// visits' measured labs have two different values in the visit (the demo's data: 0.2%; its model drew
    /// two buckets of one lab for 10% of the labs a visit held: the code module learns poorly that a code
    /// drawn rules another out).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lab_buckets_exclusive: bool,
    /// With windows: the most visits a sampled record may hold (a multiple of the stride, reached by at
    /// least `min_patients` training records, so that it describes no single patient). 0 without windows.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub record_visit_limit: usize,
}

/// Distinct values the small-cell rule ([`EncodingOptions::min_patients`]) left out of a vocabulary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftOut {
    pub codes: usize,
    pub labs: usize,
    pub demographic_values: usize,
    /// Visit types held by fewer than `min_patients` patients (their visits take `VISIT_TYPE/<other>`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub visit_types: usize,
    /// Codes of the data that the public code list ([`EncodingOptions::public_codes`]) does not hold.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub not_listed: usize,
}

/// A patient as HALO sees it: label codes, then visits of code indices (each sorted, distinct).
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedPatient {
    pub labels: Vec<u32>,
    pub visits: Vec<Vec<u32>>,
    /// A window that the record goes on after (see [`EncodingOptions::window_stride`]): its last visit
    /// does not end the record.
    pub continues: bool,
}

impl Encoding {
    /// The exclusive categories among the label codes (label-local indices): demographic categories, then
    /// partitioning label groups. A record holds at most one code of each (exactly one when sampled).
    /// The categories of `demographic_categories`, from their tokens.
    fn demographic_category_kinds(&self) -> impl Iterator<Item = DemographicCategory> + '_ {
        self.demographic_categories
            .iter()
            .filter_map(|cat| match self.tokens.get(self.code_vocab_size + cat.first) {
                Some(Token::Demographic { category, .. }) => Some(*category),
                _ => None,
            })
    }

    pub fn exclusive_label_categories(&self) -> impl Iterator<Item = &LabelCategory> {
        self.demographic_categories.iter().chain(&self.label_groups)
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
                visit_size_buckets: 0,
                ..Default::default()
            },
            tokens,
            code_vocab_size,
            label_vocab_size,
            demographic_categories: Vec::new(),
            label_groups: Vec::new(),
            visit_groups: Vec::new(),
            derived_labels: Vec::new(),
            gap_edges_days: vec![0.0, 1.0],
            gap_quantiles_days: Vec::new(),
            age_edges_years: vec![0.0, 5.0],
            visit_size_edges: Vec::new(),
            calendar_edges_years: Vec::new(),
            lab_edges: BTreeMap::new(),
            labels_given: true,
            left_out: LeftOut::default(),
            lab_codes_listed: false,
            lab_codes_implied: false,
            lab_buckets_exclusive: false,
            record_visit_limit: 0,
        }
    }

    /// The label codes (vocabulary indices, ascending) of a record with label visit `labels` and visits
    /// `visits`, with every derived label set from the visits' codes and the other labels kept as they are.
    pub fn with_derived_labels(&self, labels: &[u32], visits: &[Vec<u32>]) -> Vec<u32> {
        if self.derived_labels.is_empty() {
            return labels.to_vec();
        }
        let c = self.code_vocab_size as u32;
        let is_derived = |l: u32| self.derived_labels.iter().any(|d| d.label as u32 + c == l);
        let mut out: Vec<u32> = labels.iter().copied().filter(|&l| !is_derived(l)).collect();
        for d in &self.derived_labels {
            if visits.iter().flatten().any(|code| d.codes.binary_search(code).is_ok()) {
                out.push(d.label as u32 + c);
            }
        }
        out.sort_unstable();
        out
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

    /// Encodes one patient as one sequence: without windows, its most recent `max_visits` visits; with
    /// windows, its first window. Codes unknown to the vocabulary are counted in `unknown`.
    pub fn encode(
        &self,
        patient: &Patient,
        index: &HashMap<String, u32>,
        spec: Option<&LabelSpec>,
        unknown: &mut usize,
    ) -> EncodedPatient {
        let (labels, mut visits) = self.encode_record(patient, index, spec, unknown);
        let m = self.options.max_visits;
        let continues = visits.len() > m;
        visits.truncate(m);
        EncodedPatient {
            labels,
            visits,
            continues,
        }
    }

    /// Encodes one patient as the sequences a model learns from: one, or with windows
    /// ([`EncodingOptions::window_stride`]) every window of a longer record. Codes unknown to the vocabulary
    /// are counted in `unknown` (once per occurrence, however many windows hold it).
    pub fn encode_windows(
        &self,
        patient: &Patient,
        index: &HashMap<String, u32>,
        spec: Option<&LabelSpec>,
        unknown: &mut usize,
    ) -> Vec<EncodedPatient> {
        let (labels, visits) = self.encode_record(patient, index, spec, unknown);
        let (m, stride) = (self.options.max_visits, self.options.window_stride);
        if visits.len() <= m {
            return vec![EncodedPatient {
                labels,
                visits,
                continues: false,
            }];
        }
        window_starts(visits.len(), m, stride)
            .map(|start| EncodedPatient {
                labels: labels.clone(),
                visits: visits[start..(start + m).min(visits.len())].to_vec(),
                continues: start + m < visits.len(),
            })
            .collect()
    }

    /// The label visit and the visits encoded ([`EncodingOptions::first_encoded_visit`] on), before any
    /// window is cut.
    fn encode_record(
        &self,
        patient: &Patient,
        index: &HashMap<String, u32>,
        spec: Option<&LabelSpec>,
        unknown: &mut usize,
    ) -> (Vec<u32>, Vec<Vec<u32>>) {
        let mut labels = BTreeSet::new();
        // Labels derived from codes are set by the codes of the visits encoded (below), so that they agree
        // with the encoded record exactly; encodings without derived labels take them from the whole record.
        let label_names: Vec<String> = match (&patient.labels, self.labels_given) {
            (Some(given), _) => given.iter().filter(|(_, v)| **v).map(|(k, _)| k.clone()).collect(),
            (None, false) if self.derived_labels.is_empty() => spec
                .map(|s| s.labels_of(patient).into_iter().collect())
                .unwrap_or_default(),
            (None, _) => Vec::new(),
        };
        for name in label_names {
            match index.get(&token_key(&Token::Label { name })) {
                Some(i) => {
                    labels.insert(*i);
                }
                None => *unknown += 1,
            }
        }
        labels.extend(self.demographic_labels(patient, index));

        let keep_from = self.options.first_encoded_visit(patient.visits.len());
        let days = visit_days(patient);
        let years = match self.calendar_edges_years.is_empty() {
            true => Vec::new(),
            false => visit_years(patient),
        };
        let age = age_at_visit(patient, keep_from);
        let visit_type_of = self.visit_type_encoder(index);
        let first_visit_calendar = self
            .visit_groups
            .iter()
            .any(|g| g.name == VisitGroup::CALENDAR && g.applies_to(0));
        let mut visits = Vec::with_capacity(patient.visits.len() - keep_from);
        for (t, visit) in patient.visits.iter().enumerate().skip(keep_from) {
            let mut codes = BTreeSet::new();
            // The calendar: the year of the visit before; the first visit's own year where the group is on it.
            let calendar_visit = match t > keep_from {
                true => Some(t - 1),
                false => first_visit_calendar.then_some(t),
            };
            if let Some(Some(year)) = calendar_visit.and_then(|v| years.get(v)) {
                codes.extend(index.get(&token_key(&self.calendar_token(*year))));
            }
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
            codes.extend(visit_type_of(visit));
            let mut own = BTreeSet::new();
            self.encode_visit_codes(visit, index, &mut own, unknown);
            if !self.visit_size_edges.is_empty() {
                let bucket = bucket_of(&self.visit_size_edges, own.len() as f64);
                codes.extend(index.get(&token_key(&Token::VisitSize { bucket })));
            }
            codes.extend(own);
            visits.push(codes.into_iter().collect());
        }
        let labels: Vec<u32> = labels.into_iter().collect();
        let labels = if patient.labels.is_none() && !self.labels_given {
            self.with_derived_labels(&labels, &visits)
        } else {
            labels
        };
        (labels, visits)
    }

    /// The vocabulary index of a visit's type token: its type's, else `VISIT_TYPE/<other>`; none when the
    /// encoding has no visit types (fitted on records without them, or before them).
    fn visit_type_encoder<'a>(&self, index: &'a HashMap<String, u32>) -> impl Fn(&Visit) -> Option<u32> + 'a {
        let has_types = self.visit_groups.iter().any(|g| g.name == VisitGroup::VISIT_TYPE);
        let other = index.get(&token_key(&Token::VisitType { value: None })).copied();
        move |visit: &Visit| {
            if !has_types {
                return None;
            }
            let known = visit.visit_type.as_ref().and_then(|value| {
                index
                    .get(&token_key(&Token::VisitType {
                        value: Some(value.clone()),
                    }))
                    .copied()
            });
            known.or(other)
        }
    }

    /// The calendar bucket of a visit whose visit before was in (fractional) `year`.
    pub fn calendar_bucket(&self, year: f64) -> usize {
        bucket_of(&self.calendar_edges_years, year)
    }

    /// Whether a first visit's date follows from three draws of the model: the birth decade (a demographic
    /// category), the calendar bucket and the age bucket (visit groups), which a sampler of manifest format
    /// 10 on (`manifest::FIRST_VISIT_DATES_FORMAT`) draws so that they meet.
    pub fn has_first_visit_dates(&self) -> bool {
        let group = |name: &str| self.visit_groups.iter().any(|g| g.name == name && g.len > 0);
        group(VisitGroup::CALENDAR)
            && group(VisitGroup::AGE)
            && self
                .tokens
                .iter()
                .any(|t| matches!(t, Token::Demographic { category, .. } if category.is_birth_year()))
    }

    /// The years `lo..hi` that calendar bucket `bucket` holds (as [`Encoding::calendar_bucket`] assigns them): the
    /// first bucket open below, the last (open above) closed [`CALENDAR_BUCKET_YEARS`] after the last edge, as
    /// fewer than `min_patients` patients' records reach that far (the edges stop at the last multiple of it
    /// before that year). A first visit drawn in a bucket is dated inside these years.
    pub fn calendar_bucket_years(&self, bucket: usize) -> (f64, f64) {
        let edges = &self.calendar_edges_years;
        let lo = match bucket {
            0 => f64::NEG_INFINITY,
            _ => edges.get(bucket).copied().unwrap_or(f64::INFINITY),
        };
        let hi = match edges.get(bucket + 2) {
            Some(_) => edges[bucket + 1],
            None => edges.last().map_or(f64::INFINITY, |last| last + CALENDAR_BUCKET_YEARS),
        };
        (lo, hi)
    }

    /// The calendar token of a visit whose visit before was in (fractional) `year`.
    pub fn calendar_token(&self, year: f64) -> Token {
        Token::Calendar {
            bucket: self.calendar_bucket(year),
        }
    }

    /// The most visits a sampled record holds: one window's, or with windows the fitted limit.
    pub fn sampled_visit_limit(&self) -> usize {
        match self.options.window_stride {
            0 => self.options.max_visits,
            _ => self.record_visit_limit.max(self.options.max_visits),
        }
    }

    /// The label codes of the patient's demographic values.
    pub(crate) fn demographic_labels(&self, patient: &Patient, index: &HashMap<String, u32>) -> Vec<u32> {
        self.demographic_category_kinds()
            .filter_map(|category| match category {
                DemographicCategory::BirthYear => self.birth_year_label(birth_year(patient)?),
                _ => {
                    let value = demographic_value(patient, category)?;
                    index.get(&token_key(&Token::Demographic { category, value })).copied()
                }
            })
            .collect()
    }

    /// The label code of the birth-year value holding `year`: its decade, or the wider value that a rare
    /// decade at either end was merged into (`fit::birth_year_values`).
    fn birth_year_label(&self, year: i32) -> Option<u32> {
        let c = self.code_vocab_size;
        self.tokens[c..c + self.label_vocab_size]
            .iter()
            .position(|t| match t {
                Token::Demographic {
                    category: DemographicCategory::BirthYear,
                    value,
                } => BirthDecade::years_of(value).is_some_and(|years| years.contains(&year)),
                _ => false,
            })
            .map(|i| (c + i) as u32)
    }

    fn encode_visit_codes(
        &self,
        visit: &Visit,
        index: &HashMap<String, u32>,
        codes: &mut BTreeSet<u32>,
        unknown: &mut usize,
    ) {
        visit_codes(visit, index, self.lab_encoding(), codes, unknown);
    }

    /// How this encoding encodes a visit's lab values; none without labs.
    pub(crate) fn lab_encoding(&self) -> Option<LabEncoding<'_>> {
        LabEncoding::of(&self.options, &self.lab_edges, self.lab_codes_implied)
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

/// First visits of the windows of a record of `len` visits, `max_visits` a window, one every `stride`:
/// windows that the record goes on after, then the one that ends it (with more than `max_visits -
/// stride` visits: as many as a sampler holds when it continues a record).
pub fn window_starts(len: usize, max_visits: usize, stride: usize) -> impl Iterator<Item = usize> {
    let last = len.saturating_sub(max_visits).div_ceil(stride.max(1));
    (0..=last).map(move |k| k * stride)
}

/// How a visit's lab values are encoded: their buckets' edges, and whether a value stands for its code too
/// ([`Encoding::lab_codes_implied`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LabEncoding<'a> {
    pub(crate) edges: &'a BTreeMap<String, Vec<f64>>,
    pub(crate) codes_implied: bool,
}

impl<'a> LabEncoding<'a> {
    /// How lab values with these bucket edges are encoded under `options`; none without labs.
    pub(crate) fn of(
        options: &EncodingOptions,
        edges: &'a BTreeMap<String, Vec<f64>>,
        codes_implied: bool,
    ) -> Option<LabEncoding<'a>> {
        options.labs.then_some(LabEncoding { edges, codes_implied })
    }
}

/// The vocabulary indices of a visit's own codes (medical codes, and with `labs` each lab value's bucket),
/// unknown codes counted in `unknown`. The one definition of a visit's codes, used to encode it and to measure
/// the visit sizes that the size buckets are fitted on.
fn visit_codes(
    visit: &Visit,
    index: &HashMap<String, u32>,
    labs: Option<LabEncoding<'_>>,
    codes: &mut BTreeSet<u32>,
    unknown: &mut usize,
) {
    let mut valued: BTreeSet<&str> = BTreeSet::new();
    if let Some(labs) = labs {
        for lab in &visit.labs {
            if let Some(edges) = labs.edges.get(&lab.code) {
                let bucket = bucket_of(edges, lab.value);
                if let Some(&i) = index.get(&token_key(&Token::Lab {
                    code: lab.code.clone(),
                    bucket,
                })) {
                    codes.insert(i);
                    if labs.codes_implied {
                        valued.insert(lab.code.as_str());
                    }
                }
            }
        }
    }
    for c in visit.codes.iter().filter(|c| !valued.contains(c.as_str())) {
        match index.get(c.as_str()) {
            Some(i) => {
                codes.insert(*i);
            }
            None => *unknown += 1,
        }
    }
}

/// The record's vocabulary value of a demographic category (the birth year as its decade).
pub(crate) fn demographic_value(p: &Patient, category: DemographicCategory) -> Option<String> {
    match category {
        DemographicCategory::BirthYear => birth_year(p).map(|y| BirthDecade::of_year(y).to_string()),
        text => text.text_value(&p.demographics).map(str::to_string),
    }
}

mod counts;
mod vocabulary;
pub use vocabulary::*;
mod fit;
mod shares;
mod time_edges;
pub use shares::{Shares, TrainingShares};
#[cfg(test)]
mod tests;
