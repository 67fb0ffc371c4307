//! A wrapper that keeps personal data out of logs, error messages and serialised output.

use std::fmt;

use serde::Deserialize;
use zeroize::Zeroize;

/// Personal data (a phone number, an e-mail address, a passport number, a name) that must not
/// end up in a log line.
///
/// `Debug` prints `Secret(<redacted>)`, there is no `Display`, and there is deliberately no
/// `Serialize`: a secret inside a struct that is logged with `?` or written out as JSON is
/// either redacted or refuses to compile. The value is reached only through [`Secret::expose`]
/// or [`Secret::into_inner`], so every place that handles the plain value is easy to find.
///
/// The value is wiped when the secret is dropped, which is why `T` must implement
/// [`Zeroize`]; domain types can `#[derive(zeroize::Zeroize)]`.
///
/// ```compile_fail,E0277
/// // A secret cannot be serialised by accident; serialise `expose()` where that is intended.
/// let phone = detour_vault::SecretString::new("+31 6 1234 5678".to_owned());
/// let _ = serde_json::to_string(&phone);
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret<T: Zeroize>(T);

/// The common case: a piece of personal data held as text.
pub type SecretString = Secret<String>;

impl<T: Zeroize> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The plain value, for the code paths that deliberately need it (encryption, sending the
    /// message to the passenger).
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize + Default> Secret<T> {
    /// The plain value, moved out. A default value is left behind for the wipe on drop, since
    /// a type with a destructor cannot be taken apart by a move.
    pub fn into_inner(mut self) -> T {
        std::mem::take(&mut self.0)
    }
}

impl<T: Zeroize> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T: Zeroize> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl<T: Zeroize> Drop for Secret<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Stands in for key material in hand-written `Debug` output.
pub(crate) struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}
