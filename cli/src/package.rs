//! `halo package`: the one archive a partner site receives. `bin/halo-sample` with the ONNX Runtime library
//! it loads (found next to it, no environment needed), `model/` unchanged, `SITE.md` (what to run and what to
//! expect), `bundle.json`, licence notices, and `SHA256SUMS` over every file. The layout and file names are
//! `halo_infer::site`'s, the contract `halo-sample verify` checks.

mod archive;

use crate::elf;
use anyhow::{bail, Context, Result};
use archive::{write_archive, Entry};
use clap::Args;
use halo_core::fsutil::{self, Target};
use halo_core::manifest::{Manifest, MANIFEST, SIGNATURE};
use halo_infer::output::{Output, OutputFormat};
use halo_infer::runtime::{self, Device, SessionOptions};
use halo_infer::site::{self, BundleInfo, ExpectedFigures};
use halo_infer::{generate, Model, Plan, Sampled};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The toolkit's licence, shipped in every bundle.
const TOOLKIT_LICENSE: &str = include_str!("../../LICENSE");
/// ONNX Runtime release of the pinned wheels (requirements.txt; the GPU build from scripts/setup.sh).
const ONNXRUNTIME_GPU_DIR: &str = "onnxruntime-gpu-1.31.1";
/// Execution provider libraries a CUDA bundle carries next to libonnxruntime.
const CUDA_PROVIDER_LIBRARIES: [&str; 2] = ["libonnxruntime_providers_shared.so", "libonnxruntime_providers_cuda.so"];
/// Records sampled for the expected figures.
const FIGURE_RECORDS: u64 = 1000;

#[derive(Args)]
pub struct PackageCmd {
    /// Model directory written by `halo export` (copied unchanged into the bundle's model/).
    #[arg(long, value_name = "MODEL_DIR")]
    model: PathBuf,
    /// The archive to write (BUNDLE.tar.gz; must not exist). It unpacks into a folder of the same name.
    #[arg(long, value_name = "BUNDLE.tar.gz")]
    out: PathBuf,
    /// Ship the CUDA build of ONNX Runtime (onnxruntime-gpu, same version) with its CUDA execution provider
    /// instead of the CPU build. The site then needs an NVIDIA driver, CUDA 13 and cuDNN 9 (SITE.md lists
    /// the libraries).
    #[arg(long)]
    cuda: bool,
    /// Public key of a signed model directory (required when the model is signed): the signature is checked
    /// now, and SITE.md gives the key and the command that checks it at the site.
    #[arg(long, value_name = "PUBLIC_KEY")]
    public_key: Option<PathBuf>,
    /// The halo-sample binary to ship [default: the one next to this halo].
    #[arg(long, value_name = "PATH")]
    sampler: Option<PathBuf>,
    /// The ONNX Runtime library to ship (the file, or its folder) [default: the CPU library halo-sample finds;
    /// with --cuda, the onnxruntime-gpu wheel's, which scripts/setup.sh unpacks into the cache].
    #[arg(long, value_name = "PATH")]
    ort_lib: Option<PathBuf>,
}

pub fn run(cmd: PackageCmd) -> Result<()> {
    let folder = bundle_folder_name(&cmd.out)?;
    fsutil::check_fresh(&cmd.out, Target::Absent, "halo package never overwrites a bundle")?;

    let CheckedModel {
        manifest,
        signed,
        public_key,
        signed_comment,
    } = check_model(&cmd.model, cmd.public_key.as_deref())?;

    // The sampler and the ONNX Runtime library it will load at the site.
    let sampler = match &cmd.sampler {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("halo-sample"),
    };
    if !sampler.is_file() {
        bail!(
            "{}: no halo-sample binary (build it with scripts/setup.sh, or give --sampler PATH)",
            sampler.display()
        );
    }
    let ort = OrtFiles::find(cmd.ort_lib.as_deref(), cmd.cuda)?;

    let mut model = load_on_cpu(&cmd.model)?;
    eprintln!("halo package: re-sampling the verify digest as `halo-sample verify` will at the site ...");
    check_verify_digest(&mut model)?;
    eprintln!("halo package: measuring the expected figures ({FIGURE_RECORDS} records on the CPU) ...");
    let expected = measure(&mut model, &manifest)?;
    drop(model);

    let mut entries = file_entries(&sampler, &ort, &manifest, &cmd.model, signed);
    let (glibc, system_libraries) = system_needs(&sampler, &ort)?;

    let created = halo_core::fsutil::stamp_time()?;
    let info = BundleInfo {
        bundle_format: site::BUNDLE_FORMAT,
        toolkit_version: halo_infer::TOOLKIT_VERSION.to_string(),
        git_commit: halo_infer::GIT_COMMIT.to_string(),
        onnxruntime_version: ort.version.clone(),
        onnxruntime_build: if cmd.cuda { "cuda" } else { "cpu" }.to_string(),
        model_manifest_sha256: halo_infer::model::file_sha256(&cmd.model.join(MANIFEST))?,
        model_signed: signed,
        created: created.format("%Y-%m-%d").to_string(),
        min_glibc: elf::version_text(&glibc),
        system_libraries,
        expected,
        privacy: halo_core::privacy::describe(manifest.privacy.as_ref()),
    };
    let site_md = crate::site_readme::site_readme(&info, &manifest, public_key.as_deref(), signed_comment.as_deref());
    entries.push(Entry::bytes(site::SITE_MD, site_md.into_bytes()));
    let mut json = serde_json::to_vec_pretty(&info)?;
    json.push(b'\n');
    entries.push(Entry::bytes(site::BUNDLE_JSON, json));
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let mut sums = Vec::with_capacity(entries.len());
    for e in &entries {
        sums.push((e.path.clone(), e.sha256()?));
    }
    entries.push(Entry::bytes(site::SUMS, site::format_sums(&sums).into_bytes()));

    write_archive(&cmd.out, &folder, &entries, created.timestamp().max(0) as u64)?;
    let size = std::fs::metadata(&cmd.out)?.len();
    eprintln!(
        "halo package: wrote {} ({:.1} MB, {} files in {folder}/; ONNX Runtime {} {}; glibc >= {})",
        cmd.out.display(),
        size as f64 / 1e6,
        entries.len(),
        info.onnxruntime_version,
        info.onnxruntime_build,
        info.min_glibc
    );
    eprintln!("halo package: a site unpacks it and runs first: {folder}/bin/halo-sample verify --model {folder}/model");
    Ok(())
}

/// The bundle's files but its generated ones: the sampler and the ONNX Runtime libraries, the model
/// directory's files (named by its manifest, the signature only when `signed`) and the licences.
fn file_entries(sampler: &Path, ort: &OrtFiles, manifest: &Manifest, model_dir: &Path, signed: bool) -> Vec<Entry> {
    let mut entries = vec![Entry::file(
        format!("{}/halo-sample", site::BIN),
        sampler.to_path_buf(),
        true,
    )];
    for (name, source) in &ort.libraries {
        entries.push(Entry::file(format!("{}/{name}", site::BIN), source.clone(), true));
    }
    // Named, never listed: what else appears in the folder meanwhile is not shipped.
    for name in halo_infer::model::model_file_names(manifest) {
        let file = model_dir.join(&name);
        if name != SIGNATURE || signed {
            entries.push(Entry::model_file(format!("{}/{name}", site::MODEL), file));
        }
    }
    entries.push(Entry::bytes(
        format!("{}/halo-LICENSE", site::LICENSES),
        TOOLKIT_LICENSE.as_bytes().to_vec(),
    ));
    entries.push(Entry::file(
        format!("{}/onnxruntime-LICENSE", site::LICENSES),
        ort.license.clone(),
        false,
    ));
    entries.push(Entry::file(
        format!("{}/onnxruntime-ThirdPartyNotices.txt", site::LICENSES),
        ort.notices.clone(),
        false,
    ));
    entries
}

/// What the binaries need from the site's system: the newest glibc symbol version, and the libraries they
/// link that the bundle does not ship.
fn system_needs(sampler: &Path, ort: &OrtFiles) -> Result<(Vec<u32>, Vec<String>)> {
    let mut glibc: Vec<u32> = Vec::new();
    let mut system_libraries: Vec<String> = Vec::new();
    let shipped: Vec<&str> = ort.libraries.iter().map(|(n, _)| n.as_str()).collect();
    for path in std::iter::once(sampler).chain(ort.libraries.iter().map(|(_, p)| p.as_path())) {
        let needs = elf::needs(path)?;
        if let Some(v) = needs.glibc.last() {
            glibc = glibc.max(v.clone());
        }
        for lib in needs.libraries {
            if !shipped.contains(&lib.as_str()) && !system_libraries.contains(&lib) {
                system_libraries.push(lib);
            }
        }
    }
    system_libraries.sort();
    Ok((glibc, system_libraries))
}

/// A model directory as `halo package` found it: intact, signed as claimed.
struct CheckedModel {
    manifest: Manifest,
    signed: bool,
    /// The public key's base64 line, for SITE.md (signed models).
    public_key: Option<String>,
    /// The signature's trusted comment (signed models).
    signed_comment: Option<String>,
}

/// The model: nothing but the files its manifest accounts for, intact, signed as claimed (a signed model needs
/// `--public-key`, an unsigned one must not be given one).
fn check_model(dir: &Path, public_key: Option<&Path>) -> Result<CheckedModel> {
    let manifest = halo_infer::model::read_manifest(dir)?;
    halo_infer::model::check_only_named_files(dir, &manifest)?;
    halo_infer::model::check_files(dir, &manifest)?;
    let signed = dir.join(SIGNATURE).is_file();
    let (public_key, signed_comment) = match (public_key, signed) {
        (Some(key), true) => {
            let text = key.to_string_lossy().into_owned();
            let pk = halo_infer::trust::read_public_key("--public-key", &text)?;
            let comment = halo_infer::trust::check_signature(dir, &pk)?.trusted_comment;
            (Some(public_key_line(key)?), Some(comment))
        }
        (Some(_), false) => bail!(
            "{}: --public-key given but the model directory is not signed (no {SIGNATURE}); export it with \
             `halo export --sign`",
            dir.display()
        ),
        (None, true) => bail!(
            "{}: the model directory is signed; pass --public-key with its public key, so that SITE.md can tell \
             the site how to check it",
            dir.display()
        ),
        (None, false) => {
            eprintln!(
                "halo package: note: the model directory is not signed; a site can check the files but not \
                 where they came from (`halo export --sign`)"
            );
            (None, None)
        }
    };
    Ok(CheckedModel {
        manifest,
        signed,
        public_key,
        signed_comment,
    })
}

/// The folder the archive unpacks into: its file name without `.tar.gz` / `.tgz`.
fn bundle_folder_name(out: &Path) -> Result<String> {
    let name = out.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let stem = name
        .strip_suffix(".tar.gz")
        .or_else(|| name.strip_suffix(".tgz"))
        .filter(|s| !s.is_empty() && halo_core::manifest::is_plain_file_name(s));
    match stem {
        Some(s) => Ok(s.to_string()),
        None => bail!(
            "--out {}: expected a file name ending in .tar.gz (e.g. site-bundle.tar.gz)",
            out.display()
        ),
    }
}

/// The base64 line of a minisign public key file, or the key itself when given as text.
fn public_key_line(key: &Path) -> Result<String> {
    if key.is_file() {
        let text = std::fs::read_to_string(key)?;
        if let Some(line) = text.lines().nth(1) {
            return Ok(line.trim().to_string());
        }
        bail!("{}: not a minisign public key file", key.display());
    }
    Ok(key.to_string_lossy().trim().to_string())
}

/// The ONNX Runtime files a bundle ships.
struct OrtFiles {
    /// (name in bin/, source): the library itself first, then execution provider libraries.
    libraries: Vec<(String, PathBuf)>,
    version: String,
    license: PathBuf,
    notices: PathBuf,
}

impl OrtFiles {
    fn find(explicit: Option<&Path>, cuda: bool) -> Result<OrtFiles> {
        let library = match (explicit, cuda) {
            (Some(p), _) => runtime::find_library(Some(p))?.0,
            (None, false) => runtime::find_library(None)?.0,
            (None, true) => {
                let cache = std::env::var_os("HALO_CACHE")
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/halo")))
                    .context("neither HALO_CACHE nor HOME is set")?;
                let capi = cache.join(ONNXRUNTIME_GPU_DIR).join("capi");
                runtime::find_library(Some(&capi))
                    .with_context(|| {
                        format!(
                        "--cuda needs the onnxruntime-gpu library: run scripts/setup.sh (it unpacks it into {}), or \
                         give --ort-lib",
                        capi.display()
                    )
                    })?
                    .0
            }
        };
        let library = std::fs::canonicalize(&library).with_context(|| format!("resolving {}", library.display()))?;
        let name = library
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let version = name
            .strip_prefix(&format!("{}.", runtime::LIBRARY_NAME))
            .filter(|v| v.chars().next().is_some_and(|c| c.is_ascii_digit()))
            .with_context(|| {
                format!(
                    "{}: expected the versioned library file of an onnxruntime wheel (libonnxruntime.so.1.31.1)",
                    library.display()
                )
            })?
            .to_string();
        let capi = library.parent().context("library without a folder")?;
        let mut libraries = vec![(name, library.clone())];
        let providers = capi.join(CUDA_PROVIDER_LIBRARIES[1]);
        if cuda {
            for p in CUDA_PROVIDER_LIBRARIES {
                let path = capi.join(p);
                if !path.is_file() {
                    bail!(
                        "{}: missing, so {} is not the onnxruntime-gpu build --cuda ships",
                        path.display(),
                        library.display()
                    );
                }
                libraries.push((p.to_string(), path));
            }
        } else if providers.exists() {
            bail!(
                "{}: this is the onnxruntime-gpu build (it has {}); pass --cuda to ship it, or the CPU library",
                library.display(),
                CUDA_PROVIDER_LIBRARIES[1]
            );
        }
        // The wheel keeps its notices one level up: onnxruntime/{LICENSE,ThirdPartyNotices.txt}.
        let wheel = capi.parent().context("library folder without a parent")?;
        let (license, notices) = (wheel.join("LICENSE"), wheel.join("ThirdPartyNotices.txt"));
        for p in [&license, &notices] {
            if !p.is_file() {
                bail!(
                    "{}: missing; ONNX Runtime's licence notices must ship with it (give the library of an unpacked \
                     onnxruntime wheel)",
                    p.display()
                );
            }
        }
        Ok(OrtFiles {
            libraries,
            version,
            license,
            notices,
        })
    }
}

/// Threads of the packaging checks: the figures are measured with as many as a small site machine has.
fn figure_threads() -> usize {
    runtime::default_threads().min(2)
}

/// The model loaded on the CPU with [`figure_threads`] threads.
fn load_on_cpu(model_dir: &Path) -> Result<Model> {
    let rt = runtime::init(None)?;
    Ok(Model::load(
        model_dir,
        rt,
        &SessionOptions {
            device: Device::Cpu,
            threads: Some(figure_threads()),
        },
    )?)
}

/// Re-samples the manifest's verify records at the batch sizes `halo-sample verify` uses, and refuses a model
/// whose records differ from its digest: the site's first command would fail on it.
fn check_verify_digest(model: &mut Model) -> Result<()> {
    let manifest_path = model.dir.join(halo_core::manifest::MANIFEST);
    let outcome = halo_infer::verify::verify(model).context("checking the model's verify digest")?;
    let (count, seed) = (outcome.expected.count, outcome.expected.seed);
    for check in &outcome.checks {
        let m = &check.mismatches;
        if m.is_empty() {
            continue;
        }
        let shown = halo_infer::verify::SHOWN_MISMATCHES;
        let mut records: Vec<String> = m.iter().take(shown).map(|m| m.record.to_string()).collect();
        if m.len() > shown {
            records.push(format!("and {} more", m.len() - shown));
        }
        bail!(
            "{}: {} of {count} records sampled at seed {seed} (batch size {}) differ from its verify digest \
             (records {}): the site's first command, `halo-sample verify`, would fail. The manifest or the graphs \
             changed after export; export the model again (no bundle written)",
            manifest_path.display(),
            m.len(),
            check.batch_size,
            records.join(", ")
        );
    }
    eprintln!(
        "halo package: verify digest: the {count} records at seed {seed} are identical at batch sizes {}",
        outcome
            .checks
            .iter()
            .map(|c| c.batch_size.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// Samples [`FIGURE_RECORDS`] records on the CPU (batch 256) and writes them as JSONL and, when the model
/// gives times, as MEDS: records per second and output size per 1,000 records.
fn measure(model: &mut Model, manifest: &Manifest) -> Result<ExpectedFigures> {
    let threads = figure_threads();
    let scratch = tempfile::Builder::new().prefix(".halo-package.").tempdir()?;
    let jsonl = scratch.path().join("records.jsonl");
    let batch_size = 256;
    let started = Instant::now();
    let mut output = Output::create(&jsonl, OutputFormat::Jsonl, None, None)?;
    let mut records: Vec<Sampled> = Vec::new();
    generate(
        model,
        &Plan {
            seed: 1,
            records: 0..FIGURE_RECORDS,
            batch_size,
            conditions: None,
        },
        |batch| {
            output.write(batch.clone())?;
            records.extend(batch);
            Ok(())
        },
    )?;
    output.finish()?;
    let seconds = started.elapsed().as_secs_f64();
    let per_1000 = |bytes: u64| bytes as f64 / 1e6 * 1000.0 / FIGURE_RECORDS as f64;
    let jsonl_mb = per_1000(std::fs::metadata(&jsonl)?.len());
    let meds_mb = if halo_infer::output::check_model_for(OutputFormat::Meds, &manifest.encoding).is_ok() {
        let meds = scratch.path().join("meds");
        let mut output = Output::create(&meds, OutputFormat::Meds, None, Some(&manifest.encoding))?;
        output.write(records)?;
        output.finish()?;
        let bytes: u64 = site::files_under(&meds)?
            .iter()
            .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
            .sum();
        Some(per_1000(bytes))
    } else {
        None
    };
    Ok(ExpectedFigures {
        records_per_second: (FIGURE_RECORDS as f64 / seconds.max(1e-9) * 10.0).round() / 10.0,
        threads,
        batch_size,
        jsonl_mb_per_1000_records: (jsonl_mb * 100.0).round() / 100.0,
        meds_mb_per_1000_records: meds_mb.map(|mb| (mb * 100.0).round() / 100.0),
        cpu: cpu_name(),
    })
}

/// The CPU's model name from /proc/cpuinfo.
fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".to_string())
}
