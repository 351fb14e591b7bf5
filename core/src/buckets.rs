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

/// `x` rounded down to 3 significant digits.
fn coarse_down(x: f64) -> f64 {
    three_digits(x, f64::floor)
}

/// One lab's values on the training patients: every value, and each patient's lowest and highest.
#[derive(Debug, Default)]
pub(crate) struct LabSample {
    pub values: Vec<f64>,
    /// One entry per patient who has the lab.
    pub patient_lowest: Vec<f64>,
    pub patient_highest: Vec<f64>,
}

impl LabSample {
    pub fn patients(&self) -> usize {
        self.patient_lowest.len()
    }

    /// Quantile edges: at most `buckets` buckets, fewer when a bucket would hold fewer than `min_patients`
    /// patients' worth of values. With the small-cell rule (`min_patients` > 1) the outer edges are
    /// top-coded like the gap and age edges: the lowest edge is the `min_patients`-th lowest patient minimum
    /// rounded down, the highest the `min_patients`-th highest patient maximum rounded up, so that no edge
    /// rests on fewer than `min_patients` patients (one patient's 987654.321 would otherwise ship as the
    /// edge 988000 and spread synthetic values up to it); values beyond fall into the outer buckets all the
    /// same. Inner edges are quantiles of the values held within the outer edges, rounded to 3 significant
    /// digits.
    pub fn edges(&mut self, buckets: usize, min_patients: usize) -> Vec<f64> {
        if min_patients <= 1 {
            return quantiles(&mut self.values, buckets);
        }
        let buckets = buckets.min((self.patients() / min_patients).max(1));
        let (lowest, highest) = (
            kth(&mut self.patient_lowest, min_patients, false),
            kth(&mut self.patient_highest, min_patients, true),
        );
        let (lowest, highest) = (coarse_down(lowest.min(highest)), coarse_up(highest.max(lowest)));
        for v in &mut self.values {
            *v = v.clamp(lowest, highest);
        }
        let mut edges = quantiles(&mut self.values, buckets);
        for e in &mut edges {
            *e = coarse(*e).clamp(lowest, highest);
        }
        let last = edges.len() - 1;
        (edges[0], edges[last]) = (lowest, highest);
        edges.dedup();
        if edges.len() < 2 {
            edges.push(edges[0] + 1.0);
        }
        edges
    }
}

/// Points of a value's distribution inside one bucket `[lo, hi]`: evenly spaced quantiles of the values
/// that fell in it, from the lowest to the highest, that a decoder interpolates between to draw a value
/// shaped like the data's instead of uniform over the bucket (see [`draw_within`]). At most `segments`
/// segments, fewer when a segment would rest on fewer than `min_patients` patients, none (empty: draw
/// uniformly) without enough. With the small-cell rule (`min_patients` > 1) the ends are top-coded like
/// the lab edges (the `min_patients`-th lowest patient minimum rounded down, the `min_patients`-th highest
/// patient maximum rounded up) and the inner points rounded to 3 significant digits. Repeated points are
/// kept: they carry the mass of a value many records share (a gap of exactly 1 day).
pub(crate) fn within_bucket_points(
    sample: &mut LabSample,
    segments: usize,
    min_patients: usize,
    (lo, hi): (f64, f64),
) -> Vec<f64> {
    let k = min_patients.max(1);
    let segments = segments.min(sample.patients() / k);
    if segments == 0 || sample.values.is_empty() {
        return Vec::new();
    }
    let (bottom, top) = if k == 1 {
        let lowest = sample.values.iter().copied().fold(f64::INFINITY, f64::min);
        let highest = sample.values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lowest, highest)
    } else {
        let lowest = coarse_down(kth(&mut sample.patient_lowest, k, false));
        let highest = coarse_up(kth(&mut sample.patient_highest, k, true));
        (lowest.min(highest), highest.max(lowest))
    };
    let (bottom, top) = (bottom.clamp(lo, hi), top.clamp(lo, hi));
    let values = &mut sample.values;
    for v in values.iter_mut() {
        *v = v.clamp(bottom, top);
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    let mut points: Vec<f64> = (0..=segments)
        .map(|i| values[((i as f64 / segments as f64) * (n - 1) as f64).round() as usize])
        .map(|v| if k > 1 { coarse(v).clamp(bottom, top) } else { v })
        .collect();
    (points[0], points[segments]) = (bottom, top);
    for i in 1..points.len() {
        points[i] = points[i].max(points[i - 1]);
    }
    points
}

/// A value drawn inside a bucket from `u` uniform in [0, 1): interpolated between the bucket's
/// `within_bucket_points` (each segment holding an equal share), or uniform over `[lo, hi]` without them.
pub fn draw_within(points: &[f64], (lo, hi): (f64, f64), u: f64) -> f64 {
    if points.len() < 2 {
        return if hi > lo { lo + u * (hi - lo) } else { lo };
    }
    let segments = points.len() - 1;
    let x = u.clamp(0.0, 1.0) * segments as f64;
    let j = (x.floor() as usize).min(segments - 1);
    points[j] + (x - j as f64) * (points[j + 1] - points[j])
}

/// The `k`-th smallest (or with `largest`, the `k`-th largest) of `values`, or the last one there is.
fn kth(values: &mut [f64], k: usize, largest: bool) -> f64 {
    values.sort_by(|a, b| if largest { b.total_cmp(a) } else { a.total_cmp(b) });
    values.get(k - 1).or(values.last()).copied().unwrap_or(0.0)
}

/// `buckets + 1` quantiles of `values` (the smallest and largest among them), repeated ones merged.
fn quantiles(values: &mut [f64], buckets: usize) -> Vec<f64> {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    let mut edges: Vec<f64> = (0..=buckets)
        .map(|i| values[((i as f64 / buckets as f64) * (n - 1) as f64).round() as usize])
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

    /// A lab of `patients` patients with values 1..=5 each, plus `extra` values of the first patient.
    fn lab(patients: usize, extra: &[f64]) -> LabSample {
        let mut s = LabSample::default();
        for p in 0..patients {
            let mut own: Vec<f64> = (1..=5).map(|v| v as f64 + p as f64 * 0.01).collect();
            if p == 0 {
                own.extend_from_slice(extra);
            }
            s.patient_lowest.push(own.iter().copied().fold(f64::INFINITY, f64::min));
            s.patient_highest
                .push(own.iter().copied().fold(f64::NEG_INFINITY, f64::max));
            s.values.extend(own);
        }
        s
    }

    #[test]
    fn one_patients_outliers_are_no_lab_edge() {
        let planted = [987654.321, -123456.7];
        let edges = lab(40, &planted).edges(4, 10);
        assert_eq!(edges.first(), Some(&1.09), "the 10th lowest patient minimum: {edges:?}");
        assert_eq!(
            edges.last(),
            Some(&5.31),
            "the 10th highest patient maximum, 5.30 + 0.01 rounded up: {edges:?}"
        );
        assert!(edges.windows(2).all(|w| w[0] < w[1]), "{edges:?}");
        assert_eq!(edges.len(), 5, "4 buckets of 40 patients: {edges:?}");
        // Without the rule, the data's extremes are the edges (what --min-patients 1 asks for).
        let open = lab(40, &planted).edges(4, 1);
        assert_eq!((open[0], open[open.len() - 1]), (-123456.7, 987654.321));
        // Ten patients' extremes are an edge: then no single patient holds it.
        let mut many = lab(40, &[]);
        for p in 0..10 {
            many.values.push(50.0 + p as f64);
            many.patient_highest[p] = 50.0 + p as f64;
        }
        assert_eq!(many.edges(4, 10).last(), Some(&50.0));
    }

    #[test]
    fn within_bucket_points_are_top_coded_quantiles_that_keep_repeated_values() {
        // 40 patients with gaps of exactly 1 day, and one patient's 1.9 days: the points stay at 1 (a
        // draw gives 1 day, not a day spread over [1, 2)) and the single patient's value is no point.
        let mut s = LabSample::default();
        for p in 0..40 {
            let v = if p == 0 { 1.9 } else { 1.0 };
            s.values.push(v);
            s.patient_lowest.push(v);
            s.patient_highest.push(v);
        }
        let points = within_bucket_points(&mut s, 10, 10, (1.0, 2.0));
        assert_eq!(points, vec![1.0; 5], "4 segments of 10 patients");
        assert_eq!(draw_within(&points, (1.0, 2.0), 0.7), 1.0);
        // Too few patients for one segment: none, the draw is uniform (as in encodings without points).
        let mut few = lab(5, &[]);
        assert!(within_bucket_points(&mut few, 10, 10, (0.0, 10.0)).is_empty());
        assert_eq!(draw_within(&[], (2.0, 4.0), 0.25), 2.5);
        // Interpolation between points, each segment an equal share.
        assert_eq!(draw_within(&[0.0, 1.0, 11.0], (0.0, 20.0), 0.75), 6.0);
    }

    #[test]
    fn patients_with_disjoint_ranges_still_get_ordered_edges() {
        let mut s = LabSample::default();
        for p in 0..3 {
            let v = 10.0 * (p + 1) as f64;
            s.values.extend([v, v + 1.0]);
            s.patient_lowest.push(v);
            s.patient_highest.push(v + 1.0);
        }
        // 3rd lowest minimum 30 is above the 3rd highest maximum 11: one bucket between the two.
        assert_eq!(s.edges(4, 3), vec![11.0, 30.0]);
    }
}
