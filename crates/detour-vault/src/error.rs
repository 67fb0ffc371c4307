use std::path::PathBuf;

use crate::settings::VaultSettingsError;

/// Why an encryption, decryption or key operation failed.
///
/// No variant carries plaintext or key material, so these errors are safe to log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The authentication tag did not match: a wrong key, wrong associated data (another
    /// record's or tenant's context) or an altered ciphertext. AES-GCM cannot tell these apart.
    #[error("decryption failed: wrong key, wrong associated data or altered ciphertext")]
    Decrypt,
    /// The input is not in this crate's format at all: empty, truncated or of an unknown
    /// format version.
    #[error("malformed ciphertext: {reason}")]
    Malformed { reason: &'static str },
    /// AES-GCM refuses plaintexts of 64 GiB and more.
    #[error("encryption failed: the plaintext is too long for AES-GCM")]
    Encrypt,
    /// The operating system could not supply random bytes for a key or a nonce.
    #[error("the operating system's random number generator failed: {0}")]
    Random(#[source] rand_core::Error),
    /// The key was wrapped by a key-encryption key this key ring does not hold: a KEK was
    /// removed from the configuration before every data key had been rewrapped.
    #[error(
        "key-encryption key {kek_id:?} is not in the key ring; it must stay configured until every \
         data key wrapped by it has been rewrapped with the primary"
    )]
    UnknownKek { kek_id: String },
    #[error("key-encryption key {kek_id:?} appears more than once in the key ring")]
    DuplicateKek { kek_id: String },
    #[error("invalid key-encryption key id {kek_id:?}: use 1 to 64 of A-Z, a-z, 0-9, '.', '_', '-'")]
    InvalidKekId { kek_id: String },
    /// Reading or writing the development key file.
    #[error("dev key-encryption key {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The development key file is not JSON of the expected shape. Only the position is kept:
    /// the parser's message could quote the key.
    #[error(
        "dev key-encryption key {path}: not a JSON object with string fields `id` and `key` \
         (line {line}, column {column}); delete the file to create a new key, which makes data \
         written with the old one unreadable"
    )]
    DevKekFormat { path: PathBuf, line: usize, column: usize },
    /// The development key file parsed, but its id or key is invalid.
    #[error("dev key-encryption key {path}: {source}")]
    DevKek {
        path: PathBuf,
        #[source]
        source: VaultSettingsError,
    },
}
