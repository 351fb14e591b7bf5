//! The exported ONNX graphs, run in ONNX Runtime, compute what the libtorch model computes: on random
//! and on trained weights, for batch sizes 1 and 7 and 1, 5 and n_ctx visits. Also: the incremental
//! (key/value cache) graph step by step equals the full-sequence graph.
//!
//! `HALO_PARITY_CHECKPOINT=runs/x cargo test --release -p halo-train --test parity -- --ignored --nocapture`
//! checks (and prints the figures for) any other checkpoint folder, e.g. the Synthea small model.

mod common;

use halo_core::config::ModelConfig;
use halo_core::encoding::Encoding;
use halo_core::manifest::graph;
use halo_infer::model::{Seen, SeenCodes};
use halo_infer::runtime::{self, Device, SessionOptions};
use halo_infer::{CodeModule, Model};
use halo_train::checkpoint;
use rand::{Rng, SeedableRng};
use std::path::Path;
use tch::{Kind, Tensor};

/// Largest absolute differences seen.
#[derive(Debug, Default)]
struct Figures {
    history: f32,
    step_vs_full: f32,
    logits: f32,
    probs: f32,
    /// Logits of the incremental code module (start graph, columns, block graphs) against libtorch.
    incremental_logits: f32,
    /// Logits of a model with a label bias, libtorch's whole model against the code head plus the bias, and
    /// the rows compared.
    label_bias_logits: f32,
    label_bias_rows: usize,
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn sigmoid(x: &[f32]) -> Vec<f32> {
    x.iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect()
}

fn to_vec(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.flatten(0, -1).to_kind(Kind::Float)).unwrap()
}

/// Random visits [b, t, V]: the start visit first, then about `density * V` codes a visit.
fn random_visits(rng: &mut impl Rng, enc: &Encoding, b: usize, t: usize, density: f64) -> Vec<f32> {
    let v = enc.vocab_size();
    let mut x = vec![0f32; b * t * v];
    for r in 0..b {
        for s in 0..t {
            let row = &mut x[(r * t + s) * v..(r * t + s + 1) * v];
            if s == 0 {
                row[enc.start_index()] = 1.0;
            } else {
                for (j, slot) in row.iter_mut().enumerate().take(enc.start_index()) {
                    *slot = if rng.random::<f64>() < density || j == s % 3 {
                        1.0
                    } else {
                        0.0
                    };
                }
            }
        }
    }
    x
}

/// Exports `ckpt` and compares libtorch with ONNX Runtime on every (batch, visits) case.
fn check(ckpt: &Path) -> Figures {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("model");
    halo_export::export(ckpt, &dir, &Default::default()).unwrap();
    let torch = checkpoint::load(ckpt, tch::Device::Cpu).unwrap();
    let c: ModelConfig = torch.config.clone();
    let rt = runtime::init(None).unwrap();
    let options = SessionOptions {
        device: Device::Cpu,
        threads: Some(1),
    };
    // Compared: the dense code head and the incremental module are both loaded.
    let mut onnx = Model::load_with(&dir, rt, &options, CodeModule::Compared).unwrap();
    let (mut full, _, _) = runtime::create_session(
        rt,
        &runtime::GraphBytes::read(&dir.join(graph::VISIT_TRANSFORMER)).unwrap(),
        &options,
    )
    .unwrap();
    let (v, e) = (c.total_vocab_size, c.n_embd);
    let cache_row = c.n_layer * 2 * c.n_head * c.head_dim();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let mut fig = Figures::default();
    let _guard = tch::no_grad_guard();
    for b in [1usize, 7] {
        for t in [1usize, 5, c.n_ctx] {
            let visits = random_visits(&mut rng, &torch.encoding, b, t, 0.03);
            let next = random_visits(&mut rng, &torch.encoding, b, t, 0.03);
            let shape = [b as i64, t as i64, v as i64];

            // libtorch: history of every position, then logits of a next visit from each.
            let x = Tensor::from_slice(&visits).view(shape);
            let history_t = torch.model.transformer.forward(&x);
            let logits_t = torch
                .model
                .head
                .forward(&history_t, &Tensor::from_slice(&next).view(shape));

            // ONNX Runtime, full-sequence graph.
            let input = ort::value::TensorRef::from_array_view(([b, t, v], visits.as_slice())).unwrap();
            let out = full.run(ort::inputs![graph::IN_VISITS => input]).unwrap();
            let history_full = out[graph::OUT_HISTORY].try_extract_tensor::<f32>().unwrap().1.to_vec();
            fig.history = fig.history.max(max_diff(&history_full, &to_vec(&history_t)));

            // ONNX Runtime, incremental graph one visit at a time: history laid out [b, t, E].
            let (mut past, mut h) = (onnx.empty_cache(), Vec::new());
            let mut history_steps = vec![0f32; b * t * e];
            let (mut seen, mut seen_embedded) = (SeenCodes::new(b, v), Vec::new());
            for s in 0..t {
                // Each row's visit s as its codes, ascending.
                let visit: Vec<Vec<u32>> = (0..b)
                    .map(|r| {
                        let row = &visits[(r * t + s) * v..(r * t + s + 1) * v];
                        (0..v as u32).filter(|&c| row[c as usize] != 0.0).collect()
                    })
                    .collect();
                let visit: Vec<&[u32]> = visit.iter().map(Vec::as_slice).collect();
                // As the sampler steps: the seen-code embedding grows by the codes first seen (format 8).
                let embedded = onnx.add_newly_seen(&visit, &seen, &mut seen_embedded);
                seen.add(&visit);
                let seen_now = match embedded {
                    true => Seen::Embedded(&seen_embedded),
                    false => Seen::Codes(&seen),
                };
                past = onnx.step(&visit, seen_now, &past, s, &mut h).unwrap();
                for r in 0..b {
                    history_steps[(r * t + s) * e..(r * t + s + 1) * e].copy_from_slice(&h[r * e..(r + 1) * e]);
                }
                let cached: usize = past.parts.iter().map(|p| p.data().unwrap().len()).sum();
                assert_eq!(cached, b * cache_row * (s + 1));
            }
            fig.step_vs_full = fig.step_vs_full.max(max_diff(&history_steps, &history_full));

            // ONNX Runtime code head on ONNX Runtime's own history: end to end against libtorch.
            let mut logits = Vec::new();
            onnx.head(&history_full, &next, b * t, &mut logits).unwrap();
            let reference = to_vec(&logits_t);
            fig.logits = fig.logits.max(max_diff(&logits, &reference));
            fig.probs = fig.probs.max(max_diff(&sigmoid(&logits), &sigmoid(&reference)));

            // A label bias (format 9): libtorch's whole model on the sequence (row s predicts visit s + 1, each
            // visit's row with its record's label bias) against ONNX Runtime's code head plus the bias the
            // sampler adds to a record's visits from the labels of its visit 1.
            if c.label_bias && t >= 3 {
                let whole_t = to_vec(&torch.model.forward(&x));
                let c0 = c.code_vocab_size;
                for r in 0..b {
                    let label_visit = &visits[(r * t + 1) * v..(r * t + 2) * v];
                    let labels: Vec<u32> = (c0..c0 + c.label_vocab_size)
                        .filter(|&j| label_visit[j] != 0.0)
                        .map(|j| j as u32)
                        .collect();
                    let bias = onnx.record_label_bias(&labels).expect("the model has a label bias");
                    for s in 1..t - 1 {
                        let mut got = Vec::new();
                        let at = (r * t + s) * e;
                        let following = &visits[(r * t + s + 1) * v..(r * t + s + 2) * v];
                        onnx.head(&history_full[at..at + e], following, 1, &mut got).unwrap();
                        got.iter_mut().zip(&bias).for_each(|(x, b)| *x += b);
                        let want = &whole_t[(r * (t - 1) + s) * v..(r * (t - 1) + s + 1) * v];
                        fig.label_bias_logits = fig.label_bias_logits.max(max_diff(&got, want));
                        fig.label_bias_rows += 1;
                    }
                }
            }

            // The native code module (format 5) on the same inputs, each row from scratch (the walk's
            // logits equal these bit for bit: infer's native tests).
            let (head, _) = onnx.native().expect("format 5 has the native code module");
            for r in 0..b * t {
                let got = head.logits(&history_full[r * e..(r + 1) * e], &next[r * v..(r + 1) * v]);
                let want = &reference[r * v..(r + 1) * v];
                fig.incremental_logits = fig.incremental_logits.max(max_diff(&got, want));
            }
        }
    }
    eprintln!("{}: {fig:?}", ckpt.display());
    assert!(fig.history < 1e-4, "history differs by {}", fig.history);
    assert!(
        fig.step_vs_full < 1e-4,
        "incremental differs from full by {}",
        fig.step_vs_full
    );
    assert!(fig.logits < 1e-4, "logits differ by {}", fig.logits);
    assert!(fig.probs < 1e-5, "probabilities differ by {}", fig.probs);
    assert!(
        fig.incremental_logits < 1e-4,
        "incremental logits differ by {}",
        fig.incremental_logits
    );
    assert!(
        fig.label_bias_logits < 1e-4,
        "logits with the label bias differ by {}",
        fig.label_bias_logits
    );
    fig
}

#[test]
fn random_weights_agree() {
    random_weights_check(false);
}

/// The embedding of the codes seen so far: a cumulative union in the full graph, an input of the step graph.
#[test]
fn random_weights_with_seen_codes_agree() {
    random_weights_check(true);
}

/// The label bias (format 9): libtorch's logits of a record's visits against ONNX Runtime's code head plus
/// the bias the sampler adds from the record's labels.
#[test]
fn random_weights_with_label_bias_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = random_checkpoint(tmp.path(), true, true);
    let manifest_dir = tmp.path().join("exported");
    halo_export::export(&ckpt, &manifest_dir, &Default::default()).unwrap();
    let manifest = halo_core::manifest::Manifest::read(&manifest_dir).unwrap();
    assert_eq!(manifest.format_version, graph::LABEL_BIAS_FORMAT);
    assert!(manifest.files.label_bias.is_some());
    let fig = check(&ckpt);
    assert!(fig.label_bias_rows > 0, "the label bias was compared");
}

fn random_weights_check(seen_codes: bool) {
    let tmp = tempfile::tempdir().unwrap();
    check(&random_checkpoint(tmp.path(), seen_codes, false));
}

/// A checkpoint of random weights in `dir` (90 codes, 2 labels, n_embd 32, 2 layers, context 12).
fn random_checkpoint(dir: &Path, seen_codes: bool, label_bias: bool) -> std::path::PathBuf {
    let codes: Vec<String> = (0..90).map(|i| format!("C{i}")).collect();
    let enc = Encoding::plain(codes, vec!["L0".into(), "L1".into()], 10);
    let mut config = ModelConfig::new(halo_core::config::Preset::Small, 90, 2);
    (config.n_embd, config.n_layer, config.n_head, config.n_ctx) = (32, 2, 4, 12);
    config.n_positions = 16;
    config.seen_codes = seen_codes;
    config.label_bias = label_bias;
    let ckpt = dir.join("ckpt");
    halo_export::write_random_checkpoint(&ckpt, &config, &enc, 5, None).unwrap();
    ckpt
}

#[test]
fn trained_weights_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tmp.path().join("ckpt");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/synthea-60.jsonl");
    let run = common::halo_command()
        .args([
            "train",
            "--data",
            data.to_str().unwrap(),
            "--out",
            ckpt.to_str().unwrap(),
        ])
        .args([
            "--device",
            "cpu",
            "--quiet",
            "--epochs",
            "3",
            "--n-embd",
            "32",
            "--n-layer",
            "2",
        ])
        .args(["--n-head", "4", "--n-ctx", "16"])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    check(&ckpt);
}

#[test]
#[ignore = "needs HALO_PARITY_CHECKPOINT=<checkpoint folder>; run with --ignored"]
fn checkpoint_from_the_environment_agrees() {
    let dir = std::env::var("HALO_PARITY_CHECKPOINT").expect("HALO_PARITY_CHECKPOINT is not set");
    // Tests run in the crate folder; a relative path means one from the workspace root.
    check(&Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir));
}
