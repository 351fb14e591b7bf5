//! What a site runs makes no network connection and writes nothing outside its output: the sampler, its
//! verify, and the same binary run from a site bundle, started with an empty HOME, working folder and TMPDIR,
//! leave all three empty (ONNX Runtime's telemetry writes under `~/.cache/Microsoft` when it is on) and,
//! traced by strace where the machine has it, open no network socket and create or write no file but their
//! output. The shipped binary names no path of the machine that built it.

mod common;

use common::{fixture_model_copy, stderr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Every path under `dir` (empty when nothing was written there).
fn contents(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            found.push(p);
        }
    }
    found.sort();
    found
}

/// Empty folders for HOME, the working folder and TMPDIR, and one for the output.
struct Sandbox {
    root: tempfile::TempDir,
    home: PathBuf,
    work: PathBuf,
    tmp: PathBuf,
    out: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let root = tempfile::tempdir().unwrap();
        let dir = |name: &str| {
            let d = root.path().join(name);
            std::fs::create_dir(&d).unwrap();
            d
        };
        let (home, work, tmp, out) = (dir("home"), dir("work"), dir("tmp"), dir("out"));
        Sandbox {
            root,
            home,
            work,
            tmp,
            out,
        }
    }

    /// `program args` as a site runs it: nothing in the environment but PATH, HOME and TMPDIR (the
    /// sandbox's empty folders), started in the empty working folder.
    fn command(&self, program: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.args(args)
            .current_dir(&self.work)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &self.home)
            .env("TMPDIR", &self.tmp);
        c
    }

    /// Runs `program args`, traced by strace when the machine has it; returns its output and the trace.
    fn run(&self, program: &Path, args: &[&str]) -> (Output, Option<String>) {
        if Command::new("strace").arg("-V").output().is_err() {
            eprintln!("strace is not installed: only the empty folders are checked");
            return (self.command(program, args).output().unwrap(), None);
        }
        let log = self.root.path().join("strace.log");
        let traced = [
            "-f",
            "-qq",
            "-e",
            "trace=socket,connect,open,openat,creat,mkdir,mkdirat,rename,renameat,renameat2",
            "-o",
            log.to_str().unwrap(),
            program.to_str().unwrap(),
        ];
        let all: Vec<&str> = traced.iter().chain(args).copied().collect();
        let o = self.command(Path::new("/usr/bin/strace"), &all).output().unwrap();
        let trace = std::fs::read_to_string(&log).unwrap();
        std::fs::remove_file(&log).unwrap();
        assert!(trace.contains("openat("), "the trace recorded nothing:\n{trace}");
        (o, Some(trace))
    }

    /// Checks that `what` wrote nothing but under the output folder and used no network.
    fn assert_nothing_left_the_output(&self, what: &str, trace: Option<&str>) {
        for (name, dir) in [
            ("HOME", &self.home),
            ("working folder", &self.work),
            ("TMPDIR", &self.tmp),
        ] {
            let written = contents(dir);
            assert!(written.is_empty(), "{what} wrote into its {name}: {written:?}");
        }
        let Some(trace) = trace else { return };
        let network: Vec<&str> = trace.lines().filter(|l| network_call(l)).collect();
        assert!(network.is_empty(), "{what} used the network:\n{}", network.join("\n"));
        let outside: Vec<String> = written_paths(trace)
            .into_iter()
            .filter(|p| !p.starts_with(self.out.to_str().unwrap()) && p != "/dev/null")
            .collect();
        assert!(outside.is_empty(), "{what} wrote outside its output: {outside:?}");
    }
}

/// One line of an strace log that opens a network socket or connects anywhere but a local socket.
fn network_call(line: &str) -> bool {
    let opens_inet = line.contains("socket(") && (line.contains("AF_INET") || line.contains("AF_NETLINK"));
    let connects_out = line.contains("connect(") && !line.contains("AF_UNIX") && !line.contains("resumed>");
    opens_inet || connects_out
}

/// Paths an strace log shows created, renamed or opened for writing (failed calls wrote nothing).
fn written_paths(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| {
            let opens = (l.contains("open(") || l.contains("openat(") || l.contains("creat("))
                && ["O_WRONLY", "O_RDWR", "O_CREAT"].iter().any(|f| l.contains(f));
            opens || l.contains("mkdir") || l.contains("rename")
        })
        .filter(|l| !l.contains("= -1 "))
        .filter_map(|l| l.split('"').nth(1).map(str::to_string))
        .collect()
}

fn check(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(o)
    );
}

/// Samples 20 records with `sampler` from `model` and verifies the model, each in a fresh sandbox.
fn sample_and_verify_leave_nothing(sampler: &Path, model: &Path, what: &str) {
    let s = Sandbox::new();
    let out = s.out.join("records.jsonl");
    let args = [
        "--model",
        model.to_str().unwrap(),
        "--count",
        "20",
        "--seed",
        "4",
        "--out",
        out.to_str().unwrap(),
    ];
    let (o, trace) = s.run(sampler, &args);
    check(&o, what);
    assert_eq!(contents(&s.out), vec![out.clone()], "only the output");
    s.assert_nothing_left_the_output(what, trace.as_deref());

    let s = Sandbox::new();
    let (o, trace) = s.run(sampler, &["verify", "--model", model.to_str().unwrap()]);
    check(&o, &format!("{what} verify"));
    s.assert_nothing_left_the_output(&format!("{what} verify"), trace.as_deref());
}

#[test]
fn the_sampler_and_its_verify_write_nothing_outside_the_output_and_use_no_network() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tiny-model");
    // ONNX Runtime found next to the executable (scripts/setup.sh links it there), as at a site.
    let sampler = common::binary("halo-sample");
    sample_and_verify_leave_nothing(&sampler, &model, "halo-sample");
}

#[test]
fn a_site_bundle_run_writes_nothing_outside_its_output_and_uses_no_network() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixture_model_copy(tmp.path(), "model");
    let (_, root) = common::package_unsigned_and_unpack(&model, tmp.path());
    let before = contents(&root);
    let site_md = std::fs::read_to_string(root.join("SITE.md")).unwrap();
    assert!(site_md.contains("no network connection"), "{site_md}");
    sample_and_verify_leave_nothing(
        &root.join("bin/halo-sample"),
        &root.join("model"),
        "the bundle's halo-sample",
    );
    assert_eq!(contents(&root), before, "the bundle's own folder changed");
    assert_names_no_build_path(&root.join("bin/halo-sample"));
}

/// A binary names neither the cargo home of the machine that built it (panic locations of dependencies;
/// scripts/env.sh remaps it) nor the workspace's path.
fn assert_names_no_build_path(binary: &Path) {
    let cargo_home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cargo"));
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let bytes = std::fs::read(binary).unwrap();
    for path in [cargo_home, workspace] {
        let needle = path.to_string_lossy().into_owned();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{} holds the build machine's path {needle} (build with scripts/env.sh's RUSTFLAGS)",
            binary.display()
        );
    }
}

#[test]
fn the_trace_filters_recognise_what_they_look_for() {
    // The filters would pass on any trace if they matched nothing: each must catch its line.
    assert!(network_call(
        r#"123 socket(AF_INET, SOCK_DGRAM|SOCK_CLOEXEC|SOCK_NONBLOCK, IPPROTO_IP) = 5"#
    ));
    assert!(network_call(
        r#"123 connect(5, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.0.0.2")}, 16) = 0"#
    ));
    assert!(!network_call(
        r#"123 connect(5, {sa_family=AF_UNIX, sun_path="/run/x"}, 110) = -1 ENOENT"#
    ));
    let log = concat!(
        "1 openat(AT_FDCWD, \"/home/u/.cache/Microsoft/DeveloperTools/.onnxruntime/deviceid\", O_WRONLY|O_CREAT, 0644) = 3\n",
        "1 openat(AT_FDCWD, \"/etc/ld.so.cache\", O_RDONLY|O_CLOEXEC) = 3\n",
        "1 mkdir(\"/home/u/.cache/Microsoft\", 0777) = 0\n",
        "1 openat(AT_FDCWD, \"/nope\", O_WRONLY|O_CREAT, 0644) = -1 EACCES (Permission denied)\n",
    );
    assert_eq!(
        written_paths(log),
        vec![
            "/home/u/.cache/Microsoft/DeveloperTools/.onnxruntime/deviceid".to_string(),
            "/home/u/.cache/Microsoft".to_string()
        ]
    );
    // And the path check sees a path planted in a file.
    let dir = tempfile::tempdir().unwrap();
    let planted = dir.path().join("binary");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    std::fs::write(&planted, format!("panic at {}/core/src/x.rs", workspace.display())).unwrap();
    assert!(std::panic::catch_unwind(|| assert_names_no_build_path(&planted)).is_err());
}

#[test]
fn the_built_sampler_names_no_path_of_the_machine_that_built_it() {
    assert_names_no_build_path(&common::binary("halo-sample"));
}
