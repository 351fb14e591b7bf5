//! The evaluation report: `report.json` (every number, serde) and `report.html` (tables with one-line
//! explanations and inline SVG plots; opens offline, needs no scripts).

use crate::error::EvalError;
use crate::fidelity::{
    Continuous, DatasetShape, DemographicShares, DomainPrevalence, Histogram, LabelPrevalence, ProbabilityComparison,
    RecordSpans, SexExclusiveCodes, SideBySide, VisitTypes,
};
use crate::privacy::Privacy;
use crate::small_cells::Hidden;
use crate::utility::UtilityResult;
use crate::EvalOptions;
use serde::{Deserialize, Serialize};
use std::path::Path;

mod html;
pub use html::render_html;

/// The options an evaluation ran with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptionsSummary {
    pub seed: u64,
    pub threads: usize,
    pub privacy_sample: usize,
    pub privacy_reference: usize,
    pub attribute_k: usize,
    pub attribute_common_codes: usize,
    pub model_attack: bool,
}

impl OptionsSummary {
    pub fn of(o: &EvalOptions) -> OptionsSummary {
        OptionsSummary {
            seed: o.seed,
            threads: o.threads,
            privacy_sample: o.privacy_sample,
            privacy_reference: o.privacy_reference,
            attribute_k: o.attribute_k,
            attribute_common_codes: o.attribute_common_codes,
            model_attack: o.log_likelihoods.is_some(),
        }
    }
}

/// What went in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inputs {
    pub real_records: usize,
    /// Real records without visits (left out).
    pub real_without_visits: usize,
    pub train_records: usize,
    pub val_records: usize,
    pub test_records: usize,
    /// Real records with visits whose id is in no split (left out).
    pub unassigned_records: usize,
    pub synthetic_records: usize,
    /// Synthetic records without visits (left out, as the reference does).
    pub synthetic_without_visits: usize,
    /// Distinct codes of the real data (all splits).
    pub real_codes: usize,
    /// Synthetic code occurrences (distinct per visit).
    pub synthetic_code_occurrences: usize,
    /// Of these, occurrences of codes the real data never has.
    pub unknown_code_occurrences: usize,
    pub unknown_code_fraction: f64,
    /// Distinct such codes (never named: no real patient holds them, see [`crate::small_cells`]).
    pub unknown_codes: usize,
}

/// Fidelity results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fidelity {
    pub probabilities: Vec<ProbabilityComparison>,
    pub shape: SideBySide<DatasetShape>,
    pub histograms: Vec<Histogram>,
    pub labels: Vec<LabelPrevalence>,
    pub continuous: Continuous,
    /// Days from the first to the last visit of a record (the OMOP observation period), synthetic against
    /// the data; absent in reports written before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_spans: Option<RecordSpans>,
    /// Shares of visit types (`Visit::visit_type`).
    #[serde(default)]
    pub visit_types: VisitTypes,
    /// Per demographic field (sex, race, ethnicity, birth decade), the shares of its values among the persons;
    /// absent in reports written before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub demographics: Vec<DemographicShares>,
    /// Per domain (code prefix), R² of the share of persons per concept.
    #[serde(default)]
    pub domain_prevalence: Vec<DomainPrevalence>,
    /// Persons holding a code that no training person of their sex holds; absent in reports written before
    /// and where the data has no sex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sex_exclusive_codes: Option<SexExclusiveCodes>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub tool: String,
    pub options: OptionsSummary,
    pub inputs: Inputs,
    pub fidelity: Fidelity,
    pub privacy: Privacy,
    /// Classifier comparisons, filled by the caller (the trainer's BiLSTM); empty when not run.
    pub utility: Vec<UtilityResult>,
    /// What the small-cell rule kept out of the report.
    pub hidden: Hidden,
    pub notes: Vec<String>,
    /// The model's differential privacy as its checkpoint or manifest states it, in
    /// `halo_core::privacy::describe`'s lines (the total (epsilon, delta) and one line per mechanism, or "not
    /// trained with differential privacy"); filled by the caller, empty when it had no model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model_privacy: Vec<String>,
}

/// Writes `report.json` and `report.html` into `dir` (created when missing), each to a temporary file first and
/// then renamed, so that a reader never sees half a report.
pub fn write_report(dir: &Path, report: &Report) -> Result<(), EvalError> {
    std::fs::create_dir_all(dir).map_err(|e| EvalError::Io {
        path: dir.to_path_buf(),
        error: e,
    })?;
    halo_core::fsutil::write_json_atomic(&dir.join("report.json"), report)?;
    halo_core::fsutil::write_atomic(&dir.join("report.html"), render_html(report).as_bytes())?;
    Ok(())
}
