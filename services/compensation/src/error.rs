use detour_domain::OfferId;
use detour_errors::{ErrorCode, ServiceError, Violations};
use detour_storage::{DbFailure, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum CompensationError {
    #[error("{0}")]
    Invalid(Violations),
    #[error("offer {0} not found")]
    OfferNotFound(OfferId),
    #[error("offer {0} is already accepted")]
    AlreadyAccepted(OfferId),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("stored offer is corrupt: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for CompensationError {
    fn from(e: sqlx::Error) -> Self {
        Self::Storage(e.into())
    }
}

impl ServiceError for CompensationError {
    fn error_code(&self) -> ErrorCode {
        match self {
            Self::Invalid(_) => ErrorCode::InvalidArgument,
            Self::OfferNotFound(_) => ErrorCode::NotFound,
            Self::AlreadyAccepted(_) => ErrorCode::FailedPrecondition,
            Self::Storage(e) if e.failure() == Some(DbFailure::Unavailable) => ErrorCode::Unavailable,
            Self::Storage(_) | Self::Corrupt(_) => ErrorCode::Internal,
        }
    }

    fn field_violations(&self) -> Option<&Violations> {
        match self {
            Self::Invalid(v) => Some(v),
            _ => None,
        }
    }
}

impl From<CompensationError> for tonic::Status {
    fn from(e: CompensationError) -> Self {
        detour_errors::to_status(&e)
    }
}
