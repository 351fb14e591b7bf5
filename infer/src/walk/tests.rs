use super::*;
use rand::SeedableRng;

/// A walk's inputs with nothing forced and no label bias.
fn inputs(rng: &mut ChaCha20Rng) -> WalkInputs<'_> {
    WalkInputs {
        forced: None,
        bias: None,
        dates: None,
        rng,
    }
}

/// The fixture model's encoding.
fn fixture_encoding() -> Encoding {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tiny-model");
    halo_core::manifest::Manifest::read(&dir)
        .expect("fixture manifest")
        .encoding
}

/// The draw's shortcut decides as the exact comparison does: at draws on either side of the sigmoid by
/// one ulp (where a bound below the sigmoid would say "not set"), at the bound's own powers of two, and
/// at random draws, over logits from -200 to 5 and the edge values.
#[test]
fn a_draw_decides_as_the_exact_sigmoid_comparison() {
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let mut logits: Vec<f32> = (0..20_000).map(|i| -200.0 + i as f32 * 0.01025).collect();
    logits.extend([
        f32::NEG_INFINITY,
        f32::NAN,
        -1.0,
        -1.0001,
        -0.9999,
        f32::MIN,
        -88.7,
        -103.9,
        0.0,
    ]);
    let mut checked = 0;
    for &x in &logits {
        let p = sigmoid(x);
        let mut draws = vec![
            p,
            p.next_down(),
            p.next_up(),
            0.0,
            rng.random(),
            rng.random::<f64>() * p * 4.0,
        ];
        draws.extend((-60..=0).map(|k| 2f64.powi(k)));
        for u in draws.into_iter().filter(|u| (0.0..1.0).contains(u)) {
            assert_eq!(is_set(u, x), u < p, "logit {x}, draw {u:e}, sigmoid {p:e}");
            checked += 1;
        }
    }
    assert!(checked > 1_000_000);
}

/// Logits that do not depend on the codes set (enough for one category's draw).
struct Fixed(Vec<f32>);

impl Cursor for Fixed {
    fn logit(&mut self, j: usize) -> Option<f32> {
        self.0.get(j).copied()
    }
    fn set(&mut self, _: usize) {}
}

/// Shares of each value of a three-value category (candidates 0..3, then the end code 3) over 40,000
/// walks, with the end code never drawn, each value's weight multiplied by `factor` (empty: 1).
fn shares(draw: CategoryDraw, logits: &[f32; 3], factor: &[f64]) -> Vec<f64> {
    shares_of(draw, logits, factor, Vec::new())
}

fn shares_of(draw: CategoryDraw, logits: &[f32; 3], factor: &[f64], last_takes_rest: Vec<bool>) -> Vec<f64> {
    let plan = VisitPlan {
        cands: vec![0, 1, 2, 3],
        category: vec![Some((0, 3)), Some((0, 3)), Some((0, 3)), None],
        forced: false,
        category_draw: draw,
        code_logit_offset: 0.0,
        category_factor: factor.to_vec(),
        last_takes_rest,
        run_end: Vec::new(),
        lab_of: Vec::new(),
    };
    let mut cursor = Fixed(vec![logits[0], logits[1], logits[2], -100.0]);
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let n = 40_000;
    let mut counts = [0usize; 3];
    for _ in 0..n {
        let (mut pos, mut drawn) = (0, Vec::new());
        assert_eq!(
            walk(&mut pos, &plan, inputs(&mut rng), &mut cursor, &mut drawn),
            Progress::Done
        );
        assert_eq!(drawn.len(), 1, "exactly one value of the category");
        counts[drawn[0] as usize] += 1;
    }
    counts.iter().map(|&c| c as f64 / n as f64).collect()
}

#[test]
fn a_category_is_drawn_by_its_plan_rule() {
    let logits = [-1.0f32, 0.0, 2.0];
    let p: Vec<f64> = logits.iter().map(|&l| sigmoid(l)).collect();
    let total: f64 = p.iter().sum();
    let conditionals: Vec<f64> = p.iter().map(|x| x / total).collect();
    let first = [p[0], (1.0 - p[0]) * p[1], (1.0 - p[0]) * (1.0 - p[1]) * p[2]];
    let walked: f64 = first.iter().sum();
    let walk: Vec<f64> = first.iter().map(|x| x / walked).collect();
    // The two rules differ enough for 40,000 draws to tell them apart (standard error < 0.0025).
    assert!((conditionals[0] - walk[0]).abs() > 0.05, "{conditionals:?} {walk:?}");
    for (draw, expected) in [(CategoryDraw::Conditionals, &conditionals), (CategoryDraw::Walk, &walk)] {
        let got = shares(draw, &logits, &[]);
        for (g, e) in got.iter().zip(expected.iter()) {
            assert!((g - e).abs() < 0.01, "{draw:?}: shares {got:?}, expected {expected:?}");
        }
    }
}

#[test]
fn a_chained_category_gives_its_last_value_the_rest() {
    // The last value's own sigmoid (0.05) would make it rare; chained, it takes what the others leave.
    let logits = [-1.0f32, 0.0, (0.05f32 / 0.95).ln()];
    let p: Vec<f64> = logits.iter().map(|&l| sigmoid(l)).collect();
    let expected = [p[0], (1.0 - p[0]) * p[1], (1.0 - p[0]) * (1.0 - p[1])];
    let got = shares_of(CategoryDraw::Walk, &logits, &[], vec![false, false, true, false]);
    for (g, e) in got.iter().zip(expected) {
        assert!((g - e).abs() < 0.01, "shares {got:?}, expected {expected:?}");
    }
    let unchained = shares(CategoryDraw::Walk, &logits, &[]);
    assert!(unchained[2] < expected[2] - 0.1, "{unchained:?} against {expected:?}");
}

#[test]
fn only_visit_types_of_format_6_on_are_chained() {
    let enc = fixture_encoding();
    let plan_of = |format| VisitPlan::codes(&enc, 1, format, None);
    for (format, chained) in [(5, false), (VISIT_TYPE_CHAIN_FORMAT, true)] {
        let plan = plan_of(format);
        let chained_values: Vec<usize> = (0..plan.cands.len())
            .filter(|&k| plan.last_takes_rest.get(k) == Some(&true))
            .map(|k| plan.cands[k])
            .collect();
        let last_type = enc
            .visit_groups
            .iter()
            .find(|g| g.name == VisitGroup::VISIT_TYPE)
            .map(|g| g.first + g.len - 1);
        assert_eq!(
            chained_values,
            last_type.filter(|_| chained).into_iter().collect::<Vec<_>>(),
            "format {format}"
        );
    }
}

#[test]
fn the_label_plan_weighs_demographic_values_by_the_calibration() {
    let enc = fixture_encoding();
    assert!(!enc.demographic_categories.is_empty(), "the fixture has demographics");
    let weights: Vec<Vec<f32>> = enc
        .demographic_categories
        .iter()
        .map(|c| (0..c.len).map(|v| v as f32 / 4.0).collect())
        .collect();
    let calibration = SamplingCalibration {
        demographic_log_weights: weights.clone(),
        ..Default::default()
    };
    assert!(VisitPlan::labels(&enc, None).category_factor.is_empty());
    let plan = VisitPlan::labels(&enc, Some(&calibration));
    let mut expected = vec![1.0; enc.label_vocab_size];
    for (c, w) in enc.demographic_categories.iter().zip(&weights) {
        for (v, w) in w.iter().enumerate() {
            expected[c.first + v] = f64::from(*w).exp();
        }
    }
    assert_eq!(plan.category_factor, expected);
    // A calibration of another encoding (a category of another size) leaves the draw as the model gives it.
    let mismatched = SamplingCalibration {
        demographic_log_weights: weights.iter().map(|w| vec![0.5; w.len() + 1]).collect(),
        ..Default::default()
    };
    assert!(VisitPlan::labels(&enc, Some(&mismatched)).category_factor.is_empty());
}

#[test]
fn calibration_factors_reweight_a_category() {
    let logits = [-1.0f32, 0.0, 2.0];
    let p: Vec<f64> = logits.iter().map(|&l| sigmoid(l)).collect();
    let walk = [p[0], (1.0 - p[0]) * p[1], (1.0 - p[0]) * (1.0 - p[1]) * p[2]];
    // Value 0 counts three times, value 2 not at all (the end code's factor does not matter).
    let factor = [3.0, 1.0, 0.0, 1.0];
    let weighted = [3.0 * walk[0], walk[1], 0.0];
    let total: f64 = weighted.iter().sum();
    let got = shares(CategoryDraw::Walk, &logits, &factor);
    for (g, w) in got.iter().zip(weighted) {
        assert!(
            (g - w / total).abs() < 0.01,
            "shares {got:?}, expected {weighted:?} / {total}"
        );
    }
    assert_eq!(got[2], 0.0);
}

#[test]
fn the_calibration_offset_moves_codes_drawn_on_their_own_only() {
    let plan = VisitPlan {
        cands: vec![0, 1, 2, 3, 4],
        category: vec![Some((0, 2)), Some((0, 2)), None, None, None],
        forced: false,
        category_draw: CategoryDraw::Walk,
        code_logit_offset: 0.5,
        category_factor: Vec::new(),
        last_takes_rest: Vec::new(),
        run_end: Vec::new(),
        lab_of: Vec::new(),
    };
    // Category values and the end code (last candidate) get nothing; the codes drawn on their own do.
    assert_eq!((plan.offset(0), plan.offset(1), plan.offset(4)), (0.0, 0.0, 0.0));
    assert_eq!((plan.offset(2), plan.offset(3)), (0.5, 0.5));
    // And they, only they, form a run.
    assert_eq!(plan.runs(), vec![0, 1, 4, 4, 4]);
}

/// [`Fixed`] logits given a run at a time.
struct FixedRuns(Vec<f32>);

impl Cursor for FixedRuns {
    fn logit(&mut self, j: usize) -> Option<f32> {
        self.0.get(j).copied()
    }
    fn run_logits(&mut self, codes: Range<usize>, logits: &mut [f32; RUN]) -> usize {
        let end = codes.end.min(codes.start + RUN).min(self.0.len());
        logits[..end - codes.start].copy_from_slice(&self.0[codes.start..end]);
        end - codes.start
    }
    fn set(&mut self, _: usize) {}
}

/// A walk through the fixture's later visits draws the same codes, and leaves its random stream at the same
/// place, with the runs' logits given at once as with every logit given one by one (runs end at categories,
/// at gaps in the candidates' indices and at the end code; codes set inside runs).
#[test]
fn a_run_draws_as_one_code_at_a_time() {
    let enc = fixture_encoding();
    let plan = VisitPlan::codes(&enc, 1, VISIT_TYPE_CHAIN_FORMAT, None);
    let runs = (0..plan.cands.len()).filter(|&p| plan.run_end[p] > p).count();
    assert!(
        runs > plan.cands.len() / 2,
        "{runs} of {} positions in runs",
        plan.cands.len()
    );
    let mut logit_rng = ChaCha20Rng::seed_from_u64(3);
    let v = enc.end_index() + 1;
    let mut set = 0;
    for stream in 0..200 {
        // Most codes unlikely, some likely, as in a visit.
        let logits: Vec<f32> = (0..v)
            .map(|_| {
                if logit_rng.random::<f64>() < 0.05 {
                    1.0
                } else {
                    -4.0 - 4.0 * logit_rng.random::<f32>()
                }
            })
            .collect();
        let walked = |cursor: &mut dyn FnMut(&mut usize, &mut Vec<u32>, &mut ChaCha20Rng) -> Progress| {
            let mut rng = ChaCha20Rng::seed_from_u64(stream);
            let (mut pos, mut drawn) = (0, Vec::new());
            assert_eq!(cursor(&mut pos, &mut drawn, &mut rng), Progress::Done);
            (drawn, rng.random::<u64>())
        };
        let one_by_one =
            walked(&mut |pos, drawn, rng| walk(pos, &plan, inputs(rng), &mut Fixed(logits.clone()), drawn));
        let in_runs =
            walked(&mut |pos, drawn, rng| walk(pos, &plan, inputs(rng), &mut FixedRuns(logits.clone()), drawn));
        assert_eq!(one_by_one, in_runs, "stream {stream}");
        set += one_by_one.0.len();
    }
    assert!(set > 400, "{set} codes set");
}

/// A later visit's plan over candidates `0..n` with these categories (drawn as a walk), nothing else set:
/// no offset, factors or forced values; its runs found.
fn walk_plan(category: Vec<Option<(usize, usize)>>) -> VisitPlan {
    let mut plan = VisitPlan {
        cands: (0..category.len()).collect(),
        category,
        forced: false,
        category_draw: CategoryDraw::Walk,
        code_logit_offset: 0.0,
        category_factor: Vec::new(),
        last_takes_rest: Vec::new(),
        run_end: Vec::new(),
        lab_of: Vec::new(),
    };
    plan.run_end = plan.runs();
    plan
}

/// A record's label bias goes onto every logit its walk reads, by vocabulary index: in a run of codes drawn
/// on their own (0..4), in a category (4, 5) and on the end code (6). All logits 0; a bias of +40 sets a code
/// (sigmoid 1 - 4e-18), -40 never does; without the bias the same walks draw otherwise.
#[test]
fn the_label_bias_is_added_to_every_logit_the_walk_reads() {
    let plan = walk_plan(vec![None, None, None, None, Some((4, 6)), Some((4, 6)), None]);
    assert_eq!(plan.run_end[0], 4, "codes 0..4 are a run");
    let bias = [40.0f32, -40.0, 40.0, -40.0, -40.0, 40.0, -40.0];
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let mut unbiased_differ = false;
    for walk_number in 0..200 {
        let by_runs = walk_number % 2 == 0;
        let walk_once = |bias: Option<&[f32]>, rng: &mut ChaCha20Rng| {
            let (mut pos, mut drawn) = (0, Vec::new());
            let inputs = WalkInputs {
                forced: None,
                bias,
                dates: None,
                rng,
            };
            let progress = match by_runs {
                true => walk(&mut pos, &plan, inputs, &mut FixedRuns(vec![0.0; 7]), &mut drawn),
                false => walk(&mut pos, &plan, inputs, &mut Fixed(vec![0.0; 7]), &mut drawn),
            };
            assert_eq!(progress, Progress::Done);
            drawn
        };
        assert_eq!(walk_once(Some(&bias), &mut rng), vec![0, 2, 5], "walk {walk_number}");
        unbiased_differ |= walk_once(None, &mut rng) != vec![0, 2, 5];
    }
    assert!(unbiased_differ, "without the bias, logits of 0 draw other visits");
}

/// Where a visit holds at most one bucket of a lab, the walk goes past the lab's other buckets once it draws
/// one, read one by one or in runs: codes 1, 3 and 5 are the buckets of one lab, 0, 2 and 4 other codes.
/// Every logit 0 (each code drawn with probability 1/2): without the lab's numbering, walks draw two or three
/// of its buckets; with it, never more than one (6 is the end code), and each bucket still comes first as often as the walk
/// reaches it.
#[test]
fn a_walk_draws_at_most_one_bucket_of_a_lab_that_visits_hold_once() {
    let mut plan = walk_plan(vec![None; 7]);
    let buckets_drawn = |plan: &VisitPlan, by_runs: bool| {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let mut counts = [0usize; 4];
        let mut first = [0usize; 3];
        for _ in 0..4_000 {
            let (mut pos, mut drawn) = (0, Vec::new());
            let progress = match by_runs {
                true => walk(
                    &mut pos,
                    plan,
                    inputs(&mut rng),
                    &mut FixedRuns(vec![0.0; 7]),
                    &mut drawn,
                ),
                false => walk(&mut pos, plan, inputs(&mut rng), &mut Fixed(vec![0.0; 7]), &mut drawn),
            };
            assert_eq!(progress, Progress::Done);
            let lab: Vec<u32> = drawn.iter().copied().filter(|j| j % 2 == 1).collect();
            counts[lab.len()] += 1;
            if let Some(&b) = lab.first() {
                first[b as usize / 2] += 1;
            }
        }
        (counts, first)
    };
    for by_runs in [false, true] {
        let (counts, _) = buckets_drawn(&plan, by_runs);
        assert!(counts[2] + counts[3] > 1_000, "without the lab's end: {counts:?}");
    }
    plan.lab_of = vec![NO_LAB, 0, NO_LAB, 0, NO_LAB, 0, NO_LAB];
    for by_runs in [false, true] {
        let (counts, first) = buckets_drawn(&plan, by_runs);
        assert_eq!(counts[2] + counts[3], 0, "with it: {counts:?}");
        // The first bucket comes first half the time, the second a quarter, the third an eighth.
        for (b, expected) in [0.5, 0.25, 0.125].iter().enumerate() {
            let share = first[b] as f64 / 4_000.0;
            assert!((share - expected).abs() < 0.03, "bucket {b}: {share} ({first:?})");
        }
    }
}
