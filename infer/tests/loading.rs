//! Before any record is sampled: a thread count far above the cores is refused at once, and a run stopped
//! while ONNX Runtime loads leaves no output, not even a temporary one (it is created once the sessions exist).

use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tiny-model")
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

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
