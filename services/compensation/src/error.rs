use detour_domain::OfferId;
use detour_errors::{ErrorCode, ServiceError, Violations};
use detour_storage::StorageError;

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
}

impl ServiceError for CompensationError {
    fn error_code(&self) -> ErrorCode {
        match self {
            Self::Invalid(_) => ErrorCode::InvalidArgument,
            Self::OfferNotFound(_) => ErrorCode::NotFound,
            Self::AlreadyAccepted(_) => ErrorCode::FailedPrecondition,
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

detour_storage::impl_from_sqlx!(CompensationError);
detour_errors::impl_into_status!(CompensationError);
