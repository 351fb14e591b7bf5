//! The small-cell rule of the report: a code, pair of codes, lab or label that fewer than `min_patients` real
//! patients hold is never named in the report (a report is passed around like the model, so it obeys the
//! model's rule); it is only counted.

use halo_core::record::Patient;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, HashSet};

/// Distinct real patients behind each value the report can name.
pub struct SmallCells {
    min_patients: usize,
    codes: HashMap<String, usize>,
    labs: HashMap<String, usize>,
    labels: HashMap<String, usize>,
}

impl SmallCells {
    /// Counts the patients of `real` holding each code and lab, and the patients whose label set (`labels(i)`
    /// for record `i`) holds each label.
    pub fn count(real: &[Patient], labels: impl Fn(usize) -> BTreeSet<String>, min_patients: usize) -> SmallCells {
        let mut cells = SmallCells {
            min_patients,
            codes: HashMap::new(),
            labs: HashMap::new(),
            labels: HashMap::new(),
        };
        for (i, p) in real.iter().enumerate() {
            let codes: HashSet<&str> = p.all_codes().collect();
            for c in codes {
                *cells.codes.entry(c.to_string()).or_default() += 1;
            }
            let labs: HashSet<&str> = p.visits.iter().flat_map(|v| &v.labs).map(|l| l.code.as_str()).collect();
            for l in labs {
                *cells.labs.entry(l.to_string()).or_default() += 1;
            }
            for l in labels(i) {
                *cells.labels.entry(l).or_default() += 1;
            }
        }
        cells
    }

    pub fn min_patients(&self) -> usize {
        self.min_patients
    }
    /// Whether `n` patients are enough to name a value.
    pub fn enough(&self, n: usize) -> bool {
        n >= self.min_patients
    }
    pub fn code_named(&self, code: &str) -> bool {
        self.enough(self.codes.get(code).copied().unwrap_or(0))
    }
    pub fn lab_named(&self, lab: &str) -> bool {
        self.enough(self.labs.get(lab).copied().unwrap_or(0))
    }
    pub fn label_named(&self, label: &str) -> bool {
        self.enough(self.labels.get(label).copied().unwrap_or(0))
    }
    /// The text that stands in for a value not named.
    pub fn placeholder(&self) -> String {
        format!("(held by fewer than {} patients)", self.min_patients)
    }
    /// The real data's codes below the threshold; the caller counts the rows it leaves out.
    pub fn summary(&self) -> Hidden {
        let below = |m: &HashMap<String, usize>| m.values().filter(|&&n| !self.enough(n)).count();
        Hidden {
            min_patients: self.min_patients,
            codes: below(&self.codes),
            labs: 0,
            labels: 0,
            plot_points: 0,
            visit_types: 0,
            demographic_values: 0,
        }
    }
}

/// Values the report does not name because fewer than `min_patients` real patients hold them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hidden {
    pub min_patients: usize,
    /// Distinct codes of the real data held by fewer patients (synthetic codes absent from the real data
    /// are counted in `Inputs::unknown_codes`, and never named either).
    pub codes: usize,
    /// Labs left out of the lab table (measured in fewer real patients).
    pub labs: usize,
    /// Labels left out of the label table (and of the utility comparisons): fewer real patients have them.
    pub labels: usize,
    /// Scatter-plot points (codes or pairs) shown without their name.
    pub plot_points: usize,
    /// Visit types left out of the visit type table (fewer real patients have a visit of the type).
    #[serde(default)]
    pub visit_types: usize,
    /// Demographic values (a race, an ethnicity, a birth decade, ...) left out of the demographics table.
    #[serde(default)]
    pub demographic_values: usize,
}

impl Hidden {
    /// One line for the report and the logs.
    pub fn describe(&self) -> String {
        format!(
            "{} codes, {} labs, {} labels, {} visit types and {} demographic values held by fewer than {} real patients, and {} plot points of such codes or pairs: not named",
            self.codes, self.labs, self.labels, self.visit_types, self.demographic_values, self.min_patients, self.plot_points
        )
    }
}
