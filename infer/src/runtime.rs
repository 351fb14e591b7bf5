//! Finding and loading the ONNX Runtime shared library, and creating sessions on CPU or CUDA.

use crate::error::{Error, Result};
use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// File name of the ONNX Runtime library on Linux.
pub const LIBRARY_NAME: &str = "libonnxruntime.so";
/// Environment variable naming the library (the ort crate's convention).
pub const LIBRARY_ENV: &str = "ORT_DYLIB_PATH";

/// Where the ONNX Runtime library was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LibrarySource {
    /// `--ort-lib`.
    Flag,
    /// `ORT_DYLIB_PATH`.
    EnvVar,
    /// Next to the executable (the set-up script links it into `target/release/`).
    NextToBinary,
    /// The project's Python virtualenv (`.venv/lib/python3*/site-packages/onnxruntime/capi/`).
    Virtualenv,
}

impl std::fmt::Display for LibrarySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LibrarySource::Flag => "--ort-lib",
            LibrarySource::EnvVar => LIBRARY_ENV,
            LibrarySource::NextToBinary => "next to the executable",
            LibrarySource::Virtualenv => "the project's .venv",
        })
    }
}

/// Which hardware runs the graphs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    #[default]
    Cpu,
    /// CUDA execution provider; an error when it cannot be used.
    Cuda,
    /// CUDA when it can be used, otherwise CPU (and says so).
    Auto,
}

impl std::str::FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Device, String> {
        halo_core::keyword::parse_keyword(
            s,
            "device",
            &[
                ("cpu", Device::Cpu),
                ("cuda", Device::Cuda),
                ("gpu", Device::Cuda),
                ("auto", Device::Auto),
            ],
        )
    }
}

/// The loaded runtime: one per process.
pub struct Runtime {
    pub(crate) env: Environment,
    pub library: PathBuf,
    pub source: LibrarySource,
    pub version: String,
}

static RUNTIME: OnceLock<std::result::Result<Runtime, String>> = OnceLock::new();

/// Resolves a path given by flag or environment: a file, or a folder holding `libonnxruntime.so`.
fn explicit_library(path: &Path, what: &str) -> Result<PathBuf> {
    if path.is_dir() {
        if let Some(inside) = library_in(path) {
            return Ok(inside);
        }
        return Err(Error::Runtime(format!(
            "{what} {} is a folder without {LIBRARY_NAME}",
            path.display()
        )));
    }
    if !path.exists() {
        return Err(Error::Runtime(format!(
            "{what} {} does not exist (expected the path of {LIBRARY_NAME}, e.g. .venv/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime.so.1.31.1)",
            path.display()
        )));
    }
    Ok(path.to_path_buf())
}

/// `libonnxruntime.so` in `dir`, else its one versioned file (`libonnxruntime.so.1.31.1`, as a site
/// bundle carries it).
fn library_in(dir: &Path) -> Option<PathBuf> {
    let plain = dir.join(LIBRARY_NAME);
    if plain.exists() {
        return Some(plain);
    }
    let mut versioned: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.strip_prefix(LIBRARY_NAME).is_some_and(|rest| rest.starts_with('.')))
        })
        .map(|e| e.path())
        .collect();
    versioned.sort();
    versioned.pop()
}

/// `libonnxruntime.so*` inside `<dir>/.venv/lib/python3*/site-packages/onnxruntime/capi/`.
fn venv_library(dir: &Path) -> Option<PathBuf> {
    let lib = dir.join(".venv").join("lib");
    let mut pythons: Vec<PathBuf> = std::fs::read_dir(&lib)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| e.path())
        .collect();
    pythons.sort();
    for py in pythons {
        let capi = py.join("site-packages/onnxruntime/capi");
        let Ok(entries) = std::fs::read_dir(&capi) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(LIBRARY_NAME))
            .map(|e| e.path())
            .collect();
        // Prefer the fully versioned file name (libonnxruntime.so.1.31.1) over shorter links.
        found.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
        if let Some(p) = found.into_iter().next() {
            return Some(p);
        }
    }
    None
}

/// Finds the ONNX Runtime library: `explicit` (the `--ort-lib` flag), then `ORT_DYLIB_PATH`, then
/// `libonnxruntime.so` next to the executable, then the project's `.venv` found by walking up from the
/// executable's folder.
pub fn find_library(explicit: Option<&Path>) -> Result<(PathBuf, LibrarySource)> {
    if let Some(p) = explicit {
        return Ok((explicit_library(p, "--ort-lib")?, LibrarySource::Flag));
    }
    if let Some(p) = std::env::var_os(LIBRARY_ENV).filter(|p| !p.is_empty()) {
        return Ok((explicit_library(Path::new(&p), LIBRARY_ENV)?, LibrarySource::EnvVar));
    }
    let exe = std::env::current_exe().ok();
    let exe_dir = exe.as_deref().and_then(Path::parent);
    if let Some(dir) = exe_dir {
        if let Some(next) = library_in(dir) {
            return Ok((next, LibrarySource::NextToBinary));
        }
        for ancestor in dir.ancestors() {
            if let Some(p) = venv_library(ancestor) {
                return Ok((p, LibrarySource::Virtualenv));
            }
        }
    }
    Err(Error::Runtime(format!(
        "cannot find the ONNX Runtime library ({LIBRARY_NAME}): give --ort-lib PATH or set {LIBRARY_ENV}, \
         put {LIBRARY_NAME} next to the halo-sample executable{}, or run scripts/setup.sh (it links it there \
         and into the project's .venv)",
        exe_dir.map(|d| format!(" ({})", d.display())).unwrap_or_default()
    )))
}

/// The variable Microsoft's ONNX Runtime builds read when the environment is created: set to 1, no telemetry
/// is started. The onnxruntime 1.31 wheel's library otherwise writes events (executable path, model file
/// names, a persistent device id) under `~/.cache/Microsoft/DeveloperTools/.onnxruntime/` and sends them to
/// Microsoft; turning it off through the API after the environment exists is too late for the files
/// (measured: the device id and the event database are written all the same).
pub const TELEMETRY_OFF_ENV: &str = "ORT_DISABLE_TELEMETRY";

/// Loads ONNX Runtime once per process (later calls return the runtime loaded first), with its telemetry off.
pub fn init(explicit: Option<&Path>) -> Result<&'static Runtime> {
    let r = RUNTIME.get_or_init(|| {
        let (library, source) = find_library(explicit).map_err(|e| e.to_string())?;
        // Before the library is loaded and its environment created: nothing we ship may phone home or write
        // outside its output. Set once, under the OnceLock, before any ONNX Runtime thread exists.
        std::env::set_var(TELEMETRY_OFF_ENV, "1");
        let builder = ort::init_from(&library)
            .map_err(|e| format!("could not load {} (found via {source}): {e}", library.display()))?;
        let env = builder
            .with_name("halo-sample")
            .with_telemetry(false)
            .build()
            .map_err(|e| format!("could not create the environment: {e}"))?;
        let version = version_of(&library, ort::info());
        Ok(Runtime {
            env,
            library,
            source,
            version,
        })
    });
    r.as_ref().map_err(|e| Error::Runtime(e.clone()))
}

/// How sessions are created.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    pub device: Device,
    /// Intra-op threads; `None` means the number of cores.
    pub threads: Option<usize>,
}

/// Default thread count: the number of cores.
pub fn default_threads() -> usize {
    halo_core::threads::available_cores()
}

/// Widest model (`n_embd`) and largest batch at which one thread per graph run is the default: such runs are
/// too short for a second thread to pay for waking it. Measured on the 2-core CPU at batch 1: small-preset
/// models (n_embd 128) 1,500 records/s with one thread against 1,094 with two (random MIMIC-like model),
/// 136 against 104 (Synthea records model); the paper-size model (n_embd 768) 13.7 against 20.0.
pub const ONE_THREAD_MAX_N_EMBD: usize = 256;
pub const ONE_THREAD_MAX_BATCH: usize = 16;

/// The default thread count for a model of width `n_embd` sampled in batches of `batch_size`.
pub fn default_threads_for(n_embd: usize, batch_size: usize) -> usize {
    if n_embd <= ONE_THREAD_MAX_N_EMBD && batch_size <= ONE_THREAD_MAX_BATCH {
        1
    } else {
        default_threads()
    }
}

/// Rows a small model (n_embd <= [`ONE_THREAD_MAX_N_EMBD`]) samples together on the CPU, however large the batch
/// (`Model::tile_rows`), so that a batch's memory is that of its tile: demo model, 2 workers, peak 145 MiB at
/// batch 256 and 229 at 1,024, against 163 and 298 with whole batches. The speed measured alike (tiles of 64,
/// 96 and 128 rows and whole batches of 256: 941-989 records/s median, 1,030-1,055 best).
pub const TILE_ROWS: usize = 64;

/// How a run on the CPU spends its threads: `workers` copies of the model sample batches side by side
/// (`crate::generate_on`), each running its graphs and code module on `threads` threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parallelism {
    pub workers: usize,
    pub threads: usize,
}

/// The default for a model of width `n_embd` sampled in batches of `batch_size`, unless `workers` or
/// `threads` (per worker) are given. Small models (n_embd <= [`ONE_THREAD_MAX_N_EMBD`]) take one
/// single-threaded worker per core: a worker holds its own sessions, a few tens of MiB for such a model,
/// and keeps its core busy through the whole loop (demo model, 2 cores: batch 256 540 -> 740 records/s,
/// batch 1 170 -> 320). Larger models keep one worker, whose memory is what a site cannot raise (at most
/// 1.3x its graphs), with [`default_threads_for`]. Given threads without workers: one worker, as before
/// workers existed.
pub fn parallelism_for(
    n_embd: usize,
    batch_size: usize,
    workers: Option<usize>,
    threads: Option<usize>,
) -> Parallelism {
    let small = n_embd <= ONE_THREAD_MAX_N_EMBD;
    let workers = workers.unwrap_or(if small && threads.is_none() {
        default_threads()
    } else {
        1
    });
    let threads = threads.unwrap_or(if workers > 1 {
        1
    } else {
        default_threads_for(n_embd, batch_size)
    });
    Parallelism {
        workers: workers.max(1),
        threads,
    }
}

/// What a session ended up running on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Cpu,
    Cuda,
}

/// A graph's bytes as read (and checked) by the caller: the session is made from exactly these bytes, so a
/// file swapped after its sha256 was checked is never what runs.
pub struct GraphBytes {
    /// Where the bytes came from (for messages).
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    /// The graph's external weights file, when it has one: (the name the graph refers to, its bytes).
    pub external: Option<(String, std::sync::Arc<[u8]>)>,
}

impl GraphBytes {
    /// Reads a graph file without a check (tests, tools that check otherwise).
    pub fn read(path: &Path) -> Result<GraphBytes> {
        Ok(GraphBytes {
            path: path.to_path_buf(),
            bytes: std::fs::read(path).map_err(|e| Error::io(path, e))?,
            external: None,
        })
    }
}

/// Creates a session from a graph's bytes with graph optimisation level 3 on the chosen device.
/// Returns the session and where it runs; with `Device::Auto` the note says why CUDA was not used.
pub fn create_session(
    rt: &Runtime,
    graph: &GraphBytes,
    options: &SessionOptions,
) -> Result<(Session, Placement, Option<String>)> {
    let path = graph.path.as_path();
    let threads = options.threads.unwrap_or_else(default_threads);
    let threads = halo_core::threads::check_thread_count(threads)
        .map_err(|e| Error::Runtime(format!("intra-op threads: {e}")))?;
    let base = || -> Result<ort::session::builder::SessionBuilder> {
        let b = Session::builder(&rt.env)
            .map_err(Error::runtime)?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(Error::runtime)?
            .with_intra_threads(threads)
            .map_err(Error::runtime)?
            // The sampler runs many sessions one after another (the step, the code module's start and
            // blocks); threads that spin after a run would take the core from the next session's run.
            .with_intra_op_spinning(false)
            .map_err(Error::runtime)?
            .with_inter_threads(1)
            .map_err(Error::runtime)?;
        Ok(match &graph.external {
            Some((name, bytes)) => b
                .with_external_initializer_file_in_memory(name, bytes.clone())
                .map_err(Error::runtime)?,
            None => b,
        })
    };
    let load_err = |e: ort::Error| Error::model(path, format!("ONNX Runtime could not load this graph: {e}"));
    match options.device {
        Device::Cpu => {
            // No memory arena: the sampler runs many sessions (the step, the code module's start and one
            // per block), and each arena would keep its largest buffers for good (measured on the paper-size
            // model at batch 256: 1,009 MiB peak with arenas, 957 without, same speed).
            let cpu = ort::ep::CPU::default().with_arena_allocator(false).build();
            let s = base()?
                .with_memory_pattern(false)
                .map_err(Error::runtime)?
                .with_execution_providers([cpu])
                .map_err(Error::runtime)?
                .commit_from_memory(&graph.bytes)
                .map_err(load_err)?;
            Ok((s, Placement::Cpu, None))
        }
        Device::Cuda | Device::Auto => {
            let cuda = ort::ep::CUDA::default().build().error_on_failure();
            let attempt = base()?
                .with_execution_providers([cuda])
                .map_err(|e| e.to_string())
                .and_then(|mut b| b.commit_from_memory(&graph.bytes).map_err(|e| e.to_string()));
            match (attempt, options.device) {
                (Ok(s), _) => Ok((s, Placement::Cuda, None)),
                (Err(e), Device::Cuda) => Err(Error::Runtime(format!(
                    "--device cuda: the CUDA execution provider cannot be used with {} ({e}). \
                     It needs an ONNX Runtime build with CUDA (the onnxruntime-gpu package) and a working \
                     CUDA/cuDNN installation; use --device cpu or --device auto to run on the CPU",
                    rt.library.display()
                ))),
                (Err(e), _) => {
                    let s = base()?.commit_from_memory(&graph.bytes).map_err(load_err)?;
                    Ok((
                        s,
                        Placement::Cpu,
                        Some(format!("CUDA is not available ({e}); running on the CPU")),
                    ))
                }
            }
        }
    }
}

/// The release of the library: from its (resolved) file name `libonnxruntime.so.1.31.1`, else from the
/// build string (`git-branch=rel-1.31.1`, or the commit id).
fn version_of(library: &Path, info: &str) -> String {
    let resolved = std::fs::canonicalize(library).unwrap_or_else(|_| library.to_path_buf());
    for p in [&resolved, library] {
        if let Some(v) = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("libonnxruntime.so."))
        {
            return v.to_string();
        }
    }
    let field = |key: &str| {
        info.split(|c: char| c == ',' || c.is_whitespace())
            .find_map(|part| part.strip_prefix(key))
            .map(str::to_string)
    };
    field("git-branch=rel-")
        .or_else(|| field("git-commit-id=").map(|c| format!("(build {c})")))
        .unwrap_or_else(|| "(unknown version)".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_models_at_small_batches_run_one_thread() {
        assert_eq!(default_threads_for(128, 1), 1);
        assert_eq!(default_threads_for(ONE_THREAD_MAX_N_EMBD, ONE_THREAD_MAX_BATCH), 1);
        assert_eq!(default_threads_for(128, ONE_THREAD_MAX_BATCH + 1), default_threads());
        assert_eq!(default_threads_for(768, 1), default_threads());
    }

    #[test]
    fn small_models_take_a_single_threaded_worker_per_core_unless_told() {
        let p = |workers, threads| (workers, threads);
        let of = |n_embd, batch, workers, threads| {
            let Parallelism { workers, threads } = parallelism_for(n_embd, batch, workers, threads);
            (workers, threads)
        };
        assert_eq!(of(128, 256, None, None), p(default_threads(), 1));
        assert_eq!(of(128, 1, None, None), p(default_threads(), 1));
        // Threads given, workers not: one worker, as before workers existed.
        assert_eq!(of(128, 256, None, Some(2)), p(1, 2));
        assert_eq!(of(128, 256, Some(3), None), p(3, 1));
        assert_eq!(of(128, 256, Some(3), Some(2)), p(3, 2));
        // Large models keep one worker (their memory), with the threads they had.
        assert_eq!(of(768, 256, None, None), p(1, default_threads()));
        assert_eq!(of(768, 256, Some(2), None), p(2, 1));
    }
}
