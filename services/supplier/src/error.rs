use detour_domain::SupplierRequestId;
use detour_errors::{ErrorCode, ServiceError, Violations};
use detour_storage::{DbFailure, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum SupplierError {
    #[error("{0}")]
    Invalid(Violations),
    #[error("supplier request {0} not found")]
    RequestNotFound(SupplierRequestId),
    #[error("supplier request {0} is already answered")]
    AlreadyAnswered(SupplierRequestId),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("stored supplier request is corrupt: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for SupplierError {
    fn from(e: sqlx::Error) -> Self {
        Self::Storage(e.into())
    }
}

impl ServiceError for SupplierError {
    fn error_code(&self) -> ErrorCode {
        match self {
            Self::Invalid(_) => ErrorCode::InvalidArgument,
            Self::RequestNotFound(_) => ErrorCode::NotFound,
            Self::AlreadyAnswered(_) => ErrorCode::FailedPrecondition,
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

impl From<SupplierError> for tonic::Status {
    fn from(e: SupplierError) -> Self {
        detour_errors::to_status(&e)
    }
}
