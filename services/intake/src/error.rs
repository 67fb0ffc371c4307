use detour_domain::CaseId;
use detour_errors::{ErrorCode, ServiceError, Violations};
use detour_storage::StorageError;

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
}

impl ServiceError for IntakeError {
    fn error_code(&self) -> ErrorCode {
        match self {
            Self::Invalid(_) | Self::IdempotencyKeyReused(_) => ErrorCode::InvalidArgument,
            Self::CaseNotFound(_) => ErrorCode::NotFound,
            Self::AlreadyResolved(_) => ErrorCode::FailedPrecondition,
            Self::Storage(e) => e.error_code(),
        }
    }

    fn field_violations(&self) -> Option<&Violations> {
        match self {
            Self::Invalid(v) | Self::IdempotencyKeyReused(v) => Some(v),
            _ => None,
        }
    }
}

detour_storage::impl_from_sqlx!(IntakeError);
detour_errors::impl_into_status!(IntakeError);
