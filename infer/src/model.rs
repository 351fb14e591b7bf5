//! A loaded model directory: the manifest, checked ONNX files and the two ONNX Runtime sessions the
//! sampler runs (one visit-transformer step with a key/value cache, and the code head).

use crate::error::{Error, Result};
pub use crate::kv_cache::{CachePart, KvCache};
mod contract;
mod embeddings;
pub use crate::model_dir::{check_files, check_only_named_files, file_sha256, model_file_names, read_manifest};
use crate::model_dir::{check_files_except, read_columns, read_values};
use crate::runtime::{self, Placement, Runtime, SessionOptions};
use contract::{loaded_files, open_graph, step_io, Expect};
use embeddings::VisitEmbeddings;
pub use embeddings::{Seen, SeenCodes};
use halo_core::config::ModelConfig;
use halo_core::manifest::{graph, IncrementalHeadFiles, Manifest};
use ort::session::Session;
use ort::value::TensorRef;
use std::path::{Path, PathBuf};

/// How the sampler runs the code-level module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CodeModule {
    /// Incremental when the model directory has it (format version 2 and later), otherwise dense.
    #[default]
    Auto,
    /// The full `code_head.onnx`: all V logits from the history and the visit, once per drawn code.
    Dense,
    /// Only the logits the walk reads: the sampler's own kernel on `code_module.f32` (format version 5), or
    /// `code_head_start.onnx` + `code_head_block.onnx` + column updates (versions 2 to 4).
    Incremental,
    /// Incremental, and every block of logits is also computed densely and compared (for tests; slow).
    Compared,
}

/// An ONNX Runtime session and the file it came from (for messages).
struct Graph {
    session: Session,
    path: PathBuf,
}

impl Graph {
    fn runtime_error(&self, e: ort::Error) -> Error {
        run_error(&self.path, e)
    }
}

fn run_error(path: &Path, e: ort::Error) -> Error {
    Error::Runtime(format!("running {} failed: {e}", path.display()))
}

/// Checks an output's shape and copies it into `out`.
fn take_output(
    path: &Path,
    outputs: &ort::session::SessionOutputs,
    name: &str,
    want: &[usize],
    out: &mut Vec<f32>,
) -> Result<()> {
    let (shape, data) = outputs[name]
        .try_extract_tensor::<f32>()
        .map_err(|e| run_error(path, e))?;
    if shape.iter().copied().ne(want.iter().map(|d| *d as i64)) {
        return Err(Error::Runtime(format!(
            "{}: output `{name}` has shape {shape:?}, expected {want:?}",
            path.display()
        )));
    }
    out.clear();
    out.extend_from_slice(data);
    Ok(())
}

/// Rows of `width` values, 1 at each row's codes and 0 elsewhere.
fn multi_hot(out: &mut Vec<f32>, width: usize, rows: impl ExactSizeIterator<Item = impl Iterator<Item = usize>>) {
    out.clear();
    out.resize(rows.len() * width, 0.0);
    for (row, codes) in out.chunks_exact_mut(width).zip(rows) {
        for c in codes {
            row[c] = 1.0;
        }
    }
}

/// The incremental code module: the visit-start session, one session per block of codes, and the auto1
/// visit columns.
struct Incremental {
    start: Graph,
    blocks: Vec<Graph>,
    block_len: usize,
    columns: Vec<f32>,
}

/// The error for a directory without an incremental code module asked to run one.
fn no_incremental(dir: &Path, manifest: &Manifest) -> Error {
    Error::model(
        dir,
        format!(
            "has no incremental code module (format version {}{}); only the dense path can run it",
            manifest.format_version,
            if manifest.model.coarse { ", HALO-Coarse" } else { "" }
        ),
    )
}

impl Incremental {
    /// Format 2 to 4's start and block graphs and the visit columns (`(e, v, hidden)`: n_embd, the vocabulary
    /// and auto1's used hidden units).
    fn load(
        rt: &Runtime,
        dir: &Path,
        files: &IncrementalHeadFiles,
        options: &SessionOptions,
        (e, v, hidden): (usize, usize, usize),
    ) -> Result<Incremental> {
        let (start, _, _) = open_graph(
            rt,
            (dir, "files.code_head_incremental.start", &files.start),
            options,
            &[Expect::f32(graph::IN_HISTORY, vec![None, Some(e)])],
            &[Expect::f32(graph::OUT_PRE, vec![None, Some(hidden)])],
        )?;
        let mut blocks = Vec::with_capacity(files.blocks.len());
        for (b, file) in files.blocks.iter().enumerate() {
            let codes = files.block_codes(b, v);
            let field = format!("files.code_head_incremental.blocks[{b}]");
            let (g, _, _) = open_graph(
                rt,
                (dir, &field, file),
                options,
                &[Expect::f32(graph::IN_PRE, vec![None, Some(e + codes.end - 1)])],
                &[Expect::f32(graph::OUT_LOGITS, vec![None, Some(codes.len())])],
            )?;
            blocks.push(g);
        }
        Ok(Incremental {
            start,
            blocks,
            block_len: files.block_len,
            columns: read_columns(dir, &files.columns, v)?,
        })
    }
}

/// Bytes of the ONNX graphs a model loaded (what the loading's memory is compared with).
fn graph_bytes(step: &Graph, dense: Option<&Graph>, incremental: Option<&Incremental>) -> u64 {
    [Some(step), dense]
        .into_iter()
        .flatten()
        .chain(
            incremental
                .iter()
                .flat_map(|i| std::iter::once(&i.start).chain(&i.blocks)),
        )
        .map(|g| std::fs::metadata(&g.path).map_or(0, |m| m.len()))
        .sum()
}

/// The native code module of `code_module.f32` and the threads it samples rows on.
fn read_native(
    dir: &Path,
    file: &halo_core::manifest::DataFile,
    c: &ModelConfig,
    options: &SessionOptions,
) -> Result<(crate::native::NativeHead, usize)> {
    let layout = halo_core::manifest::NativeCodeModule::of(c);
    let values = read_values(dir, file, "files.code_module", layout.values(), "the code module's")?;
    let threads = options.threads.unwrap_or_else(runtime::default_threads);
    Ok((crate::native::NativeHead::from_values(layout, values)?, threads))
}

/// A model directory loaded for sampling.
pub struct Model {
    pub dir: PathBuf,
    pub manifest: Manifest,
    step: Graph,
    /// The step graph's cache tensors (names and axes), as its format has them.
    cache: Vec<crate::kv_cache::CacheTensor>,
    /// The dense code head (loaded for [`CodeModule::Dense`], [`CodeModule::Compared`], and for models
    /// without the incremental files).
    dense: Option<Graph>,
    incremental: Option<Incremental>,
    /// The native code module (format version 5) and the threads it samples rows on.
    native: Option<(crate::native::NativeHead, usize)>,
    /// The step graph's input embeddings (format version 8), which the sampler sums, and the last sums.
    embeddings: Option<VisitEmbeddings>,
    embedded: Vec<f32>,
    /// The label bias (format 9, [`graph::LABEL_BIAS`]): each label code's V biases, by label-local index.
    label_bias: Option<Vec<f32>>,
    /// A format 7 step's multi-hot inputs (visit, seen codes).
    multi_hot: [Vec<f32>; 2],
    /// Where the sessions run.
    pub placement: Placement,
    /// Why CUDA was not used with `--device auto`.
    pub note: Option<String>,
}

impl Model {
    /// Reads `manifest.json`, checks every file's sha256, creates the sessions the sampler runs and
    /// checks their inputs and outputs against the manifest's model config. Runs the code module
    /// incrementally when the directory has it.
    pub fn load(dir: &Path, rt: &Runtime, options: &SessionOptions) -> Result<Model> {
        Model::load_with(dir, rt, options, CodeModule::Auto)
    }

    /// [`Model::load`] on the CPU with the default threads, ONNX Runtime found as `halo-sample` finds it
    /// (`ORT_DYLIB_PATH`, next to the executable, or the project's `.venv`): how `halo export` samples the
    /// model it just wrote (calibration, verify digest).
    pub fn load_on_cpu(dir: &Path) -> Result<Model> {
        let options = SessionOptions {
            device: crate::runtime::Device::Cpu,
            threads: None,
        };
        Model::load(dir, crate::runtime::init(None)?, &options)
    }

    /// `workers` copies of the model (each with `options`' threads) to sample side by side with
    /// [`crate::generate_on`]; one when the first went to CUDA, where copies would only share the device.
    pub fn load_workers(
        dir: &Path,
        rt: &Runtime,
        options: &SessionOptions,
        code_module: CodeModule,
        workers: usize,
    ) -> Result<Vec<Model>> {
        let first = Model::load_with(dir, rt, options, code_module)?;
        let workers = if first.placement == Placement::Cpu {
            workers.max(1)
        } else {
            1
        };
        let mut models = vec![first];
        let cpu = SessionOptions {
            device: crate::runtime::Device::Cpu,
            ..options.clone()
        };
        for _ in 1..workers {
            models.push(Model::load_with(dir, rt, &cpu, code_module)?);
        }
        Ok(models)
    }

    /// As [`Model::load`], with the code module path chosen.
    pub fn load_with(dir: &Path, rt: &Runtime, options: &SessionOptions, code_module: CodeModule) -> Result<Model> {
        let loading = crate::heap::begin_loading();
        let manifest = read_manifest(dir)?;
        let c = manifest.model.clone();
        let (e, v, hidden) = (c.n_embd, c.total_vocab_size, c.head_hidden_used());
        let inc_files = manifest.files.code_head_incremental.clone();
        let native_file = manifest.files.code_module.clone();
        let has_incremental = inc_files.is_some() || native_file.is_some();
        if !has_incremental && matches!(code_module, CodeModule::Incremental | CodeModule::Compared) {
            return Err(no_incremental(dir, &manifest));
        }
        let use_incremental = has_incremental && code_module != CodeModule::Dense;
        let use_dense = !use_incremental || code_module == CodeModule::Compared;
        // The files this path loads are checked on the bytes loaded (below); the others now.
        check_files_except(dir, &manifest, &loaded_files(&manifest, use_dense, use_incremental))?;

        let cache = crate::kv_cache::cache_tensors(&manifest);
        let embeddings_file = (manifest.format_version >= graph::EMBEDDED_STEP_FORMAT)
            .then_some(manifest.files.visit_embeddings.as_ref())
            .flatten();
        let (step_inputs, step_outputs) = step_io(&c, &cache, embeddings_file.is_some());
        let (step, placement, note) = open_graph(
            rt,
            (
                dir,
                "files.visit_transformer_step",
                &manifest.files.visit_transformer_step,
            ),
            options,
            &step_inputs,
            &step_outputs,
        )?;
        // Read once the step graph has said whether the manifest's config fits it.
        let embeddings = embeddings_file
            .map(|file| VisitEmbeddings::read(dir, file, e, v, c.seen_codes))
            .transpose()?;
        // The code module goes where the step went (with --device auto both fall back together).
        let head_options = SessionOptions {
            device: match placement {
                Placement::Cpu => runtime::Device::Cpu,
                Placement::Cuda => runtime::Device::Cuda,
            },
            threads: options.threads,
        };
        let dense = if use_dense {
            let (g, _, _) = open_graph(
                rt,
                (dir, "files.code_head", &manifest.files.code_head),
                &head_options,
                &[
                    Expect::f32(graph::IN_HISTORY, vec![None, Some(e)]),
                    Expect::f32(graph::IN_VISIT, vec![None, Some(v)]),
                ],
                &[Expect::f32(graph::OUT_LOGITS, vec![None, Some(v)])],
            )?;
            Some(g)
        } else {
            None
        };
        let incremental = inc_files
            .filter(|_| use_incremental)
            .map(|files| Incremental::load(rt, dir, &files, &head_options, (e, v, hidden)))
            .transpose()?;
        let native = native_file
            .filter(|_| use_incremental)
            .map(|file| read_native(dir, &file, &c, options))
            .transpose()?;
        let label_bias = manifest
            .files
            .label_bias
            .as_ref()
            .map(|file| {
                read_values(
                    dir,
                    file,
                    "files.label_bias",
                    c.label_vocab_size * v,
                    "the label bias's",
                )
            })
            .transpose()?;
        loading.finish(graph_bytes(&step, dense.as_ref(), incremental.as_ref()));
        Ok(Model {
            dir: dir.to_path_buf(),
            manifest,
            step,
            cache,
            dense,
            incremental,
            native,
            embeddings,
            embedded: Vec::new(),
            label_bias,
            multi_hot: Default::default(),
            placement,
            note,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.manifest.model
    }

    /// With a label bias, what a record's visits add to their logits: the sum of the rows of its label codes
    /// (`labels`: vocabulary indices, ascending), one per vocabulary entry.
    pub fn record_label_bias(&self, labels: &[u32]) -> Option<Vec<f32>> {
        let table = self.label_bias.as_ref()?;
        let (c, v) = (self.config().code_vocab_size, self.config().total_vocab_size);
        let mut bias = vec![0f32; v];
        for &label in labels {
            let row = &table[(label as usize - c) * v..][..v];
            crate::native::add_to(&mut bias, row);
        }
        Some(bias)
    }

    /// The most rows the sampler runs together: a batch of a small model on the CPU is sampled in tiles of
    /// [`runtime::TILE_ROWS`] rows, one after the other (its memory is a tile's); others whole.
    pub fn tile_rows(&self) -> usize {
        let small = self.manifest.model.n_embd <= runtime::ONE_THREAD_MAX_N_EMBD;
        match self.placement == Placement::Cpu && small {
            true => runtime::TILE_ROWS,
            false => usize::MAX,
        }
    }

    /// Whether the code module runs incrementally (ONNX Runtime blocks or the native kernel).
    pub fn is_incremental(&self) -> bool {
        self.incremental.is_some() || self.native.is_some()
    }

    /// The native code module and its threads, when it runs.
    pub fn native(&self) -> Option<(&crate::native::NativeHead, usize)> {
        self.native.as_ref().map(|(head, threads)| (head, *threads))
    }

    /// Whether every incremental logit is also computed densely and compared ([`CodeModule::Compared`]).
    pub fn compares_dense(&self) -> bool {
        self.is_incremental() && self.dense.is_some()
    }

    /// Format 8 models with seen codes: adds to each row's seen-code embedding `embedded` [n, E] the rows of
    /// its visit's codes (`visits[r]`, ascending) that `seen` (the codes before this visit) does not hold, in
    /// ascending code order; false (nothing done) for other models, whose steps read the codes themselves.
    pub fn add_newly_seen(&self, visits: &[&[u32]], seen: &SeenCodes, embedded: &mut Vec<f32>) -> bool {
        let Some(table) = self.embeddings.as_ref().map(|t| &t.seen).filter(|t| !t.is_empty()) else {
            return false;
        };
        let e = self.manifest.model.n_embd;
        embedded.resize(visits.len() * e, 0.0);
        for (r, (out, codes)) in embedded.chunks_exact_mut(e).zip(visits).enumerate() {
            let new = codes.iter().filter(|&&c| !seen.contains(r, c)).map(|&c| c as usize);
            embeddings::add_table_rows(out, new, table);
        }
        true
    }

    /// An empty key/value cache (length 0), the start of every sequence.
    pub fn empty_cache(&self) -> KvCache {
        crate::kv_cache::empty_cache(&self.cache)
    }

    /// One visit-transformer step: each row's visit (`visits[r]`: its codes, ascending) at position `past_len`
    /// and the cache `past` (of length `past_len`) -> the cache one position longer, kept as ONNX Runtime wrote
    /// it (no copy between steps); writes `history` [n, E]. `seen`: the codes of each record's visits up to and
    /// including this one (read only by models with `seen_codes`).
    pub fn step(
        &mut self,
        visits: &[&[u32]],
        seen: Seen,
        past: &KvCache,
        past_len: usize,
        history: &mut Vec<f32>,
    ) -> Result<KvCache> {
        let c = &self.manifest.model;
        let (n, v, e) = (visits.len(), c.total_vocab_size, c.n_embd);
        let g = &mut self.step;
        let mut inputs = match &self.embeddings {
            Some(embeddings) => {
                embeddings.embed(visits, seen, &mut self.embedded);
                let embedded =
                    TensorRef::from_array_view(([n, e], &self.embedded[..])).map_err(|e| g.runtime_error(e))?;
                ort::inputs![graph::IN_EMBEDDED => embedded]
            }
            None => {
                // Format 7 and before read the codes multi-hot, [n, V].
                let [visit_hot, seen_hot] = &mut self.multi_hot;
                multi_hot(
                    visit_hot,
                    v,
                    visits.iter().map(|codes| codes.iter().map(|&c| c as usize)),
                );
                let visit_t = TensorRef::from_array_view(([n, v], &visit_hot[..])).map_err(|e| g.runtime_error(e))?;
                let mut inputs = ort::inputs![graph::IN_VISIT => visit_t];
                if c.seen_codes {
                    let Seen::Codes(seen) = seen else {
                        return Err(Error::Invalid(
                            "a format 7 step reads the seen codes, not their embedding".into(),
                        ));
                    };
                    multi_hot(seen_hot, v, (0..n).map(|r| seen.codes(r)));
                    let seen_t = TensorRef::from_array_view(([n, v], &seen_hot[..])).map_err(|e| g.runtime_error(e))?;
                    inputs.push((graph::IN_SEEN.into(), seen_t.into()));
                }
                inputs
            }
        };
        for (t, part) in self.cache.iter().zip(&past.parts) {
            let value = match part {
                CachePart::Runtime(value, None) => value.into(),
                part => TensorRef::from_array_view((t.shape(n, past_len), part.data()?))
                    .map_err(|e| g.runtime_error(e))?
                    .into(),
            };
            inputs.push((t.input.as_str().into(), value));
        }
        let mut outputs = g.session.run(inputs).map_err(|e| run_error(&g.path, e))?;
        take_output(&g.path, &outputs, graph::OUT_HISTORY, &[n, e], history)?;
        let mut parts = Vec::with_capacity(self.cache.len());
        for t in &self.cache {
            let name = &t.output;
            let present = outputs
                .remove(name.as_str())
                .ok_or_else(|| Error::Runtime(format!("{}: no output `{name}`", g.path.display())))?;
            let want = t.shape(n, past_len + 1);
            let (shape, _) = present.try_extract_tensor::<f32>().map_err(|e| run_error(&g.path, e))?;
            if shape.iter().copied().ne(want.iter().map(|d| *d as i64)) {
                return Err(Error::Runtime(format!(
                    "{}: output `{name}` has shape {shape:?}, expected {want:?}",
                    g.path.display()
                )));
            }
            parts.push(CachePart::Runtime(present, None));
        }
        Ok(KvCache {
            parts,
            blocks: past.blocks,
        })
    }

    /// The dense code head: `history` [n, E] and `visits` [n, V] -> `logits` [n, V].
    pub fn head(&mut self, history: &[f32], visits: &[f32], n: usize, logits: &mut Vec<f32>) -> Result<()> {
        let c = &self.manifest.model;
        let (v, e) = (c.total_vocab_size, c.n_embd);
        let Some(g) = self.dense.as_mut() else {
            return Err(Error::Invalid("the dense code head was not loaded".into()));
        };
        let hist_t = TensorRef::from_array_view(([n, e], history)).map_err(|e| g.runtime_error(e))?;
        let visit_t = TensorRef::from_array_view(([n, v], visits)).map_err(|e| g.runtime_error(e))?;
        let outputs = g
            .session
            .run(ort::inputs![graph::IN_HISTORY => hist_t, graph::IN_VISIT => visit_t])
            .map_err(|e| run_error(&g.path, e))?;
        take_output(&g.path, &outputs, graph::OUT_LOGITS, &[n, v], logits)
    }

    /// Incremental code module, visit start: `history` [n, E] -> `pre` [n, H] (auto1's pre-activations
    /// for an empty visit).
    pub fn head_start(&mut self, history: &[f32], n: usize, pre: &mut Vec<f32>) -> Result<()> {
        let c = &self.manifest.model;
        let (e, hidden) = (c.n_embd, c.head_hidden_used());
        let Some(inc) = self.incremental.as_mut() else {
            return Err(Error::Invalid("the incremental code module was not loaded".into()));
        };
        let g = &mut inc.start;
        let hist_t = TensorRef::from_array_view(([n, e], history)).map_err(|e| g.runtime_error(e))?;
        let outputs = g
            .session
            .run(ort::inputs![graph::IN_HISTORY => hist_t])
            .map_err(|e| run_error(&g.path, e))?;
        take_output(&g.path, &outputs, graph::OUT_PRE, &[n, hidden], pre)
    }

    /// Incremental code module: codes per block (the last block may be shorter).
    pub fn block_len(&self) -> usize {
        self.incremental.as_ref().map(|inc| inc.block_len).unwrap_or(0)
    }

    /// Incremental code module, block `b`: `pre` [n, K_b] (the first K_b = E + end - 1 pre-activations of
    /// each row, for the block's codes first..end) -> `logits` [n, end - first].
    pub fn head_block(&mut self, pre: &[f32], n: usize, b: usize, logits: &mut Vec<f32>) -> Result<()> {
        let c = &self.manifest.model;
        let (e, v) = (c.n_embd, c.total_vocab_size);
        let Some(inc) = self.incremental.as_mut() else {
            return Err(Error::Invalid("the incremental code module was not loaded".into()));
        };
        let codes = b * inc.block_len..((b + 1) * inc.block_len).min(v);
        let prefix = e + codes.end - 1;
        let g = &mut inc.blocks[b];
        // ONNX Runtime multiplies a single row with another kernel (MLAS's M = 1 path), which rounds
        // differently: a lone row is run as two so that records do not depend on the batch.
        let padded: Vec<f32>;
        let (pre, rows) = if n == 1 {
            padded = [pre, pre].concat();
            (&padded[..], 2)
        } else {
            (pre, n)
        };
        let pre_t = TensorRef::from_array_view(([rows, prefix], pre)).map_err(|e| g.runtime_error(e))?;
        let outputs = g
            .session
            .run(ort::inputs![graph::IN_PRE => pre_t])
            .map_err(|e| run_error(&g.path, e))?;
        take_output(&g.path, &outputs, graph::OUT_LOGITS, &[rows, codes.len()], logits)?;
        logits.truncate(n * codes.len());
        Ok(())
    }

    /// Incremental code module: the auto1 column of visit code `k`, rows E + k .. H (add it to a row's
    /// pre-activations at E + k .. when code k is set).
    pub fn column(&self, k: usize) -> &[f32] {
        let v = self.manifest.model.total_vocab_size;
        let inc = self.incremental.as_ref().expect("incremental code module loaded");
        let at = IncrementalHeadFiles::column_offset(v, k);
        &inc.columns[at..at + (v - 1 - k)]
    }
}
