//! SITE.md, the instructions in a site bundle (`halo package`): what the bundle is, the three commands a site
//! runs in order, the figures measured for this model, what to do when a check fails, and the licences.

use crate::export::SMALL_CELL_MINIMUM;
use halo_core::manifest::Manifest;
use halo_infer::site::BundleInfo;

/// SITE.md: what the bundle is, the commands a site runs, the figures to expect, what to do when a check
/// fails, and the licences.
pub fn site_readme(
    info: &BundleInfo,
    manifest: &Manifest,
    public_key: Option<&str>,
    signed_comment: Option<&str>,
) -> String {
    let c = &manifest.model;
    let trust = public_key.map(|k| format!(" --trust {k}")).unwrap_or_default();
    let mut s = String::new();
    let mut line = |t: &str| {
        s.push_str(t);
        s.push('\n');
    };
    line("# HALO synthetic-record bundle");
    line("");
    line(
        "This folder samples synthetic patient records from a HALO model trained at another site. It holds no \
         patient record: no record, id, date or path of the training data leaves with the model.",
    );
    let k = manifest.encoding.options.min_patients;
    line(&format!(
        "Small cells: the model was trained with k = {k} (`halo train --min-patients {k}`): its vocabulary keeps \
         only codes seen in at least {k} training patient{}, and its bucket edges (gaps, ages, lab values) are \
         rounded and top-coded on that rule.",
        if k == 1 { "" } else { "s" }
    ));
    if k < SMALL_CELL_MINIMUM {
        line("");
        line(&format!(
            "**Warning: k = {k} is below {SMALL_CELL_MINIMUM}.** It was exported with `--allow-small-cells`: codes \
             and values held by fewer than {SMALL_CELL_MINIMUM} patients{} may be in the model and in the records \
             it samples. Treat this bundle as you would data about the training patients, unless your privacy \
             officer has approved it as it is.",
            if k == 1 { ", even by a single patient," } else { "" }
        ));
    }
    line("");
    match &manifest.privacy {
        None => line(
            "Differential privacy: none, the model was not trained with differential privacy. What protects the \
             training patients is the small-cell rule above and the measured privacy attacks of the training \
             site's evaluation report.",
        ),
        Some(ledger) => {
            line(&format!(
                "Differential privacy: the model was trained with differential privacy, epsilon {:.2} at delta {:.0e} \
                 for each training patient: whatever a site does with this model and the records it samples, it \
                 learns little more about any one patient than it would had that patient not been in the training \
                 data (docs/privacy.md of the toolkit says what that covers). Every release of the training data \
                 that went into the model, composed by the accountant ({}):",
                ledger.total_epsilon, ledger.delta, ledger.accountant
            ));
            line("");
            for m in &ledger.mechanisms {
                line(&format!("- {}", m.describe()));
            }
        }
    }
    line("");
    line(
        "Nothing leaves the machine: `halo-sample` makes no network connection, and writes nothing outside its \
         `--out` (built under a temporary name beside it, then renamed; `verify` writes nothing). The ONNX \
         Runtime library in bin/ is Microsoft's build, whose telemetry is on by default; `halo-sample` turns it \
         off before loading the library (`ORT_DISABLE_TELEMETRY=1`), so it writes nothing under \
         `~/.cache/Microsoft` and sends nothing.",
    );
    line("");
    line("| | |");
    line("|---|---|");
    line(&format!(
        "| toolkit | halo {} (commit {}) |",
        info.toolkit_version, info.git_commit
    ));
    line(&format!(
        "| ONNX Runtime | {} ({} build, in bin/) |",
        info.onnxruntime_version, info.onnxruntime_build
    ));
    line(&format!(
        "| model | model/manifest.json sha256 `{}`, {} |",
        info.model_manifest_sha256,
        if info.model_signed { "signed" } else { "not signed" }
    ));
    line(&format!(
        "| model size | {} codes, {} labels, n_embd {}, {} layers, up to {} visits a record |",
        c.code_vocab_size,
        c.label_vocab_size,
        c.n_embd,
        c.n_layer,
        manifest.encoding.sampled_visit_limit()
    ));
    if let Some(comment) = signed_comment {
        line(&format!("| signature | {comment} |"));
    }
    line(&format!("| made | {} |", info.created));
    line(&format!(
        "| needs | Linux x86-64 with glibc {} or newer; system libraries {} |",
        info.min_glibc,
        info.system_libraries.join(", ")
    ));
    line("");
    line("## 1. Check the bundle, before anything else");
    line("");
    match public_key {
        Some(k) => {
            line("The model directory is signed. The public key of its signature is");
            line("");
            line(&format!("    {k}"));
            line("");
            line(
                "Compare it with the key the training site gave you through another channel (mail, phone): a bundle \
                 altered in transit could carry another key in this file.",
            );
        }
        None => line(
            "The model directory is not signed: the check below finds damaged or changed files, but cannot show \
             who made them.",
        ),
    }
    line("");
    line("```");
    line(&format!("bin/halo-sample verify --model model{trust}"));
    line("```");
    line("");
    line(
        "It checks every file against SHA256SUMS (`sha256sum -c SHA256SUMS` does the same), the signature, the \
         model files against their manifest, and re-samples the reference records the exporter stored, at three \
         batch sizes. It must end with `verify: identical`.",
    );
    if let Some(comment) = signed_comment {
        line(&format!(
            "Its `verify: signature: good (...)` line names the model, its version and export time: `{comment}`. \
             Check that this is the model and version you were told to expect (an older signed model still \
             verifies)."
        ));
    }
    if public_key.is_some() {
        line(&format!(
            "With minisign installed, `minisign -Vm model/manifest.json -P {}` checks the signature too.",
            public_key.unwrap_or_default()
        ));
    }
    line("");
    line("## 2. Sample records as JSON lines");
    line("");
    line("```");
    line(&format!(
        "bin/halo-sample --model model{trust} --count 10000 --seed 1 --out synthetic.jsonl"
    ));
    line("```");
    line("");
    line("## 3. Sample records as MEDS");
    line("");
    if info.expected.meds_mb_per_1000_records.is_some() {
        line("```");
        line(&format!(
            "bin/halo-sample --model model{trust} --count 10000 --seed 1 --format meds --out synthetic-meds"
        ));
        line("```");
    } else {
        line(
            "Not available for this model: it gives no visit times (trained without gap codes), which MEDS rows need.",
        );
    }
    line("");
    line(
        "The same seed gives the same records. `--format omop` writes OMOP CDM 5.4 tables instead. `bin/halo-sample \
         --help` lists every option: conditional sampling (`--condition`), shards for several machines \
         (`--shard K/N`: shard folders' data/*.parquet files together form one MEDS data set), threads.",
    );
    if info.onnxruntime_build == "cuda" {
        line(&format!(
            "This bundle carries the CUDA build of ONNX Runtime: add `--device cuda` (or `--device auto`). The GPU \
             needs an NVIDIA driver with CUDA 13, cuDNN 9 for CUDA 13 (libcudnn.so.9, loaded when a session starts) \
             and these libraries on the library path: {}. Without them, the bundle still runs on the CPU.",
            info.system_libraries
                .iter()
                .filter(|l| l.contains("cu") || l.contains("nv"))
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    line("");
    line("## What to expect");
    line("");
    let e = &info.expected;
    let meds = e
        .meds_mb_per_1000_records
        .map(|mb| format!(" and MEDS {mb:.2} MB"))
        .unwrap_or_default();
    line(&format!(
        "Measured when the bundle was made, on the CPU ({}, {} threads, batch {}): {:.0} records per second; \
         JSON lines {:.2} MB{meds} per 1,000 records. A 2-core machine samples at about this speed; more cores \
         are faster (`--threads`).",
        e.cpu, e.threads, e.batch_size, e.records_per_second, e.jsonl_mb_per_1000_records
    ));
    line("");
    line("## When a check fails");
    line("");
    line(
        "- `verify: bundle: FAILED: <file> ...`: that file was damaged or changed after packaging (or the copy is \
         incomplete). Copy the whole archive again and compare its sha256 with the sender's.",
    );
    line(
        "- `verify: signature: FAILED`: the model was changed after it was signed, or signed with another key. Do \
         not use it; ask the training site.",
    );
    line(
        "- `verify: contents: FAILED`: model/ holds a file, folder or link its manifest does not name. Remove \
         it, or unpack the archive again.",
    );
    line(&format!(
        "- `cannot find the ONNX Runtime library` or `could not load`: bin/ must hold libonnxruntime.so.{} next to \
         halo-sample; unpack the whole archive, keeping the folder together. `bin/halo-sample --version` prints the \
         library it loads.",
        info.onnxruntime_version
    ));
    line("- `format_version ... newer`: the model needs a newer halo-sample than this one; ask for a new bundle.");
    line("");
    line("## Licences");
    line("");
    line(
        "The toolkit is under the MIT licence (licenses/halo-LICENSE). ONNX Runtime is under the MIT licence \
         (licenses/onnxruntime-LICENSE); its third-party notices are in licenses/onnxruntime-ThirdPartyNotices.txt.",
    );
    s
}
