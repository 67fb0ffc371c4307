//! AES-256-GCM with a fresh random nonce per message, and the data keys fields are sealed with.
//!
//! Wire format of a sealed value (a field, or a wrapped data key):
//! `version (1 byte, = 1) | nonce (12 bytes) | ciphertext | tag (16 bytes)`.

use std::fmt;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use hmac::Mac;
use rand_core::{OsRng, RngCore};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::VaultError;
use crate::secret::Redacted;

/// The leading byte of every sealed value, so the format can change without guessing.
const FORMAT_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + NONCE_LEN;
/// Bytes a sealed value adds to its plaintext.
pub const SEAL_OVERHEAD: usize = HEADER_LEN + TAG_LEN;
pub(crate) const KEY_LEN: usize = 32;
const TRUNCATED: VaultError = VaultError::Malformed { reason: "truncated: shorter than a nonce and a tag" };

/// A data-encryption key (AES-256): seals the personal data of one record, tenant or
/// passenger, and is itself stored only wrapped by a key-encryption key
/// ([`KeyRing::wrap`](crate::KeyRing::wrap)). Wiped on drop; `Debug` never shows it.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct DataKey {
    bytes: [u8; KEY_LEN],
}

impl DataKey {
    /// A new random key from the operating system's generator.
    pub fn generate() -> Result<Self, VaultError> {
        Ok(Self { bytes: random_key()? })
    }

    pub(crate) fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self { bytes }
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DataKey").field(&Redacted).finish()
    }
}

/// Encrypts `plaintext` under `dek`. `aad` is authenticated but not encrypted: pass what the
/// value belongs to (table, column, record id), so a sealed value copied into another record
/// or column fails to open. Each call draws a fresh nonce, so sealing the same plaintext twice
/// gives different outputs.
///
/// Fails only when the OS random generator fails or the plaintext is 64 GiB or more.
pub fn seal(dek: &DataKey, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, VaultError> {
    encrypt(dek.bytes(), plaintext, aad)
}

/// A keyed hash of `value` for finding a sealed record by an exact value (an e-mail, a phone)
/// without storing the value: HMAC-SHA-256 under a key derived from `dek` for `context`, as
/// lowercase hex. Equal inputs give equal indexes, so normalise the value first; without the
/// data key the index cannot be computed from a guessed value.
pub fn blind_index(dek: &DataKey, context: &[u8], value: &[u8]) -> String {
    blind_bytes(dek, context, value).iter().map(|b| format!("{b:02x}")).collect()
}

/// [`blind_index`] as bytes, for identifiers derived from personal data.
pub fn blind_bytes(dek: &DataKey, context: &[u8], value: &[u8]) -> [u8; 32] {
    // Derive a key per context so an index is never an HMAC under the encryption key itself.
    let mut derive = hmac_sha256(dek.bytes());
    derive.update(b"detour.vault.blind-index.v1|");
    derive.update(context);
    let derived = Zeroizing::new(<[u8; KEY_LEN]>::from(derive.finalize().into_bytes()));
    let mut mac = hmac_sha256(&derived);
    mac.update(value);
    mac.finalize().into_bytes().into()
}

/// HMAC-SHA-256 keyed by 32 bytes. HMAC zero-pads a key shorter than the 64-byte block, so the
/// padded key below is the key itself, without the fallible variable-length constructor.
fn hmac_sha256(key: &[u8; KEY_LEN]) -> hmac::Hmac<sha2::Sha256> {
    let mut block = Zeroizing::new([0u8; 64]);
    block[..KEY_LEN].copy_from_slice(key);
    <hmac::Hmac<sha2::Sha256> as KeyInit>::new(&(*block).into())
}

/// Decrypts a value made by [`seal`] with the same key and `aad`. Any input is safe: an
/// unusable one is a [`VaultError::Malformed`], a wrong key, wrong `aad` or altered byte a
/// [`VaultError::Decrypt`].
pub fn open(dek: &DataKey, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, VaultError> {
    decrypt(dek.bytes(), sealed, aad)
}

pub(crate) fn random_key() -> Result<[u8; KEY_LEN], VaultError> {
    let mut key = [0; KEY_LEN];
    OsRng.try_fill_bytes(&mut key).map_err(VaultError::Random)?;
    Ok(key)
}

pub(crate) fn encrypt(key: &[u8; KEY_LEN], plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, VaultError> {
    let mut nonce = [0; NONCE_LEN];
    OsRng.try_fill_bytes(&mut nonce).map_err(VaultError::Random)?;
    let cipher = Aes256Gcm::new(&(*key).into());
    let mut out = Vec::with_capacity(SEAL_OVERHEAD.saturating_add(plaintext.len()));
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    // Encrypting in place in the output buffer keeps a single copy of the plaintext to wipe.
    let (_, body) = out.split_at_mut(HEADER_LEN);
    match cipher.encrypt_in_place_detached(&Nonce::from(nonce), aad, body) {
        Ok(tag) => {
            out.extend_from_slice(&tag);
            Ok(out)
        }
        Err(_) => {
            out.zeroize();
            Err(VaultError::Encrypt)
        }
    }
}

pub(crate) fn decrypt(key: &[u8; KEY_LEN], sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, VaultError> {
    let (&version, rest) = sealed.split_first().ok_or(VaultError::Malformed { reason: "empty input" })?;
    if version != FORMAT_VERSION {
        return Err(VaultError::Malformed { reason: "unknown format version" });
    }
    let (nonce, rest) = rest.split_first_chunk::<NONCE_LEN>().ok_or(TRUNCATED)?;
    let (ciphertext, tag) = rest.split_last_chunk::<TAG_LEN>().ok_or(TRUNCATED)?;
    let cipher = Aes256Gcm::new(&(*key).into());
    let mut plaintext = ciphertext.to_vec();
    cipher
        .decrypt_in_place_detached(&Nonce::from(*nonce), aad, &mut plaintext, &Tag::from(*tag))
        .map_err(|_| VaultError::Decrypt)?;
    Ok(plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_a_data_key_shows_no_key_bytes() {
        let dek = DataKey::from_bytes([0xAB; KEY_LEN]);
        let debug = format!("{dek:?} {dek:#?}");
        assert!(debug.contains("<redacted>"), "{debug}");
        for needle in ["171", "ab", "AB", "q6ur"] {
            assert!(!debug.contains(needle), "{needle} in {debug}");
        }
    }

    #[test]
    fn blind_indexes_are_stable_per_key_and_context_and_differ_otherwise() {
        let a = DataKey::from_bytes([1; KEY_LEN]);
        let b = DataKey::from_bytes([2; KEY_LEN]);
        let v = b"li.wei@example.com";
        let index = blind_index(&a, b"email", v);
        assert_eq!(index.len(), 64);
        assert_eq!(index, blind_index(&a, b"email", v));
        assert_ne!(index, blind_index(&b, b"email", v));
        assert_ne!(index, blind_index(&a, b"phone", v));
        assert_ne!(index, blind_index(&a, b"email", b"li.wei@example.org"));
        // Not a plain HMAC under the data key: the key is derived per context first.
        let mut plain = hmac_sha256(&[1; KEY_LEN]);
        plain.update(v);
        let plain: String = plain.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_ne!(index, plain);
    }

    #[test]
    fn the_overhead_is_version_nonce_and_tag() -> Result<(), VaultError> {
        let dek = DataKey::generate()?;
        assert_eq!(seal(&dek, b"", b"")?.len(), SEAL_OVERHEAD);
        assert_eq!(seal(&dek, b"12345", b"")?.len(), SEAL_OVERHEAD + 5);
        Ok(())
    }

    #[test]
    fn generated_keys_differ() -> Result<(), VaultError> {
        assert_ne!(DataKey::generate()?.bytes(), DataKey::generate()?.bytes());
        Ok(())
    }
}
