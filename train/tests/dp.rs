//! DP-SGD's per-record clipping: the clipped, summed gradient of one batch (norms from each layer's input and
//! output gradient, one weighted backward pass) equals a loop over single records (one backward pass each,
//! clip, sum).

use halo_core::config::{ModelConfig, Preset};
use halo_core::encoding::{EncodedPatient, Encoding};
use halo_train::data::make_batch;
use halo_train::dp::{clipped_backward, Records};
use halo_train::model::{Halo, Noise};
use halo_train::score;
use tch::{nn, Device, Kind, Tensor};

fn config(codes: usize, labels: usize, seen_codes: bool, coarse: bool) -> ModelConfig {
    let mut c = ModelConfig::new(Preset::Small, codes, labels);
    (c.n_embd, c.n_layer, c.n_head, c.n_ctx, c.n_positions) = (8, 2, 2, 6, 6);
    c.seen_codes = seen_codes;
    c.coarse = coarse;
    c
}

fn patient(labels: Vec<u32>, visits: Vec<Vec<u32>>, continues: bool) -> EncodedPatient {
    EncodedPatient {
        labels,
        visits,
        continues,
    }
}

/// Every parameter's gradient, flattened in name order, then zeroed.
fn take_gradient(vs: &nn::VarStore) -> Tensor {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let parts: Vec<Tensor> = vars
        .iter()
        .map(|(_, p)| {
            let g = p.grad();
            let flat = if g.defined() {
                g.flatten(0, -1).copy()
            } else {
                p.zeros_like().flatten(0, -1)
            };
            if g.defined() {
                let mut g = g;
                let _ = g.zero_();
            }
            flat
        })
        .collect();
    Tensor::cat(&parts, 0)
}

#[test]
fn clipped_sum_equals_a_loop_over_single_records() {
    for (seen_codes, coarse) in [(true, false), (false, false), (true, true)] {
        clipped_sum_check(seen_codes, coarse);
    }
}

fn clipped_sum_check(seen_codes: bool, coarse: bool) {
    tch::manual_seed(11);
    // 195 codes and a label (with start, end and pad a vocabulary of 199: the code module's masked layers
    // span several blocks of the masked norm); the model's context holds 4 visits.
    let codes: Vec<String> = (0..195).map(|i| format!("c{i}")).collect();
    let enc = Encoding::plain(codes, vec!["L".into()], 4);
    let cfg = config(enc.code_vocab_size, enc.label_vocab_size, seen_codes, coarse);
    let label = enc.code_vocab_size as u32;
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Halo::load(&vs.root(), &cfg);
    // Record 0: one window; record 1: two windows (the first continues); record 2: a single short visit.
    let records: Vec<Vec<EncodedPatient>> = vec![
        vec![patient(vec![label], vec![vec![0, 3], vec![1], vec![2, 4, 190]], false)],
        vec![
            patient(vec![], vec![vec![5], vec![0, 6], vec![7], vec![8, 150]], true),
            patient(vec![], vec![vec![7], vec![8, 150], vec![9]], false),
        ],
        vec![patient(vec![label], vec![vec![100]], false)],
        vec![patient(vec![], vec![vec![1, 2, 3, 4, 5, 6, 7], vec![2]], false)],
    ];
    // Unclipped per-record gradients, one backward pass each.
    let mut singles = Vec::new();
    for windows in &records {
        let refs: Vec<&EncodedPatient> = windows.iter().collect();
        let batch = make_batch(&refs, &enc, Device::Cpu);
        let (bce, _, _) = score::scored_bce(&model, &batch, Noise::NONE);
        bce.sum(Kind::Float).backward();
        singles.push(take_gradient(&vs));
    }
    let naive_norms: Vec<f64> = singles.iter().map(|g| g.norm().double_value(&[])).collect();
    // A bound between the smallest and the largest norm: some records are clipped, some are not.
    let mut sorted = naive_norms.clone();
    sorted.sort_by(f64::total_cmp);
    let max_norm = (sorted[1] + sorted[2]) / 2.0;
    assert!(sorted[0] < max_norm && sorted[3] > max_norm, "{naive_norms:?}");
    let naive_sum = singles
        .iter()
        .zip(&naive_norms)
        .map(|(g, n)| g * (max_norm / n).min(1.0))
        .reduce(|a, b| a + b)
        .unwrap();

    // The batch: every window as a sequence, the two windows of record 1 apart (order shuffled).
    let order = [(1usize, 1usize), (0, 0), (2, 0), (1, 0), (3, 0)];
    let sequences: Vec<&EncodedPatient> = order.iter().map(|(r, w)| &records[*r][*w]).collect();
    let batch = make_batch(&sequences, &enc, Device::Cpu);
    let grouping = Records::new(&order.map(|(r, _)| r), Device::Cpu);
    let clipped = clipped_backward(&model, &batch, &grouping, Noise::NONE, max_norm);
    let batched = take_gradient(&vs);
    let norms = Vec::<f64>::try_from(clipped.norms.to_kind(Kind::Double)).unwrap();
    for (ours, naive) in norms.iter().zip(&naive_norms) {
        assert!(
            (ours - naive).abs() <= 1e-5 * naive.max(1.0),
            "norms {norms:?}, naive {naive_norms:?}"
        );
    }
    let diff = (&batched - &naive_sum).abs().max().double_value(&[]);
    assert!(
        diff <= 1e-5,
        "largest difference {diff} (seen codes {seen_codes}, coarse {coarse})"
    );
    // The comparison has something to compare.
    assert!(naive_sum.abs().max().double_value(&[]) > 1e-3);
}
