//! The property that makes records independent of the batch size: ONNX Runtime computes each row of a
//! batch exactly as it computes that row alone (bitwise), for the step graph and the dense code head. (The
//! native code module of format 5 computes each row on its own by construction; format 4's ONNX Runtime
//! blocks, no longer exported, keep their records in fixtures/tiny-model-v4 and the cross-machine test.)

mod common;

use halo_infer::model::{CachePart, KvCache, Seen, SeenCodes};
use halo_infer::runtime::{self, Device, SessionOptions};
use halo_infer::{CodeModule, Model};
use rand::{Rng, SeedableRng};

#[test]
fn graph_rows_do_not_depend_on_the_batch() {
    let tmp = tempfile::tempdir().unwrap();
    // Wide enough for the matrix kernels' blocking to matter (D = E + V > 200).
    let mut spec = common::Spec::fixture();
    spec.codes = 200;
    spec.n_embd = 64;
    let enc = common::encoding(&spec);
    let bias = common::mimic_like_bias(&enc, 10.0, 2.0);
    let dir = common::build_model(tmp.path(), &spec, 1, Some(&bias), None);
    for threads in [1, 2] {
        let rt = runtime::init(None).unwrap();
        let mut model = Model::load_with(
            &dir,
            rt,
            &SessionOptions {
                device: Device::Cpu,
                threads: Some(threads),
            },
            CodeModule::Compared,
        )
        .unwrap();
        let c = model.config().clone();
        let (v, e) = (c.total_vocab_size, c.n_embd);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(threads as u64);
        for n in [2usize, 5, 33, 100] {
            let visits: Vec<f32> = (0..n * v)
                .map(|_| if rng.random::<f64>() < 0.05 { 1.0 } else { 0.0 })
                .collect();
            let history: Vec<f32> = (0..n * e).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
            let (mut all, mut one) = (Vec::new(), Vec::new());
            model.head(&history, &visits, n, &mut all).unwrap();
            for r in [0, n / 2, n - 1] {
                model
                    .head(&history[r * e..(r + 1) * e], &visits[r * v..(r + 1) * v], 1, &mut one)
                    .unwrap();
                assert!(
                    one.iter()
                        .zip(&all[r * v..(r + 1) * v])
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "code head row {r} of {n} differs from the row alone ({threads} threads)"
                );
            }
            // Step graph with a 3-visit cache, in the model's layout (random values).
            let past_len = 3;
            let empty = model.empty_cache();
            let row = c.n_head * past_len * c.head_dim();
            let past = KvCache {
                parts: (0..empty.parts.len())
                    .map(|_| CachePart::Host((0..empty.blocks * n * row).map(|_| rng.random::<f32>() - 0.5).collect()))
                    .collect(),
                blocks: empty.blocks,
            };
            let (mut h_all, mut h_one) = (Vec::new(), Vec::new());
            // Each row's visit as its codes, and the codes seen so far: the visit's and some of earlier visits.
            let codes_where = |hot: &[f32]| -> Vec<u32> { (0..v as u32).filter(|&c| hot[c as usize] > 0.0).collect() };
            let visit_codes: Vec<Vec<u32>> = visits.chunks(v).map(codes_where).collect();
            let visit_codes: Vec<&[u32]> = visit_codes.iter().map(Vec::as_slice).collect();
            let seen: Vec<f32> = visits
                .iter()
                .map(|&x| if x > 0.0 || rng.random::<f64>() < 0.1 { 1.0 } else { 0.0 })
                .collect();
            let seen_codes: Vec<Vec<u32>> = seen.chunks(v).map(codes_where).collect();
            let seen_codes: Vec<&[u32]> = seen_codes.iter().map(Vec::as_slice).collect();
            let mut seen_all = SeenCodes::new(n, v);
            seen_all.add(&seen_codes);
            model
                .step(&visit_codes, Seen::Codes(&seen_all), &past, past_len, &mut h_all)
                .unwrap();
            // Row r alone: its slice of every block of the cache.
            for r in [0, n - 1] {
                let keep: Vec<bool> = (0..n).map(|i| i == r).collect();
                let mut past_r = KvCache {
                    parts: past
                        .parts
                        .iter()
                        .map(|p| CachePart::Host(p.data().unwrap().to_vec()))
                        .collect(),
                    blocks: past.blocks,
                };
                past_r.keep_rows(&keep, row).unwrap();
                let mut seen_r = SeenCodes::new(1, v);
                seen_r.add(&seen_codes[r..=r]);
                model
                    .step(&visit_codes[r..=r], Seen::Codes(&seen_r), &past_r, past_len, &mut h_one)
                    .unwrap();
                assert!(
                    h_one
                        .iter()
                        .zip(&h_all[r * e..(r + 1) * e])
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "step row {r} of {n} differs from the row alone ({threads} threads)"
                );
            }
        }
    }
}

/// Repeated runs of the same input give the same bits with several threads, at a realistic width (a graph
/// whose kernels race across threads, such as ScatterND with reduction=add, fails this).
#[test]
fn graphs_repeat_bitwise_with_two_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = common::Spec::fixture();
    spec.codes = 1500;
    spec.n_embd = 64;
    let enc = common::encoding(&spec);
    let bias = common::mimic_like_bias(&enc, 10.0, 2.0);
    let dir = common::build_model(tmp.path(), &spec, 2, Some(&bias), None);
    let rt = runtime::init(None).unwrap();
    let options = SessionOptions {
        device: Device::Cpu,
        threads: Some(2),
    };
    let mut model = Model::load_with(&dir, rt, &options, CodeModule::Compared).unwrap();
    let c = model.config().clone();
    let (v, e) = (c.total_vocab_size, c.n_embd);
    let n = 64;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let visits: Vec<f32> = (0..n * v)
        .map(|_| if rng.random::<f64>() < 0.01 { 1.0 } else { 0.0 })
        .collect();
    let history: Vec<f32> = (0..n * e).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
    let (mut first, mut again) = (Vec::new(), Vec::new());
    model.head(&history, &visits, n, &mut first).unwrap();
    for _ in 0..5 {
        model.head(&history, &visits, n, &mut again).unwrap();
        assert!(
            first.iter().zip(&again).all(|(a, b)| a.to_bits() == b.to_bits()),
            "the code head gave different logits for the same input"
        );
    }
}
