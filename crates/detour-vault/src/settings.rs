//! The vault's configuration: the KEKs and which one is primary, validated into a [`KeyRing`]
//! with errors that name the setting.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::VaultError;
use crate::cipher::{self, KEY_LEN};
use crate::keyring::{self, Kek, KeyRing, MAX_KEK_ID_LEN};
use crate::secret::Redacted;

/// The key-encryption keys, as configured. An empty section deserialises to the default (no
/// KEKs), which [`VaultSettings::key_ring`] refuses; [`VaultSettings::is_empty`] lets a caller
/// fall back to the development key ring instead.
///
/// `Serialize` exists because configuration layers (figment's serialised defaults) need it; it
/// writes the keys in full, so never serialise settings into a log. `Debug` redacts them.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VaultSettings {
    /// Every KEK that may have wrapped a stored data key: the primary and the ones being
    /// rotated out.
    pub keks: Vec<KekSettings>,
    /// The id of the KEK that wraps new data keys.
    pub primary: String,
}

/// One key-encryption key. Wiped on drop.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
pub struct KekSettings {
    /// 1 to 64 of `A-Z a-z 0-9 . _ -`, stored beside every data key it wraps: `kek-2026-11`.
    #[zeroize(skip)]
    pub id: String,
    /// Standard base64 (with padding) of 32 random bytes, as [`generate_kek_base64`] prints.
    pub key: String,
}

impl fmt::Debug for VaultSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultSettings").field("keks", &self.keks).field("primary", &self.primary).finish()
    }
}

impl fmt::Debug for KekSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KekSettings").field("id", &self.id).field("key", &Redacted).finish()
    }
}

/// A setting that is wrong, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {problem}")]
pub struct VaultSettingsError {
    /// The path of the setting within the vault section: `keks`, `keks[1].id`, `keks[1].key`
    /// or `primary`.
    pub setting: String,
    pub problem: VaultSettingsProblem,
}

/// What is wrong with a vault setting. Never quotes a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VaultSettingsProblem {
    #[error(
        "no key-encryption key is configured; add one with an `id` and a `key` of 32 random bytes \
         in standard base64"
    )]
    NoKeks,
    #[error("empty; a key-encryption key needs an id such as \"kek-2026-11\"")]
    EmptyId,
    #[error(
        "{id:?} is not a valid key-encryption key id; use 1 to {MAX_KEK_ID_LEN} of A-Z, a-z, 0-9, '.', '_', '-'"
    )]
    InvalidId { id: String },
    #[error("{id:?} is used by more than one key-encryption key")]
    DuplicateId { id: String },
    #[error("empty; expected 32 random bytes in standard base64")]
    EmptyKey,
    #[error("not valid standard base64 (A-Z, a-z, 0-9, '+', '/', with '=' padding)")]
    KeyNotBase64,
    #[error("decodes to {len} bytes; a key-encryption key is exactly 32 bytes (AES-256)")]
    KeyWrongLength { len: usize },
    #[error("empty; name the key-encryption key that wraps new data keys")]
    NoPrimary,
    #[error("{id:?} is not the id of any configured key-encryption key")]
    UnknownPrimary { id: String },
}

impl VaultSettings {
    /// Whether no KEK is configured at all.
    pub fn is_empty(&self) -> bool {
        self.keks.is_empty() && self.primary.is_empty()
    }

    /// Validates the settings into a key ring. Stops at the first wrong setting.
    pub fn key_ring(&self) -> Result<KeyRing, VaultSettingsError> {
        if self.keks.is_empty() {
            return Err(VaultSettingsError { setting: "keks".into(), problem: VaultSettingsProblem::NoKeks });
        }
        let mut keks: Vec<Kek> = Vec::with_capacity(self.keks.len());
        for (i, settings) in self.keks.iter().enumerate() {
            let kek = settings.kek().map_err(|(field, problem)| VaultSettingsError {
                setting: format!("keks[{i}].{field}"),
                problem,
            })?;
            if keks.iter().any(|k| k.id() == kek.id()) {
                return Err(VaultSettingsError {
                    setting: format!("keks[{i}].id"),
                    problem: VaultSettingsProblem::DuplicateId { id: kek.id().to_owned() },
                });
            }
            keks.push(kek);
        }
        let primary_error = |problem| VaultSettingsError { setting: "primary".into(), problem };
        if self.primary.is_empty() {
            return Err(primary_error(VaultSettingsProblem::NoPrimary));
        }
        let Some(position) = keks.iter().position(|k| k.id() == self.primary) else {
            return Err(primary_error(VaultSettingsProblem::UnknownPrimary { id: self.primary.clone() }));
        };
        let primary = keks.swap_remove(position);
        // Ids were checked unique above, so this cannot fail; the mapping keeps it total.
        KeyRing::new(primary, keks)
            .map_err(|_| primary_error(VaultSettingsProblem::DuplicateId { id: self.primary.clone() }))
    }
}

impl KekSettings {
    pub fn new(id: impl Into<String>, key: impl Into<String>) -> Self {
        Self { id: id.into(), key: key.into() }
    }

    /// The key, or which field is wrong (`id` or `key`) and why.
    pub(crate) fn kek(&self) -> Result<Kek, (&'static str, VaultSettingsProblem)> {
        if self.id.is_empty() {
            return Err(("id", VaultSettingsProblem::EmptyId));
        }
        if !keyring::is_valid_kek_id(&self.id) {
            return Err(("id", VaultSettingsProblem::InvalidId { id: self.id.clone() }));
        }
        // A key pasted from a file or a Kubernetes secret often carries a trailing newline.
        let encoded = self.key.trim();
        if encoded.is_empty() {
            return Err(("key", VaultSettingsProblem::EmptyKey));
        }
        // The decoder's own error is dropped: it quotes the offending byte of the key.
        let decoded = Zeroizing::new(
            STANDARD.decode(encoded).map_err(|_| ("key", VaultSettingsProblem::KeyNotBase64))?,
        );
        let key = <[u8; KEY_LEN]>::try_from(decoded.as_slice())
            .map_err(|_| ("key", VaultSettingsProblem::KeyWrongLength { len: decoded.len() }))?;
        Kek::new(self.id.clone(), key)
            .map_err(|_| ("id", VaultSettingsProblem::InvalidId { id: self.id.clone() }))
    }
}

/// A new random KEK in the form [`KekSettings::key`] takes, for a command that prints one.
pub fn generate_kek_base64() -> Result<String, VaultError> {
    let key = Zeroizing::new(cipher::random_key()?);
    Ok(STANDARD.encode(key.as_slice()))
}
