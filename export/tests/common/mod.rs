//! Shared by the export tests: a tiny model, its encoding, and the Python reference check.
#![allow(dead_code)]

use halo_core::config::{ModelConfig, Preset};
use halo_core::encoding::Encoding;
use std::path::{Path, PathBuf};
use std::process::Command;

/// 12 codes, 3 labels, E 8, 2 layers, 2 heads, n_ctx 6.
pub fn tiny_config(coarse: bool) -> ModelConfig {
    let mut c = ModelConfig::new(Preset::Small, 12, 3);
    c.n_embd = 8;
    c.n_layer = 2;
    c.n_head = 2;
    c.n_ctx = 6;
    c.n_positions = 8;
    c.coarse = coarse;
    c
}

pub fn encoding_for(c: &ModelConfig) -> Encoding {
    let codes = (0..c.code_vocab_size).map(|i| format!("condition/{i}")).collect();
    let labels = (0..c.label_vocab_size).map(|i| format!("label{i}")).collect();
    Encoding::plain(codes, labels, c.n_ctx - 2)
}

/// Writes a tiny random checkpoint into `dir`.
pub fn tiny_checkpoint(dir: &Path, coarse: bool, seed: u64) -> ModelConfig {
    tiny_checkpoint_with(dir, tiny_config(coarse), seed)
}

/// Writes a tiny random checkpoint of config `c` into `dir`.
pub fn tiny_checkpoint_with(dir: &Path, c: ModelConfig, seed: u64) -> ModelConfig {
    halo_export::write_random_checkpoint(dir, &c, &encoding_for(&c), seed, None).unwrap();
    c
}

/// A tiny checkpoint whose weights are large enough for wiring mistakes to show in the outputs:
/// matrices and biases scaled to std 0.1, LayerNorm weights 1 + N(0, 0.2) and biases N(0, 0.2) (each
/// LayerNorm different, unlike a fresh model's).
pub fn tiny_checkpoint_for_reference(dir: &Path, coarse: bool, seed: u64) -> ModelConfig {
    reference_weights(dir, tiny_checkpoint(dir, coarse, seed), seed)
}

/// As [`tiny_checkpoint_for_reference`], for a model that embeds the codes seen so far.
pub fn tiny_seen_codes_checkpoint_for_reference(dir: &Path, seed: u64) -> ModelConfig {
    let mut c = tiny_config(false);
    c.seen_codes = true;
    reference_weights(dir, tiny_checkpoint_with(dir, c, seed), seed)
}

/// Rescales the weights of the checkpoint in `dir` as [`tiny_checkpoint_for_reference`] describes.
fn reference_weights(dir: &Path, c: ModelConfig, seed: u64) -> ModelConfig {
    use rand::{Rng, SeedableRng};
    let ck = halo_export::read_checkpoint(dir).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, t) in &ck.tensors {
        let data: Vec<f32> = if name.contains(".ln_") {
            let base = if name.ends_with(".weight") { 1.0 } else { 0.0 };
            t.data.iter().map(|_| base + rng.random_range(-0.35f32..0.35)).collect()
        } else {
            t.data.iter().map(|v| v * 5.0).collect()
        };
        let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        tensors.push((name.clone(), t.shape.clone(), bytes));
    }
    let views = tensors.iter().map(|(n, shape, bytes)| {
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes).unwrap();
        (n.clone(), view)
    });
    let bytes = safetensors::serialize(views, None).unwrap();
    std::fs::write(dir.join(halo_core::manifest::checkpoint::WEIGHTS), bytes).unwrap();
    c
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Runs tests/python/halo_reference.py on a checkpoint and its export; panics with its output on failure.
pub fn reference_check(checkpoint: &Path, model: &Path, extra: &[&str]) -> String {
    let python = workspace_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} not found: run scripts/setup.sh to create the Python environment (onnxruntime, onnx, numpy)",
        python.display()
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/halo_reference.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(checkpoint)
        .arg(model)
        .args(extra)
        .output()
        .expect("run python");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "reference check failed:\n{text}");
    text
}

/// Names in a folder, sorted.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}
