//! The evaluation report: `report.json` (every number, serde) and `report.html` (tables with one-line
//! explanations and inline SVG plots; opens offline, needs no scripts).

use crate::error::EvalError;
use crate::fidelity::characterisation::SpanStats;
use crate::fidelity::{
    Continuous, DatasetShape, DemographicShares, DomainPrevalence, Histogram, LabelPrevalence, MeanStd,
    ProbabilityComparison, RecordSpans, SideBySide, VisitTypes,
};
use crate::plot::{self, escape};
use crate::privacy::{AttackResult, Privacy};
use crate::small_cells::Hidden;
use crate::utility::UtilityResult;
use crate::EvalOptions;
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::path::Path;

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

/// Who the persons are, field by field: the values the small-cell rule lets the report name.
fn demographics_table(o: &mut String, fields: &[DemographicShares]) {
    if fields.is_empty() {
        return;
    }
    let rows: Vec<Vec<String>> = fields
        .iter()
        .flat_map(|d| {
            d.shares.iter().map(|s| {
                vec![
                    d.field.clone(),
                    s.value.clone(),
                    pct(s.train),
                    pct(s.test),
                    pct(s.synthetic),
                ]
            })
        })
        .collect();
    table(o, &["field", "value", "train", "test", "synthetic"], &rows);
    let largest: Vec<String> = fields
        .iter()
        .map(|d| format!("{} {:.3}", d.field, d.largest_difference))
        .collect();
    let hidden: usize = fields.iter().map(|d| d.hidden).sum();
    explain(o, &format!(
        "Share of the persons with each value. Largest difference synthetic vs train per field: {} (good: below 0.05). {hidden} values held by fewer real patients than the small-cell rule asks are not named.",
        largest.join(", ")
    ));
}

fn num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 0.001 {
        format!("{v:.4}")
    } else {
        format!("{v:.3e}")
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), num)
}

fn mean_std(v: Option<MeanStd>) -> String {
    v.map_or_else(|| "–".into(), |m| format!("{:.3} ± {:.3}", m.mean, m.std))
}

fn pct(v: f64) -> String {
    format!("{:.2}%", 100.0 * v)
}

/// Appends an HTML table; cells are escaped.
fn table(out: &mut String, head: &[&str], rows: &[Vec<String>]) {
    out.push_str("<table><tr>");
    for h in head {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr>");
    for row in rows {
        out.push_str("<tr>");
        for c in row {
            let _ = write!(out, "<td>{}</td>", escape(c));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
}

fn explain(out: &mut String, text: &str) {
    let _ = write!(out, "<p class=\"explain\">{}</p>", escape(text));
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1340px;margin:20px auto;padding:0 16px;color:#222}\
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.explain{color:#555;font-size:0.92em;max-width:60em}\
.plots{display:flex;flex-wrap:wrap;gap:10px}tr.within td{background:#e6f4ea}tr.outside td{background:#fbe0e0;color:#8a1010;font-weight:bold}h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:32px}";

/// The HTML report.
pub fn render_html(r: &Report) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Synthetic data evaluation</title><style>{STYLE}</style></head><body><h1>Synthetic data evaluation</h1><p>{}; seed {}.</p>",
        escape(&r.tool),
        r.options.seed
    );
    summary_section(&mut o, r);
    inputs_section(&mut o, r);
    fidelity_section(&mut o, r);
    privacy_section(&mut o, &r.privacy, &r.model_privacy);
    utility_section(&mut o, &r.utility);
    o.push_str("</body></html>\n");
    o
}

/// The headline figures, each row coloured by whether it lies in its expected range.
fn summary_section(o: &mut String, r: &Report) {
    let lines = crate::headline::headlines(r);
    if lines.is_empty() {
        return;
    }
    let outside = lines.iter().filter(|h| !h.within).count();
    if let Some(privacy) = r.model_privacy.first() {
        let _ = write!(o, "<h2>Summary</h2><p>Model: {}.</p>", escape(privacy));
    } else {
        o.push_str("<h2>Summary</h2>");
    }
    let _ = write!(
        o,
        "<p>{outside} of {} headline figures outside their expected range.</p>\
         <table><tr><th>figure</th><th>value</th><th>expected</th><th></th></tr>",
        lines.len()
    );
    for h in &lines {
        let verdict = if h.within { "within" } else { "outside" };
        let _ = write!(
            o,
            "<tr class=\"{verdict}\"><td>{}</td><td>{}</td><td>{}</td><td>{verdict}</td></tr>",
            escape(&h.figure),
            escape(&h.value),
            escape(&h.expected)
        );
    }
    o.push_str("</table>");
    explain(
        o,
        "Green: the figure lies in the range expected of synthetic data as good as the real data allows (bounds \
         relative to the real data: the test split's R², the training split's shape); red: outside it. The \
         sections below give every figure.",
    );
}

fn inputs_section(o: &mut String, r: &Report) {
    let i = &r.inputs;
    o.push_str("<h2>Inputs</h2>");
    table(
        o,
        &["", "records"],
        &[
            vec!["real records".into(), i.real_records.to_string()],
            vec!["  training split".into(), i.train_records.to_string()],
            vec!["  validation split".into(), i.val_records.to_string()],
            vec!["  test split".into(), i.test_records.to_string()],
            vec!["  in no split (left out)".into(), i.unassigned_records.to_string()],
            vec!["  without visits (left out)".into(), i.real_without_visits.to_string()],
            vec!["synthetic records".into(), i.synthetic_records.to_string()],
            vec![
                "  without visits (left out)".into(),
                i.synthetic_without_visits.to_string(),
            ],
        ],
    );
    table(
        o,
        &["codes", "value"],
        &[
            vec!["distinct codes in the real data".into(), i.real_codes.to_string()],
            vec![
                "synthetic code occurrences".into(),
                i.synthetic_code_occurrences.to_string(),
            ],
            vec![
                "  of codes absent from the real data".into(),
                format!("{} ({})", i.unknown_code_occurrences, pct(i.unknown_code_fraction)),
            ],
            vec!["  distinct such codes".into(), i.unknown_codes.to_string()],
        ],
    );
    explain(o, "Synthetic codes absent from the real data should be none: a model only emits codes of its vocabulary, so any here point to a mismatched vocabulary or decoding error. They are counted, not named (no real patient holds them).");
    let h = &r.hidden;
    table(
        o,
        &[
            &format!("not named: held by fewer than {} real patients", h.min_patients),
            "count",
        ],
        &[
            vec!["codes".into(), h.codes.to_string()],
            vec!["labs".into(), h.labs.to_string()],
            vec!["labels".into(), h.labels.to_string()],
            vec!["plot points (codes or pairs)".into(), h.plot_points.to_string()],
        ],
    );
    explain(o, "The report obeys the model's small-cell rule: a value that few patients hold could point to one of them, so it appears only in these counts (its records still count in every figure).");
    if !r.notes.is_empty() {
        o.push_str("<ul>");
        for n in &r.notes {
            let _ = write!(o, "<li>{}</li>", escape(n));
        }
        o.push_str("</ul>");
    }
}

fn fidelity_section(o: &mut String, r: &Report) {
    let f = &r.fidelity;
    o.push_str("<h2>Fidelity</h2><h3>Code probabilities</h3>");
    explain(o, "R² = sklearn r2_score(y_true = real, y_pred = synthetic) over every code (or pair) seen in either data set, missing = 0. Visit level: share of visits holding the code or pair (consecutive pairs: share of visit-to-next-visit transitions); record level: share of records. Good: close to the ceiling, the R² of the real test split against the real training split (1 is perfect; it can be negative).");
    let rows: Vec<Vec<String>> = f
        .probabilities
        .iter()
        .map(|p| {
            vec![
                format!("{} {}", p.level.title(), p.statistic.title()),
                format!("{} / {} / {}", p.keys_train, p.keys_test, p.keys_synthetic),
                opt(p.r2_synthetic_vs_train),
                opt(p.r2_synthetic_vs_test),
                opt(p.r2_test_vs_train),
            ]
        })
        .collect();
    table(
        o,
        &[
            "probability",
            "keys train / test / synthetic",
            "R² synthetic vs train",
            "R² synthetic vs test",
            "ceiling: R² test vs train",
        ],
        &rows,
    );
    o.push_str("<div class=\"plots\">");
    for p in &f.probabilities {
        let title = format!("{} {}", p.level.title(), p.statistic.title());
        let note = format!(
            "R² = {} (ceiling {}), {} points shown",
            opt(p.r2_synthetic_vs_train),
            opt(p.r2_test_vs_train),
            p.points.len()
        );
        o.push_str(&plot::scatter(
            &title,
            "real training split",
            "synthetic",
            &p.points,
            &note,
        ));
    }
    o.push_str("</div>");
    explain(o, "Each point is a code or pair (the most probable ones and a random sample of the rest); on the dashed diagonal the synthetic probability equals the real one. Hover a point for its name.");

    o.push_str("<h3>Record shape</h3>");
    let s = &f.shape;
    let row = |name: &str, g: &dyn Fn(&DatasetShape) -> String| {
        vec![name.to_string(), g(&s.train), g(&s.test), g(&s.synthetic)]
    };
    table(
        o,
        &["", "train", "test", "synthetic"],
        &[
            row("records", &|d| d.records.to_string()),
            row("visits", &|d| d.visits.to_string()),
            row("visits per record (mean ± std)", &|d| mean_std(d.visits_per_record)),
            row("codes per visit (mean ± std)", &|d| mean_std(d.codes_per_visit)),
            row("distinct codes", &|d| d.distinct_codes.to_string()),
        ],
    );
    explain(o, "Good: synthetic means and spreads close to the training split's (the test split shows the natural variation between real samples).");
    o.push_str("<div class=\"plots\">");
    for h in &f.histograms {
        o.push_str(&plot::histogram(h));
    }
    if let Some(h) = &f.continuous.gap_histogram {
        o.push_str(&plot::histogram(h));
    }
    o.push_str("</div>");
    characterisation_section(o, f);

    o.push_str("<h3>Labels</h3>");
    if f.labels.is_empty() {
        o.push_str("<p>No labels.</p>");
    } else {
        let agreement = f.labels.iter().any(|l| l.synthetic_agreement.is_some());
        let rows: Vec<Vec<String>> = f
            .labels
            .iter()
            .map(|l| {
                let mut row = vec![
                    l.label.clone(),
                    l.kind.describe().to_string(),
                    pct(l.train),
                    pct(l.test),
                    pct(l.synthetic),
                ];
                if agreement {
                    row.push(l.synthetic_agreement.map_or("–".into(), pct));
                }
                row
            })
            .collect();
        let mut header = vec!["label", "kind", "train", "test", "synthetic"];
        if agreement {
            header.push("synthetic label agrees with its codes");
        }
        table(o, &header, &rows);
        explain(
            o,
            "Share of records with each label. Good: synthetic close to train. A label from codes is set by the label \
             spec from a record's codes (the sampler sets it from the sampled codes); a given label came with the \
             records and is sampled like a code. The last column, when shown: share of synthetic records whose label \
             is what the label spec gives for their own codes (good: 100%).",
        );
    }

    o.push_str("<h3>Continuous variables</h3>");
    let c = &f.continuous;
    table(
        o,
        &["", "train", "test", "synthetic"],
        &[
            vec![
                "mean days between visits".into(),
                opt(c.mean_gap_days.train),
                opt(c.mean_gap_days.test),
                opt(c.mean_gap_days.synthetic),
            ],
            vec![
                "gaps counted".into(),
                c.gaps.train.to_string(),
                c.gaps.test.to_string(),
                c.gaps.synthetic.to_string(),
            ],
        ],
    );
    if c.labs.is_empty() {
        o.push_str("<p>No lab values.</p>");
    } else {
        table(
            o,
            &["labs", "R² synthetic vs train"],
            &[
                vec!["presence rate (share of visits)".into(), opt(c.lab_presence_r2)],
                vec!["mean value".into(), opt(c.lab_mean_r2)],
            ],
        );
        let rows: Vec<Vec<String>> = c
            .labs
            .iter()
            .take(40)
            .map(|l| {
                vec![
                    l.code.clone(),
                    pct(l.presence.train),
                    pct(l.presence.synthetic),
                    opt(l.mean_value.train),
                    opt(l.mean_value.synthetic),
                ]
            })
            .collect();
        table(
            o,
            &[
                "lab",
                "presence train",
                "presence synthetic",
                "mean train",
                "mean synthetic",
            ],
            &rows,
        );
        explain(
            o,
            "Labs most often measured first (at most 40 shown; all are in report.json). Good: R² near 1.",
        );
    }
}

/// Record spans, visit types and per-domain prevalence: what an OHDSI characterisation compares.
fn characterisation_section(o: &mut String, f: &Fidelity) {
    o.push_str("<h3>As an OHDSI characterisation sees it</h3>");
    if let Some(spans) = &f.record_spans {
        let stat = |s: &Option<SpanStats>, g: fn(&SpanStats) -> f64| s.as_ref().map_or("–".into(), |s| num(g(s)));
        let change = |c: Option<f64>| c.map_or("–".into(), |c| format!("{:+.1}%", 100.0 * c));
        let d = &spans.days;
        let row = |name: &str, g: fn(&SpanStats) -> f64, c: Option<f64>| {
            vec![
                name.to_string(),
                stat(&d.train, g),
                stat(&d.test, g),
                stat(&d.synthetic, g),
                change(c),
            ]
        };
        table(
            o,
            &[
                "record span (days, first to last visit)",
                "train",
                "test",
                "synthetic",
                "synthetic vs train",
            ],
            &[
                row("median", |s| s.median, spans.median_change),
                row("90th percentile", |s| s.p90, spans.p90_change),
                row("mean", |s| s.mean, spans.mean_change),
            ],
        );
        explain(o, "The observation period of OMOP: days from a record's first to its last visit. Median and 90th percentile are each the mean of the min_patients spans nearest their rank, so that none is one patient's. Good: synthetic within 10% of train.");
    }
    let v = &f.visit_types;
    if v.shares.is_empty() && v.largest_difference.is_none() {
        o.push_str("<p>No visit types in the training split.</p>");
    } else {
        let rows: Vec<Vec<String>> = v
            .shares
            .iter()
            .map(|s| vec![s.visit_type.clone(), pct(s.train), pct(s.test), pct(s.synthetic)])
            .collect();
        table(o, &["visit type", "train", "test", "synthetic"], &rows);
        explain(o, &format!(
            "Share of the visits that carry a type. Largest difference synthetic vs train: {} (good: below 0.03). Visits without a type: {} / {} / {}. {} types held by fewer real patients than the small-cell rule asks are not named.",
            opt(v.largest_difference), v.untyped_visits.train, v.untyped_visits.test, v.untyped_visits.synthetic, v.hidden
        ));
    }
    demographics_table(o, &f.demographics);
    if !f.domain_prevalence.is_empty() {
        let rows: Vec<Vec<String>> = f
            .domain_prevalence
            .iter()
            .map(|d| {
                vec![
                    d.domain.clone(),
                    d.concepts.to_string(),
                    opt(d.r2_synthetic_vs_train),
                    opt(d.r2_test_vs_train),
                ]
            })
            .collect();
        table(
            o,
            &[
                "domain",
                "concepts",
                "R² synthetic vs train",
                "ceiling: R² test vs train",
            ],
            &rows,
        );
        explain(o, "Per domain (the code prefix before its first /), R² of the share of persons holding each concept, as Achilles reports it, over the concepts of the training split or the synthetic records (missing = 0). Good: close to the ceiling.");
    }
}

fn attack_row(name: &str, a: Option<&AttackResult>) -> Vec<String> {
    match a {
        None => vec![name.into(), "–".into(), "–".into(), "–".into(), "–".into()],
        Some(a) => vec![
            name.into(),
            format!("{} + {}", a.members, a.non_members),
            num(a.accuracy),
            opt(a.precision),
            num(a.recall),
        ],
    }
}

fn privacy_section(o: &mut String, p: &Privacy, model_privacy: &[String]) {
    o.push_str("<h2>Privacy</h2>");
    if let Some((headline, mechanisms)) = model_privacy.split_first() {
        let _ = write!(o, "<h3>Guarantee</h3><p>The model was {}.</p>", escape(headline));
        if !mechanisms.is_empty() {
            o.push_str("<ul>");
            for m in mechanisms {
                let _ = write!(o, "<li>{}</li>", escape(m.trim()));
            }
            o.push_str("</ul>");
        }
        explain(
            o,
            "A guarantee stated by the model's privacy ledger (in its signed manifest), not measured here: the \
             attacks below measure what the synthetic records and the model leak in practice.",
        );
    }
    o.push_str("<h3>Membership inference</h3>");
    table(
        o,
        &["attack", "members + non-members", "accuracy", "precision", "recall"],
        &[
            attack_row(
                &format!(
                    "dataset (Hamming distance to nearest of {} synthetic records)",
                    p.membership.synthetic_reference
                ),
                p.membership.dataset_attack.as_ref(),
            ),
            attack_row("model (log-likelihood)", p.membership.model_attack.as_ref()),
        ],
    );
    explain(o, "Training records (members) and test records (non-members) in equal numbers; the attacker calls a record a member when it is closer than the median to a synthetic record (dataset attack) or more likely than the median under the model (model attack). Good: accuracy near 0.5, a coin flip.");

    o.push_str("<h3>Attribute inference</h3>");
    match &p.attribute {
        None => o.push_str("<p>Not run (no records to attack).</p>"),
        Some(a) => {
            table(
                o,
                &["neighbours from", "F1"],
                &[
                    vec!["synthetic data".into(), opt(a.f1_synthetic)],
                    vec!["real test split (baseline)".into(), opt(a.f1_test_baseline)],
                ],
            );
            explain(o, &format!("{} training records attacked; the attacker knows their labels ({}) and which of the {} most common codes they have, takes the {} nearest of {} records, and guesses the remaining codes. Good: synthetic F1 not above the baseline (the synthetic data tells no more than other real patients would).", a.attacked, a.known_labels, a.known_codes, a.k, a.reference));
        }
    }

    o.push_str("<h3>Nearest-neighbour adversarial accuracy</h3>");
    match &p.adversarial {
        None => o.push_str("<p>Not run (fewer than two records in a set).</p>"),
        Some(a) => {
            table(
                o,
                &["", "value"],
                &[
                    vec!["AA_TS (training vs synthetic)".into(), num(a.aa_train_synthetic)],
                    vec!["AA_ES (test vs synthetic)".into(), num(a.aa_test_synthetic)],
                    vec!["privacy loss AA_ES − AA_TS".into(), num(a.privacy_loss)],
                ],
            );
            explain(o, &format!("AA = 0.5 · (share of real records whose nearest neighbour is real rather than synthetic + share of synthetic records whose nearest neighbour is synthetic), {} records per set, leave-one-out within a set. AA near 0.5: synthetic records are indistinguishable from real ones (near 1: easily told apart). Good privacy loss: near 0 (a positive loss means the synthetic data sits closer to the training records than to unseen ones).", a.n));
        }
    }

    o.push_str("<h3>Exact copies</h3>");
    let e = &p.exact_copies;
    table(
        o,
        &["records equal to a training record", "count", "rate"],
        &[
            vec![
                format!("synthetic (of {})", e.synthetic_records),
                e.synthetic_copies.to_string(),
                pct(e.synthetic_rate),
            ],
            vec![
                format!("real test (of {})", e.test_records),
                e.test_copies.to_string(),
                pct(e.test_rate),
            ],
        ],
    );
    explain(o, "A record equals a training record when its visits hold the same codes in the same order. Real test records match training records by chance (short, common records); good: the synthetic rate not above the test rate.");
    if !p.notes.is_empty() {
        o.push_str("<ul>");
        for n in &p.notes {
            let _ = write!(o, "<li>{}</li>", escape(n));
        }
        o.push_str("</ul>");
    }
}

fn utility_section(o: &mut String, u: &[UtilityResult]) {
    o.push_str("<h2>Utility</h2>");
    if u.is_empty() {
        o.push_str("<p>Not run.</p>");
        return;
    }
    let rows: Vec<Vec<String>> = u
        .iter()
        .map(|r| {
            vec![
                r.label.clone(),
                format!("{}/{}/{}", r.n_train, r.n_val, r.n_test),
                num(r.real.accuracy),
                num(r.synthetic.accuracy),
                num(r.real.f1),
                num(r.synthetic.f1),
                opt(r.real.auroc),
                opt(r.synthetic.auroc),
                r.note.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        o,
        &[
            "label",
            "train/val/test",
            "accuracy real",
            "accuracy synthetic",
            "F1 real",
            "F1 synthetic",
            "AUROC real",
            "AUROC synthetic",
            "note",
        ],
        &rows,
    );
    explain(o, "A classifier trained on balanced real training records and one trained on balanced synthetic records, both tested on the same balanced real test records. Good: synthetic scores close to the real ones.");
}
