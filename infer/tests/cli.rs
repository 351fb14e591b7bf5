//! The `halo-sample` command: output, reproducibility across shards, verify, and clear errors with a
//! non-zero exit status and no partial output for bad input.

use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tiny-model")
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_halo-sample"))
        .args(args)
        .output()
        .expect("run halo-sample")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A copy of the fixture model to damage.
fn copy_model(to: &Path) -> PathBuf {
    let dir = to.join("model");
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(fixture()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    dir
}

/// Names in a folder (to check that nothing, not even a temporary file, was left).
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn sample_args<'a>(model: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "--model", model, "--count", "40", "--seed", "3", "--out", out, "--quiet",
    ];
    a.extend_from_slice(extra);
    a
}

#[test]
fn writes_records_and_shards_concatenate_to_the_same_file() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixture();
    let model = model.to_str().unwrap();
    let all = tmp.path().join("all.jsonl");
    let o = run(&sample_args(model, all.to_str().unwrap(), &["--batch-size", "7"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&all).unwrap();
    assert_eq!(text.lines().count(), 40);
    // Every line is a record `halo` reads back.
    let ds = halo_core::jsonl::read_jsonl(&all).unwrap();
    assert_eq!(ds.patients.len(), 40);
    assert_eq!(ds.patients[39].id, "39");

    let mut joined = String::new();
    for k in 0..3 {
        let part = tmp.path().join(format!("part{k}.jsonl"));
        let shard = format!("{k}/3");
        let o = run(&sample_args(model, part.to_str().unwrap(), &["--shard", &shard]));
        assert!(o.status.success(), "{}", stderr(&o));
        joined.push_str(&std::fs::read_to_string(&part).unwrap());
    }
    assert_eq!(joined, text);

    // Three workers side by side (batches of 2) and one worker of one thread write the same file.
    for (workers, threads, batch) in [("3", "1", "2"), ("1", "1", "40")] {
        let other = tmp.path().join(format!("workers{workers}.jsonl"));
        let extra = ["--workers", workers, "--threads", threads, "--batch-size", batch];
        let o = run(&sample_args(model, other.to_str().unwrap(), &extra));
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            std::fs::read_to_string(&other).unwrap() == text,
            "--workers {workers}: other records"
        );
    }

    // --start numbers records from I: the tail of the full file.
    let tail = tmp.path().join("tail.jsonl");
    let o = run(&[
        "--model",
        model,
        "--count",
        "10",
        "--seed",
        "3",
        "--start",
        "30",
        "--out",
        tail.to_str().unwrap(),
        "--threads",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let expected: String = text.lines().skip(30).map(|l| format!("{l}\n")).collect();
    assert_eq!(std::fs::read_to_string(&tail).unwrap(), expected);
    // Without --quiet it says which ONNX Runtime library it loaded.
    assert!(stderr(&o).contains("libonnxruntime"), "{}", stderr(&o));
}

#[test]
fn conditioned_records_carry_the_fixed_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixture();
    let out = tmp.path().join("c.jsonl");
    // prediabetes is derived from codes (the fixture's label spec): records whose codes lack it are sampled
    // again, and the acceptance rate is reported.
    let args: Vec<&str> = sample_args(
        model.to_str().unwrap(),
        out.to_str().unwrap(),
        &["--condition", "prediabetes=1,SEX/F=1"],
    )
    .into_iter()
    .filter(|a| *a != "--quiet")
    .collect();
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("labels derived from codes meet the conditions in 40 of"),
        "{}",
        stderr(&o)
    );
    let ds = halo_core::jsonl::read_jsonl(&out).unwrap();
    assert_eq!(ds.patients.len(), 40);
    for p in &ds.patients {
        assert!(p.labels.as_ref().unwrap()["prediabetes"]);
        assert!(p.all_codes().any(|c| c == "condition/4311629"), "{p:?}");
        assert_eq!(p.demographics.sex.as_deref(), Some("F"));
    }
}

#[test]
fn verify_says_identical_or_names_the_differing_records() {
    let o = run(&["verify", "--model", fixture().to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(out.contains("identical"), "{out}");

    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_model(tmp.path());
    let mut m = halo_core::manifest::Manifest::read(&dir).unwrap();
    m.verify.as_mut().unwrap().records[4] = "0".repeat(64);
    halo_core::fsutil::write_json_atomic(&dir.join("manifest.json"), &m).unwrap();
    let o = run(&["verify", "--model", dir.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("DIFFERENT") && out.contains("record 4 differs"), "{out}");
}

#[test]
fn bad_input_fails_clearly_without_output() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("records.jsonl");
    let out_s = out.to_str().unwrap();
    let fixture = fixture();
    let model = fixture.to_str().unwrap();

    let check = |args: Vec<&str>, expect: &[&str]| {
        let o = run(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        for e in expect {
            assert!(err.contains(e), "{args:?}: expected `{e}` in: {err}");
        }
        assert!(err.contains("halo-sample: error:"), "{err}");
        assert!(entries(&out_dir).is_empty(), "{args:?} left {:?}", entries(&out_dir));
    };

    // Missing model directory.
    let missing = tmp.path().join("no-model");
    check(
        sample_args(missing.to_str().unwrap(), out_s, &[]),
        &["no-model", "model directory not found"],
    );

    // A folder that is not a model directory.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    check(
        sample_args(empty.to_str().unwrap(), out_s, &[]),
        &["not a model directory", "manifest.json"],
    );

    // Truncated ONNX file.
    let damaged = copy_model(&tmp.path().join("t"));
    let step = damaged.join("visit_transformer_step.onnx");
    let bytes = std::fs::read(&step).unwrap();
    std::fs::write(&step, &bytes[..bytes.len() / 2]).unwrap();
    check(
        sample_args(damaged.to_str().unwrap(), out_s, &[]),
        &["visit_transformer_step.onnx", "sha256", "truncated"],
    );

    // Manifest checksum that does not match the file.
    let damaged = copy_model(&tmp.path().join("m"));
    let mut m = halo_core::manifest::Manifest::read(&damaged).unwrap();
    m.files.code_head.sha256 = "ab".repeat(32);
    halo_core::fsutil::write_json_atomic(&damaged.join("manifest.json"), &m).unwrap();
    check(
        sample_args(damaged.to_str().unwrap(), out_s, &[]),
        &["code_head.onnx", "does not match", "files.code_head.sha256"],
    );

    // File names that leave the model folder are refused before anything is opened: with the sha256 of the
    // target in the manifest, it would otherwise be read and handed to ONNX Runtime.
    let outside = tmp.path().join("outside.onnx");
    std::fs::copy(fixture.join("code_head.onnx"), &outside).unwrap();
    for (k, name) in [
        "../outside.onnx".to_string(),
        outside.to_str().unwrap().to_string(),
        "..".to_string(),
        "sub\\code_head.onnx".to_string(),
    ]
    .into_iter()
    .enumerate()
    {
        let escaped = copy_model(&tmp.path().join(format!("escape{k}")));
        let mut m = halo_core::manifest::Manifest::read(&escaped).unwrap();
        m.files.code_head.name = name.clone();
        halo_core::fsutil::write_json_atomic(&escaped.join("manifest.json"), &m).unwrap();
        check(
            sample_args(escaped.to_str().unwrap(), out_s, &[]),
            &[
                "files.code_head.name",
                "not a plain file name inside the model folder",
                &name,
            ],
        );
        let o = run(&["verify", "--model", escaped.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(stderr(&o).contains("not a plain file name"), "{}", stderr(&o));
    }

    // Manifest whose model config disagrees with the graphs' shapes (checksums still match).
    let reshaped = copy_model(&tmp.path().join("m2"));
    let mut m = halo_core::manifest::Manifest::read(&reshaped).unwrap();
    m.model.n_embd *= 2;
    halo_core::fsutil::write_json_atomic(&reshaped.join("manifest.json"), &m).unwrap();
    check(
        sample_args(reshaped.to_str().unwrap(), out_s, &[]),
        &["has shape", "manifest's model config needs"],
    );

    // Unknown condition label.
    check(
        sample_args(model, out_s, &["--condition", "lupus=1"]),
        &["unknown label `lupus`", "hypertension"],
    );

    // Count 0.
    check(
        vec!["--model", model, "--count", "0", "--seed", "1", "--out", out_s],
        &["--count must be at least 1"],
    );

    // Unwritable output path: its folder is a file.
    let file = out_dir.join("a-file");
    std::fs::write(&file, "x").unwrap();
    let inside = file.join("records.jsonl");
    let o = run(&sample_args(model, inside.to_str().unwrap(), &[]));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    std::fs::remove_file(&file).unwrap();
    // ... or a folder that does not exist.
    let nowhere = tmp.path().join("nowhere/records.jsonl");
    check(
        sample_args(model, nowhere.to_str().unwrap(), &[]),
        &["nowhere", "does not exist"],
    );

    // A shard out of range is refused by the argument parser: typed_arguments_refuse_bad_values_before_any_work.

    // Existing output: refused and left as it was.
    std::fs::write(&out, "keep me\n").unwrap();
    let o = run(&sample_args(model, out_s, &[]));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "keep me\n");
    assert_eq!(entries(&out_dir), vec!["records.jsonl".to_string()]);
}

#[test]
fn cuda_fails_clearly_and_auto_falls_back() {
    // The CPU build of ONNX Runtime has no CUDA execution provider; on a machine with a CUDA build and a
    // GPU this test only checks that both succeed.
    let tmp = tempfile::tempdir().unwrap();
    let model = fixture();
    let model = model.to_str().unwrap();
    let a = tmp.path().join("a.jsonl");
    let o = run(&sample_args(model, a.to_str().unwrap(), &["--device", "auto"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let c = tmp.path().join("c.jsonl");
    let o = run(&sample_args(model, c.to_str().unwrap(), &["--device", "cuda"]));
    if !o.status.success() {
        let err = stderr(&o);
        assert!(err.contains("--device cuda") && err.contains("CUDA"), "{err}");
        assert!(!c.exists());
        let o = run(&[
            "--model",
            model,
            "--count",
            "2",
            "--seed",
            "1",
            "--device",
            "auto",
            "--out",
            tmp.path().join("b.jsonl").to_str().unwrap(),
        ]);
        assert!(stderr(&o).contains("CUDA is not available"), "{}", stderr(&o));
    }
}

#[test]
fn help_describes_every_flag() {
    let o = run(&["--help"]);
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--model",
        "--count",
        "--seed",
        "--out",
        "--format",
        "--batch-size",
        "--shard",
        "--start",
        "--condition",
        "--device",
        "--threads",
        "--quiet",
        "--ort-lib",
        "verify",
        "bench",
        "ORT_DYLIB_PATH",
        "Examples:",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn writes_meds_that_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixture();
    let out = tmp.path().join("meds");
    let o = run(&sample_args(
        model.to_str().unwrap(),
        out.to_str().unwrap(),
        &["--format", "meds"],
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.join("data").is_dir() && out.join("metadata/dataset.json").is_file());
    let ds = halo_core::read_dataset(&out, None, &halo_core::ReadOptions::default()).unwrap();
    let jsonl = tmp.path().join("same.jsonl");
    let o = run(&sample_args(model.to_str().unwrap(), jsonl.to_str().unwrap(), &[]));
    assert!(o.status.success(), "{}", stderr(&o));
    let mut expected = halo_core::jsonl::read_jsonl(&jsonl).unwrap();
    // A record whose only visit is empty has no event to write in MEDS.
    expected
        .patients
        .retain(|p| p.visits.iter().any(|v| !v.codes.is_empty() || !v.labs.is_empty()));
    assert!(expected.patients.len() >= 35);
    assert_eq!(ds.patients.len(), expected.patients.len());
    for (a, b) in ds.patients.iter().zip(&expected.patients) {
        assert_eq!(a.id, b.id);
        assert_eq!(a.demographics.sex, b.demographics.sex);
        let codes = |p: &halo_core::record::Patient| {
            let mut c: Vec<String> = p.all_codes().map(str::to_string).collect();
            c.sort();
            c.dedup();
            c
        };
        let lab_codes = |p: &halo_core::record::Patient| {
            p.visits
                .iter()
                .flat_map(|v| v.labs.iter().map(|l| l.code.clone()))
                .collect::<Vec<_>>()
        };
        let mut want = codes(b);
        want.extend(lab_codes(b));
        want.sort();
        want.dedup();
        assert_eq!(codes(a), want, "record {}", a.id);
    }
    // An existing MEDS folder is refused.
    let o = run(&sample_args(
        model.to_str().unwrap(),
        out.to_str().unwrap(),
        &["--format", "meds"],
    ));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
}

#[test]
fn verify_passes_on_a_format_1_model_directory() {
    let old = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tiny-model-v1");
    let o = run(&["verify", "--model", old.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("identical"));
}

/// Every file under `dir` with its bytes, by relative path.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().display().to_string();
                out.push((rel, std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn source_date_epoch_makes_two_meds_and_omop_runs_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixture();
    let model = model.to_str().unwrap();
    for format in ["meds", "omop"] {
        let runs: Vec<_> = (0..2)
            .map(|k| {
                let out = tmp.path().join(format!("{format}{k}"));
                let o = Command::new(env!("CARGO_BIN_EXE_halo-sample"))
                    .args(sample_args(model, out.to_str().unwrap(), &["--format", format]))
                    .env("SOURCE_DATE_EPOCH", "1796256000")
                    .output()
                    .unwrap();
                assert!(o.status.success(), "{}", stderr(&o));
                tree(&out)
            })
            .collect();
        assert!(runs[0].len() >= 2);
        assert!(runs[0] == runs[1], "{format}: two runs differ");
    }
    let bad = tmp.path().join("bad");
    let o = Command::new(env!("CARGO_BIN_EXE_halo-sample"))
        .args(sample_args(model, bad.to_str().unwrap(), &["--format", "meds"]))
        .env("SOURCE_DATE_EPOCH", "yesterday")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("SOURCE_DATE_EPOCH is `yesterday`"),
        "{}",
        stderr(&o)
    );
    assert!(!bad.exists());
}

#[test]
fn a_terminated_run_leaves_nothing_and_a_killed_runs_leftovers_are_swept() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixture();
    for (signal, format) in [("-TERM", "jsonl"), ("-INT", "meds")] {
        let out = tmp.path().join(format!("big-{format}"));
        let child = Command::new(env!("CARGO_BIN_EXE_halo-sample"))
            .args([
                "--model",
                model.to_str().unwrap(),
                "--count",
                "100000000",
                "--seed",
                "1",
                "--quiet",
            ])
            .args(["--format", format, "--batch-size", "16", "--out", out.to_str().unwrap()])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let temp = tmp.path().join(format!(".big-{format}.{}.tmp", child.id()));
        let started = std::time::Instant::now();
        while !temp.exists() && started.elapsed().as_secs() < 60 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(temp.exists(), "no temporary output appeared");
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap()
            .success());
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(stderr(&o).contains("interrupted"), "{}", stderr(&o));
        assert!(!out.exists() && !temp.exists(), "{format}: {:?}", entries(tmp.path()));
    }
    // What a SIGKILL leaves (a temporary output of a process that no longer runs) goes at the next run.
    let stale = tmp.path().join(".s.jsonl.4194305.tmp");
    std::fs::write(&stale, b"half a record").unwrap();
    let out = tmp.path().join("s.jsonl");
    let o = run(&sample_args(model.to_str().unwrap(), out.to_str().unwrap(), &[]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        !stale.exists() && stderr(&o).contains("removed 1 temporary output"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn typed_arguments_refuse_bad_values_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("records.jsonl");
    let fixture = fixture();
    let base = sample_args(fixture.to_str().unwrap(), out.to_str().unwrap(), &[]);
    let cases: [(&[&str], &str); 4] = [
        (&["--shard", "3/3"], "--shard 3/3: expected K/N with 0 <= K < N"),
        (&["--shard", "1-4"], "expected K/N, e.g. 0/4"),
        (
            &["--format", "csv"],
            "unknown output format `csv` (expected jsonl, meds, omop)",
        ),
        (
            &["--device", "tpu"],
            "unknown device `tpu` (expected cpu, cuda, gpu, auto)",
        ),
    ];
    for (extra, expected) in cases {
        let mut args = base.clone();
        args.extend_from_slice(extra);
        let o = run(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(expected), "{extra:?}: expected `{expected}` in: {err}");
        assert!(!out.exists());
    }
}

// Before any record is sampled: a thread count far above the cores is refused at once, and a run stopped
// while ONNX Runtime loads leaves no output, not even a temporary one (it is created once the sessions exist).

#[test]
fn thread_counts_far_above_the_cores_are_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("r.jsonl");
    let model = fixture();
    for (threads, says) in [("100000", "more than 4 per CPU core"), ("0", "at least 1")] {
        let started = Instant::now();
        let o = Command::new(env!("CARGO_BIN_EXE_halo-sample"))
            .args(["--model", model.to_str().unwrap(), "--count", "3", "--seed", "1"])
            .args(["--out", out.to_str().unwrap(), "--threads", threads])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "--threads {threads}: {err}");
        assert!(err.contains("--threads") && err.contains(says), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10), "refused, not tried");
        assert!(entries(tmp.path()).is_empty(), "{:?}", entries(tmp.path()));
    }
}

/// O_NONBLOCK: opening a FIFO for writing then fails (ENXIO) until a reader has it open.
const O_NONBLOCK: i32 = 0o4000;

#[test]
fn a_run_killed_while_loading_leaves_no_temporary_output() {
    let tmp = tempfile::tempdir().unwrap();
    let (out_dir, lib_dir) = (tmp.path().join("out"), tmp.path().join("lib"));
    std::fs::create_dir(&out_dir).unwrap();
    std::fs::create_dir(&lib_dir).unwrap();
    // An "ONNX Runtime library" that is a FIFO: loading it blocks until someone writes, which holds the
    // sampler inside its set-up for as long as the test likes.
    let fifo = lib_dir.join("libonnxruntime.so");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let model = fixture();
    let out = out_dir.join("r.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_halo-sample"))
        .args(["--model", model.to_str().unwrap(), "--count", "3", "--seed", "1"])
        .args(["--out", out.to_str().unwrap(), "--ort-lib", fifo.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the sampler has the library open (a writer can then open the FIFO), i.e. it is loading.
    let deadline = Instant::now() + Duration::from_secs(30);
    let writer = loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(O_NONBLOCK)
            .open(&fifo)
        {
            Ok(w) => break w,
            Err(e) if e.raw_os_error() == Some(6) || e.kind() == ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "halo-sample never opened the library");
                if let Some(status) = child.try_wait().unwrap() {
                    panic!("halo-sample ended ({status}) before loading the library");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    };
    child.kill().unwrap();
    child.wait().unwrap();
    drop(writer);
    assert!(
        entries(&out_dir).is_empty(),
        "a run killed while loading left {:?}",
        entries(&out_dir)
    );
}
