//! Bucket edges of continuous values (gaps, ages, lab values): how they are fitted so that no edge is one
//! patient's value, and which bucket a value falls in.

/// Index of the bucket `[edges[k], edges[k+1])` holding `x`, clamped to the outer buckets.
pub fn bucket_of(edges: &[f64], x: f64) -> usize {
    let n = edges.len().saturating_sub(1).max(1);
    let k = edges.partition_point(|e| *e <= x);
    k.saturating_sub(1).min(n - 1)
}

/// Total variation distance between two histograms given as shares of the same buckets: half the sum of
/// the absolute differences (0 = equal, 1 = disjoint). The gap histogram's distance in the sampling
/// calibration and in `halo evaluate`.
pub fn total_variation(a: &[f64], b: &[f64]) -> f64 {
    0.5 * a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f64>()
}

/// `x` rounded to 3 significant digits: a bucket edge that is not any one patient's exact value.
fn coarse(x: f64) -> f64 {
    three_digits(x, f64::round)
}

/// `x` rounded up to 3 significant digits.
fn coarse_up(x: f64) -> f64 {
    three_digits(x, f64::ceil)
}

/// `x` to 3 significant digits by `step` (round or ceil), scaling by an exact power of ten.
fn three_digits(x: f64, step: fn(f64) -> f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let e = 2 - x.abs().log10().floor() as i32;
    if e >= 0 {
        let scale = 10f64.powi(e);
        step(x * scale) / scale
    } else {
        let scale = 10f64.powi(-e);
        step(x / scale) * scale
    }
}

/// Quantile edges of `values` (of `patients` distinct patients): at most `buckets` buckets, fewer when
/// a bucket would hold fewer than `min_patients` patients' worth of values, each edge rounded by
/// [`coarse`] when `min_patients` > 1.
pub(crate) fn quantile_edges(values: &mut [f64], buckets: usize, patients: usize, min_patients: usize) -> Vec<f64> {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    let buckets = if min_patients > 1 {
        buckets.min((patients / min_patients).max(1))
    } else {
        buckets
    };
    let mut edges: Vec<f64> = (0..=buckets)
        .map(|i| values[((i as f64 / buckets as f64) * (n - 1) as f64).round() as usize])
        .map(|e| if min_patients > 1 { coarse(e) } else { e })
        .collect();
    edges.dedup();
    if edges.len() < 2 {
        edges.push(edges[0] + 1.0);
    }
    edges
}

/// The value that closes the last bucket: the largest seen, or with the small-cell rule the
/// `min_patients`-th largest rounded up (so that no single patient's value is an edge; larger values
/// fall into the last bucket all the same).
pub(crate) fn closing_value(values: &mut [f64], min_patients: usize) -> f64 {
    values.sort_by(|a, b| b.total_cmp(a));
    match min_patients {
        0 | 1 => values.first().copied().unwrap_or(0.0),
        k => values.get(k - 1).or(values.last()).copied().map_or(0.0, coarse_up),
    }
}

/// Closes an open list of edges with the largest value seen (or one step further when nothing is larger).
pub(crate) fn closed_edges(base: &[f64], max_seen: f64) -> Vec<f64> {
    let mut edges: Vec<f64> = base.iter().copied().filter(|e| *e < max_seen).collect();
    if edges.is_empty() {
        edges.push(0.0);
    }
    let last = *edges.last().unwrap();
    edges.push(if max_seen > last { max_seen } else { last + 1.0 });
    edges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_variation_is_half_the_absolute_differences() {
        assert_eq!(total_variation(&[0.5, 0.5, 0.0], &[0.5, 0.5, 0.0]), 0.0);
        assert_eq!(total_variation(&[1.0, 0.0], &[0.0, 1.0]), 1.0);
        assert!((total_variation(&[0.2, 0.3, 0.5], &[0.3, 0.3, 0.4]) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn edges_keep_three_significant_digits_and_the_closing_edge_tops_code() {
        assert_eq!(coarse(40.016427), 40.0);
        assert_eq!(coarse(0.0123456), 0.0123);
        assert_eq!(coarse_up(40.016427), 40.1);
        assert_eq!(coarse_up(5643.2), 5650.0);
        assert_eq!(coarse_up(5650.0), 5650.0);
        let mut ages = vec![97.31, 40.016427, 88.02, 91.5, 12.0];
        assert_eq!(
            closing_value(&mut ages.clone(), 1),
            97.31,
            "without the rule: the largest"
        );
        assert_eq!(closing_value(&mut ages, 3), 88.1, "the 3rd largest, rounded up");
    }
}
