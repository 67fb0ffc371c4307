use detour_domain::SupplierRequestId;
use detour_errors::{ErrorCode, ServiceError, Violations};
use detour_storage::StorageError;

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
}

impl ServiceError for SupplierError {
    fn error_code(&self) -> ErrorCode {
        match self {
            Self::Invalid(_) => ErrorCode::InvalidArgument,
            Self::RequestNotFound(_) => ErrorCode::NotFound,
            Self::AlreadyAnswered(_) => ErrorCode::FailedPrecondition,
            Self::Storage(e) => e.error_code(),
        }
    }

    fn field_violations(&self) -> Option<&Violations> {
        match self {
            Self::Invalid(v) => Some(v),
            _ => None,
        }
    }
}

detour_storage::impl_from_sqlx!(SupplierError);
detour_errors::impl_into_status!(SupplierError);
