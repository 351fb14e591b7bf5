//! halo-evaluate: how good and how private is a synthetic data set? Fidelity, privacy and utility metrics of
//! HALO (Theodorou et al. 2023) computed from real records (with the split training used) and synthetic records,
//! written as `report.json` and a self-contained `report.html`.
//!
//! - [`fidelity`]: code probabilities (unigrams, same-visit and consecutive-visit bigrams, per visit and per
//!   record) compared by R², record shapes, label prevalence, gaps and labs.
//! - [`privacy`]: membership inference (dataset and model attack), attribute inference, nearest-neighbour
//!   adversarial accuracy, exact copies.
//! - [`utility`]: balanced sampling and classifier metrics for the trainer's classifier comparison.
//! - [`report`], [`plot`]: the report and its SVG plots.
//!
//! Everything works on code strings (interned to ids in [`corpus`]), never on a model's vocabulary, and counts
//! sparsely: sorted tables of the codes and pairs that occur ([`counting`]), never vocabulary-by-vocabulary
//! matrices.
//!
//! ```no_run
//! # use halo_evaluate::*;
//! # fn demo(real: &[halo_core::record::Patient], split: &halo_core::split::SplitAssignment,
//! #         synthetic: &[halo_core::record::Patient]) -> Result<(), EvalError> {
//! let report = evaluate(real, split, synthetic, &EvalOptions::default())?;
//! write_report(std::path::Path::new("report"), &report)?;
//! # Ok(()) }
//! ```

pub mod corpus;
pub mod counting;
mod error;
pub mod fidelity;
pub mod headline;
pub mod plot;
pub mod privacy;
pub mod report;
pub mod small_cells;
pub mod utility;

pub use error::EvalError;
pub use report::{write_report, Report};
pub use utility::{balanced_split, ClassifierScores, UtilityResult, UtilitySizes};

use corpus::{Corpus, Interner};
use fidelity::{LabelPrevalence, SideBySide};
use halo_core::record::{Patient, Split};
use halo_core::split::SplitAssignment;
use privacy::Side;
use std::collections::{BTreeMap, BTreeSet};

/// Where records' phenotype labels come from.
#[derive(Clone, Copy)]
pub enum LabelSource<'a> {
    /// `Patient.labels`: the names set to true.
    Given,
    /// Label sets computed beforehand, one per record of the `real` and `synthetic` slices given to
    /// [`evaluate`], in the same order.
    Precomputed {
        real: &'a [BTreeSet<String>],
        synthetic: &'a [BTreeSet<String>],
    },
}

impl LabelSource<'_> {
    /// Labels of record `index` of the real (`synthetic == false`) or synthetic slice.
    pub fn labels(&self, patient: &Patient, synthetic: bool, index: usize) -> BTreeSet<String> {
        match self {
            LabelSource::Given => patient
                .labels
                .iter()
                .flatten()
                .filter(|(_, v)| **v)
                .map(|(k, _)| k.clone())
                .collect(),
            LabelSource::Precomputed { real, synthetic: s } => {
                if synthetic {
                    s[index].clone()
                } else {
                    real[index].clone()
                }
            }
        }
    }
    /// Every label name the source can name for `patient`, present or not.
    fn names(&self, patient: &Patient, synthetic: bool, index: usize) -> BTreeSet<String> {
        match self {
            LabelSource::Given => patient.labels.iter().flatten().map(|(k, _)| k.clone()).collect(),
            _ => self.labels(patient, synthetic, index),
        }
    }
}

/// Options of [`evaluate`]. The defaults are the paper's choices where it has one.
#[derive(Clone)]
pub struct EvalOptions<'a> {
    pub labels: LabelSource<'a>,
    /// Seed of every sample drawn.
    pub seed: u64,
    /// Worker threads for counting and nearest-neighbour search.
    pub threads: usize,
    /// Records per group in the privacy evaluations: members and non-members of the membership attacks,
    /// attacked records and references of attribute inference, each set of the adversarial accuracy.
    pub privacy_sample: usize,
    /// Synthetic records the dataset attack searches for each attacked record's nearest neighbour.
    pub privacy_reference: usize,
    /// Neighbours of the attribute-inference attack (the reference uses 1).
    pub attribute_k: usize,
    /// Most common codes the attribute-inference attacker knows (the reference uses 100).
    pub attribute_common_codes: usize,
    /// Points per scatter plot.
    pub plot_points: usize,
    /// Log-likelihood under the model of each record of [`attacked_records`] (members first, then
    /// non-members); enables the model attack.
    pub log_likelihoods: Option<Vec<f64>>,
    /// The labels each synthetic record's own codes imply (by the label spec the real labels came from),
    /// by synthetic record index; enables the label agreement of [`LabelPrevalence`].
    pub synthetic_labels_from_codes: Option<&'a [BTreeSet<String>]>,
    /// The small-cell rule ([`small_cells`]): codes, pairs, labs and labels held by fewer real patients are
    /// counted, never named. `halo evaluate` takes the model's; 0 names everything (tests).
    pub min_patients: usize,
}

impl Default for EvalOptions<'_> {
    fn default() -> Self {
        EvalOptions {
            labels: LabelSource::Given,
            seed: 4,
            threads: 2,
            privacy_sample: 1000,
            privacy_reference: 20_000,
            attribute_k: 1,
            attribute_common_codes: 100,
            plot_points: 1000,
            log_likelihoods: None,
            synthetic_labels_from_codes: None,
            min_patients: halo_core::encoding::DEFAULT_MIN_PATIENTS,
        }
    }
}

/// Real records by split: indices into the `real` slice of the records with visits.
struct RealSplit {
    train: Vec<usize>,
    val: Vec<usize>,
    test: Vec<usize>,
    unassigned: Vec<usize>,
    without_visits: usize,
}

fn split_real(real: &[Patient], split: &SplitAssignment) -> Result<RealSplit, EvalError> {
    let lookup = split.lookup();
    let mut out = RealSplit {
        train: vec![],
        val: vec![],
        test: vec![],
        unassigned: vec![],
        without_visits: 0,
    };
    for (i, p) in real.iter().enumerate() {
        if p.visits.is_empty() {
            out.without_visits += 1;
            continue;
        }
        match lookup.get(p.id.as_str()) {
            Some(Split::Train) => out.train.push(i),
            Some(Split::Val) => out.val.push(i),
            Some(Split::Test) => out.test.push(i),
            None => out.unassigned.push(i),
        }
    }
    let hint = || {
        format!(
            "{} real records with visits, {} of them in no split; the split lists {} train, {} val, {} test ids",
            real.len() - out.without_visits,
            out.unassigned.len(),
            split.train.len(),
            split.val.len(),
            split.test.len()
        )
    };
    if out.train.is_empty() {
        return Err(EvalError::EmptySplit {
            split: "training",
            hint: hint(),
        });
    }
    if out.test.is_empty() {
        return Err(EvalError::EmptySplit {
            split: "test",
            hint: hint(),
        });
    }
    Ok(out)
}

/// The records the membership attacks judge, for computing their log-likelihoods under the model:
/// members (training records) then non-members (test records), the same ones [`evaluate`] draws with
/// these options.
pub struct AttackedRecords<'p> {
    pub members: Vec<&'p Patient>,
    pub non_members: Vec<&'p Patient>,
}

pub fn attacked_records<'p>(
    real: &'p [Patient],
    split: &SplitAssignment,
    options: &EvalOptions,
) -> Result<AttackedRecords<'p>, EvalError> {
    let s = split_real(real, split)?;
    let (m, n) = privacy::membership_sample(s.train.len(), s.test.len(), options);
    Ok(AttackedRecords {
        members: m.iter().map(|&i| &real[s.train[i]]).collect(),
        non_members: n.iter().map(|&i| &real[s.test[i]]).collect(),
    })
}

fn check_options(real: &[Patient], synthetic: &[Patient], options: &EvalOptions) -> Result<(), EvalError> {
    if let LabelSource::Precomputed { real: r, synthetic: s } = options.labels {
        if r.len() != real.len() {
            return Err(EvalError::Length {
                what: "precomputed labels of the real records",
                expected: real.len(),
                got: r.len(),
                hint: "one label set per real record, in order",
            });
        }
        if s.len() != synthetic.len() {
            return Err(EvalError::Length {
                what: "precomputed labels of the synthetic records",
                expected: synthetic.len(),
                got: s.len(),
                hint: "one label set per synthetic record, in order",
            });
        }
    }
    if options.threads == 0 {
        return Err(EvalError::Invalid {
            what: "threads".into(),
            message: "expected at least 1".into(),
        });
    }
    Ok(())
}

/// Evaluates `synthetic` against `real` (split by `split`, the assignment training used): fidelity against the
/// training and test splits, privacy, and an empty `utility` list for the caller to fill.
pub fn evaluate(
    real: &[Patient],
    split: &SplitAssignment,
    synthetic: &[Patient],
    options: &EvalOptions,
) -> Result<Report, EvalError> {
    check_options(real, synthetic, options)?;
    let parts = split_real(real, split)?;
    let syn_idx: Vec<usize> = (0..synthetic.len())
        .filter(|&i| !synthetic[i].visits.is_empty())
        .collect();
    if syn_idx.is_empty() {
        return Err(EvalError::EmptySynthetic {
            records: synthetic.len(),
        });
    }

    // Intern every real code first: ids below `n_known` are codes of the real data.
    let mut interner = Interner::default();
    let pick = |idx: &[usize]| idx.iter().map(|&i| &real[i]).collect::<Vec<_>>();
    let (train_p, test_p) = (pick(&parts.train), pick(&parts.test));
    let syn_p: Vec<&Patient> = syn_idx.iter().map(|&i| &synthetic[i]).collect();
    let train = Corpus::build(train_p.iter().copied(), &mut interner);
    let test = Corpus::build(test_p.iter().copied(), &mut interner);
    for &i in parts.val.iter().chain(&parts.unassigned) {
        for c in real[i].all_codes() {
            interner.intern(c);
        }
    }
    let n_known = interner.len() as u32;
    let syn = Corpus::build(syn_p.iter().copied(), &mut interner);
    let (inputs, examples) = inputs(real.len(), &parts, synthetic.len(), &syn, n_known, &interner);
    if inputs.unknown_code_occurrences > 0 && inputs.unknown_code_occurrences == inputs.synthetic_code_occurrences {
        // Named in the refusal only (no report is written): the synthetic file shares no code with the real data.
        return Err(EvalError::NoCommonCodes {
            occurrences: inputs.unknown_code_occurrences,
            examples,
        });
    }
    let notes = input_notes(&inputs);

    let cells = small_cells::SmallCells::count(
        real,
        |i| options.labels.labels(&real[i], false, i),
        options.min_patients,
    );
    let mut hidden = cells.summary();

    // Fidelity.
    let (probabilities, shape, domain_prevalence) =
        code_figures([&train, &test, &syn], &interner, &cells, options, &mut hidden);
    let record_spans = fidelity::characterisation::record_spans(&train_p, &test_p, &syn_p, options.min_patients);
    let visit_types = fidelity::characterisation::visit_types(real, &train_p, &test_p, &syn_p, options.min_patients);
    hidden.visit_types = visit_types.hidden;
    let demographics = fidelity::characterisation::demographics(real, &train_p, &test_p, &syn_p, options.min_patients);
    hidden.demographic_values = demographics.iter().map(|d| d.hidden).sum();
    let sex_exclusive_codes =
        fidelity::characterisation::sex_exclusive_codes(&train_p, &test_p, &syn_p, options.min_patients);
    let histograms = fidelity::shape_histograms([&train, &test, &syn]);
    let labels = named_labels(real, &parts, synthetic, &syn_idx, options, &cells, &mut hidden)?;
    let continuous = named_continuous(&train_p, &test_p, &syn_p, &cells, &mut hidden);

    // Privacy.
    let label_of = |side: Side, i: usize| match side {
        Side::Train => options.labels.labels(train_p[i], false, parts.train[i]),
        Side::Test => options.labels.labels(test_p[i], false, parts.test[i]),
        Side::Synthetic => options.labels.labels(syn_p[i], true, syn_idx[i]),
    };
    let privacy = privacy::privacy(&train, &test, &syn, &label_of, options)?;

    Ok(Report {
        tool: format!("halo-evaluate {}", env!("CARGO_PKG_VERSION")),
        options: report::OptionsSummary::of(options),
        inputs,
        fidelity: report::Fidelity {
            probabilities,
            shape,
            histograms,
            labels,
            continuous,
            record_spans: Some(record_spans),
            visit_types,
            demographics,
            domain_prevalence,
            sex_exclusive_codes,
        },
        privacy,
        utility: Vec::new(),
        hidden,
        notes,
        model_privacy: Vec::new(),
    })
}

/// What the code counts of the three sides (train, test, synthetic) give: the code probabilities compared
/// ([`named_code_probabilities`]), each side's shape and the per-domain prevalence. The counts are dropped
/// before the rest of the report is computed.
fn code_figures(
    corpora: [&Corpus; 3],
    interner: &Interner,
    cells: &small_cells::SmallCells,
    options: &EvalOptions,
    hidden: &mut small_cells::Hidden,
) -> (
    Vec<fidelity::ProbabilityComparison>,
    SideBySide<fidelity::DatasetShape>,
    Vec<fidelity::characterisation::DomainPrevalence>,
) {
    let bound = interner.len() as u32;
    let counts = corpora.map(|c| fidelity::count_codes(c, bound, options.threads));
    let probabilities = named_code_probabilities(&counts, interner, cells, options.plot_points, hidden);
    let shape = SideBySide {
        train: fidelity::shape(corpora[0], &counts[0]),
        test: fidelity::shape(corpora[1], &counts[1]),
        synthetic: fidelity::shape(corpora[2], &counts[2]),
    };
    let domain_prevalence = fidelity::characterisation::domain_prevalence(&counts, interner, cells);
    (probabilities, shape, domain_prevalence)
}

/// The label prevalences, checked against the labels the synthetic codes imply where the options give them,
/// the labels held by too few real patients left out (counted in `hidden`).
fn named_labels(
    real: &[Patient],
    parts: &RealSplit,
    synthetic: &[Patient],
    syn_idx: &[usize],
    options: &EvalOptions,
    cells: &small_cells::SmallCells,
    hidden: &mut small_cells::Hidden,
) -> Result<Vec<LabelPrevalence>, EvalError> {
    let mut labels = label_prevalence(real, parts, synthetic, syn_idx, &options.labels);
    if let Some(implied) = options.synthetic_labels_from_codes {
        agree_with_codes(&mut labels, implied, synthetic, syn_idx, &options.labels)?;
    }
    let before = labels.len();
    labels.retain(|l| cells.label_named(&l.label));
    hidden.labels = before - labels.len();
    Ok(labels)
}

/// The continuous figures of the three sides, the labs held by too few real patients left out of the listing
/// (counted in `hidden`) after the R²s, which cover every lab.
fn named_continuous(
    train: &[&Patient],
    test: &[&Patient],
    synthetic: &[&Patient],
    cells: &small_cells::SmallCells,
    hidden: &mut small_cells::Hidden,
) -> fidelity::Continuous {
    let mut continuous = fidelity::continuous(train, test, synthetic);
    let before = continuous.labs.len();
    continuous.labs.retain(|l| cells.lab_named(&l.code));
    hidden.labs = before - continuous.labs.len();
    continuous
}

/// The report's notes on its inputs: synthetic codes the real data lacks, records without visits left out.
fn input_notes(inputs: &report::Inputs) -> Vec<String> {
    let mut notes = Vec::new();
    if inputs.unknown_code_occurrences > 0 {
        notes.push(format!(
            "{} of {} synthetic code occurrences ({:.4}%) are codes absent from the real data",
            inputs.unknown_code_occurrences,
            inputs.synthetic_code_occurrences,
            100.0 * inputs.unknown_code_fraction
        ));
    }
    if inputs.synthetic_without_visits > 0 {
        notes.push(format!(
            "{} synthetic records without visits were left out",
            inputs.synthetic_without_visits
        ));
    }
    notes
}

/// The code probabilities of `counts` (train, test, synthetic) compared, a code or pair named only where the
/// small-cell rule allows; counts the plot points left unnamed in `hidden`.
fn named_code_probabilities(
    counts: &[fidelity::CodeCounts; 3],
    interner: &Interner,
    cells: &small_cells::SmallCells,
    plot_points: usize,
    hidden: &mut small_cells::Hidden,
) -> Vec<fidelity::ProbabilityComparison> {
    // A pair is named when both its codes are and the real splits counted hold it in enough records (the
    // validation split is not counted: fewer named, never more).
    let named = |s: fidelity::Statistic, key: u64| match s {
        fidelity::Statistic::Unigram => cells.code_named(interner.name(key as u32)),
        _ => {
            let (a, b) = counts[0].pair_of(key);
            let records = |c: &fidelity::CodeCounts| c.table(s).get(key).map_or(0, |n| n.records as usize);
            cells.code_named(interner.name(a))
                && cells.code_named(interner.name(b))
                && cells.enough(records(&counts[0]) + records(&counts[1]))
        }
    };
    let placeholder = cells.placeholder();
    let names = fidelity::KeyNames {
        named: &named,
        placeholder: &placeholder,
    };
    let probabilities = fidelity::code_probabilities(&counts[0], &counts[1], &counts[2], interner, &names, plot_points);
    hidden.plot_points = probabilities
        .iter()
        .flat_map(|p| &p.points)
        .filter(|p| p.key == placeholder)
        .count();
    probabilities
}

/// Marks `labels` as derived from codes, with each label's share of synthetic records (`syn_idx`) whose
/// sampled label agrees with the one `implied` by their codes.
fn agree_with_codes(
    labels: &mut [LabelPrevalence],
    implied: &[BTreeSet<String>],
    synthetic: &[Patient],
    syn_idx: &[usize],
    source: &LabelSource,
) -> Result<(), EvalError> {
    if implied.len() != synthetic.len() {
        return Err(EvalError::Length {
            what: "synthetic_labels_from_codes",
            expected: synthetic.len(),
            got: implied.len(),
            hint: "one label set per synthetic record",
        });
    }
    // Each record's sampled labels once, then every label against them.
    let mut agreeing = vec![0usize; labels.len()];
    for &i in syn_idx {
        let sampled = source.labels(&synthetic[i], true, i);
        for (count, l) in agreeing.iter_mut().zip(labels.iter()) {
            *count += usize::from(sampled.contains(&l.label) == implied[i].contains(&l.label));
        }
    }
    for (l, count) in labels.iter_mut().zip(agreeing) {
        l.kind = fidelity::LabelKind::FromCodes;
        l.synthetic_agreement = Some(count as f64 / syn_idx.len().max(1) as f64);
    }
    Ok(())
}

fn inputs(
    n_real: usize,
    parts: &RealSplit,
    n_synthetic: usize,
    syn: &Corpus,
    n_known: u32,
    interner: &Interner,
) -> (report::Inputs, String) {
    let mut unknown: BTreeMap<u32, usize> = BTreeMap::new();
    for &c in syn.codes() {
        if c >= n_known {
            *unknown.entry(c).or_default() += 1;
        }
    }
    let occurrences: usize = unknown.values().sum();
    let mut examples: Vec<(String, usize)> = unknown
        .iter()
        .map(|(&c, &n)| (interner.name(c).to_string(), n))
        .collect();
    examples.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let examples = examples
        .iter()
        .take(3)
        .map(|(c, _)| c.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let inputs = report::Inputs {
        real_records: n_real,
        real_without_visits: parts.without_visits,
        train_records: parts.train.len(),
        val_records: parts.val.len(),
        test_records: parts.test.len(),
        unassigned_records: parts.unassigned.len(),
        synthetic_records: n_synthetic,
        synthetic_without_visits: n_synthetic - syn.len(),
        real_codes: n_known as usize,
        synthetic_code_occurrences: syn.n_codes(),
        unknown_code_occurrences: occurrences,
        unknown_code_fraction: if syn.n_codes() == 0 {
            0.0
        } else {
            occurrences as f64 / syn.n_codes() as f64
        },
        unknown_codes: unknown.len(),
    };
    (inputs, examples)
}

fn label_prevalence(
    real: &[Patient],
    parts: &RealSplit,
    synthetic: &[Patient],
    syn_idx: &[usize],
    source: &LabelSource,
) -> Vec<LabelPrevalence> {
    let mut names = BTreeSet::new();
    let mut count = |patients: &[Patient], idx: &[usize], is_syn: bool| {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for &i in idx {
            names.extend(source.names(&patients[i], is_syn, i));
            for l in source.labels(&patients[i], is_syn, i) {
                *counts.entry(l).or_default() += 1;
            }
        }
        (counts, idx.len())
    };
    let sides = [
        count(real, &parts.train, false),
        count(real, &parts.test, false),
        count(synthetic, syn_idx, true),
    ];
    let rate = |side: &(BTreeMap<String, usize>, usize), l: &str| {
        side.0.get(l).copied().unwrap_or(0) as f64 / side.1.max(1) as f64
    };
    names
        .into_iter()
        .map(|l| LabelPrevalence {
            train: rate(&sides[0], &l),
            test: rate(&sides[1], &l),
            synthetic: rate(&sides[2], &l),
            synthetic_agreement: None,
            kind: fidelity::LabelKind::Given,
            label: l,
        })
        .collect()
}
