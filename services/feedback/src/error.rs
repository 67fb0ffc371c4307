use detour_domain::SurveyId;
use detour_errors::{ErrorCode, ServiceError, Violations};
use detour_storage::{DbFailure, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    #[error("{0}")]
    Invalid(Violations),
    #[error("survey {0} not found")]
    NotFound(SurveyId),
    #[error("survey {0} is already answered")]
    AlreadyAnswered(SurveyId),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("stored survey is corrupt: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for FeedbackError {
    fn from(e: sqlx::Error) -> Self {
        Self::Storage(e.into())
    }
}

impl ServiceError for FeedbackError {
    fn error_code(&self) -> ErrorCode {
        match self {
            Self::Invalid(_) => ErrorCode::InvalidArgument,
            Self::NotFound(_) => ErrorCode::NotFound,
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

impl From<FeedbackError> for tonic::Status {
    fn from(e: FeedbackError) -> Self {
        detour_errors::to_status(&e)
    }
}
