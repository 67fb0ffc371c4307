use detour_domain::SurveyId;
use detour_errors::{ErrorCode, ServiceError, Violations};
use detour_storage::StorageError;

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
}

impl ServiceError for FeedbackError {
    fn error_code(&self) -> ErrorCode {
        match self {
            Self::Invalid(_) => ErrorCode::InvalidArgument,
            Self::NotFound(_) => ErrorCode::NotFound,
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

detour_storage::impl_from_sqlx!(FeedbackError);
detour_errors::impl_into_status!(FeedbackError);
