//! halo-export: turns a HALO checkpoint folder (written by `halo train`) into a model directory that the
//! ONNX Runtime sampler reads, without libtorch.
//!
//! A model directory holds ONNX graphs and a weights file (names and inputs/outputs in
//! [`halo_core::manifest::graph`]) and `manifest.json` ([`Manifest`]):
//! - `visit_transformer.onnx`: visits [batch, visits, V] -> history [batch, visits, E];
//! - `visit_transformer_step.onnx`: one visit plus a key/value cache -> history [batch, E] and the cache;
//! - `code_head.onnx`: history [batch, E] and the visit so far -> code logits [batch, V];
//! - `code_module.f32`: the same module as arrays for the sampler's own incremental kernel
//!   ([`code_module`]; not for HALO-Coarse models). Format 2 to 4 directories held ONNX block graphs
//!   instead, which samplers still read.
//!
//! Modules: [`onnx`] (protobuf messages), [`builder`] (graph builder), one module per graph,
//! [`checkpoint`] (reading a checkpoint and writing a random one).

pub mod blocks;
pub mod builder;
pub mod checkpoint;
pub mod code_head;
pub mod code_module;
mod error;
pub mod onnx;
mod random;
pub mod signing;
pub mod visit_embeddings;
pub mod visit_step;
pub mod visit_transformer;

pub use builder::{IR_VERSION, OPSET};
pub use checkpoint::{read_checkpoint, Checkpoint, Tensor};
pub use error::{ExportError, Result};
pub use random::write_random_checkpoint;

use halo_core::fsutil;
use halo_core::manifest::{
    graph, sha256_hex, written_format, DataFile, Manifest, ManifestFiles, OnnxFile, TrainingSummary, MANIFEST,
};
use std::path::Path;

pub use halo_core::manifest::Precision;

/// Weights of one graph above this many bytes go to a `<graph>.onnx.data` file (protobuf's limit is 2 GiB).
pub const DEFAULT_EXTERNAL_DATA_THRESHOLD: u64 = 1_800_000_000;

#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub precision: Precision,
    /// Replace `out` when it is a previous model directory.
    pub overwrite: bool,
    /// Initializer bytes of a graph above which its weights are written as external data.
    pub external_data_threshold: u64,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            precision: Precision::Fp32,
            overwrite: false,
            external_data_threshold: DEFAULT_EXTERNAL_DATA_THRESHOLD,
        }
    }
}

/// The last part of the temporary folder an export writes before renaming it (`.<name>.<pid>.export.tmp`).
const EXPORT_TEMP: &str = "export.tmp";

/// Exports the checkpoint folder `checkpoint` to the model directory `out` and returns its manifest
/// (`verify` unset). The directory is written beside `out` under a temporary name and renamed into
/// place at the end; nothing is left behind on error. The same checkpoint and options give
/// byte-identical files.
pub fn export(checkpoint: &Path, out: &Path, opts: &ExportOptions) -> Result<Manifest> {
    export_with(checkpoint, out, opts, &mut |_, _| Ok(()))
}

/// Work done on a complete model directory before it is moved into place: given the temporary folder and
/// its manifest (e.g. filling in the verify digest, then signing). An error leaves nothing behind.
pub type FinishStep<'a> =
    dyn FnMut(&Path, &mut Manifest) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> + 'a;

/// As [`export`], running `finish` on the temporary folder before it becomes `out`: `out` appears only
/// when everything, `finish` included, succeeded.
pub fn export_with(checkpoint: &Path, out: &Path, opts: &ExportOptions, finish: &mut FinishStep) -> Result<Manifest> {
    let ck = read_checkpoint(checkpoint)?;
    check_output(out, opts)?;
    if out.file_name().is_none() {
        return Err(ExportError::Output {
            path: out.to_path_buf(),
            message: "output path has no folder name".into(),
        });
    }
    let folder = out.parent().unwrap_or(Path::new("."));
    let swept =
        halo_core::fsutil::sweep_stale_temps(out) + halo_core::fsutil::sweep_stale_temps_in(folder, EXPORT_TEMP);
    if swept > 0 {
        eprintln!("halo export: removed {swept} temporary folder(s) of an earlier export that was killed");
    }
    let tmp = halo_core::fsutil::temp_sibling_named(out, EXPORT_TEMP);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| ExportError::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| ExportError::io(&tmp, e))?;
    let written = write_model_dir(&ck, &tmp, opts).and_then(|mut m| {
        finish(&tmp, &mut m).map_err(ExportError::Finish)?;
        halo_core::fsutil::replace_dir(&tmp, out)?;
        Ok(m)
    });
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    written
}

/// Writes (atomically) a model directory's `manifest.json`, e.g. after filling in `verify`.
pub fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<()> {
    Ok(fsutil::write_json_atomic(&dir.join(MANIFEST), manifest)?)
}

type BuildGraph = fn(&Checkpoint, Precision) -> builder::GraphBuilder;

/// The three graphs, by file name; built one at a time to keep memory down.
const GRAPHS: [(&str, BuildGraph); 3] = [
    (graph::VISIT_TRANSFORMER, visit_transformer::build),
    (graph::VISIT_TRANSFORMER_STEP, visit_step::build),
    (graph::CODE_HEAD, code_head::build),
];

fn write_model_dir(ck: &Checkpoint, dir: &Path, opts: &ExportOptions) -> Result<Manifest> {
    let c = &ck.config;
    let doc = format!(
        "HALO ({}): n_embd {}, n_layer {}, n_head {}, n_ctx {}, vocabulary {} ({} codes, {} labels), {} weights",
        if c.coarse { "coarse" } else { "fine" },
        c.n_embd,
        c.n_layer,
        c.n_head,
        c.n_ctx,
        c.total_vocab_size,
        c.code_vocab_size,
        c.label_vocab_size,
        opts.precision.as_str()
    );
    let mut files = Vec::new();
    for (name, build) in GRAPHS {
        files.push(write_graph(dir, name, build(ck, opts.precision), &doc, opts)?);
    }
    let [visit_transformer, visit_transformer_step, code_head] =
        <[OnnxFile; 3]>::try_from(files).expect("three graphs");
    let code_module = match c.coarse {
        true => None,
        false => Some(write_data_file(
            dir,
            graph::CODE_MODULE,
            &code_module::bytes(ck, opts.precision),
        )?),
    };
    let visit_embeddings = Some(write_data_file(
        dir,
        graph::VISIT_EMBEDDINGS,
        &visit_embeddings::bytes(ck, opts.precision),
    )?);
    let label_bias = c
        .label_bias
        .then(|| write_data_file(dir, graph::LABEL_BIAS, &label_bias_bytes(ck)))
        .transpose()?;
    let manifest = Manifest {
        format_version: written_format(c, &ck.encoding),
        model: ck.config.clone(),
        encoding: ck.encoding.clone(),
        files: ManifestFiles {
            visit_transformer,
            visit_transformer_step,
            code_head,
            code_head_incremental: None,
            code_module,
            visit_embeddings,
            label_bias,
        },
        ir_version: IR_VERSION,
        opset: OPSET,
        precision: opts.precision,
        // Aggregate counts only: the data's path stays on the training machine.
        training: TrainingSummary {
            source: String::new(),
            ..ck.training.clone()
        },
        calibration: None,
        verify: None,
        privacy: ck.privacy.clone(),
    };
    write_manifest(dir, &manifest)?;
    Ok(manifest)
}

/// [`graph::LABEL_BIAS`]: `ehr_head.label_bias.weight` [V, L] transposed, each label's V biases in a row.
fn label_bias_bytes(ck: &Checkpoint) -> Vec<u8> {
    let t = ck.tensor("ehr_head.label_bias.weight");
    let (v, l) = (t.shape[0], t.shape[1]);
    (0..l)
        .flat_map(|d| (0..v).map(move |j| t.data[j * l + d]))
        .flat_map(f32::to_le_bytes)
        .collect()
}

/// Writes one of the sampler's arrays into `dir` and returns its manifest entry.
fn write_data_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<DataFile> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).map_err(|e| ExportError::io(&path, e))?;
    Ok(DataFile {
        name: name.to_string(),
        sha256: sha256_hex(bytes),
    })
}

/// Serialises one graph into `dir` (with its external data file when large) and returns its manifest entry.
fn write_graph(dir: &Path, name: &str, g: builder::GraphBuilder, doc: &str, opts: &ExportOptions) -> Result<OnnxFile> {
    let data_name = format!("{name}.data");
    let s = g.finish(doc, opts.external_data_threshold, &data_name);
    let external_data = match &s.external_data {
        Some(data) => {
            let path = dir.join(&data_name);
            std::fs::write(&path, data).map_err(|e| ExportError::io(&path, e))?;
            Some(DataFile {
                name: data_name.clone(),
                sha256: sha256_hex(data),
            })
        }
        None => None,
    };
    let path = dir.join(name);
    std::fs::write(&path, &s.model).map_err(|e| ExportError::io(&path, e))?;
    Ok(OnnxFile {
        name: name.to_string(),
        sha256: sha256_hex(&s.model),
        external_data,
    })
}

/// `out` may be absent, an empty folder, or (with `overwrite`) a previous model directory.
fn check_output(out: &Path, opts: &ExportOptions) -> Result<()> {
    let fail = |message: String| {
        Err(ExportError::Output {
            path: out.to_path_buf(),
            message,
        })
    };
    if !out.exists() {
        return Ok(());
    }
    if !out.is_dir() {
        return fail("exists and is not a folder; choose another output path".into());
    }
    if !halo_core::fsutil::is_nonempty_dir(out) {
        return Ok(());
    }
    if !out.join(MANIFEST).is_file() {
        return fail(
            "exists and is not empty, and is not a model directory (no manifest.json); \
             choose another output path"
                .into(),
        );
    }
    if !opts.overwrite {
        return fail("holds a previous model; pass --overwrite to replace it".into());
    }
    Ok(())
}
