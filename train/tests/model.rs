//! The model's factorization and loss, pinned on tiny cases.

use halo_core::config::{ModelConfig, Preset};
use halo_core::encoding::{EncodedPatient, Encoding};
use halo_train::data::make_batch;
use halo_train::model::{Halo, Noise};
use halo_train::score;
use tch::{nn, Device, Kind, Tensor};

fn tiny_config(codes: usize, labels: usize) -> ModelConfig {
    let mut c = ModelConfig::new(Preset::Small, codes, labels);
    c.n_embd = 8;
    c.n_layer = 2;
    c.n_head = 2;
    c.n_ctx = 6;
    c.n_positions = 6;
    c
}

fn tiny_encoding() -> Encoding {
    Encoding::plain(vec!["a".into(), "b".into()], vec!["L".into()], 46)
}

#[test]
fn parameter_names_and_shapes_are_the_reference_state_dict() {
    for seen_codes in [false, true] {
        parameter_names_and_shapes_check(seen_codes);
    }
}

/// The reference's names, plus the embedding of the codes seen so far when the model has one.
fn parameter_names_and_shapes_check(seen_codes: bool) {
    let mut cfg = tiny_config(5, 2);
    cfg.seen_codes = seen_codes;
    let vs = nn::VarStore::new(Device::Cpu);
    let _model = Halo::load(&vs.root(), &cfg);
    let mut ours: Vec<(String, Vec<usize>)> = vs
        .variables()
        .into_iter()
        .map(|(n, t)| (n, t.size().iter().map(|d| *d as usize).collect()))
        .collect();
    ours.sort();
    let mut expected = cfg.parameter_shapes();
    expected.sort();
    assert_eq!(ours, expected);
    assert!(ours
        .iter()
        .any(|(n, s)| n == "ehr_head.auto1.weight" && s == &vec![8 + 10, 8 + 10]));
    assert_eq!(
        ours.iter()
            .any(|(n, s)| n == "transformer.seen_embed_mat.weight" && s == &vec![8, 10]),
        seen_codes
    );
}

#[test]
fn code_logits_see_only_earlier_codes_of_their_visit_and_earlier_visits() {
    // With the codes seen so far embedded too: the running union must not reach back from later visits.
    for seen_codes in [false, true] {
        causality_check(seen_codes);
    }
}

fn causality_check(seen_codes: bool) {
    tch::manual_seed(7);
    let mut cfg = tiny_config(9, 2);
    cfg.seen_codes = seen_codes;
    let v = cfg.total_vocab_size as i64;
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Halo::load(&vs.root(), &cfg);
    let visits = Tensor::rand([1, 5, v], (Kind::Float, Device::Cpu))
        .gt(0.6)
        .to_kind(Kind::Float);
    let base = tch::no_grad(|| model.forward(&visits));
    let (t, j) = (3i64, 4i64); // perturb code j of input row t, which row t-1 predicts
    let perturbed = visits.copy();
    let flipped = 1.0 - visits.double_value(&[0, t, j]);
    let _ = perturbed.get(0).get(t).get(j).fill_(flipped);
    let after = tch::no_grad(|| model.forward(&perturbed));
    let diff = (&after - &base).abs();
    // Earlier predicted rows are untouched.
    assert_eq!(diff.narrow(1, 0, t - 1).max().double_value(&[]), 0.0);
    // In the row predicting visit t, codes <= j are untouched ...
    assert_eq!(diff.get(0).get(t - 1).narrow(0, 0, j + 1).max().double_value(&[]), 0.0);
    // ... and later codes do react (the test would pass trivially otherwise).
    assert!(
        diff.get(0)
            .get(t - 1)
            .narrow(0, j + 1, v - j - 1)
            .max()
            .double_value(&[])
            > 1e-6
    );
    // Later rows see the change through the history.
    assert!(diff.narrow(1, t, 4 - t).max().double_value(&[]) > 1e-6);
}

#[test]
fn the_codes_seen_are_the_union_of_the_visits_so_far() {
    let visits = Tensor::from_slice(&[
        1f32, 0., 0., /**/ 0., 1., 0., /**/ 0., 0., 0., /**/ 1., 0., 1.,
    ])
    .view([1, 4, 3]);
    let seen = Vec::<f32>::try_from(halo_train::model::seen_codes(&visits).flatten(0, -1)).unwrap();
    assert_eq!(seen, [1., 0., 0., 1., 1., 0., 1., 1., 0., 1., 1., 1.]);
}

#[test]
fn loss_matches_a_hand_computed_case() {
    let enc = tiny_encoding();
    let mut cfg = tiny_config(2, 1);
    cfg.n_ctx = 6;
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Halo::load(&vs.root(), &cfg);
    let e = cfg.n_embd as i64;
    // Zero every weight: the history is ln_f.bias = 0, auto1 gives relu(0) = 0, so the logits are
    // auto2.bias[E-1 .. E-1+V] = [0, ln 3, -ln 3, 0, 0, 0], i.e. p = [.5, .75, .25, .5, .5, .5].
    tch::no_grad(|| {
        for (name, mut t) in vs.variables() {
            let _ = t.zero_();
            if name == "ehr_head.auto2.bias" {
                let _ = t.narrow(0, e, 1).fill_(3f64.ln());
                let _ = t.narrow(0, e + 1, 1).fill_(-(3f64.ln()));
            }
        }
    });
    // One record: label L, one visit {a}. Scored rows: the label visit (target L) and visit 1
    // (target a + end). Row 0 BCE: ln2 + ln4 + ln4 + 3 ln2 = 8 ln2.
    // Row 1 BCE: ln2 (a) + ln4 (b absent, p .75) + ln(4/3) (L absent, p .25) + ln2 + ln2 (end) + ln2 = 6 ln2 + ln(4/3).
    let patient = EncodedPatient {
        labels: vec![2],
        visits: vec![vec![0]],
        continues: false,
    };
    let batch = make_batch(&[&patient], &enc, Device::Cpu);
    let loss = score::loss(&model, &batch, Noise::NONE).double_value(&[]);
    let ln2 = 2f64.ln();
    let total = 14.0 * ln2 + (4.0f64 / 3.0).ln();
    assert!(
        (loss - total / 12.0).abs() < 1e-6,
        "loss {loss} expected {}",
        total / 12.0
    );
    let sums = score::score(&model, &[patient], &enc, 4, Device::Cpu);
    let scores = sums.scores();
    assert!((scores.log_likelihood + total).abs() < 1e-6);
    assert_eq!(scores.present_codes, 3.0);
    assert!((scores.perplexity - (total / 3.0).exp()).abs() < 1e-6);
    // Thresholding at 0.5: only b (p .75, absent) is predicted present: tp 0, fp 2 (both rows), fn 3.
    assert_eq!(scores.f1, 0.0);
}

#[test]
fn a_window_that_the_record_goes_on_after_has_no_end_code() {
    let enc = tiny_encoding();
    let window = |continues| EncodedPatient {
        labels: vec![2],
        visits: vec![vec![0], vec![1]],
        continues,
    };
    let (ends, goes_on) = (window(false), window(true));
    let batch = make_batch(&[&ends, &goes_on], &enc, Device::Cpu);
    let end = enc.end_index() as i64;
    // Input: the end code sits in the last visit's row of the record that ends, nowhere in the other.
    let last_row = |i: i64| Vec::<f32>::try_from(batch.visits.get(i).get(3)).unwrap();
    assert_eq!(last_row(0), [0., 1., 0., 0., 1., 0.]);
    assert_eq!(last_row(1), [0., 1., 0., 0., 0., 0.]);
    // Targets: the end code is in the bag of the ending record's last visit only.
    let bags = Vec::<i64>::try_from(&batch.bag_codes).unwrap();
    assert_eq!(bags.iter().filter(|&&c| c == end).count(), 1);
    assert_eq!(bags, [2, 0, 1, end, 2, 0, 1]);
}

#[test]
fn batches_put_start_labels_visits_end_and_pad_where_the_reference_does() {
    let enc = tiny_encoding();
    let long = EncodedPatient {
        labels: vec![2],
        visits: vec![vec![0], vec![0, 1]],
        continues: false,
    };
    let short = EncodedPatient {
        labels: vec![],
        visits: vec![vec![1]],
        continues: false,
    };
    let batch = make_batch(&[&long, &short], &enc, Device::Cpu);
    let rows = |i: i64| -> Vec<Vec<f32>> {
        let t = batch.visits.get(i);
        (0..t.size()[0])
            .map(|r| Vec::<f32>::try_from(t.get(r)).unwrap())
            .collect()
    };
    assert_eq!(
        rows(0),
        vec![
            vec![0., 0., 0., 1., 0., 0.],
            vec![0., 0., 1., 0., 0., 0.],
            vec![1., 0., 0., 0., 0., 0.],
            vec![1., 1., 0., 0., 1., 0.],
        ]
    );
    assert_eq!(
        rows(1),
        vec![
            vec![0., 0., 0., 1., 0., 0.],
            vec![0., 0., 0., 0., 0., 0.],
            vec![0., 1., 0., 0., 1., 0.],
            vec![0., 0., 0., 0., 0., 1.],
        ]
    );
    assert_eq!(
        Vec::<f32>::try_from(batch.mask.view([-1])).unwrap(),
        vec![1., 1., 1., 1., 1., 0.]
    );
}

#[test]
fn the_code_bag_path_equals_the_multi_hot_path() {
    tch::manual_seed(3);
    let enc = tiny_encoding();
    let cfg = tiny_config(2, 1);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Halo::load(&vs.root(), &cfg);
    let a = EncodedPatient {
        labels: vec![2],
        visits: vec![vec![0], vec![0, 1], vec![1]],
        continues: false,
    };
    let b = EncodedPatient {
        labels: vec![],
        visits: vec![vec![1]],
        continues: false,
    };
    let batch = make_batch(&[&a, &b], &enc, Device::Cpu);
    let bags = tch::no_grad(|| model.forward_batch(&batch));
    // The dense path: the code module on the multi-hot visits of the scored rows.
    let dense = tch::no_grad(|| {
        let (b, t, v) = batch.visits.size3().unwrap();
        let history = model.transformer.forward(&batch.visits);
        let e = history.size()[2];
        let rows = |x: &Tensor, width: i64| x.reshape([b * (t - 1), width]).index_select(0, &batch.rows);
        let h = rows(&history.narrow(1, 0, t - 1), e);
        let x = rows(&batch.visits.narrow(1, 1, t - 1), v);
        model.head.forward(&h, &x)
    });
    assert_eq!(bags.size(), vec![6, 6]);
    assert!((bags - dense).abs().max().double_value(&[]) < 1e-5);
}

#[test]
fn prior_logits_are_the_training_log_odds_and_land_on_the_code_outputs() {
    let enc = tiny_encoding();
    let v = enc.vocab_size();
    // Two patients, 2 + 3 scored rows (label visit + visits): code 0 in 2 rows, code 1 in 2, the label in
    // 1, the end code in 2 (one per patient), the start and pad codes in none.
    let label = enc.code_vocab_size as u32;
    let patients = vec![
        EncodedPatient {
            labels: vec![label],
            visits: vec![vec![0, 1]],
            continues: false,
        },
        EncodedPatient {
            labels: vec![],
            visits: vec![vec![0], vec![1]],
            continues: false,
        },
    ];
    let logits = Vec::<f32>::try_from(halo_train::data::prior_logits(&patients, &enc)).unwrap();
    let log_odds = |count: f64| {
        let p = (count + 0.5) / 6.0;
        (p / (1.0 - p)).ln() as f32
    };
    let mut counts = vec![0.0; v];
    counts[0] = 2.0;
    counts[1] = 2.0;
    counts[label as usize] = 1.0;
    counts[enc.end_index()] = 2.0;
    for (j, c) in counts.iter().enumerate() {
        assert!(
            (logits[j] - log_odds(*c)).abs() < 1e-6,
            "token {j}: {} vs {}",
            logits[j],
            log_odds(*c)
        );
    }

    // set_output_bias writes them to auto2.bias[E-1 .. E-1+V] and nowhere else.
    let config = tiny_config(enc.code_vocab_size, enc.label_vocab_size);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Halo::load(&vs.root(), &config);
    let before = vs.variables()["ehr_head.auto2.bias"].copy();
    model.set_output_bias(&Tensor::from_slice(&logits));
    let after = vs.variables()["ehr_head.auto2.bias"].copy();
    let e = config.n_embd as i64;
    let got = Vec::<f32>::try_from(after.narrow(0, e - 1, v as i64)).unwrap();
    assert_eq!(got, logits);
    assert!(after.narrow(0, 0, e - 1).equal(&before.narrow(0, 0, e - 1)));
}

#[test]
fn weight_decay_shrinks_weight_matrices_only() {
    let vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let matrix = root.var("matrix", &[2, 2], nn::Init::Const(1.0));
    let vector = root.var("vector", &[2], nn::Init::Const(1.0));
    let mut adam = halo_train::optim::Adam::new(&vs, 0.1, 0.5);
    adam.zero_grad();
    // A zero gradient: Adam itself moves nothing, so only the decay acts (factor 1 - lr * wd = 0.95).
    (matrix.sum(Kind::Float) * 0.0 + vector.sum(Kind::Float) * 0.0).backward();
    adam.step();
    assert!((matrix.double_value(&[0, 0]) - 0.95).abs() < 1e-7);
    assert_eq!(vector.double_value(&[0]), 1.0);
}
