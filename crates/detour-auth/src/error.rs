//! Why a call was refused. Messages name the reason, never the token or its claims' values.

use tonic::{Code, Status};

/// A refused call. Every variant but [`AuthError::PermissionDenied`] and
/// [`AuthError::KeysUnavailable`] means the caller is not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    MissingToken,
    /// Not a bearer token, not a JWS in compact form, or a required claim is missing or has the
    /// wrong type. The reason is a fixed text.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("token expired")]
    Expired,
    /// `nbf` is still in the future.
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token audience is not accepted")]
    WrongAudience,
    /// `iss` is not a configured issuer.
    #[error("token issuer is not accepted")]
    WrongIssuer,
    #[error("token signature does not verify")]
    BadSignature,
    /// Only RS256 and ES256 are accepted: never `none`, never HMAC.
    #[error("token algorithm `{0}` is not accepted")]
    UnsupportedAlgorithm(String),
    /// The header's `alg` is not the algorithm of the key its `kid` names.
    #[error("token algorithm does not match its key")]
    AlgorithmMismatch,
    /// No key of the issuer has the token's `kid`, even after re-reading the issuer's JWKS.
    #[error("token signing key is not known")]
    UnknownKey,
    /// The issuer's JWKS could not be fetched and no earlier copy is cached. Not the caller's
    /// fault: answered as `UNAVAILABLE` so that clients retry.
    #[error("signing keys of issuer `{issuer}` are unavailable")]
    KeysUnavailable { issuer: String },
    /// Authenticated, but the policy does not let this caller call `method`.
    #[error("caller may not call {method}")]
    PermissionDenied { method: String },
}

impl AuthError {
    /// The gRPC status code a refused call is answered with.
    pub fn code(&self) -> Code {
        match self {
            AuthError::PermissionDenied { .. } => Code::PermissionDenied,
            AuthError::KeysUnavailable { .. } => Code::Unavailable,
            _ => Code::Unauthenticated,
        }
    }

    /// The status a refused call is answered with; its message is this error's text.
    pub fn to_status(&self) -> Status {
        Status::new(self.code(), self.to_string())
    }
}

impl From<AuthError> for Status {
    fn from(e: AuthError) -> Self {
        e.to_status()
    }
}

/// Keeps an attacker-chosen `alg` short and printable before it goes into a message.
pub(crate) fn sanitize_alg(alg: &str) -> String {
    if !alg.is_empty() && alg.len() <= 16 && alg.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        alg.to_owned()
    } else {
        "?".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(AuthError::MissingToken.code(), Code::Unauthenticated);
        assert_eq!(AuthError::UnknownKey.code(), Code::Unauthenticated);
        assert_eq!(AuthError::PermissionDenied { method: "m".into() }.code(), Code::PermissionDenied);
        assert_eq!(AuthError::KeysUnavailable { issuer: "i".into() }.code(), Code::Unavailable);
    }

    #[test]
    fn alg_is_sanitized() {
        assert_eq!(sanitize_alg("none"), "none");
        assert_eq!(sanitize_alg("HS256"), "HS256");
        assert_eq!(sanitize_alg("<script>"), "?");
        assert_eq!(sanitize_alg(&"A".repeat(100)), "?");
    }
}
