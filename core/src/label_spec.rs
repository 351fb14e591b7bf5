//! Phenotype label specs: a label is set when a record holds one of its codes (exact, or a prefix written
//! with a trailing `*`). `halo train --label-spec FILE` reads one; the default lists common chronic conditions.

use crate::error::{Error, Result};
use crate::record::Patient;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Label specs shipped with halo, by name (`halo train --label-spec NAME`): the 25 acute-care phenotypes of
/// HALO's MIMIC-III experiments, the HCUP CCS diagnosis categories of the MIMIC-III benchmark, by ICD-9-CM
/// and by HCUP's CCS for ICD-10-CM, each code spelled as MEDS (`DIAGNOSIS//ICD//9//4280`) and as an OMOP
/// condition source value (`condition/src:428.0`, `condition/src:4280`). Made by
/// scripts/make-ccs-label-specs.py; docs/label-specs.md says how to write one's own.
pub const BUILTIN_SPECS: [(&str, &str); 2] = [
    ("ccs-icd9", include_str!("../specs/ccs-icd9.json")),
    ("ccs-icd10", include_str!("../specs/ccs-icd10.json")),
];

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

    /// The text of the spec shipped under `name` (see [`BUILTIN_SPECS`]), if it names one.
    pub fn builtin_text(name: &Path) -> Option<&'static str> {
        let name = name.to_str()?;
        BUILTIN_SPECS.iter().find(|(n, _)| *n == name).map(|(_, text)| *text)
    }

    /// Reads a spec: one shipped with halo by its name (`ccs-icd9`, `ccs-icd10`; a file of that name is
    /// read as `./ccs-icd9`), or a JSON file.
    pub fn read(path: &Path) -> Result<LabelSpec> {
        let text = match LabelSpec::builtin_text(path) {
            Some(text) => text.to_string(),
            None => std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?,
        };
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
                Some(_) => codes.iter().any(|c| pattern_matches(p, c)),
                None => codes.contains(p.as_str()),
            });
            if hit {
                out.insert(name.clone());
            }
        }
        out
    }

    /// Whether `code` sets label `name` (one of the label's codes, or under one of its prefixes).
    pub fn code_sets(&self, name: &str, code: &str) -> bool {
        self.labels
            .get(name)
            .is_some_and(|patterns| patterns.iter().any(|p| pattern_matches(p, code)))
    }
}

/// A spec pattern: an exact code, or a prefix written with a trailing `*`.
fn pattern_matches(pattern: &str, code: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => code.starts_with(prefix),
        None => code == pattern,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_specs_parse_and_name_the_25_phenotypes() {
        let names = |name: &str| -> Vec<String> {
            let spec = LabelSpec::read(Path::new(name)).unwrap();
            assert!(spec.labels.values().all(|codes| !codes.is_empty()), "{name}");
            spec.labels.keys().cloned().collect()
        };
        let icd9 = names("ccs-icd9");
        assert_eq!(icd9.len(), 25, "{icd9:?}");
        assert_eq!(names("ccs-icd10"), icd9, "the same phenotypes by ICD-10-CM");
        assert!(icd9.contains(&"congestive_heart_failure".to_string()));
        // Not a shipped name: read as a file, and its absence named.
        let err = LabelSpec::read(Path::new("ccs-icd11")).unwrap_err().to_string();
        assert!(err.contains("ccs-icd11"), "{err}");
    }
}
