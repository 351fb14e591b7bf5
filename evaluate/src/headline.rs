//! The headline figures of a report with the range each is expected in: the one-screen summary that
//! `halo evaluate` prints, and the coloured summary table at the top of report.html. The ranges live here
//! only; they are relative to the real data wherever the real data sets the bar (the test split's R², the
//! training split's shape), so that they hold for any data set, not only the demo's.

use crate::fidelity::{Histogram, Level, MeanStd};
use crate::report::{Fidelity, Report};

/// Largest shortfall of a visit-level R² below its ceiling (the R² of the test split against the training split).
pub const R2_BELOW_CEILING: f64 = 0.05;
/// Largest relative difference of the mean visits per record from the training split's.
pub const VISITS_PER_RECORD_TOLERANCE: f64 = 0.10;
/// Largest relative difference of the mean codes per visit from the training split's.
pub const CODES_PER_VISIT_TOLERANCE: f64 = 0.05;
/// Largest difference, in shares, of same-day consecutive visits from the training split's.
pub const SAME_DAY_TOLERANCE: f64 = 0.02;
/// Largest total variation distance between the synthetic and training gap histograms.
pub const GAP_TVD_MAX: f64 = 0.05;
/// Largest relative difference of the median and 90th percentile record span from the training split's.
pub const RECORD_SPAN_TOLERANCE: f64 = 0.10;
/// Largest difference, in shares of persons, of a demographic value's share (a sex, race, ethnicity or birth
/// decade) from the training split's: about two standard errors of a share near one half over 800 persons.
pub const DEMOGRAPHIC_SHARE_TOLERANCE: f64 = 0.05;
/// Largest difference, in shares, of a visit type's share from the training split's.
pub const VISIT_TYPE_SHARE_TOLERANCE: f64 = 0.03;
/// Largest shortfall of a domain's prevalence R² below its ceiling (the test split's R² against training).
pub const DOMAIN_R2_BELOW_CEILING: f64 = 0.05;
/// Largest excess, in shares of persons, of the synthetic persons holding a code no training person of their
/// sex holds over the test split's (real persons outside training hold a few by chance).
pub const SEX_EXCLUSIVE_EXCESS_MAX: f64 = 0.02;
/// Smallest share of synthetic records whose label from codes agrees with its codes.
pub const LABEL_AGREEMENT_MIN: f64 = 0.99;
/// Largest drop of a label's utility AUROC (train on synthetic) below the real one (train on real).
pub const UTILITY_AUROC_DROP_MAX: f64 = 0.10;
/// Fewest test records of a label's utility comparison for the summary to use it (with fewer, the AUROC
/// moves by more than the tolerance from one record).
pub const UTILITY_MIN_TEST_RECORDS: usize = 50;
/// Largest accuracy of the membership attack on the model's likelihood (0.5 = a coin flip).
pub const MODEL_ATTACK_MAX: f64 = 0.55;
/// Largest accuracy of the membership attack on the synthetic records' distances.
pub const DATASET_ATTACK_MAX: f64 = 0.53;

/// One headline figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Headline {
    pub figure: String,
    pub value: String,
    /// The expected range, with where its bound comes from.
    pub expected: String,
    /// Whether the value lies in the expected range.
    pub within: bool,
}

fn line(figure: impl Into<String>, value: String, expected: String, within: bool) -> Headline {
    Headline {
        figure: figure.into(),
        value,
        expected,
        within,
    }
}

/// Shares of a histogram's series named `name`.
fn series<'a>(h: &'a Histogram, name: &str) -> Option<&'a [f64]> {
    h.series
        .iter()
        .find(|s| s.name == name && s.count > 0)
        .map(|s| s.fractions.as_slice())
}

fn relative(value: Option<MeanStd>, reference: Option<MeanStd>) -> Option<(f64, f64)> {
    let (v, r) = (value?.mean, reference?.mean);
    (r > 0.0).then_some((v, r))
}

/// The headline figures of a report that it has data for, in reading order.
pub fn headlines(r: &Report) -> Vec<Headline> {
    let mut out = Vec::new();
    visit_level(&r.fidelity, &mut out);
    shape(&r.fidelity, &mut out);
    characterisation(&r.fidelity, &mut out);
    labels_and_utility(r, &mut out);
    privacy(r, &mut out);
    out
}

/// Visit-level R² of unigrams and pairs against their ceilings.
fn visit_level(f: &Fidelity, out: &mut Vec<Headline>) {
    for p in f.probabilities.iter().filter(|p| p.level == Level::Visit) {
        if let (Some(v), Some(ceiling)) = (p.r2_synthetic_vs_train, p.r2_test_vs_train) {
            let bound = ceiling.min(1.0) - R2_BELOW_CEILING;
            out.push(line(
                format!("visit {} R² vs train", p.statistic.title()),
                format!("{v:.3}"),
                format!(">= {bound:.3} (ceiling {ceiling:.3} - {R2_BELOW_CEILING})"),
                v >= bound,
            ));
        }
    }
}

/// Visits per record, codes per visit, same-day visits and the gap histogram against the training split.
fn shape(f: &Fidelity, out: &mut Vec<Headline>) {
    let s = &f.shape;
    for (figure, value, reference, tolerance) in [
        (
            "visits per record",
            s.synthetic.visits_per_record,
            s.train.visits_per_record,
            VISITS_PER_RECORD_TOLERANCE,
        ),
        (
            "codes per visit",
            s.synthetic.codes_per_visit,
            s.train.codes_per_visit,
            CODES_PER_VISIT_TOLERANCE,
        ),
    ] {
        if let Some((v, reference)) = relative(value, reference) {
            let change = v / reference - 1.0;
            out.push(line(
                figure,
                format!("{v:.2} ({:+.1}%)", 100.0 * change),
                format!("train {reference:.2} ± {:.0}%", 100.0 * tolerance),
                change.abs() <= tolerance,
            ));
        }
    }
    if let Some(h) = &f.continuous.gap_histogram {
        if let (Some(train), Some(syn)) = (series(h, "train"), series(h, "synthetic")) {
            let (same_train, same_syn) = (train[0], syn[0]);
            out.push(line(
                "same-day consecutive visits",
                format!("{:.1}%", 100.0 * same_syn),
                format!(
                    "train {:.1}% ± {:.0} points",
                    100.0 * same_train,
                    100.0 * SAME_DAY_TOLERANCE
                ),
                (same_syn - same_train).abs() <= SAME_DAY_TOLERANCE,
            ));
            let tvd = halo_core::buckets::total_variation(train, syn);
            out.push(line(
                "gap histogram total variation vs train",
                format!("{tvd:.3}"),
                format!("<= {GAP_TVD_MAX}"),
                tvd <= GAP_TVD_MAX,
            ));
        }
    }
}

/// What an OHDSI characterisation compares: record spans, visit types, demographics, codes one sex never
/// holds, per-domain prevalence.
fn characterisation(f: &Fidelity, out: &mut Vec<Headline>) {
    if let Some(spans) = &f.record_spans {
        if let (Some(train), Some(syn)) = (&spans.days.train, &spans.days.synthetic) {
            for (figure, reference, value, change) in [
                (
                    "record span median (days)",
                    train.median,
                    syn.median,
                    spans.median_change,
                ),
                (
                    "record span 90th percentile (days)",
                    train.p90,
                    syn.p90,
                    spans.p90_change,
                ),
            ] {
                if let Some(change) = change {
                    out.push(line(
                        figure,
                        format!("{value:.0} ({:+.1}%)", 100.0 * change),
                        format!("train {reference:.0} ± {:.0}%", 100.0 * RECORD_SPAN_TOLERANCE),
                        change.abs() <= RECORD_SPAN_TOLERANCE,
                    ));
                }
            }
        }
    }
    if let Some(d) = f.visit_types.largest_difference {
        out.push(line(
            "visit type shares, largest difference vs train",
            format!("{d:.3}"),
            format!("<= {VISIT_TYPE_SHARE_TOLERANCE}"),
            d <= VISIT_TYPE_SHARE_TOLERANCE,
        ));
    }
    // The field furthest from the data stands for all.
    if let Some(d) = f
        .demographics
        .iter()
        .max_by(|a, b| a.largest_difference.total_cmp(&b.largest_difference))
    {
        out.push(line(
            format!("demographic shares, largest difference vs train ({})", d.field),
            format!("{:.3}", d.largest_difference),
            format!("<= {DEMOGRAPHIC_SHARE_TOLERANCE}"),
            d.largest_difference <= DEMOGRAPHIC_SHARE_TOLERANCE,
        ));
    }
    if let Some(x) = &f.sex_exclusive_codes {
        out.push(line(
            format!("persons with a code their sex never holds in train ({} codes)", x.codes),
            format!("{:.1}%", 100.0 * x.synthetic),
            format!(
                "test split's {:.1}% + {:.0} points",
                100.0 * x.test,
                100.0 * SEX_EXCLUSIVE_EXCESS_MAX
            ),
            x.synthetic <= x.test + SEX_EXCLUSIVE_EXCESS_MAX,
        ));
    }
    // The domain furthest below its bound stands for all (report.html lists each).
    let domains = f.domain_prevalence.iter().filter_map(|d| {
        let (v, ceiling) = (d.r2_synthetic_vs_train?, d.r2_test_vs_train?);
        Some((v - (ceiling.min(1.0) - DOMAIN_R2_BELOW_CEILING), v, ceiling, d))
    });
    if let Some((margin, v, ceiling, d)) = domains.min_by(|a, b| a.0.total_cmp(&b.0)) {
        out.push(line(
            format!("prevalence R² per domain (lowest margin: {})", d.domain),
            format!("{v:.3}"),
            format!(
                ">= {:.3} (ceiling {ceiling:.3} - {DOMAIN_R2_BELOW_CEILING})",
                ceiling.min(1.0) - DOMAIN_R2_BELOW_CEILING
            ),
            margin >= 0.0,
        ));
    }
}

/// Labels' agreement with codes, and the utility classifiers' largest AUROC drop.
fn labels_and_utility(r: &Report, out: &mut Vec<Headline>) {
    let f = &r.fidelity;
    let agreements = f.labels.iter().filter_map(|l| Some((l.synthetic_agreement?, &l.label)));
    if let Some((worst, label)) = agreements.min_by(|a, b| a.0.total_cmp(&b.0)) {
        out.push(line(
            format!("label agreement with codes (lowest: {label})"),
            format!("{:.1}%", 100.0 * worst),
            format!(">= {:.0}%", 100.0 * LABEL_AGREEMENT_MIN),
            worst >= LABEL_AGREEMENT_MIN,
        ));
    }
    let drops = r
        .utility
        .iter()
        .filter(|u| u.n_test >= UTILITY_MIN_TEST_RECORDS)
        .filter_map(|u| Some((u.real.auroc? - u.synthetic.auroc?, u)));
    if let Some((drop, u)) = drops.max_by(|a, b| a.0.total_cmp(&b.0)) {
        out.push(line(
            format!("utility AUROC, largest drop ({})", u.label),
            format!("{:.3}", u.synthetic.auroc.unwrap_or(f64::NAN)),
            format!(
                ">= {:.3} (real {:.3} - {UTILITY_AUROC_DROP_MAX}; labels with >= {UTILITY_MIN_TEST_RECORDS} test records)",
                u.real.auroc.unwrap_or(f64::NAN) - UTILITY_AUROC_DROP_MAX,
                u.real.auroc.unwrap_or(f64::NAN)
            ),
            drop <= UTILITY_AUROC_DROP_MAX,
        ));
    }
}

/// Membership attacks and exact copies.
fn privacy(r: &Report, out: &mut Vec<Headline>) {
    let m = &r.privacy.membership;
    for (figure, attack, max) in [
        ("model likelihood attack accuracy", &m.model_attack, MODEL_ATTACK_MAX),
        ("dataset attack accuracy", &m.dataset_attack, DATASET_ATTACK_MAX),
    ] {
        if let Some(a) = attack {
            out.push(line(
                figure,
                format!("{:.3}", a.accuracy),
                format!("<= {max} (0.5 = chance)"),
                a.accuracy <= max,
            ));
        }
    }
    let c = &r.privacy.exact_copies;
    if c.synthetic_records > 0 && c.test_records > 0 {
        out.push(line(
            "exact copies of training records",
            format!(
                "{:.2}% ({} of {})",
                100.0 * c.synthetic_rate,
                c.synthetic_copies,
                c.synthetic_records
            ),
            format!("<= test split's {:.2}%", 100.0 * c.test_rate),
            c.synthetic_rate <= c.test_rate,
        ));
    }
}

/// The summary as plain text, one figure a line, `!` marking a figure outside its expected range.
pub fn summary_text(r: &Report) -> String {
    let lines = headlines(r);
    let width = lines.iter().map(|h| h.figure.chars().count()).max().unwrap_or(0);
    let value_width = lines.iter().map(|h| h.value.chars().count()).max().unwrap_or(0);
    let outside = lines.iter().filter(|h| !h.within).count();
    let mut text = String::new();
    for privacy in &r.model_privacy {
        text.push_str(&format!("model: {privacy}\n"));
    }
    text.push_str(&format!(
        "{} of {} headline figures outside their expected range (marked !):\n",
        outside,
        lines.len()
    ));
    for h in &lines {
        text.push_str(&format!(
            "{} {:width$}  {:>value_width$}  expected {}\n",
            if h.within { ' ' } else { '!' },
            h.figure,
            h.value,
            h.expected
        ));
    }
    text
}
