//! Key-encryption keys (KEKs) and the key ring that wraps data keys with them.
//!
//! Rotation without downtime: configure the new KEK as primary and keep the old one listed.
//! New data keys are wrapped by the primary at once, data keys wrapped by the old KEK still
//! unwrap, and a rewrap pass ([`KeyRing::needs_rewrap`], [`KeyRing::rewrap`]) moves them to the
//! primary. Once it has finished, the old KEK can be removed from the configuration.

use std::fmt;
use std::sync::Arc;

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::VaultError;
use crate::cipher::{self, DataKey, KEY_LEN};
use crate::secret::Redacted;

/// The longest KEK id; it is stored beside every wrapped key, so it stays short.
pub const MAX_KEK_ID_LEN: usize = 64;
/// Separates wrapping from any other use of a KEK, and lets the binding change with a version.
const WRAP_AAD_PREFIX: &[u8] = b"detour-vault/wrap/v1\0";
/// The leading byte of [`WrappedKey::to_bytes`].
const WRAPPED_KEY_FORMAT_VERSION: u8 = 1;

/// A key-encryption key: a 32-byte AES-256 key and the short id that names it in every data
/// key it wraps (`kek-2026-11`). Wiped on drop; `Debug` shows only the id.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Kek {
    #[zeroize(skip)]
    id: String,
    key: [u8; KEY_LEN],
}

impl Kek {
    /// `id` must be 1 to 64 of `A-Z a-z 0-9 . _ -`.
    pub fn new(id: impl Into<String>, key: [u8; KEY_LEN]) -> Result<Self, VaultError> {
        let id = id.into();
        if !is_valid_kek_id(&id) {
            return Err(VaultError::InvalidKekId { kek_id: id });
        }
        Ok(Self { id, key })
    }

    /// A new random key from the operating system's generator.
    pub fn generate(id: impl Into<String>) -> Result<Self, VaultError> {
        Self::new(id, cipher::random_key()?)
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek").field("id", &self.id).field("key", &Redacted).finish()
    }
}

pub(crate) fn is_valid_kek_id(id: &str) -> bool {
    (1..=MAX_KEK_ID_LEN).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A data key encrypted by a KEK, as it is stored beside the data it protects.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// The KEK that wrapped it.
    pub kek_id: String,
    /// `version | nonce | encrypted key | tag`, as [`seal`](crate::seal) writes it.
    pub ciphertext: Vec<u8>,
}

impl WrappedKey {
    /// One byte string for a single database column:
    /// `version (1) | id length (1) | id | ciphertext`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let id = self.kek_id.as_bytes();
        let mut out = Vec::with_capacity(2 + id.len() + self.ciphertext.len());
        out.push(WRAPPED_KEY_FORMAT_VERSION);
        // A valid id is at most 64 bytes; a longer one is cut and then fails to unwrap.
        let len = u8::try_from(id.len()).unwrap_or(u8::MAX);
        out.push(len);
        out.extend_from_slice(id.get(..usize::from(len)).unwrap_or(id));
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Reads [`WrappedKey::to_bytes`]; any input is safe.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, VaultError> {
        let malformed = |reason| VaultError::Malformed { reason };
        let (&version, rest) = bytes.split_first().ok_or(malformed("empty wrapped key"))?;
        if version != WRAPPED_KEY_FORMAT_VERSION {
            return Err(malformed("unknown wrapped key format version"));
        }
        let (&len, rest) = rest.split_first().ok_or(malformed("truncated wrapped key"))?;
        let (id, ciphertext) =
            rest.split_at_checked(usize::from(len)).ok_or(malformed("truncated wrapped key"))?;
        let kek_id = std::str::from_utf8(id)
            .ok()
            .filter(|id| is_valid_kek_id(id))
            .ok_or(malformed("invalid key-encryption key id in wrapped key"))?;
        Ok(Self { kek_id: kek_id.to_owned(), ciphertext: ciphertext.to_vec() })
    }
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappedKey")
            .field("kek_id", &self.kek_id)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

/// The KEKs a process may unwrap with, one of them the primary that wraps. Cheap to clone.
#[derive(Clone)]
pub struct KeyRing {
    inner: Arc<Inner>,
}

struct Inner {
    primary: Kek,
    /// Older KEKs, kept so their data keys unwrap until they are rewrapped.
    others: Vec<Kek>,
}

impl KeyRing {
    /// A ring that wraps with `primary` and also unwraps with `others`.
    pub fn new(primary: Kek, others: impl IntoIterator<Item = Kek>) -> Result<Self, VaultError> {
        let others: Vec<Kek> = others.into_iter().collect();
        let mut seen: Vec<&str> = vec![primary.id()];
        for kek in &others {
            if seen.contains(&kek.id()) {
                return Err(VaultError::DuplicateKek { kek_id: kek.id().to_owned() });
            }
            seen.push(kek.id());
        }
        Ok(Self { inner: Arc::new(Inner { primary, others }) })
    }

    /// The id of the KEK new data keys are wrapped with.
    pub fn primary_id(&self) -> &str {
        self.inner.primary.id()
    }

    /// Every KEK id in the ring, the primary first.
    pub fn kek_ids(&self) -> impl Iterator<Item = &str> {
        self.keks().map(Kek::id)
    }

    pub fn contains(&self, kek_id: &str) -> bool {
        self.find(kek_id).is_some()
    }

    /// Wraps `dek` with the primary KEK. `context` (a tenant id, say) is bound to the result,
    /// so the wrapped key unwraps only with the same context: it cannot be moved to another
    /// tenant's rows.
    pub fn wrap(&self, dek: &DataKey, context: &[u8]) -> Result<WrappedKey, VaultError> {
        let kek = &self.inner.primary;
        let ciphertext = cipher::encrypt(&kek.key, dek.bytes(), &wrap_aad(kek.id(), context))?;
        Ok(WrappedKey { kek_id: kek.id().to_owned(), ciphertext })
    }

    /// Unwraps with the KEK the key names, primary or not, and the `context` it was wrapped
    /// with.
    pub fn unwrap(&self, wrapped: &WrappedKey, context: &[u8]) -> Result<DataKey, VaultError> {
        let kek = self
            .find(&wrapped.kek_id)
            .ok_or_else(|| VaultError::UnknownKek { kek_id: wrapped.kek_id.clone() })?;
        let plain =
            Zeroizing::new(cipher::decrypt(&kek.key, &wrapped.ciphertext, &wrap_aad(kek.id(), context))?);
        let bytes = <[u8; KEY_LEN]>::try_from(plain.as_slice())
            .map_err(|_| VaultError::Malformed { reason: "the wrapped key is not 32 bytes long" })?;
        Ok(DataKey::from_bytes(bytes))
    }

    /// Whether `wrapped` was wrapped by a KEK other than the primary, so a rewrap pass should
    /// move it to the primary.
    pub fn needs_rewrap(&self, wrapped: &WrappedKey) -> bool {
        wrapped.kek_id != self.primary_id()
    }

    /// The same data key wrapped with the primary KEK and the same `context`. The data it
    /// protects need not be touched.
    pub fn rewrap(&self, wrapped: &WrappedKey, context: &[u8]) -> Result<WrappedKey, VaultError> {
        self.wrap(&self.unwrap(wrapped, context)?, context)
    }

    fn keks(&self) -> impl Iterator<Item = &Kek> {
        std::iter::once(&self.inner.primary).chain(&self.inner.others)
    }

    fn find(&self, kek_id: &str) -> Option<&Kek> {
        self.keks().find(|kek| kek.id() == kek_id)
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("primary", &self.primary_id())
            .field("kek_ids", &self.kek_ids().collect::<Vec<_>>())
            .finish()
    }
}

/// Binds the KEK id (so a ciphertext cannot be relabelled with another id) and the caller's
/// context. The id is length-prefixed, so no two (id, context) pairs give the same bytes.
fn wrap_aad(kek_id: &str, context: &[u8]) -> Vec<u8> {
    let id = kek_id.as_bytes();
    let mut aad = Vec::with_capacity(WRAP_AAD_PREFIX.len() + 1 + id.len() + context.len());
    aad.extend_from_slice(WRAP_AAD_PREFIX);
    // Ids in a ring are at most 64 bytes.
    aad.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
    aad.extend_from_slice(id);
    aad.extend_from_slice(context);
    aad
}
