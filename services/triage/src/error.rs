use detour_domain::CaseId;
use detour_errors::{ErrorCode, ServiceError, Violations};
use detour_storage::{DbFailure, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum TriageError {
    #[error("{0}")]
    Invalid(Violations),
    #[error("no triage for case {0}")]
    NotFound(CaseId),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("stored triage is corrupt: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for TriageError {
    fn from(e: sqlx::Error) -> Self {
        Self::Storage(e.into())
    }
}

impl ServiceError for TriageError {
    fn error_code(&self) -> ErrorCode {
        match self {
            Self::Invalid(_) => ErrorCode::InvalidArgument,
            Self::NotFound(_) => ErrorCode::NotFound,
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

impl From<TriageError> for tonic::Status {
    fn from(e: TriageError) -> Self {
        detour_errors::to_status(&e)
    }
}
