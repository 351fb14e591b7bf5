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
    /// The signed comment: which model (name, version, export time, the manifest's sha256) and which toolkit.
    pub trusted_comment: String,
}

/// A public key and the flag it was given with (`--trust`, `--public-key`), which its messages name.
pub struct TrustedKey {
    key: PublicKey,
    flag: &'static str,
}

/// Reads a public key given to `flag`: the path of a minisign `.pub` file, or the key itself (its base64 line).
pub fn read_public_key(flag: &'static str, key: &str) -> Result<TrustedKey> {
    let path = Path::new(key);
    let expected =
        "expected the public key file `halo keygen` wrote, or the key itself: a base64 line starting with RW";
    if path.is_file() {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let parsed = std::str::from_utf8(&bytes)
            .map_err(|_| "it is not text".to_string())
            .and_then(|text| PublicKey::decode(text).map_err(|e| e.to_string()));
        return match parsed {
            Ok(key) => Ok(TrustedKey { key, flag }),
            Err(why) => Err(Error::Invalid(format!(
                "{flag} {key}: not a minisign public key file ({why}; {expected})"
            ))),
        };
    }
    if let Ok(key) = PublicKey::from_base64(key.trim()) {
        return Ok(TrustedKey { key, flag });
    }
    let message = if path.exists() {
        format!("{flag} {key}: not a file ({expected})")
    } else if key.trim().starts_with("RW") && !key.contains(['.', '\n']) {
        format!("{flag} {key}: not a valid minisign public key ({expected}, 56 characters)")
    } else {
        format!("{flag} {key}: no such file ({expected})")
    };
    Err(Error::Invalid(message))
}

/// The signature's trusted comment as the file says it, without checking the signature (for display next
/// to a note that it was not checked).
pub fn unchecked_comment(dir: &Path) -> Result<Option<String>> {
    let sig_path = dir.join(SIGNATURE);
    if !sig_path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&sig_path).map_err(|e| Error::io(&sig_path, e))?;
    let signature =
        Signature::decode(&text).map_err(|e| Error::model(&sig_path, format!("not a minisign signature ({e})")))?;
    Ok(Some(signature.trusted_comment().to_string()))
}

/// Checks `dir/manifest.json` against `dir/manifest.json.minisig` with `key`.
pub fn check_signature(dir: &Path, key: &TrustedKey) -> Result<Signed> {
    let flag = key.flag;
    let sig_path = dir.join(SIGNATURE);
    let manifest = dir.join(MANIFEST);
    if !sig_path.is_file() {
        return Err(Error::model(
            &sig_path,
            format!("missing: the model directory is not signed, and {flag} accepts only a signed one"),
        ));
    }
    let text = std::fs::read_to_string(&sig_path).map_err(|e| Error::io(&sig_path, e))?;
    let signature =
        Signature::decode(&text).map_err(|e| Error::model(&sig_path, format!("not a minisign signature ({e})")))?;
    let bytes = std::fs::read(&manifest).map_err(|e| Error::io(&manifest, e))?;
    match key.key.verify(&bytes, &signature, false) {
        Ok(()) => Ok(Signed {
            trusted_comment: signature.trusted_comment().to_string(),
        }),
        Err(minisign_verify::Error::UnexpectedKeyId) => Err(Error::model(
            &sig_path,
            format!("was made with another key than the one given to {flag} (its key id differs)"),
        )),
        // The same key id, and the signature does not verify: either the manifest changed, or the key is
        // another with the same id. `halo export --sign` puts the signed manifest's sha256 in the comment:
        // while the manifest still has it, the key is what differs.
        Err(minisign_verify::Error::InvalidSignature) => {
            let actual = halo_core::manifest::sha256_hex(&bytes);
            if signature.trusted_comment().contains(&actual) {
                Err(Error::model(
                    &sig_path,
                    format!(
                        "is not a signature by the key given to {flag}: {MANIFEST} is the one the signature names \
                         (sha256 {actual}), but the key, although it has the signature's key id, is another (or \
                         the signature was damaged)"
                    ),
                ))
            } else {
                Err(Error::model(
                    &manifest,
                    format!(
                        "does not match its signature {SIGNATURE} under the key given to {flag}: the manifest was \
                         changed after signing (its sha256 {actual} is not the one the signature names), or the \
                         signature is by another key"
                    ),
                ))
            }
        }
        Err(e) => Err(Error::model(&sig_path, format!("cannot be checked: {e}"))),
    }
}
