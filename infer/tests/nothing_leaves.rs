//! What a site runs makes no network connection and writes nothing outside its output: the sampler and its
//! verify, run with an empty HOME, working folder and TMPDIR, leave all three empty (ONNX Runtime's telemetry
//! writes under `~/.cache/Microsoft` when it is on), and, traced by strace where the machine has it, open no
//! network socket and create or write no file but their output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tiny-model")
}

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
    found
}

/// Empty folders for HOME, the working folder and TMPDIR, and one for the output.
struct Sandbox {
    _root: tempfile::TempDir,
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
            _root: root,
            home,
            work,
            tmp,
            out,
        }
    }

    /// `program args` with HOME, TMPDIR and the working folder set to the sandbox's empty folders
    /// (XDG_CACHE_HOME removed, so a cache would go under HOME).
    fn command(&self, program: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.args(args)
            .current_dir(&self.work)
            .env("HOME", &self.home)
            .env("TMPDIR", &self.tmp)
            .env_remove("XDG_CACHE_HOME")
            .env_remove(halo_infer::runtime::TELEMETRY_OFF_ENV);
        c
    }

    fn assert_nothing_outside_out(&self, what: &str) {
        for (name, dir) in [
            ("HOME", &self.home),
            ("working folder", &self.work),
            ("TMPDIR", &self.tmp),
        ] {
            let written = contents(dir);
            assert!(written.is_empty(), "{what} wrote into its {name}: {written:?}");
        }
    }
}

fn sampler() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_halo-sample"))
}

fn check(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn sampling_and_verify_write_nothing_outside_the_output() {
    let s = Sandbox::new();
    let model = fixture();
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
    check(&s.command(&sampler(), &args).output().unwrap(), "halo-sample");
    assert!(out.is_file());
    assert_eq!(contents(&s.out), vec![out.clone()], "only the output");
    s.assert_nothing_outside_out("halo-sample");

    let verify = ["verify", "--model", model.to_str().unwrap()];
    check(&s.command(&sampler(), &verify).output().unwrap(), "halo-sample verify");
    s.assert_nothing_outside_out("halo-sample verify");
}

/// One line of an strace log that opens a network socket or connects anywhere but a local socket.
fn network_call(line: &str) -> bool {
    let opens_inet = line.contains("socket(") && (line.contains("AF_INET") || line.contains("AF_NETLINK"));
    let connects_out = line.contains("connect(") && !line.contains("AF_UNIX") && !line.contains("resumed>");
    opens_inet || connects_out
}

/// Paths an strace log shows created or opened for writing.
fn written_paths(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| {
            let opens = (l.contains("open(") || l.contains("openat(") || l.contains("creat("))
                && ["O_WRONLY", "O_RDWR", "O_CREAT"].iter().any(|f| l.contains(f));
            opens || l.contains("mkdir") || l.contains("rename")
        })
        .filter(|l| !l.contains("= -1 ")) // failed calls wrote nothing
        .filter_map(|l| l.split('"').nth(1).map(str::to_string))
        .collect()
}

#[test]
fn strace_shows_no_network_and_no_write_outside_the_output() {
    if Command::new("strace").arg("-V").output().is_err() {
        eprintln!("strace is not installed: the traced check is skipped (the empty-HOME test still runs)");
        return;
    }
    let s = Sandbox::new();
    let model = fixture();
    let out = s.out.join("records.jsonl");
    let log = s.out.parent().unwrap().join("strace.log");
    let mut args = vec![
        "-f",
        "-qq",
        "-e",
        "trace=socket,connect,open,openat,creat,mkdir,mkdirat,rename,renameat,renameat2",
        "-o",
        log.to_str().unwrap(),
        env!("CARGO_BIN_EXE_halo-sample"),
    ];
    let sample = [
        "--model",
        model.to_str().unwrap(),
        "--count",
        "20",
        "--seed",
        "4",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(&sample);
    let o = s.command(Path::new("strace"), &args).output().unwrap();
    check(&o, "halo-sample under strace");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("openat("), "the trace recorded nothing:\n{text}");
    let network: Vec<&str> = text.lines().filter(|l| network_call(l)).collect();
    assert!(
        network.is_empty(),
        "halo-sample used the network:\n{}",
        network.join("\n")
    );
    let outside: Vec<String> = written_paths(&text)
        .into_iter()
        .filter(|p| !p.starts_with(s.out.to_str().unwrap()) && p != "/dev/null")
        .collect();
    assert!(outside.is_empty(), "halo-sample wrote outside its output: {outside:?}");
    s.assert_nothing_outside_out("halo-sample under strace");
}

#[test]
fn the_trace_filters_recognise_what_they_look_for() {
    // The two filters above would pass on any log if they matched nothing: each must catch its line.
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
}

#[test]
fn the_sampler_binary_names_no_path_of_the_machine_that_built_it() {
    // Panic locations of dependencies would name the builder's cargo home (scripts/env.sh remaps it).
    let cargo_home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cargo"));
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let binary = std::fs::read(env!("CARGO_BIN_EXE_halo-sample")).unwrap();
    for path in [cargo_home, workspace] {
        let needle = path.to_string_lossy().into_owned();
        let found = binary.windows(needle.len()).any(|w| w == needle.as_bytes());
        assert!(
            !found,
            "halo-sample holds the build machine's path {needle} (build with scripts/env.sh's RUSTFLAGS)"
        );
    }
}
