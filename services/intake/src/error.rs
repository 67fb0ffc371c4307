use detour_domain::CaseId;
use detour_errors::{ErrorCode, ServiceError, Violations};
use detour_storage::{DbFailure, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("{0}")]
    Invalid(Violations),
    #[error("case {0} not found")]
    CaseNotFound(CaseId),
    #[error("case {0} is already resolved")]
    AlreadyResolved(CaseId),
    #[error("idempotency key was already used for a different request")]
    IdempotencyKeyReused(Violations),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("stored case is corrupt: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for IntakeError {
    fn from(e: sqlx::Error) -> Self {
        Self::Storage(e.into())
    }
}

impl ServiceError for IntakeError {
    fn error_code(&self) -> ErrorCode {
        match self {
            Self::Invalid(_) | Self::IdempotencyKeyReused(_) => ErrorCode::InvalidArgument,
            Self::CaseNotFound(_) => ErrorCode::NotFound,
            Self::AlreadyResolved(_) => ErrorCode::FailedPrecondition,
            Self::Storage(e) if e.failure() == Some(DbFailure::Unavailable) => ErrorCode::Unavailable,
            Self::Storage(_) | Self::Corrupt(_) => ErrorCode::Internal,
        }
    }

    fn field_violations(&self) -> Option<&Violations> {
        match self {
            Self::Invalid(v) | Self::IdempotencyKeyReused(v) => Some(v),
            _ => None,
        }
    }
}

impl From<IntakeError> for tonic::Status {
    fn from(e: IntakeError) -> Self {
        detour_errors::to_status(&e)
    }
}
