//! The one data model of patients shared by every crate: static facts plus time-ordered visits.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Which part of a data set a patient belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    pub fn parse(s: &str) -> Option<Split> {
        match s {
            "train" => Some(Split::Train),
            "val" | "valid" | "validation" => Some(Split::Val),
            "test" => Some(Split::Test),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

/// The demographic facts the encoding, the readers, the sampler's decoder and the writers share. Spelled
/// `sex`, `race`, `ethnicity`, `birth_year` in files, `SEX`, ... as code prefixes (`SEX/F`, MEDS `SEX//F`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DemographicCategory {
    Sex,
    Race,
    Ethnicity,
    /// Sampled as a decade ([`BirthDecade`]); the decoder draws a year inside it.
    BirthYear,
}

impl DemographicCategory {
    /// In vocabulary order.
    pub const ALL: [DemographicCategory; 4] = [
        DemographicCategory::Sex,
        DemographicCategory::Race,
        DemographicCategory::Ethnicity,
        DemographicCategory::BirthYear,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DemographicCategory::Sex => "sex",
            DemographicCategory::Race => "race",
            DemographicCategory::Ethnicity => "ethnicity",
            DemographicCategory::BirthYear => "birth_year",
        }
    }

    /// The prefix of its codes: `SEX`, `RACE`, `ETHNICITY`, `BIRTH_YEAR`.
    pub fn code_prefix(self) -> &'static str {
        match self {
            DemographicCategory::Sex => "SEX",
            DemographicCategory::Race => "RACE",
            DemographicCategory::Ethnicity => "ETHNICITY",
            DemographicCategory::BirthYear => "BIRTH_YEAR",
        }
    }

    pub fn is_birth_year(self) -> bool {
        self == DemographicCategory::BirthYear
    }

    /// The field holding a categorical value as text (every category but the birth year).
    pub fn text_field(self, d: &mut Demographics) -> Option<&mut Option<String>> {
        match self {
            DemographicCategory::Sex => Some(&mut d.sex),
            DemographicCategory::Race => Some(&mut d.race),
            DemographicCategory::Ethnicity => Some(&mut d.ethnicity),
            DemographicCategory::BirthYear => None,
        }
    }

    /// The text value of a categorical field (`None` for the birth year and for a missing value).
    pub fn text_value(self, d: &Demographics) -> Option<&str> {
        match self {
            DemographicCategory::Sex => d.sex.as_deref(),
            DemographicCategory::Race => d.race.as_deref(),
            DemographicCategory::Ethnicity => d.ethnicity.as_deref(),
            DemographicCategory::BirthYear => None,
        }
    }
}

/// The decade a birth year is sampled as: its vocabulary value is `1970-1979`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BirthDecade {
    pub first_year: i32,
}

impl BirthDecade {
    pub fn of_year(year: i32) -> BirthDecade {
        BirthDecade {
            first_year: year.div_euclid(10) * 10,
        }
    }

    /// The years a vocabulary value stands for: `1970-1979` (what `Display` writes), or one year `1975`.
    pub fn years_of(value: &str) -> Option<std::ops::RangeInclusive<i32>> {
        let value = value.trim();
        if let Ok(y) = value.parse::<i32>() {
            return Some(y..=y);
        }
        let (a, b) = value.split_once('-')?;
        let (a, b) = (a.trim().parse::<i32>().ok()?, b.trim().parse::<i32>().ok()?);
        (a <= b).then_some(a..=b)
    }

    /// The value of the years `first..=last`: a decade, or decades merged at an end of the birth years
    /// (`1900-1939`, see `Encoding::fit`).
    pub fn years_value(first: i32, last: i32) -> String {
        format!("{first}-{last}")
    }
}

impl std::fmt::Display for BirthDecade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&BirthDecade::years_value(self.first_year, self.first_year + 9))
    }
}

/// Static demographic facts. Every field is optional: sources differ in what they carry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Demographics {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub race: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ethnicity: Option<String>,
    /// Birth year; a full birth date, where known, is kept in `birth_date`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_year: Option<i32>,
    /// ISO date `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<String>,
}

impl Demographics {
    pub fn is_empty(&self) -> bool {
        self == &Demographics::default()
    }
}

/// One lab result: the lab's code and its numeric value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabValue {
    pub code: String,
    pub value: f64,
}

/// One visit: a set of codes at one time, with the lab values measured there.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Visit {
    /// Days since the patient's first visit (0 for the first). Sources with real timestamps also fill `time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day: Option<f64>,
    /// ISO timestamp `YYYY-MM-DDTHH:MM:SS` of the visit's start, when the source has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    pub codes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labs: Vec<LabValue>,
    /// The source's kind of visit (OMOP `visit_concept_id` as a string, `9201` inpatient, `9202` outpatient,
    /// `9203` emergency; MEDS `VISIT//<type>`; JSONL `visit_type`). `None`: not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visit_type: Option<String>,
}

/// A patient: static facts, phenotype labels and visits in time order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Patient {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Split>,
    #[serde(default, skip_serializing_if = "Demographics::is_empty")]
    pub demographics: Demographics,
    /// Phenotype labels given by the source (name -> present). `None` means "derive from the label spec".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, bool>>,
    /// Label groups the record declares (JSONL `"labels": {"GENDER": "F"}` declares `GENDER`): the labels
    /// `<group>/<value>` are one exclusive category, of which the record holds the one it names. Read only
    /// (a written record spells the group's labels out as `GENDER/F: true`).
    #[serde(skip)]
    pub label_groups: BTreeSet<String>,
    pub visits: Vec<Visit>,
}

impl Patient {
    /// Every distinct code the patient ever has, in no particular order.
    pub fn all_codes(&self) -> impl Iterator<Item = &str> {
        self.visits.iter().flat_map(|v| v.codes.iter().map(String::as_str))
    }
}

/// What a reader had to skip or fix, so that nothing is dropped silently.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReadReport {
    pub patients: usize,
    pub visits: usize,
    pub events: usize,
    /// Patients without any visit: kept out of training, counted here.
    pub patients_without_visits: usize,
    /// Events whose visit could not be found (OMOP `visit_occurrence_id` missing or unknown).
    pub events_without_visit: usize,
    /// Lab values that were not finite numbers (NaN, inf): the code is kept, the value dropped.
    pub non_finite_values: usize,
    /// Rows skipped for other reasons, with a short reason -> count.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub skipped: BTreeMap<String, usize>,
}

impl ReadReport {
    pub fn skip(&mut self, reason: &str) {
        *self.skipped.entry(reason.to_string()).or_default() += 1;
    }
}

/// Patients read from a source, with the report of what was skipped.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub patients: Vec<Patient>,
    pub report: ReadReport,
}
