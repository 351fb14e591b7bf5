//! A loaded model directory: the manifest, checked ONNX files and the two ONNX Runtime sessions the
//! sampler runs (one visit-transformer step with a key/value cache, and the code head).

use crate::error::{Error, Result};
use crate::runtime::{self, Placement, Runtime, SessionOptions};
use halo_core::config::ModelConfig;
use halo_core::manifest::{graph, Manifest, OnnxFile, MANIFEST};
use ort::session::Session;
use ort::value::{TensorElementType, TensorRef, ValueType};
use sha2::Digest;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Hex sha256 of a file, read in chunks.
pub fn file_sha256(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Checks that each ONNX file named by the manifest exists and has the manifest's sha256.
pub fn check_files(dir: &Path, manifest: &Manifest) -> Result<()> {
    let files = &manifest.files;
    for (field, file) in [
        ("files.visit_transformer", &files.visit_transformer),
        ("files.visit_transformer_step", &files.visit_transformer_step),
        ("files.code_head", &files.code_head),
    ] {
        check_file(dir, field, file)?;
    }
    Ok(())
}

fn check_file(dir: &Path, field: &str, file: &OnnxFile) -> Result<()> {
    check_one(dir, field, &file.name, &file.sha256)?;
    if let Some(data) = &file.external_data {
        check_one(dir, &format!("{field}.external_data"), &data.name, &data.sha256)?;
    }
    Ok(())
}

fn check_one(dir: &Path, field: &str, name: &str, sha256: &str) -> Result<()> {
    let path = dir.join(name);
    if !path.is_file() {
        return Err(Error::model(
            &path,
            format!(
                "missing (named by {} `{field}`); the model directory is incomplete, export it again with `halo export`",
                MANIFEST
            ),
        ));
    }
    let actual = file_sha256(&path)?;
    if !actual.eq_ignore_ascii_case(sha256) {
        return Err(Error::model(
            &path,
            format!(
                "sha256 {actual} does not match {MANIFEST} `{field}.sha256` {}: the file was changed or \
                 truncated after export (copy the model directory again, or re-export it)",
                sha256
            ),
        ));
    }
    Ok(())
}

/// Reads a model directory's manifest, saying clearly when the folder is not a model directory.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    if dir.is_dir() && !dir.join(MANIFEST).exists() {
        return Err(Error::model(
            dir,
            format!("not a model directory: it has no {MANIFEST} (expected a folder written by `halo export`)"),
        ));
    }
    Ok(Manifest::read(dir)?)
}

/// A model directory loaded for sampling.
pub struct Model {
    pub dir: PathBuf,
    pub manifest: Manifest,
    step: Session,
    head: Session,
    step_path: PathBuf,
    head_path: PathBuf,
    /// Where the sessions run.
    pub placement: Placement,
    /// Why CUDA was not used with `--device auto`.
    pub note: Option<String>,
}

/// One input or output a graph must have: name and expected dims (`None` = dynamic).
struct Expect {
    name: &'static str,
    dims: Vec<Option<usize>>,
}

fn check_outlets(path: &Path, what: &str, outlets: &[ort::value::Outlet], expected: &[Expect]) -> Result<()> {
    for exp in expected {
        let Some(outlet) = outlets.iter().find(|o| o.name() == exp.name) else {
            let names: Vec<&str> = outlets.iter().map(|o| o.name()).collect();
            return Err(Error::model(
                path,
                format!(
                    "has no {what} `{}` (its {what}s are {names:?}); not a HALO graph of this version",
                    exp.name
                ),
            ));
        };
        let (ty, shape) = match outlet.dtype() {
            ValueType::Tensor { ty, shape, .. } => (*ty, shape),
            other => {
                return Err(Error::model(
                    path,
                    format!("{what} `{}` is {other:?}, expected a tensor", exp.name),
                ))
            }
        };
        if ty != TensorElementType::Float32 {
            return Err(Error::model(
                path,
                format!("{what} `{}` is {ty:?}, expected float32", exp.name),
            ));
        }
        let dims: Vec<i64> = shape.iter().copied().collect();
        let fits = dims.len() == exp.dims.len()
            && dims.iter().zip(&exp.dims).all(|(d, e)| match e {
                Some(e) => *d < 0 || *d as usize == *e,
                None => true,
            });
        if !fits {
            let want: Vec<String> = exp
                .dims
                .iter()
                .map(|d| d.map(|d| d.to_string()).unwrap_or_else(|| "?".into()))
                .collect();
            return Err(Error::model(
                path,
                format!(
                    "{what} `{}` has shape {dims:?}, but the manifest's model config needs [{}]",
                    exp.name,
                    want.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

impl Model {
    /// Reads `manifest.json`, checks every ONNX file's sha256, creates the step and code-head sessions
    /// and checks their inputs and outputs against the manifest's model config.
    pub fn load(dir: &Path, rt: &Runtime, options: &SessionOptions) -> Result<Model> {
        let manifest = read_manifest(dir)?;
        check_files(dir, &manifest)?;
        let c = manifest.model.clone();
        let (e, v) = (c.n_embd, c.total_vocab_size);
        let (l, h, hd) = (c.n_layer, c.n_head, c.head_dim());

        let step_path = dir.join(&manifest.files.visit_transformer_step.name);
        let (step, placement, note) = runtime::create_session(rt, &step_path, options)?;
        check_outlets(
            &step_path,
            "input",
            step.inputs(),
            &[
                Expect {
                    name: graph::IN_VISIT,
                    dims: vec![None, Some(v)],
                },
                Expect {
                    name: graph::IN_PAST,
                    dims: vec![Some(l), Some(2), None, Some(h), None, Some(hd)],
                },
            ],
        )?;
        check_outlets(
            &step_path,
            "output",
            step.outputs(),
            &[
                Expect {
                    name: graph::OUT_HISTORY,
                    dims: vec![None, Some(e)],
                },
                Expect {
                    name: graph::OUT_PRESENT,
                    dims: vec![Some(l), Some(2), None, Some(h), None, Some(hd)],
                },
            ],
        )?;

        let head_path = dir.join(&manifest.files.code_head.name);
        // The code head goes where the step went (with --device auto both fall back together).
        let head_options = SessionOptions {
            device: match placement {
                Placement::Cpu => runtime::Device::Cpu,
                Placement::Cuda => runtime::Device::Cuda,
            },
            threads: options.threads,
        };
        let (head, _, _) = runtime::create_session(rt, &head_path, &head_options)?;
        check_outlets(
            &head_path,
            "input",
            head.inputs(),
            &[
                Expect {
                    name: graph::IN_HISTORY,
                    dims: vec![None, Some(e)],
                },
                Expect {
                    name: graph::IN_VISIT,
                    dims: vec![None, Some(v)],
                },
            ],
        )?;
        check_outlets(
            &head_path,
            "output",
            head.outputs(),
            &[Expect {
                name: graph::OUT_LOGITS,
                dims: vec![None, Some(v)],
            }],
        )?;
        Ok(Model {
            dir: dir.to_path_buf(),
            manifest,
            step,
            head,
            step_path,
            head_path,
            placement,
            note,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.manifest.model
    }

    /// One visit-transformer step: `visits` [n, V] at position `past_len`, `past` [L, 2, n, H, past_len, hd].
    /// Writes `history` [n, E] and `present` [L, 2, n, H, past_len + 1, hd].
    pub fn step(
        &mut self,
        visits: &[f32],
        past: &[f32],
        n: usize,
        past_len: usize,
        history: &mut Vec<f32>,
        present: &mut Vec<f32>,
    ) -> Result<()> {
        let c = &self.manifest.model;
        let (l, h, hd, v, e) = (c.n_layer, c.n_head, c.head_dim(), c.total_vocab_size, c.n_embd);
        let path = &self.step_path;
        let rt_err = |e: ort::Error| Error::Runtime(format!("running {} failed: {e}", path.display()));
        let visit_t = TensorRef::from_array_view(([n, v], visits)).map_err(rt_err)?;
        let past_t = TensorRef::from_array_view(([l, 2, n, h, past_len, hd], past)).map_err(rt_err)?;
        let outputs = self
            .step
            .run(ort::inputs![graph::IN_VISIT => visit_t, graph::IN_PAST => past_t])
            .map_err(rt_err)?;
        let (shape, hist) = outputs[graph::OUT_HISTORY]
            .try_extract_tensor::<f32>()
            .map_err(rt_err)?;
        if shape.iter().copied().collect::<Vec<i64>>() != [n as i64, e as i64] {
            return Err(Error::Runtime(format!(
                "{}: output `history` has shape {shape:?}, expected [{n}, {e}]",
                path.display()
            )));
        }
        history.clear();
        history.extend_from_slice(hist);
        let (shape, pres) = outputs[graph::OUT_PRESENT]
            .try_extract_tensor::<f32>()
            .map_err(rt_err)?;
        let want = [l, 2, n, h, past_len + 1, hd].map(|d| d as i64);
        if shape.iter().copied().collect::<Vec<i64>>() != want {
            return Err(Error::Runtime(format!(
                "{}: output `present` has shape {shape:?}, expected {want:?}",
                path.display()
            )));
        }
        present.clear();
        present.extend_from_slice(pres);
        Ok(())
    }

    /// The code head: `history` [n, E] and `visits` [n, V] -> `logits` [n, V].
    pub fn head(&mut self, history: &[f32], visits: &[f32], n: usize, logits: &mut Vec<f32>) -> Result<()> {
        let c = &self.manifest.model;
        let (v, e) = (c.total_vocab_size, c.n_embd);
        let path = &self.head_path;
        let rt_err = |e: ort::Error| Error::Runtime(format!("running {} failed: {e}", path.display()));
        let hist_t = TensorRef::from_array_view(([n, e], history)).map_err(rt_err)?;
        let visit_t = TensorRef::from_array_view(([n, v], visits)).map_err(rt_err)?;
        let outputs = self
            .head
            .run(ort::inputs![graph::IN_HISTORY => hist_t, graph::IN_VISIT => visit_t])
            .map_err(rt_err)?;
        let (shape, out) = outputs[graph::OUT_LOGITS].try_extract_tensor::<f32>().map_err(rt_err)?;
        if shape.iter().copied().collect::<Vec<i64>>() != [n as i64, v as i64] {
            return Err(Error::Runtime(format!(
                "{}: output `logits` has shape {shape:?}, expected [{n}, {v}]",
                path.display()
            )));
        }
        logits.clear();
        logits.extend_from_slice(out);
        Ok(())
    }
}
