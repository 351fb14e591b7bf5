//! `halo export`: a checkpoint folder to an ONNX model directory, with its verify digest and, with
//! `--sign`, a signature; the directory appears only when all of that succeeded.

use anyhow::{bail, Context, Result};
use clap::Args;
use halo_export::signing;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct ExportCmd {
    /// Checkpoint folder written by `halo train`.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Model directory to write (must not exist, or be empty).
    #[arg(long)]
    out: PathBuf,
    /// Weight precision: fp32 or fp16 (inputs and outputs stay fp32).
    #[arg(long, default_value = "fp32")]
    precision: halo_export::Precision,
    /// Records sampled at seed 0 for the manifest's verify digest (0 to skip).
    #[arg(long, default_value_t = 100)]
    verify_count: usize,
    /// Records sampled for each step of fitting the sampling calibration (the logit offset under which
    /// sampled visits hold as many codes as the training visits; see docs/ARCHITECTURE.md). 0: no
    /// calibration (the sampler draws from the model's probabilities as they are).
    #[arg(long, default_value_t = DEFAULT_CALIBRATION_RECORDS)]
    calibration_records: usize,
    /// Replace a model directory already at --out (written by `halo export`; anything else there is refused).
    /// The new directory is built beside it and swapped in only when complete.
    #[arg(long)]
    overwrite: bool,
    /// Export a model trained with --min-patients below 5 (or before the rule existed): its vocabulary
    /// and bucket edges may carry values of fewer than 5 patients. Only for data that may leave as is.
    #[arg(long)]
    allow_small_cells: bool,
    /// Sign the model directory with this secret key (from `halo keygen`): writes manifest.json.minisig, a
    /// minisign signature of manifest.json, which names the sha256 of every other file. A password-protected
    /// key reads its password from HALO_KEY_PASSWORD, or asks for it on a terminal.
    #[arg(long, value_name = "SECRET_KEY")]
    sign: Option<PathBuf>,
    /// The model's name in the signature's trusted comment (with --sign), which `halo-sample verify` and
    /// `halo-sample --version` print [default: the name of the --out folder].
    #[arg(long, value_name = "NAME", requires = "sign")]
    model_name: Option<String>,
    /// The model's version in the signature's trusted comment (with --sign): raise it with each release, so
    /// that a site can tell an older signed export from a newer one [default: 1].
    #[arg(long, value_name = "VERSION", requires = "sign")]
    model_version: Option<String>,
}

/// The release a signature names: `--model-name` (else the --out folder's name) and `--model-version`
/// (else 1).
fn model_release(cmd: &ExportCmd) -> Result<signing::ModelRelease> {
    let name = match &cmd.model_name {
        Some(name) => name.clone(),
        None => cmd
            .out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .with_context(|| {
                format!(
                    "--out {}: no folder name to name the model by; give --model-name",
                    cmd.out.display()
                )
            })?,
    };
    Ok(signing::ModelRelease::new(
        &name,
        cmd.model_version.as_deref().unwrap_or("1"),
    )?)
}

/// The smallest `--min-patients` (k) a model is exported with unless `--allow-small-cells`; SITE.md warns below it.
pub const SMALL_CELL_MINIMUM: usize = 5;

/// Default of `--calibration-records`. Records differ much in visit size, so the mean over a sample of
/// records moves by about 4% between samples of 800 (Synthea-1k); 4,000 bring that to about 2%.
const DEFAULT_CALIBRATION_RECORDS: usize = 4000;

pub fn run(cmd: ExportCmd) -> Result<()> {
    let precision = cmd.precision;
    // What the signature will name, checked before anything is read: the release and the time.
    let release = cmd.sign.as_ref().map(|_| model_release(&cmd)).transpose()?;
    if release.is_some() {
        halo_core::fsutil::stamp_time()?;
    }
    let folder = halo_core::checkpoint::CheckpointFolder::read(&cmd.checkpoint)?;
    let k = folder.encoding.options.min_patients;
    if k < SMALL_CELL_MINIMUM && !cmd.allow_small_cells {
        bail!(
            "{}: trained with --min-patients {k}: its vocabulary and bucket edges may carry values seen in fewer \
             than {SMALL_CELL_MINIMUM} patients, and a model directory leaves the training machine. Retrain with \
             --min-patients {SMALL_CELL_MINIMUM} or more (default {}), or pass --allow-small-cells if these data \
             may leave as they are",
            cmd.checkpoint.display(),
            halo_core::encoding::DEFAULT_MIN_PATIENTS
        );
    }
    if k < SMALL_CELL_MINIMUM {
        eprintln!("halo export: --allow-small-cells: exporting a model trained with --min-patients {k}");
    }
    // Opened before the minutes of export: a key that does not open fails now.
    let key = cmd
        .sign
        .as_deref()
        .map(|path| signing::SigningKey::open(path, crate::keygen::password_for_existing_key()))
        .transpose()
        .context("opening the --sign key")?;

    let options = halo_export::ExportOptions {
        precision,
        overwrite: cmd.overwrite,
        ..Default::default()
    };
    let finish = |dir: &Path, manifest: &mut halo_core::manifest::Manifest| -> Result<()> {
        if cmd.calibration_records > 0 || cmd.verify_count > 0 {
            let mut model = halo_infer::Model::load_on_cpu(dir)
                .context("loading ONNX Runtime and the exported model to sample from it")?;
            if cmd.calibration_records > 0 {
                if manifest.training.mean_codes_per_visit > 0.0 {
                    manifest.calibration = Some(calibrate(&mut model, cmd.calibration_records)?);
                    // The verify digest is of the directory as written: sampled under its calibration.
                    model.manifest.calibration = manifest.calibration.clone();
                } else {
                    eprintln!("halo export: no calibration: the checkpoint records no training visits");
                }
            }
            if cmd.verify_count > 0 {
                manifest.verify = Some(verify_digest(&mut model, cmd.verify_count)?);
            }
            halo_export::write_manifest(dir, manifest)?;
        }
        if let (Some(key), Some(release)) = (&key, &release) {
            let exported = halo_core::fsutil::stamp_time()?
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string();
            key.sign_model_dir(dir, release, &exported)?;
        }
        Ok(())
    };
    let manifest = halo_export::export_with(&cmd.checkpoint, &cmd.out, &options, &mut |dir, m| {
        finish(dir, m).map_err(Into::into)
    })
    .with_context(|| format!("exporting {} to {}", cmd.checkpoint.display(), cmd.out.display()))?;
    report_files(&cmd.out, &manifest);
    if let (Some(key), Some(release)) = (&key, &release) {
        let pk = key.public_base64();
        eprintln!(
            "halo export: signed: {} as model {} version {} (check with `halo-sample verify --trust KEY` or \
             `minisign -Vm manifest.json -P {pk}`)",
            halo_core::manifest::SIGNATURE,
            release.name,
            release.version
        );
    }
    eprintln!("halo export: model directory {}", cmd.out.display());
    Ok(())
}

/// Fits the sampling calibration on up to `records` records per round and reports each round, and progress
/// at least every 10 seconds while a round samples.
fn calibrate(model: &mut halo_infer::Model, records: usize) -> Result<halo_core::manifest::SamplingCalibration> {
    use halo_infer::calibrate::{Event, CONVERGED_SIZE, CONVERGED_TVD};
    let started = std::time::Instant::now();
    let mut last_report = started;
    let tvd = |name: &str, t: Option<f64>| t.map_or_else(String::new, |t| format!(", {name} histogram off by {t:.3}"));
    let calibration = halo_infer::calibrate::calibrate(model, records, &mut |event| match event {
        Event::Sampled { round, records: n, codes } => {
            if last_report.elapsed().as_secs_f64() >= 10.0 {
                last_report = std::time::Instant::now();
                eprintln!(
                    "halo export: calibration round {round}: {n} of {records} records sampled ({codes} codes), \
                     {:.0} s in",
                    started.elapsed().as_secs_f64()
                );
            }
        }
        Event::Measured { round, measured } => {
            last_report = std::time::Instant::now();
            eprintln!(
                "halo export: calibration round {round}: code offset {:+.3}: {:.3} codes per visit over {} records{}{}{}{}{}",
                measured.code_logit_offset,
                measured.codes_per_visit,
                measured.records,
                tvd("gap", measured.tvd[0]),
                tvd("visit-size", measured.tvd[1]),
                tvd("visit-type", measured.tvd[2]),
                tvd("demographics", measured.demographic_tvd),
                tvd("first visits' calendar", measured.first_calendar_tvd)
            );
        }
    })
    .context("fitting the sampling calibration")?;
    let both = |name: &str, before: Option<f64>, after: Option<f64>| match (before, after) {
        (Some(before), Some(after)) => format!("; {name} histogram total variation {after:.3} ({before:.3} without)"),
        _ => String::new(),
    };
    eprintln!(
        "halo export: calibration ({} records a round at most, {:.1} s): {:.3} codes per sampled visit against \
         {:.3} in training ({:.3} without){}{}{}{}{}",
        records,
        started.elapsed().as_secs_f64(),
        calibration.calibrated_codes_per_visit,
        calibration.target_codes_per_visit,
        calibration.uncalibrated_codes_per_visit,
        both("gap", calibration.uncalibrated_gap_tvd, calibration.calibrated_gap_tvd),
        both(
            "visit-size",
            calibration.uncalibrated_size_tvd,
            calibration.calibrated_size_tvd
        ),
        both(
            "visit-type",
            calibration.uncalibrated_visit_type_tvd,
            calibration.calibrated_visit_type_tvd
        ),
        both(
            "demographics",
            calibration.uncalibrated_demographic_tvd,
            calibration.calibrated_demographic_tvd
        ),
        both(
            "first visits' calendar (mean over birth decades)",
            calibration.uncalibrated_first_calendar_tvd,
            calibration.calibrated_first_calendar_tvd
        )
    );
    let size_error = (calibration.calibrated_codes_per_visit / calibration.target_codes_per_visit - 1.0).abs();
    let worst_tvd = [
        calibration.calibrated_gap_tvd,
        calibration.calibrated_size_tvd,
        calibration.calibrated_visit_type_tvd,
        calibration.calibrated_demographic_tvd,
    ]
    .into_iter()
    .flatten()
    .fold(0.0, f64::max);
    if size_error > CONVERGED_SIZE || worst_tvd > CONVERGED_TVD {
        eprintln!(
            "halo export: warning: the calibration did not converge: the closest round is {:.1}% off the training \
             visits' size and {:.3} off a histogram (it aims at {:.0}% and {:.3}); the model is exported with that \
             round's calibration. A model whose sampled visits are this far from its training visits needs more \
             training (see `halo test`), not a larger offset",
            100.0 * size_error,
            worst_tvd,
            100.0 * CONVERGED_SIZE,
            CONVERGED_TVD
        );
    }
    Ok(calibration)
}

/// The reference records a site's `halo-sample verify` must reproduce, sampled from `model` (as its
/// manifest stands, calibration included).
fn verify_digest(model: &mut halo_infer::Model, count: usize) -> Result<halo_core::manifest::VerifyDigest> {
    let pb = indicatif::ProgressBar::new(count as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "halo export: verify digest {bar:30} {pos}/{len} records ({elapsed}, ETA {eta})",
        )
        .expect("template"),
    );
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let started = std::time::Instant::now();
    let digest = halo_infer::verify::digest_with_progress(model, 0, count, &mut |n| pb.set_position(n as u64))
        .context("sampling the verify digest")?;
    pb.finish_and_clear();
    eprintln!(
        "halo export: verify digest of {count} records at seed 0 in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(digest)
}

/// One line per file the manifest names (the incremental blocks summed): size and the start of its sha256.
fn report_files(out: &Path, manifest: &halo_core::manifest::Manifest) {
    let files = &manifest.files;
    let mut listed = vec![
        (&files.visit_transformer.name, &files.visit_transformer.sha256),
        (&files.visit_transformer_step.name, &files.visit_transformer_step.sha256),
        (&files.code_head.name, &files.code_head.sha256),
    ];
    for m in [&files.code_module, &files.visit_embeddings].into_iter().flatten() {
        listed.push((&m.name, &m.sha256));
    }
    if let Some(inc) = &files.code_head_incremental {
        listed.extend([
            (&inc.start.name, &inc.start.sha256),
            (&inc.columns.name, &inc.columns.sha256),
        ]);
    }
    let size = |name: &str| std::fs::metadata(out.join(name)).map(|m| m.len()).unwrap_or(0);
    for (name, sha256) in listed {
        eprintln!(
            "halo export: {name} ({:.1} MB, sha256 {})",
            size(name) as f64 / 1e6,
            &sha256[..16]
        );
    }
    if let Some(inc) = &files.code_head_incremental {
        let total: u64 = inc.blocks.iter().map(|b| size(&b.name)).sum();
        eprintln!(
            "halo export: {} block graphs of {} codes, {}0000.onnx .. ({:.1} MB in all)",
            inc.blocks.len(),
            inc.block_len,
            halo_core::manifest::graph::CODE_HEAD_BLOCK_PREFIX,
            total as f64 / 1e6
        );
    }
}
