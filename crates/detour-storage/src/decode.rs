//! Reading columns back into domain values (and writing the JSON columns they are read from).
//! Every row was written by the service itself, so a value that does not read back is corrupt
//! data ([`StorageError::Corrupt`]), never a caller's mistake.

use std::fmt::Display;
use std::str::FromStr;

use detour_domain::{Instant, time};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Micros, StorageError};

pub fn corrupt(what: impl Display) -> StorageError {
    StorageError::Corrupt(what.to_string())
}

pub fn instant(micros: Micros) -> Result<Instant, StorageError> {
    time::from_micros(micros).ok_or_else(|| corrupt(format!("instant {micros} out of range")))
}

pub fn optional_instant(micros: Option<Micros>) -> Result<Option<Instant>, StorageError> {
    micros.map(instant).transpose()
}

/// A value stored as its text: ids, names of closed vocabularies, currency codes.
pub fn parse<T: FromStr>(text: &str) -> Result<T, StorageError>
where
    T::Err: Display,
{
    text.parse().map_err(|e: T::Err| corrupt(e))
}

pub fn optional<T: FromStr>(text: Option<String>) -> Result<Option<T>, StorageError>
where
    T::Err: Display,
{
    text.as_deref().map(parse).transpose()
}

/// A value kept whole in a JSON text column (a traveler, a segment).
pub fn json<T: DeserializeOwned>(text: &str) -> Result<T, StorageError> {
    serde_json::from_str(text).map_err(corrupt)
}

/// The JSON text column [`json`] reads back.
pub fn to_json<T: Serialize>(value: &T) -> Result<String, StorageError> {
    serde_json::to_string(value).map_err(corrupt)
}
