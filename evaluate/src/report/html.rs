//! `report.html`: the report's numbers as tables with one-line explanations and inline SVG plots (opens
//! offline, needs no scripts).

use super::{Fidelity, Report};
use crate::fidelity::characterisation::SpanStats;
use crate::fidelity::{DatasetShape, DemographicShares, MeanStd};
use crate::plot::{self, escape};
use std::fmt::Write;

mod privacy;
use privacy::{privacy_section, utility_section};

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
    o.push_str("<h2>Fidelity</h2>");
    probabilities_section(o, f);
    shape_section(o, f);
    characterisation_section(o, f);
    labels_section(o, f);
    continuous_section(o, f);
}

/// The code and pair probabilities' R², with their scatter plots.
fn probabilities_section(o: &mut String, f: &Fidelity) {
    o.push_str("<h3>Code probabilities</h3>");
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
}

/// Records, visits and codes per split, with the shape histograms.
fn shape_section(o: &mut String, f: &Fidelity) {
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
}

/// Each label's share of records, and whether synthetic labels agree with their codes.
fn labels_section(o: &mut String, f: &Fidelity) {
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
}

/// Gaps between visits and lab values.
fn continuous_section(o: &mut String, f: &Fidelity) {
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
