use detour_domain::{CaseId, TravelerId};
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
    #[error("no case of traveler {0}")]
    TravelerNotFound(TravelerId),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("personal data keys: {0}")]
    Vault(#[from] detour_vault::VaultError),
    #[error("data key {version} of tenant {tenant} is missing")]
    DataKeyMissing { tenant: String, version: i64 },
}

impl ServiceError for IntakeError {
    fn error_code(&self) -> ErrorCode {
        match self {
            Self::Invalid(_) | Self::IdempotencyKeyReused(_) => ErrorCode::InvalidArgument,
            Self::CaseNotFound(_) | Self::TravelerNotFound(_) => ErrorCode::NotFound,
            Self::AlreadyResolved(_) => ErrorCode::FailedPrecondition,
            Self::Storage(e) => e.error_code(),
            Self::Vault(_) | Self::DataKeyMissing { .. } => ErrorCode::Internal,
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
