//! One vocabulary of failure for every service.
//!
//! Each service has its own `thiserror` enum and says, per variant, which [`ErrorCode`] it is.
//! [`to_status`] is the only place an error becomes a `tonic::Status`, so internal failures are
//! logged once and never leak their details to callers.

use std::fmt;

use tonic_types::{ErrorDetails, StatusExt};

/// What kind of failure happened, independent of transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    Unauthenticated,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
    Internal,
}

impl ErrorCode {
    /// The snake_case name, as audit records store a refusal's outcome.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidArgument => "invalid_argument",
            Self::NotFound => "not_found",
            Self::AlreadyExists => "already_exists",
            Self::FailedPrecondition => "failed_precondition",
            Self::Unauthenticated => "unauthenticated",
            Self::PermissionDenied => "permission_denied",
            Self::ResourceExhausted => "resource_exhausted",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }

    pub fn grpc_code(self) -> tonic::Code {
        match self {
            Self::InvalidArgument => tonic::Code::InvalidArgument,
            Self::NotFound => tonic::Code::NotFound,
            Self::AlreadyExists => tonic::Code::AlreadyExists,
            Self::FailedPrecondition => tonic::Code::FailedPrecondition,
            Self::Unauthenticated => tonic::Code::Unauthenticated,
            Self::PermissionDenied => tonic::Code::PermissionDenied,
            Self::ResourceExhausted => tonic::Code::ResourceExhausted,
            Self::Unavailable => tonic::Code::Unavailable,
            Self::Internal => tonic::Code::Internal,
        }
    }

    pub fn http_status(self) -> u16 {
        match self {
            Self::InvalidArgument => 400,
            Self::Unauthenticated => 401,
            Self::PermissionDenied => 403,
            Self::NotFound => 404,
            Self::AlreadyExists | Self::FailedPrecondition => 409,
            Self::ResourceExhausted => 429,
            Self::Internal => 500,
            Self::Unavailable => 503,
        }
    }

    /// Whether the error's own message may be shown to the caller. Internal and availability
    /// failures carry database or network details that are ours, not the caller's.
    pub fn is_client_facing(self) -> bool {
        !matches!(self, Self::Internal | Self::Unavailable)
    }
}

/// One problem with one field of a request, named by its path in the request message
/// (`traveler.email`, `segment.price.currency`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.description)
    }
}

/// Field violations collected while validating a request, so the caller learns every problem
/// at once rather than one per round trip.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation { field: field.into(), description: description.into() });
    }

    /// Records the violation of a nested validation under `prefix` (`traveler` + `email` →
    /// `traveler.email`).
    pub fn extend_prefixed(&mut self, prefix: &str, other: Violations) {
        for v in other.0 {
            self.0
                .push(FieldViolation { field: format!("{prefix}.{}", v.field), description: v.description });
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[FieldViolation] {
        &self.0
    }

    /// `Ok(value)` when nothing was recorded, else the violations.
    pub fn finish<T>(self, value: T) -> Result<T, Violations> {
        if self.0.is_empty() { Ok(value) } else { Err(self) }
    }
}

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "invalid request: {}", parts.join("; "))
    }
}

impl std::error::Error for Violations {}

/// Implemented by every service's error enum.
pub trait ServiceError: std::error::Error {
    fn error_code(&self) -> ErrorCode;

    /// The request's field problems, for `INVALID_ARGUMENT`.
    fn field_violations(&self) -> Option<&Violations> {
        None
    }
}

/// Turns a service error into the status sent on the wire. Internal failures are logged here
/// with their cause and answered with a generic message.
pub fn to_status<E: ServiceError>(err: &E) -> tonic::Status {
    let code = err.error_code();
    if !code.is_client_facing() {
        tracing::error!(error = %err, source = ?std::error::Error::source(err), "request failed");
        let message = match code {
            ErrorCode::Unavailable => "a dependency is unavailable, try again",
            _ => "internal error",
        };
        return tonic::Status::new(code.grpc_code(), message);
    }
    match err.field_violations() {
        Some(violations) if !violations.is_empty() => {
            let mut details = ErrorDetails::new();
            for v in violations.as_slice() {
                details.add_bad_request_violation(v.field.clone(), v.description.clone());
            }
            tonic::Status::with_error_details(code.grpc_code(), err.to_string(), details)
        }
        _ => tonic::Status::new(code.grpc_code(), err.to_string()),
    }
}

/// `From<$error> for tonic::Status` through [`to_status`], so that handlers answer with `?`.
#[macro_export]
macro_rules! impl_into_status {
    ($error:ty) => {
        impl ::core::convert::From<$error> for $crate::__private::tonic::Status {
            fn from(e: $error) -> Self {
                $crate::to_status(&e)
            }
        }
    };
}

#[doc(hidden)]
pub mod __private {
    pub use tonic;
}

/// Reads the field violations back out of a status; used by clients and tests.
pub fn field_violations_of(status: &tonic::Status) -> Vec<FieldViolation> {
    status
        .get_details_bad_request()
        .map(|br| {
            br.field_violations
                .into_iter()
                .map(|v| FieldViolation { field: v.field, description: v.description })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Invalid(Violations);
    impl fmt::Display for Invalid {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.fmt(f)
        }
    }
    impl std::error::Error for Invalid {}
    impl ServiceError for Invalid {
        fn error_code(&self) -> ErrorCode {
            ErrorCode::InvalidArgument
        }
        fn field_violations(&self) -> Option<&Violations> {
            Some(&self.0)
        }
    }

    #[derive(Debug)]
    struct DbDown;
    impl fmt::Display for DbDown {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("connection to 10.0.0.5:5432 refused")
        }
    }
    impl std::error::Error for DbDown {}
    impl ServiceError for DbDown {
        fn error_code(&self) -> ErrorCode {
            ErrorCode::Internal
        }
    }

    #[test]
    fn invalid_argument_carries_every_violation() {
        let mut v = Violations::new();
        v.add("traveler.email", "is not an e-mail address");
        v.add("segment.price.currency", "is not an ISO 4217 code");
        let status = to_status(&Invalid(v));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let fields: Vec<String> = field_violations_of(&status).into_iter().map(|v| v.field).collect();
        assert_eq!(fields, ["traveler.email", "segment.price.currency"]);
    }

    #[test]
    fn internal_errors_do_not_leak_their_cause() {
        let status = to_status(&DbDown);
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(!status.message().contains("10.0.0.5"));
    }

    #[test]
    fn prefixed_violations_name_the_full_path() {
        let mut inner = Violations::new();
        inner.add("email", "bad");
        let mut outer = Violations::new();
        outer.extend_prefixed("traveler", inner);
        assert_eq!(outer.as_slice()[0].field, "traveler.email");
    }
}
