//! Envelope encryption of personal data.
//!
//! Personal data (phone numbers, e-mail addresses, passport numbers, names) is held in a
//! [`Secret`] while in memory, so it stays out of logs, and is stored sealed:
//!
//! 1. a random [`DataKey`] per tenant (or record) seals each field with AES-256-GCM
//!    ([`seal`], [`open`]), with associated data naming where the value belongs;
//! 2. the data key is stored only wrapped ([`WrappedKey`]) by a key-encryption key from the
//!    [`KeyRing`], bound to a context such as the tenant id;
//! 3. the key ring comes from configuration ([`VaultSettings`]) or, in development, from a
//!    key file ([`KeyRing::load_or_create_dev`]).
//!
//! Rotating a KEK therefore rewraps 61-byte data keys ([`KeyRing::rewrap`]) instead of
//! re-encrypting every field.
//!
//! ```
//! use detour_vault::{DataKey, Kek, KeyRing, open, seal};
//!
//! # fn main() -> Result<(), detour_vault::VaultError> {
//! let ring = KeyRing::new(Kek::generate("kek-2026-11")?, [])?;
//! let dek = DataKey::generate()?;
//! let wrapped = ring.wrap(&dek, b"tenant-42")?;
//! let sealed = seal(&dek, b"+31 6 1234 5678", b"passenger:7:phone")?;
//!
//! let dek = ring.unwrap(&wrapped, b"tenant-42")?;
//! assert_eq!(open(&dek, &sealed, b"passenger:7:phone")?, b"+31 6 1234 5678");
//! # Ok(())
//! # }
//! ```

mod cipher;
mod dev;
mod error;
mod keyring;
mod secret;
mod settings;

pub use cipher::{DataKey, SEAL_OVERHEAD, blind_bytes, blind_index, open, seal};
pub use dev::{DEV_KEK_FILE, DEV_KEK_ID};
pub use error::VaultError;
pub use keyring::{Kek, KeyRing, MAX_KEK_ID_LEN, WrappedKey};
pub use secret::{Secret, SecretString};
pub use settings::{
    KekSettings, VaultSettings, VaultSettingsError, VaultSettingsProblem, generate_kek_base64,
};
