//! `halo keygen`: a key pair for signing model directories, in minisign's format.

use anyhow::{bail, Result};
use clap::Args;
use halo_export::signing::{self, Password, PASSWORD_ENV};
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Args)]
pub struct KeygenCmd {
    /// Where to write the public key (give it to the sites; `halo-sample --trust` and `minisign -p` read it).
    #[arg(long, value_name = "PATH", default_value = "halo.pub")]
    public_key: PathBuf,
    /// Where to write the secret key (keep it on the training side; `halo export --sign` reads it).
    #[arg(long, value_name = "PATH", default_value = "halo.key")]
    secret_key: PathBuf,
    /// Leave the secret key unencrypted (for automated signing). Otherwise it is encrypted with the
    /// password in HALO_KEY_PASSWORD, or one asked for on the terminal.
    #[arg(long)]
    no_password: bool,
}

/// The password of an existing secret key: HALO_KEY_PASSWORD, else asked for on a terminal, else none.
pub fn password_for_existing_key() -> Password {
    match std::env::var(PASSWORD_ENV) {
        Ok(p) => Password::Given(p),
        Err(_) if std::io::stdin().is_terminal() => Password::Prompt,
        Err(_) => Password::None,
    }
}

pub fn run(cmd: KeygenCmd) -> Result<()> {
    let password = if cmd.no_password {
        Password::None
    } else if let Ok(p) = std::env::var(PASSWORD_ENV) {
        if p.is_empty() {
            bail!("{PASSWORD_ENV} is empty; set a password or pass --no-password");
        }
        Password::Given(p)
    } else if std::io::stdin().is_terminal() {
        Password::Prompt
    } else {
        bail!("no password for the secret key: set {PASSWORD_ENV}, or pass --no-password for an unencrypted key");
    };
    let public = signing::generate_key_pair(&cmd.public_key, &cmd.secret_key, password)?;
    println!("public key: {public}");
    eprintln!(
        "halo keygen: wrote {} (public; sites check signatures with it) and {} (secret; keep it here)",
        cmd.public_key.display(),
        cmd.secret_key.display()
    );
    Ok(())
}
