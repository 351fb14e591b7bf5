//! Inline SVG plots for the HTML report: no scripts, no external assets. Hovering a point or bar shows its
//! values (SVG `<title>`).

use crate::fidelity::{Histogram, ScatterPoint};
use std::fmt::Write;

/// Colours of the training split, the test split and the synthetic data.
pub const COLORS: [&str; 3] = ["#1f77b4", "#2ca02c", "#d62728"];

const W: f64 = 420.0;
const H: f64 = 360.0;
const LEFT: f64 = 62.0;
const RIGHT: f64 = 14.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 48.0;

/// Escapes text for HTML and SVG.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A tick value written short: 0.25, 0.0012, 1.5e-5.
fn tick_label(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 0.01 {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.1e}")
    }
}

/// Round tick step for an axis from 0 to `max`, about five ticks.
fn tick_step(max: f64) -> f64 {
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn open_svg(out: &mut String, title: &str) {
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11"><rect width="{W}" height="{H}" fill="white"/><text x="{}" y="18" text-anchor="middle" font-size="13" font-weight="bold">{}</text>"#,
        W / 2.0,
        escape(title)
    );
}

/// Scatter plot of real (x) against synthetic (y) probabilities on linear axes from 0, with the diagonal
/// y = x and `annotation` (the R²) in the upper left corner.
pub fn scatter(title: &str, x_label: &str, y_label: &str, points: &[ScatterPoint], annotation: &str) -> String {
    let max = points.iter().map(|p| p.real.max(p.synthetic)).fold(0.0f64, f64::max);
    let max = if max > 0.0 { (max * 1.05).min(1.0) } else { 1.0 };
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let sx = |v: f64| LEFT + v / max * pw;
    let sy = |v: f64| TOP + ph - v / max * ph;
    let mut out = String::new();
    open_svg(&mut out, title);
    axes(&mut out, max, max, x_label, y_label);
    let _ = write!(
        out,
        r##"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#888" stroke-dasharray="4 3"/>"##,
        sx(0.0),
        sy(0.0),
        sx(max),
        sy(max)
    );
    for p in points {
        let _ = write!(
            out,
            r#"<circle cx="{:.1}" cy="{:.1}" r="2.2" fill="{}" fill-opacity="0.55"><title>{}: real {:.3e}, synthetic {:.3e}</title></circle>"#,
            sx(p.real),
            sy(p.synthetic),
            COLORS[0],
            escape(&p.key),
            p.real,
            p.synthetic
        );
    }
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" font-size="12">{}</text></svg>"#,
        LEFT + 8.0,
        TOP + 16.0,
        escape(annotation)
    );
    out
}

/// Axes from 0 to `x_max` and 0 to `y_max` with ticks, grid lines and labels.
fn axes(out: &mut String, x_max: f64, y_max: f64, x_label: &str, y_label: &str) {
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let _ = write!(
        out,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
    );
    if x_max > 0.0 {
        let step = tick_step(x_max);
        let mut v = 0.0;
        while v <= x_max * 1.0001 {
            let x = LEFT + v / x_max * pw;
            let _ = write!(
                out,
                r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="#333"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
                TOP + ph,
                TOP + ph + 4.0,
                TOP + ph + 16.0,
                tick_label(v)
            );
            v += step;
        }
    }
    let step = tick_step(y_max);
    let mut v = 0.0;
    while v <= y_max * 1.0001 {
        let y = TOP + ph - v / y_max * ph;
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 5.0,
            y + 4.0,
            tick_label(v)
        );
        v += step;
    }
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text><text x="14" y="{}" text-anchor="middle" transform="rotate(-90 14 {})">{}</text>"#,
        LEFT + pw / 2.0,
        H - 8.0,
        escape(x_label),
        TOP + ph / 2.0,
        TOP + ph / 2.0,
        escape(y_label)
    );
}

/// Grouped bar chart of a histogram's series (fractions per bin), with a legend.
pub fn histogram(h: &Histogram) -> String {
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let y_max = h
        .series
        .iter()
        .flat_map(|s| s.fractions.iter().copied())
        .fold(0.0f64, f64::max);
    let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
    let mut out = String::new();
    open_svg(&mut out, &h.title);
    axes(&mut out, 0.0, y_max, "", "fraction");
    let n_bins = h.bins.len().max(1);
    let n_series = h.series.len().max(1);
    let bin_w = pw / n_bins as f64;
    let bar_w = bin_w * 0.8 / n_series as f64;
    let label_every = n_bins.div_ceil(14);
    for (b, bin) in h.bins.iter().enumerate() {
        let x0 = LEFT + b as f64 * bin_w + bin_w * 0.1;
        for (s, series) in h.series.iter().enumerate() {
            let v = series.fractions.get(b).copied().unwrap_or(0.0);
            let bh = v / y_max * ph;
            let _ = write!(
                out,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.2}" height="{:.1}" fill="{}"><title>{} {}: {:.4}</title></rect>"#,
                x0 + s as f64 * bar_w,
                TOP + ph - bh,
                bar_w,
                bh,
                COLORS[s % COLORS.len()],
                escape(&series.name),
                escape(bin),
                v
            );
        }
        if b % label_every == 0 {
            let x = LEFT + (b as f64 + 0.5) * bin_w;
            let _ = write!(
                out,
                r#"<text x="{x:.1}" y="{}" text-anchor="end" font-size="9" transform="rotate(-40 {x:.1} {})">{}</text>"#,
                TOP + ph + 12.0,
                TOP + ph + 12.0,
                escape(bin)
            );
        }
    }
    for (s, series) in h.series.iter().enumerate() {
        let y = TOP + 10.0 + s as f64 * 14.0;
        let x = LEFT + pw - 150.0;
        let _ = write!(
            out,
            r#"<rect x="{x}" y="{}" width="10" height="10" fill="{}"/><text x="{}" y="{}">{} (n={})</text>"#,
            y - 9.0,
            COLORS[s % COLORS.len()],
            x + 14.0,
            y,
            escape(&series.name),
            series.count
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fidelity::HistogramSeries;

    #[test]
    fn scatter_escapes_and_draws_every_point() {
        let pts = vec![
            ScatterPoint {
                key: "a<b".into(),
                real: 0.5,
                synthetic: 0.25,
            },
            ScatterPoint {
                key: "c".into(),
                real: 0.1,
                synthetic: 0.0,
            },
        ];
        let svg = scatter("t", "real", "synthetic", &pts, "R² = 0.9");
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains("a&lt;b"));
        assert!(!svg.contains("a<b"));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }

    #[test]
    fn histogram_bars_scale_with_fractions() {
        let h = Histogram {
            title: "h".into(),
            bins: vec!["1".into(), "2".into()],
            series: vec![HistogramSeries {
                name: "train".into(),
                count: 4,
                fractions: vec![0.75, 0.25],
            }],
        };
        let svg = histogram(&h);
        // Two bars (plus the legend swatch); the first is three times as tall as the second.
        let heights: Vec<f64> = svg
            .split("<rect ")
            .filter(|r| r.contains("<title>"))
            .map(|r| {
                let i = r.find("height=\"").unwrap() + 8;
                r[i..].split('"').next().unwrap().parse().unwrap()
            })
            .collect();
        assert_eq!(heights.len(), 2);
        assert!((heights[0] / heights[1] - 3.0).abs() < 0.01, "{heights:?}");
    }
}
