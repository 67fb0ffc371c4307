use detour_domain::CaseId;
use detour_errors::{ErrorCode, ServiceError, Violations};
use detour_storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum TriageError {
    #[error("{0}")]
    Invalid(Violations),
    #[error("no triage for case {0}")]
    NotFound(CaseId),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

impl ServiceError for TriageError {
    fn error_code(&self) -> ErrorCode {
        match self {
            Self::Invalid(_) => ErrorCode::InvalidArgument,
            Self::NotFound(_) => ErrorCode::NotFound,
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

detour_storage::impl_from_sqlx!(TriageError);
detour_errors::impl_into_status!(TriageError);
