//! `halo package`: a bundle unpacked into an empty folder outside the repository runs with a bare
//! environment (`env -i`, PATH=/usr/bin:/bin: no virtualenv, no cargo), verifies, samples JSONL and MEDS,
//! refuses any flipped byte by the file's name, and carries no id or date of the training data.

mod common;

use common::{export, fixture_model_copy, halo, stderr, tamper_verify_digest, train};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Offset added to every person id of the copy of fixtures/tiny-omop, so that the ids are strings a grep
/// can find (the fixture's own ids are 1..40).
const ID_OFFSET: u64 = 731_000_000;

struct Planted {
    data: PathBuf,
    /// Person ids, person and visit source values, visit dates.
    needles: Vec<String>,
}

/// A copy of fixtures/tiny-omop with distinctive person ids, and the strings that must not ship.
fn planted_omop(dir: &Path) -> Planted {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tiny-omop");
    let data = dir.join("omop");
    std::fs::create_dir(&data).unwrap();
    let mut needles = Vec::new();
    for e in std::fs::read_dir(&src).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let col = |n: &str| header.iter().position(|h| *h == n);
        let person = col("person_id").unwrap();
        let mut out = vec![header.join(",")];
        for line in lines {
            let mut fields: Vec<String> = line.split(',').map(str::to_string).collect();
            let id = ID_OFFSET + fields[person].parse::<u64>().unwrap();
            fields[person] = id.to_string();
            needles.push(id.to_string());
            if name == "PERSON.csv" {
                needles.push(fields[col("person_source_value").unwrap()].clone());
            }
            if name == "VISIT_OCCURRENCE.csv" {
                needles.push(fields[col("visit_source_value").unwrap()].clone());
                needles.push(fields[col("visit_start_date").unwrap()].clone());
            }
            out.push(fields.join(","));
        }
        std::fs::write(data.join(&name), out.join("\n") + "\n").unwrap();
    }
    needles.sort();
    needles.dedup();
    needles.retain(|n| n.len() >= 8);
    Planted { data, needles }
}

/// Trains on the planted copy, exports signed, and returns (model dir, public key file, what must not ship).
fn signed_model(dir: &Path) -> (PathBuf, PathBuf, Vec<String>) {
    let planted = planted_omop(dir);
    let ck = dir.join("ck");
    let o = train(
        planted.data.to_str().unwrap(),
        &ck,
        &["--epochs", "2", "--min-patients", "5"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let (public, secret) = common::keygen(dir, "k");
    let model = dir.join("model");
    let o = export(
        &ck,
        &model,
        &["--sign", secret.to_str().unwrap(), "--verify-count", "20"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    (model, public, planted.needles)
}

fn package(model: &Path, out: &Path, public: &Path, extra: &[&str]) {
    let mut args = vec![
        "package",
        "--model",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--public-key",
        public.to_str().unwrap(),
    ];
    args.extend(extra);
    let o = halo(&args);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Unpacks `archive` into a new empty temporary folder with the system's tar; returns (folder, bundle root).
fn unpack(archive: &Path) -> (tempfile::TempDir, PathBuf) {
    let site = tempfile::Builder::new().prefix("halo-site.").tempdir().unwrap();
    let root = common::unpack_bundle(archive, site.path());
    (site, root)
}

/// Runs a bundle command as a site does: from the bundle's folder, with nothing but PATH=/usr/bin:/bin.
fn at_site(root: &Path, args: &[&str]) -> Output {
    Command::new(root.join("bin/halo-sample"))
        .args(args)
        .current_dir(root)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn all_files(root: &Path) -> Vec<PathBuf> {
    halo_infer::site::files_under(root).unwrap()
}

#[test]
fn a_bundle_runs_on_a_bare_environment_refuses_any_flipped_byte_and_carries_no_training_data() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, public, needles) = signed_model(tmp.path());
    let archive = tmp.path().join("site-bundle.tar.gz");
    package(&model, &archive, &public, &[]);
    let (_site, root) = unpack(&archive);
    assert_eq!(root.file_name().unwrap(), "site-bundle");
    for f in [
        "bin/halo-sample",
        "SITE.md",
        "bundle.json",
        "SHA256SUMS",
        "model/manifest.json.minisig",
    ] {
        assert!(root.join(f).is_file(), "{f} missing");
    }
    let key = common::key_line(&public);
    let site_md = std::fs::read_to_string(root.join("SITE.md")).unwrap();
    assert!(
        site_md.contains(&format!("bin/halo-sample verify --model model --trust {key}")),
        "{site_md}"
    );
    assert!(
        site_md.contains("trained with k = 5") && !site_md.contains("Warning"),
        "{site_md}"
    );
    assert!(site_md.contains("`halo-sample` makes no network connection, and writes nothing outside its `--out`"));
    assert!(
        site_md.contains("| signature | halo model model version 1, exported "),
        "{site_md}"
    );

    let o = at_site(&root, &["verify", "--model", "model", "--trust", &key]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(
        out.contains("verify: bundle: all") && out.contains("verify: identical"),
        "{out}"
    );
    assert!(
        stderr(&o).contains("found via next to the executable"),
        "{}",
        stderr(&o)
    );
    let o = at_site(&root, &["--version", "--model", "model"]);
    assert!(
        stdout(&o).contains("ONNX Runtime 1.31.1")
            && stdout(&o).contains("(signed: halo model model version 1, exported "),
        "{}",
        stdout(&o)
    );
    for (format, out) in [("jsonl", "s.jsonl"), ("meds", "s-meds")] {
        let o = at_site(
            &root,
            &[
                "--model", "model", "--trust", &key, "--count", "1000", "--seed", "1", "--format", format, "--out", out,
            ],
        );
        assert!(o.status.success(), "{format}: {}", stderr(&o));
    }
    assert_eq!(
        std::fs::read_to_string(root.join("s.jsonl")).unwrap().lines().count(),
        1000
    );
    let meds = halo_core::meds::read_meds(&root.join("s-meds"), &Default::default()).unwrap();
    // Every subject comes back; one whose only visit drew no code (a record JSONL keeps as one empty visit)
    // holds nothing but its visit-type row, which the MEDS reader counts as a subject without visits.
    assert_eq!(meds.report.patients, 1000, "{:?}", meds.report);
    assert!(
        meds.patients.len() + meds.report.patients_without_visits == 1000 && meds.patients.len() >= 990,
        "{:?}",
        meds.report
    );

    // Nothing of the training data: no person id, person or visit source value, or visit date.
    assert!(needles.len() > 100, "{}", needles.len());
    let bundle_files: Vec<PathBuf> = all_files(&root)
        .into_iter()
        .filter(|f| !f.starts_with(root.join("s-meds")) && !f.ends_with("s.jsonl"))
        .collect();
    let mut by_length: std::collections::BTreeMap<usize, std::collections::HashSet<&[u8]>> = Default::default();
    for n in &needles {
        by_length.entry(n.len()).or_default().insert(n.as_bytes());
    }
    for f in &bundle_files {
        let bytes = std::fs::read(f).unwrap();
        for (len, set) in &by_length {
            if let Some(w) = bytes.windows(*len).find(|w| set.contains(w)) {
                panic!("{} holds `{}`", f.display(), String::from_utf8_lossy(w));
            }
        }
    }

    // A flipped byte in any file is refused, by the file's name.
    for f in &bundle_files {
        let rel = f.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
        let original = std::fs::read(f).unwrap();
        let mut flipped = original.clone();
        *flipped.last_mut().unwrap() ^= 0x01;
        std::fs::write(f, &flipped).unwrap();
        let o = at_site(&root, &["verify", "--model", "model", "--trust", &key]);
        let out = stdout(&o);
        assert_eq!(o.status.code(), Some(1), "{rel}: {out}");
        assert!(
            out.contains("FAILED") && out.contains(&rel),
            "{rel}: {out}{}",
            stderr(&o)
        );
        std::fs::write(f, &original).unwrap();
    }
    // A file added next to the binary is refused too.
    std::fs::write(root.join("bin/libextra.so"), b"x").unwrap();
    let out = stdout(&at_site(&root, &["verify", "--model", "model"]));
    assert!(out.contains("bin/libextra.so") && out.contains("not listed"), "{out}");
}

/// `halo package` of `model` into `out` (unsigned, so no --public-key).
fn package_unsigned(model: &Path, out: &Path) -> Output {
    halo(&[
        "package",
        "--model",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
}

#[test]
fn a_bundle_ships_only_what_the_manifest_names_and_never_a_model_that_fails_its_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("site.tar.gz");

    // A note, a sub-folder and a link to a system file in the model folder: refused, each named.
    let planted = fixture_model_copy(tmp.path(), "planted");
    std::fs::write(planted.join("notes.txt"), "patient 731000001 called").unwrap();
    std::fs::create_dir(planted.join("drafts")).unwrap();
    std::fs::write(planted.join("drafts/model.onnx"), "x").unwrap();
    std::os::unix::fs::symlink("/etc/hostname", planted.join("hostname")).unwrap();
    let o = package_unsigned(&planted, &archive);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    for named in [
        "`notes.txt` (a file",
        "`drafts` (a folder)",
        "`hostname` (a symbolic link)",
    ] {
        assert!(stderr(&o).contains(named), "{named}: {}", stderr(&o));
    }
    assert!(!archive.exists());

    // Seven of the 100 verify records tampered in an unsigned manifest whose files all match: refused
    // before anything is written.
    let tampered = fixture_model_copy(tmp.path(), "tampered");
    tamper_verify_digest(&tampered, &[3, 10, 20, 30, 40, 50, 60]);
    let o = package_unsigned(&tampered, &archive);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("7 of 100 records sampled at seed 0")
            && stderr(&o).contains("differ from its verify digest (records 3, 10, 20, 30, 40, and 2 more)"),
        "{}",
        stderr(&o)
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("site"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // The fixture itself (trained with k = 1): packaged; SITE.md says k and warns.
    let model = fixture_model_copy(tmp.path(), "model");
    let o = package_unsigned(&model, &archive);
    assert!(o.status.success(), "{}", stderr(&o));
    let (_site, root) = unpack(&archive);
    let site_md = std::fs::read_to_string(root.join("SITE.md")).unwrap();
    assert!(
        site_md.contains("trained with k = 1") && site_md.contains("**Warning: k = 1 is below 5.**"),
        "{site_md}"
    );
    assert!(
        site_md.contains("`halo-sample` makes no network connection"),
        "{site_md}"
    );
    let mut shipped: Vec<String> = std::fs::read_dir(root.join("model"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    shipped.sort();
    let mut fixture: Vec<String> = std::fs::read_dir(&model)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    fixture.sort();
    assert_eq!(shipped, fixture);

    // A file added to the bundle's model/ and listed in SHA256SUMS (as the bundle's own check would then
    // pass): verify refuses it, by name, as a file the manifest does not name.
    let o = at_site(&root, &["verify", "--model", "model"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    std::fs::write(root.join("model/notes.txt"), "x").unwrap();
    let mut sums = std::fs::read_to_string(root.join("SHA256SUMS")).unwrap();
    sums.push_str(&format!("{}  model/notes.txt\n", halo_core::manifest::sha256_hex(b"x")));
    std::fs::write(root.join("SHA256SUMS"), sums).unwrap();
    let o = at_site(&root, &["verify", "--model", "model"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("verify: bundle: all") && out.contains("verify: contents: FAILED") && out.contains("`notes.txt`"),
        "{out}"
    );
}

#[test]
fn a_cuda_bundle_carries_the_gpu_build_and_its_providers_and_still_runs_on_the_cpu() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, public, _) = signed_model(tmp.path());
    let archive = tmp.path().join("gpu.tar.gz");
    package(&model, &archive, &public, &["--cuda"]);
    let (_site, root) = unpack(&archive);
    for lib in [
        "libonnxruntime.so.1.31.1",
        "libonnxruntime_providers_shared.so",
        "libonnxruntime_providers_cuda.so",
    ] {
        assert!(root.join("bin").join(lib).is_file(), "{lib} missing");
    }
    let info: halo_infer::site::BundleInfo =
        serde_json::from_str(&std::fs::read_to_string(root.join("bundle.json")).unwrap()).unwrap();
    assert_eq!(info.onnxruntime_build, "cuda");
    assert!(
        info.system_libraries.iter().any(|l| l.starts_with("libcudart.so.13")),
        "{:?}",
        info.system_libraries
    );
    let site_md = std::fs::read_to_string(root.join("SITE.md")).unwrap();
    assert!(
        site_md.contains("--device cuda") && site_md.contains("cuDNN 9"),
        "{site_md}"
    );
    // Without a GPU (this machine), the CUDA build runs the model on the CPU and verifies.
    let key = common::key_line(&public);
    let o = at_site(&root, &["verify", "--model", "model", "--trust", &key]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
}
