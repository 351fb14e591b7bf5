//! `halo prepare`: becomes `halo-prepare` (installed beside `halo`; exec replaces this process), so that its memory is
//! the data's and not the ~500 MB that libtorch and its CUDA libraries map into every `halo` process at
//! start; without that binary it prepares in this process.

use anyhow::{Context, Result};
pub use halo_prepare::args::PrepareCmd;

pub fn run(cmd: PrepareCmd) -> Result<()> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("halo-prepare")))
        .filter(|p| p.is_file());
    let Some(binary) = beside else {
        eprintln!("halo prepare: note: halo-prepare is not installed beside halo; preparing in this process");
        return halo_prepare::args::run(cmd);
    };
    // The arguments after `prepare`, as given (the same parser reads them there). exec replaces this
    // process, libtorch's mappings with it; it returns only when the binary could not be started.
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(2).collect();
    let error = std::os::unix::process::CommandExt::exec(std::process::Command::new(&binary).args(&args));
    Err(error).with_context(|| format!("running {}", binary.display()))
}
