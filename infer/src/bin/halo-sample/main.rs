//! `halo-sample`: synthetic patient records from an exported HALO model directory.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use halo_core::omop_write::{CdmSource, OmopCohort};
use halo_infer::output::{Output, OutputFormat};
use halo_infer::runtime::{self, Device, Parallelism, Placement, Runtime, SessionOptions};
use halo_infer::{generate_on, CodeModule, Conditions, Model, Plan, SampleStats, Shard};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

mod bench;
mod verify;

const ABOUT: &str = "Samples synthetic patient records from a HALO model directory (written by `halo export`).";

const LONG_ABOUT: &str = "\
Samples synthetic patient records from a HALO model directory (the folder written by `halo export`:
manifest.json and the .onnx files). It needs no Python and no GPU: the model runs on ONNX Runtime,
on the CPU by default.

Records are reproducible: record number i depends only on --seed, i and the model, so the same
command always writes the same file, whatever --batch-size or --threads, and shards (--shard) or
ranges (--start) written on different machines concatenate to the file one run would have written.
(On CUDA this holds only approximately: GPU arithmetic may round differently, which can change a
record where a probability lies very close to its random draw.)
MEDS and OMOP outputs also carry a creation date (MEDS dataset.json, OMOP cdm_source): set
SOURCE_DATE_EPOCH (seconds since 1970) to fix it, and two runs give the same bytes.

Before sampling, every .onnx file is checked against the sha256 in manifest.json, so a damaged or
incomplete copy of a model directory is refused. With --trust PUBLIC_KEY, the directory must also carry a
good signature by that key (manifest.json.minisig, from `halo export --sign`; minisign's format, so
`minisign -Vm manifest.json -p KEY.pub` checks it too); its signed comment names the model, its version and
export time. A signed directory used without --trust gets a warning that its signature was not checked.
`halo-sample verify` reports each check on its own line: the signature, that the folder holds only what
manifest.json names, the sha256s, and the records the exporter fingerprinted, re-sampled at three batch
sizes.

The ONNX Runtime library (libonnxruntime.so) is looked up in this order: --ort-lib, the environment
variable ORT_DYLIB_PATH, next to the halo-sample executable (scripts/setup.sh links it there), and the
project's Python virtualenv (.venv/lib/python3*/site-packages/onnxruntime/capi/) found by walking up
from the executable's folder. The one used is printed on stderr.";

const EXAMPLES: &str = "\
Examples:
  # 10,000 records, reproducible with seed 42, as JSON lines
  halo-sample --model runs/mimic/model --count 10000 --seed 42 --out synthetic.jsonl

  # the same 10,000 records made by 4 machines (shards 0..3), then joined
  halo-sample --model M --count 10000 --seed 42 --shard 0/4 --out part0.jsonl
  ...
  halo-sample --model M --count 10000 --seed 42 --shard 3/4 --out part3.jsonl
  cat part0.jsonl part1.jsonl part2.jsonl part3.jsonl > synthetic.jsonl

  # only records with diabetes, female
  halo-sample --model M --count 500 --seed 1 --condition diabetes=1,SEX/F=1 --out diabetic_women.jsonl

  # check the signature, the files and that this machine reproduces the exporter's records
  halo-sample verify --model M --trust halo.pub

  # throughput and peak memory at several batch sizes
  halo-sample bench --model M --batch-sizes 1,64,256 --count 256

Exit status: 0 on success, 1 on any error or when stopped by SIGINT, SIGTERM or SIGHUP (nothing is written
then; a run killed outright leaves a hidden temporary output, removed by the next run into the same folder),
2 for unknown flags.";

#[derive(Parser)]
#[command(
    name = "halo-sample",
    disable_version_flag = true,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_long_help = EXAMPLES,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    /// Print the toolkit version and commit, the ONNX Runtime version this binary loads, and with --model
    /// the model's digest (sha256 of its manifest.json) and, when it is signed, the signed comment (model name,
    /// version, export time; checked with --trust), then exit.
    #[arg(long, short = 'V')]
    version: bool,
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    sample: SampleArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Re-samples the records fingerprinted by `halo export` (manifest.json `verify`) on the CPU and
    /// reports whether they are identical, or which records differ and from which visit.
    Verify(VerifyArgs),
    /// Measures records per second and peak memory at several batch sizes (writes no records).
    Bench(BenchArgs),
}

#[derive(Args, Clone)]
struct RuntimeArgs {
    /// Path of the ONNX Runtime library (libonnxruntime.so*, or a folder holding libonnxruntime.so).
    /// Default: $ORT_DYLIB_PATH, then next to this executable, then the project's .venv.
    #[arg(long, value_name = "PATH")]
    ort_lib: Option<PathBuf>,
    /// CPU threads each worker runs its graphs and code module on. Default: 1 for small models (n_embd <= 256),
    /// which take one worker per core; for larger ones, one for batch sizes up to 16 (their runs are too short
    /// for a second thread to pay), else the number of CPU cores. At most 4 per core.
    #[arg(long, value_name = "T", value_parser = halo_core::threads::parse_thread_count)]
    threads: Option<usize>,
    /// Copies of the model sampling batches side by side on the CPU, one thread each unless --threads says
    /// otherwise (the records written do not change). Default: one per core for small models (n_embd <= 256),
    /// each holding its own sessions; one for larger models, or when --threads is given.
    #[arg(long, value_name = "W", value_parser = halo_core::threads::parse_thread_count)]
    workers: Option<usize>,
    /// Print nothing but errors (no progress bar, no library line).
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
struct TrustArgs {
    /// Refuse the model directory unless manifest.json carries a good signature (manifest.json.minisig,
    /// from `halo export --sign`) by this public key: the path of its .pub file, or the key itself.
    #[arg(long, value_name = "PUBLIC_KEY")]
    trust: Option<String>,
}

impl TrustArgs {
    /// Checks the signature when `--trust` was given; returns what it found.
    fn check(&self, model_dir: &Path) -> Result<Option<halo_infer::trust::Signed>> {
        let Some(key) = &self.trust else {
            return Ok(None);
        };
        let key = halo_infer::trust::read_public_key("--trust", key)?;
        Ok(Some(halo_infer::trust::check_signature(model_dir, &key)?))
    }
}

/// Checks the signature with `--trust` and says so; warns (with `--quiet` too, like the other notes about the
/// output) when a signed directory is used without it.
fn report_signature(trust: &TrustArgs, model_dir: &Path, quiet: bool) -> Result<()> {
    match trust.check(model_dir)? {
        Some(signed) if !quiet => eprintln!("halo-sample: signature good ({})", signed.trusted_comment),
        Some(_) => {}
        None if model_dir.join(halo_core::manifest::SIGNATURE).is_file() => {
            eprintln!("{}", unchecked_signature_warning(model_dir))
        }
        None => {}
    }
    Ok(())
}

/// The warning for a signed model directory used without `--trust`: its files were checked against the
/// manifest, but not who made the manifest.
fn unchecked_signature_warning(model_dir: &Path) -> String {
    format!(
        "halo-sample: warning: {} is signed ({}), but its signature was not checked: pass --trust PUBLIC_KEY \
         (the key the training site gave you) to check it, or run `halo-sample verify --model {} --trust PUBLIC_KEY`",
        model_dir.display(),
        halo_core::manifest::SIGNATURE,
        model_dir.display()
    )
}

#[derive(Args)]
struct SampleArgs {
    /// Model directory written by `halo export` (contains manifest.json and the .onnx files).
    #[arg(long, value_name = "MODEL_DIR", required_unless_present = "version")]
    model: Option<PathBuf>,
    /// Number of records to write. With --shard: the total over all shards.
    #[arg(long, value_name = "N", required_unless_present = "version")]
    count: Option<u64>,
    /// Random seed. The same seed, model and record numbers always give the same records.
    #[arg(long, value_name = "S", required_unless_present = "version")]
    seed: Option<u64>,
    /// Output path: a .jsonl file for --format jsonl, a folder for --format meds and omop. Must not exist
    /// yet; it appears only once every record was written.
    #[arg(long, value_name = "PATH", required_unless_present = "version")]
    out: Option<PathBuf>,
    /// Output format: jsonl (one JSON record a line, the schema `halo` reads), meds (MEDS folder) or omop
    /// (OMOP CDM 5.4 tables as CSV: person, observation_period, visit_occurrence, condition_occurrence,
    /// drug_exposure, procedure_occurrence, measurement, observation, cdm_source; ids from the record
    /// numbers, so the folders of shards concatenate table by table).
    #[arg(long, value_name = "FORMAT", default_value = "jsonl")]
    format: OutputFormat,
    /// Records sampled together. Larger batches are faster per record but use more memory (at 256:
    /// about 100 MiB for a small model, about 0.9 GiB for a paper-size one); the output does not depend
    /// on it.
    #[arg(long, value_name = "B", default_value_t = 256)]
    batch_size: usize,
    /// Write only shard K of N (K counts from 0): records K*ceil(COUNT/N) up to (K+1)*ceil(COUNT/N)
    /// of the --count records. Shards 0..N-1 concatenated in order equal the unsharded output.
    #[arg(long, value_name = "K/N", conflicts_with = "start")]
    shard: Option<Shard>,
    /// Number the records from I instead of 0 (records I..I+COUNT; ids are the record numbers).
    #[arg(long, value_name = "I")]
    start: Option<u64>,
    /// Conditional generation. Either a list applied to every record, e.g. `diabetes=1,SEX/F=1,asthma=0`
    /// (names as in the model's vocabulary: phenotype labels by name, demographics as SEX/.., RACE/..,
    /// ETHNICITY/.., BIRTH_YEAR/1970-1979), or a JSONL file with one object a line used by record
    /// i mod lines: {"labels": {"diabetes": 1}} fixes labels, {"proportions": {"diabetes": 0.3}} gives
    /// each record the label with that probability. The other labels and all visits are sampled
    /// conditionally on the fixed ones.
    #[arg(long, value_name = "FILE_OR_LABELS")]
    condition: Option<String>,
    /// Where the model runs: cpu, cuda (fails if CUDA cannot be used) or auto (CUDA when available,
    /// otherwise CPU, and says so). CUDA needs an ONNX Runtime library built with CUDA.
    #[arg(long, value_name = "DEVICE", default_value = "cpu")]
    device: Device,
    #[command(flatten)]
    trust: TrustArgs,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

#[derive(Args)]
struct VerifyArgs {
    /// Model directory written by `halo export`.
    #[arg(long, value_name = "MODEL_DIR")]
    model: PathBuf,
    #[command(flatten)]
    trust: TrustArgs,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

#[derive(Args)]
struct BenchArgs {
    /// Model directory written by `halo export`.
    #[arg(long, value_name = "MODEL_DIR")]
    model: PathBuf,
    /// Comma-separated batch sizes to measure.
    #[arg(long, value_name = "LIST", default_value = "1,64,256", value_delimiter = ',')]
    batch_sizes: Vec<usize>,
    /// Records sampled per batch size.
    #[arg(long, value_name = "N", default_value_t = 256)]
    count: u64,
    /// Random seed.
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// Leave out the dense code module (slow; measured by default for comparison).
    #[arg(long)]
    no_dense: bool,
    /// Where the model runs: cpu, cuda or auto.
    #[arg(long, value_name = "DEVICE", default_value = "cpu")]
    device: Device,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

fn load_runtime(args: &RuntimeArgs) -> Result<&'static Runtime> {
    let rt = runtime::init(args.ort_lib.as_deref())?;
    if !args.quiet {
        eprintln!(
            "halo-sample: ONNX Runtime {} from {} (found via {})",
            rt.version,
            rt.library.display(),
            rt.source
        );
    }
    Ok(rt)
}

/// Loads the model: `--workers` copies with `--threads` each, or else the default for its width and
/// `batch_size` (`runtime::parallelism_for`).
fn load_model(dir: &Path, rt: &Runtime, device: Device, args: &RuntimeArgs, batch_size: usize) -> Result<Vec<Model>> {
    let n_embd = halo_infer::model::read_manifest(dir)?.model.n_embd;
    let Parallelism { workers, threads } = runtime::parallelism_for(n_embd, batch_size, args.workers, args.threads);
    let models = Model::load_workers(
        dir,
        rt,
        &SessionOptions {
            device,
            threads: Some(threads),
        },
        CodeModule::Auto,
        workers,
    )?;
    let model = &models[0];
    if let Some(note) = &model.note {
        eprintln!("halo-sample: {note}");
    }
    if !args.quiet {
        let c = model.config();
        let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        eprintln!(
            "halo-sample: model {} ({} codes, {} labels, n_embd {}, {} layers, {} visits at most) on {}",
            dir.display(),
            c.code_vocab_size,
            c.label_vocab_size,
            c.n_embd,
            c.n_layer,
            model.manifest.encoding.sampled_visit_limit(),
            match model.placement {
                Placement::Cpu if models.len() > 1 => format!(
                    "CPU, {} side by side of {} each",
                    plural(models.len(), "worker"),
                    plural(threads, "thread")
                ),
                Placement::Cpu => format!("CPU, {}", plural(threads, "thread")),
                Placement::Cuda => "CUDA".to_string(),
            }
        );
    }
    Ok(models)
}

fn progress(total: u64, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} records, {per_sec}, ETA {eta}")
            .expect("template")
            .progress_chars("=> "),
    );
    pb
}

fn sample(args: SampleArgs) -> Result<()> {
    let (model_dir, count, seed, out) = (
        args.model.expect("required"),
        args.count.expect("required"),
        args.seed.expect("required"),
        args.out.expect("required"),
    );
    if count == 0 {
        bail!("--count must be at least 1");
    }
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    // Checked before any work: the time stamped into MEDS and OMOP outputs.
    halo_core::fsutil::stamp_time()?;
    let (records, cohort_end) = records_to_write(count, args.shard, args.start)?;
    let (format, device) = (args.format, args.device);

    // Cheap checks first: the signature, the output location, the manifest, the conditions.
    report_signature(&args.trust, &model_dir, args.runtime.quiet)?;
    let cohort = match format {
        OutputFormat::Omop => Some(omop_cohort(&model_dir, seed, &records, cohort_end)?),
        _ => None,
    };
    let manifest = halo_infer::model::read_manifest(&model_dir)?;
    halo_infer::output::check_target(&out)?;
    halo_infer::output::check_model_for(format, &manifest.encoding)?;
    if format == OutputFormat::Omop {
        for note in halo_infer::output::omop_notes(&manifest.encoding) {
            eprintln!("halo-sample: note: {note}");
        }
    }
    let conditions = args
        .condition
        .as_deref()
        .map(|c| Conditions::parse(c, &manifest.encoding))
        .transpose()?;
    drop(manifest);

    let rt = load_runtime(&args.runtime)?;
    let mut workers = load_model(&model_dir, rt, device, &args.runtime, args.batch_size)?;
    // Only now that the sessions exist: a run that fails or is stopped while loading leaves no output.
    let mut output = Output::create(&out, format, cohort, Some(&workers[0].manifest.encoding))?;
    if !args.runtime.quiet {
        if let Some(c) = &conditions {
            eprintln!(
                "halo-sample: conditioned on {} ({} condition set{})",
                c.source,
                c.len(),
                if c.len() == 1 { "" } else { "s" }
            );
        }
    }
    let n = records.end - records.start;
    let pb = progress(n, args.runtime.quiet);
    let started = Instant::now();
    let plan = Plan {
        seed,
        records: records.clone(),
        batch_size: args.batch_size,
        conditions,
    };
    let stop = stop_on_signal();
    let conditions_on_derived = plan.conditions.is_some() && !workers[0].manifest.encoding.derived_labels.is_empty();
    let calibration = workers[0].manifest.calibration.clone();
    let stats = generate_on(&mut workers, &plan, calibration.as_ref(), |batch| {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(halo_infer::Error::Invalid(
                "interrupted (SIGINT, SIGTERM or SIGHUP): stopped after the batch in progress; nothing was written"
                    .into(),
            ));
        }
        let k = batch.len() as u64;
        output.write(batch)?;
        pb.inc(k);
        Ok(())
    })?;
    pb.finish_and_clear();
    let omop = output.finish()?;
    if let Some(r) = &omop {
        omop_notes(r);
    }
    if !args.runtime.quiet {
        say_done(
            &stats,
            conditions_on_derived,
            &records,
            &out,
            started.elapsed().as_secs_f64(),
        );
    }
    Ok(())
}

/// The run's last lines: how many records met conditions on derived labels (when there were any), and what
/// was written how fast.
fn say_done(stats: &SampleStats, conditions_on_derived: bool, records: &Range<u64>, out: &Path, secs: f64) {
    if conditions_on_derived {
        let tried = stats.records + stats.rejected;
        eprintln!(
            "halo-sample: labels derived from codes meet the conditions in {} of {tried} sampled records \
             ({:.1}% accepted; the others were sampled again)",
            stats.records,
            100.0 * stats.records as f64 / tried.max(1) as f64
        );
    }
    let n = records.end - records.start;
    eprintln!(
        "halo-sample: wrote records {}..{} ({n} records) to {} in {secs:.1} s ({:.1} records/s)",
        records.start,
        records.end,
        out.display(),
        n as f64 / secs.max(1e-9)
    );
}

/// What the OMOP writer had to change to fit the tables.
fn omop_notes(r: &halo_core::omop_write::OmopWriteReport) {
    if r.births_after_first_visit > 0 {
        eprintln!(
            "halo-sample: note: {} of {} persons were sampled with a birth after their first visit (a first visit \
             without an age bucket is dated inside its calendar bucket, or on 2000-01-01 by a model without the \
             calendar group); person.csv has them born on that visit's date",
            r.births_after_first_visit, r.persons
        );
    }
    if r.truncated_source_values > 0 {
        eprintln!(
            "halo-sample: note: {} source values longer than the OMOP DDL's varchar({}) were cut to fit (the model \
             keeps the whole codes)",
            r.truncated_source_values,
            halo_core::omop_write::SOURCE_VALUE_WIDTH
        );
    }
}

/// The records this run writes (`--count`, with `--shard` or `--start`), and one past the last record of the
/// whole cohort, the same for every shard (OMOP ids depend on it).
fn records_to_write(count: u64, shard: Option<Shard>, start: Option<u64>) -> Result<(Range<u64>, u64)> {
    Ok(match (shard, start) {
        (Some(shard), _) => (shard.records(count), count),
        (None, Some(i)) => {
            let end = i.checked_add(count).context("--start + --count overflows")?;
            (i..end, end)
        }
        (None, None) => (0..count, count),
    })
}

/// A flag raised by SIGINT, SIGTERM or SIGHUP. Sampling stops at the next batch and returns an error, so
/// the output's temporary file or folder is removed as on any other error (a second signal while stopping
/// is ignored; a SIGKILL leaves the temporary output, which the next run into the same folder removes).
fn stop_on_signal() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    if let Err(e) = ctrlc::set_handler(move || flag.store(true, std::sync::atomic::Ordering::Relaxed)) {
        eprintln!("halo-sample: note: cannot catch signals ({e}); a killed run may leave a temporary output");
    }
    stop
}

/// The `cdm_source` of an OMOP output: which records, model, toolkit version and seed; dated today (UTC),
/// or at `SOURCE_DATE_EPOCH` when set, so that a run can be reproduced byte for byte.
fn omop_cohort(model_dir: &Path, seed: u64, records: &Range<u64>, cohort_end: u64) -> Result<OmopCohort> {
    let manifest = model_dir.join(halo_core::manifest::MANIFEST);
    let digest = halo_infer::model::file_sha256(&manifest)?;
    let release_date = halo_core::fsutil::stamp_time()?.date_naive();
    let version = env!("CARGO_PKG_VERSION");
    Ok(OmopCohort {
        records: records.clone(),
        cohort_end,
        source: CdmSource {
            description: format!(
                "Synthetic records {}..{} of a cohort of {cohort_end}, sampled by halo-sample {version} with seed \
                 {seed} from the HALO model whose manifest.json has sha256 {digest}. No real persons.",
                records.start, records.end
            ),
            etl_reference: format!("halo-sample {version} --format omop"),
            release_date,
        },
    })
}

fn main() {
    let cli = Cli::parse();
    if cli.version {
        let result = verify::print_version(cli.sample.model.as_deref(), &cli.sample.trust, &cli.sample.runtime);
        if let Err(e) = result {
            eprintln!("halo-sample: error: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    let result = match cli.command {
        None => sample(cli.sample).map(|()| true),
        Some(Command::Verify(a)) => verify::verify(a),
        Some(Command::Bench(a)) => bench::bench(a).map(|()| true),
    };
    match result {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("halo-sample: error: {e:#}");
            std::process::exit(1);
        }
    }
}
