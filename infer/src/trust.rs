//! Checking a model directory's signature (`manifest.json.minisig`, written by `halo export --sign`) with a
//! public key the site trusts. The manifest names the sha256 of every other file, and [`crate::Model::load`]
//! checks those, so a good signature followed by a successful load covers the whole directory.

use crate::error::{Error, Result};
use halo_core::manifest::{MANIFEST, SIGNATURE};
use minisign_verify::{PublicKey, Signature};
use std::path::Path;

/// A signature that checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The signed comment (which toolkit signed).
    pub trusted_comment: String,
}

/// Reads a public key: the path of a minisign `.pub` file, or the key itself (its base64 line).
pub fn read_public_key(key: &str) -> Result<PublicKey> {
    let path = Path::new(key);
    if path.is_file() {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        return PublicKey::decode(&text).map_err(|e| {
            Error::Invalid(format!(
                "--trust {key}: not a minisign public key file ({e}; expected the file `halo keygen` wrote)"
            ))
        });
    }
    PublicKey::from_base64(key.trim()).map_err(|_| {
        Error::Invalid(format!(
            "--trust {key}: neither a public key file nor a minisign public key (a base64 line starting with RW)"
        ))
    })
}

/// Checks `dir/manifest.json` against `dir/manifest.json.minisig` with `key`.
pub fn check_signature(dir: &Path, key: &PublicKey) -> Result<Signed> {
    let sig_path = dir.join(SIGNATURE);
    let manifest = dir.join(MANIFEST);
    if !sig_path.is_file() {
        return Err(Error::model(
            &sig_path,
            "missing: the model directory is not signed, and --trust accepts only a signed one",
        ));
    }
    let text = std::fs::read_to_string(&sig_path).map_err(|e| Error::io(&sig_path, e))?;
    let signature =
        Signature::decode(&text).map_err(|e| Error::model(&sig_path, format!("not a minisign signature ({e})")))?;
    let bytes = std::fs::read(&manifest).map_err(|e| Error::io(&manifest, e))?;
    match key.verify(&bytes, &signature, false) {
        Ok(()) => Ok(Signed {
            trusted_comment: signature.trusted_comment().to_string(),
        }),
        Err(minisign_verify::Error::UnexpectedKeyId) => Err(Error::model(
            &sig_path,
            "was made with another key than the one given to --trust",
        )),
        Err(minisign_verify::Error::InvalidSignature) => Err(Error::model(
            &manifest,
            format!("does not match its signature {SIGNATURE}: the manifest was changed after signing"),
        )),
        Err(e) => Err(Error::model(&sig_path, format!("cannot be checked: {e}"))),
    }
}
