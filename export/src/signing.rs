//! Signed model directories in minisign's format: `halo keygen` writes a key pair, `halo export --sign`
//! writes `manifest.json.minisig`, a detached signature of `manifest.json`. Because the manifest names the
//! sha256 of every other file, the signature covers the whole directory. A site checks it with
//! `halo-sample --trust KEY` or with the `minisign` tool itself (`minisign -Vm manifest.json -p KEY`).

use crate::error::{ExportError, Result};
use halo_core::manifest::{MANIFEST, SIGNATURE};
use minisign::{KeyPair, PublicKey, SecretKey, SecretKeyBox};
use std::io::Write;
use std::path::Path;

/// Environment variable holding the password of a secret key (`halo keygen`, `halo export --sign`).
pub const PASSWORD_ENV: &str = "HALO_KEY_PASSWORD";

/// How a secret key is protected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Password {
    /// Not encrypted.
    None,
    /// Encrypted with this password.
    Given(String),
    /// Encrypted with a password asked for on the terminal.
    Prompt,
}

impl Password {
    fn into_option(self) -> Option<Option<String>> {
        match self {
            Password::None => None,
            Password::Given(p) => Some(Some(p)),
            Password::Prompt => Some(None),
        }
    }
}

fn sign_error(path: &Path, e: impl std::fmt::Display) -> ExportError {
    ExportError::Output {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Writes a new key pair: the public key to `public` and the secret key to `secret` (readable by its owner
/// only), refusing to replace either. Returns the public key line (base64) that `--trust` also accepts.
pub fn generate_key_pair(public: &Path, secret: &Path, password: Password) -> Result<String> {
    for path in [public, secret] {
        if path.exists() {
            return Err(sign_error(path, "already exists; a key is never overwritten"));
        }
    }
    let KeyPair { pk, sk } = match password.into_option() {
        Some(p) => KeyPair::generate_encrypted_keypair(p),
        None => KeyPair::generate_unencrypted_keypair(),
    }
    .map_err(|e| sign_error(secret, format!("cannot generate a key pair: {e}")))?;
    let comment = "halo model signing key";
    let sk_text = sk.to_box(Some(comment)).map_err(|e| sign_error(secret, e))?.to_string();
    let pk_box = pk.to_box().map_err(|e| sign_error(public, e))?;
    write_new(secret, sk_text.as_bytes(), 0o600)?;
    if let Err(e) = write_new(public, pk_box.to_string().as_bytes(), 0o644) {
        let _ = std::fs::remove_file(secret);
        return Err(e);
    }
    Ok(pk.to_base64())
}

/// Creates `path` (never replacing a file) with `mode`.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| ExportError::io(path, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| ExportError::io(path, e))
}

/// The name and version a signature gives a model (`halo export --model-name`, `--model-version`), so that
/// a site sees which model it has, and an older signed export copied over a newer one shows as older.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRelease {
    pub name: String,
    pub version: String,
}

impl ModelRelease {
    /// Checks both are one line of printable text (the trusted comment is one line), the version without
    /// spaces.
    pub fn new(name: &str, version: &str) -> Result<ModelRelease> {
        let check = |flag: &str, value: &str, spaces: bool| {
            let ok = !value.trim().is_empty()
                && value.len() <= 100
                && value.trim() == value
                && !value.chars().any(|c| c.is_control() || (!spaces && c.is_whitespace()));
            if ok {
                Ok(value.to_string())
            } else {
                Err(ExportError::Invalid(format!(
                    "{flag} `{value}`: expected 1 to 100 printable characters{}, without leading or trailing spaces",
                    if spaces { "" } else { " and no spaces" }
                )))
            }
        };
        Ok(ModelRelease {
            name: check("--model-name", name, true)?,
            version: check("--model-version", version, false)?,
        })
    }
}

/// The trusted comment of a model directory's signature: one line naming the model, its version, when it
/// was exported and the sha256 of the manifest signed, and the toolkit that signed it.
pub fn trusted_comment(release: &ModelRelease, exported: &str, manifest_sha256: &str) -> String {
    format!(
        "halo model {} version {}, exported {exported}, {MANIFEST} sha256 {manifest_sha256}, signed by halo export {}",
        release.name,
        release.version,
        env!("CARGO_PKG_VERSION")
    )
}

/// An opened secret key and its public key.
pub struct SigningKey {
    secret: SecretKey,
    public: PublicKey,
}

impl SigningKey {
    /// Opens the secret key at `path` (written by `halo keygen` or `minisign -G`); a password-protected key
    /// needs `password` (given, or asked for).
    pub fn open(path: &Path, password: Password) -> Result<SigningKey> {
        let text = std::fs::read_to_string(path).map_err(|e| ExportError::io(path, e))?;
        let sk_box = SecretKeyBox::from_string(&text).map_err(|e| {
            sign_error(
                path,
                format!("not a minisign secret key (written by `halo keygen`): {e}"),
            )
        })?;
        let secret = match password.into_option() {
            Some(p) => sk_box.into_secret_key(p),
            None => sk_box.into_unencrypted_secret_key(),
        }
        .map_err(|e| {
            sign_error(
                path,
                format!(
                    "cannot open the secret key ({e}); a password-protected key needs its password in {PASSWORD_ENV}"
                ),
            )
        })?;
        if secret.is_encrypted() {
            return Err(sign_error(
                path,
                format!("the secret key is password-protected: set {PASSWORD_ENV} (or run in a terminal)"),
            ));
        }
        let public = PublicKey::from_secret_key(&secret).map_err(|e| sign_error(path, e))?;
        Ok(SigningKey { secret, public })
    }

    /// The public key (base64), as `--trust` and `minisign -P` take it.
    pub fn public_base64(&self) -> String {
        self.public.to_base64()
    }

    /// Signs `dir/manifest.json` and writes `dir/manifest.json.minisig`, its trusted comment naming the
    /// release, the export time (`exported`, UTC) and the manifest's sha256 ([`trusted_comment`]).
    pub fn sign_model_dir(&self, dir: &Path, release: &ModelRelease, exported: &str) -> Result<()> {
        let manifest = dir.join(MANIFEST);
        let bytes = std::fs::read(&manifest).map_err(|e| ExportError::io(&manifest, e))?;
        let trusted = trusted_comment(release, exported, &halo_core::manifest::sha256_hex(&bytes));
        let signature = minisign::sign(
            Some(&self.public),
            &self.secret,
            std::io::Cursor::new(&bytes),
            Some(&trusted),
            Some("signature of a HALO model directory's manifest.json"),
        )
        .map_err(|e| sign_error(&manifest, format!("cannot sign: {e}")))?;
        halo_core::fsutil::write_atomic(&dir.join(SIGNATURE), signature.to_string().as_bytes())?;
        Ok(())
    }
}
