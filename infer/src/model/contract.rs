//! What loading expects of a model directory's graphs: their inputs and outputs, and the files a load reads.

use super::Graph;
use crate::error::{Error, Result};
use crate::model_dir::read_graph;
use crate::runtime::{self, Placement, Runtime, SessionOptions};
use halo_core::config::ModelConfig;
use halo_core::manifest::{graph, Manifest, OnnxFile};
use ort::value::{TensorElementType, ValueType};
use std::path::Path;

/// One float32 input or output a graph must have: name and expected dims (`None` = dynamic).
pub(super) struct Expect {
    name: String,
    dims: Vec<Option<usize>>,
}

impl Expect {
    pub(super) fn f32(name: impl Into<String>, dims: Vec<Option<usize>>) -> Expect {
        Expect {
            name: name.into(),
            dims,
        }
    }
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

/// The files a load reads: the step graph, the dense code module and/or the incremental one, with any
/// external weights.
pub(super) fn loaded_files(manifest: &Manifest, dense: bool, incremental: bool) -> Vec<&str> {
    let files = &manifest.files;
    let mut graphs: Vec<&OnnxFile> = vec![&files.visit_transformer_step];
    if dense {
        graphs.push(&files.code_head);
    }
    let mut loaded: Vec<&str> = Vec::new();
    if let Some(m) = files.code_module.as_ref().filter(|_| incremental) {
        loaded.push(&m.name);
    }
    if let Some(m) = &files.visit_embeddings {
        loaded.push(&m.name);
    }
    if let Some(m) = &files.label_bias {
        loaded.push(&m.name);
    }
    if let Some(inc) = files.code_head_incremental.as_ref().filter(|_| incremental) {
        graphs.push(&inc.start);
        graphs.extend(&inc.blocks);
        loaded.push(&inc.columns.name);
    }
    for g in graphs {
        loaded.push(&g.name);
        loaded.extend(g.external_data.as_ref().map(|d| d.name.as_str()));
    }
    loaded
}

/// The step graph's inputs and outputs for a model of config `c` with the cache tensors `cache`: the visit's
/// embedding (`embedded`, format 8) or its codes (and the codes seen) as multi-hot rows before.
pub(super) fn step_io(
    c: &ModelConfig,
    cache: &[crate::kv_cache::CacheTensor],
    embedded: bool,
) -> (Vec<Expect>, Vec<Expect>) {
    let (e, v) = (c.n_embd, c.total_vocab_size);
    let mut inputs = match embedded {
        true => vec![Expect::f32(graph::IN_EMBEDDED, vec![None, Some(e)])],
        false => vec![Expect::f32(graph::IN_VISIT, vec![None, Some(v)])],
    };
    let mut outputs = vec![Expect::f32(graph::OUT_HISTORY, vec![None, Some(e)])];
    for t in cache {
        inputs.push(Expect::f32(t.input.clone(), t.declared()));
        outputs.push(Expect::f32(t.output.clone(), t.declared()));
    }
    if c.seen_codes && !embedded {
        inputs.push(Expect::f32(graph::IN_SEEN, vec![None, Some(v)]));
    }
    (inputs, outputs)
}

/// Creates a session from the checked bytes of the manifest's `file` (`field` names it in messages) and
/// checks its inputs and outputs.
pub(super) fn open_graph(
    rt: &Runtime,
    (dir, field, file): (&Path, &str, &OnnxFile),
    options: &SessionOptions,
    inputs: &[Expect],
    outputs: &[Expect],
) -> Result<(Graph, Placement, Option<String>)> {
    let graph = read_graph(dir, field, file)?;
    let (session, placement, note) = runtime::create_session(rt, &graph, options)?;
    drop(graph);
    let path = dir.join(&file.name);
    check_outlets(&path, "input", session.inputs(), inputs)?;
    check_outlets(&path, "output", session.outputs(), outputs)?;
    Ok((Graph { session, path }, placement, note))
}
