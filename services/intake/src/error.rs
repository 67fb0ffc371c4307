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
    #[error("notification {0} not found")]
    NotificationNotFound(detour_domain::NotificationId),
    #[error("incident {0} not found")]
    IncidentNotFound(detour_domain::IncidentId),
    /// A contact named a traveler by a handle (id, phone, e-mail, booking) the registry does
    /// not know. The message names the kind of handle, never its value.
    #[error(
        "no registered traveler matches the {handle} given; send the traveler in full (id, name, contact)"
    )]
    UnknownTraveler { handle: &'static str, violations: Violations },
    /// The client's request stream broke off or sent a malformed message.
    #[error("reading the request stream: {}", .0.message())]
    Stream(tonic::Status),
    /// Admission control refused the request under overload.
    #[error("overloaded: {priority} contacts are being shed; retry in {retry_after_ms} ms")]
    Shed { priority: &'static str, retry_after_ms: u64 },
    /// The server stopped writing contacts (it is shutting down) before this one was written.
    #[error("intake is shutting down; retry on another replica")]
    ShuttingDown,
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
            Self::CaseNotFound(_)
            | Self::TravelerNotFound(_)
            | Self::NotificationNotFound(_)
            | Self::IncidentNotFound(_)
            | Self::UnknownTraveler { .. } => ErrorCode::NotFound,
            Self::AlreadyResolved(_) => ErrorCode::FailedPrecondition,
            Self::Stream(_) => ErrorCode::InvalidArgument,
            Self::Shed { .. } => ErrorCode::ResourceExhausted,
            Self::ShuttingDown => ErrorCode::Unavailable,
            Self::Storage(e) => e.error_code(),
            Self::Vault(_) | Self::DataKeyMissing { .. } => ErrorCode::Internal,
        }
    }

    fn field_violations(&self) -> Option<&Violations> {
        match self {
            Self::Invalid(v)
            | Self::IdempotencyKeyReused(v)
            | Self::UnknownTraveler { violations: v, .. } => Some(v),
            _ => None,
        }
    }
}

detour_storage::impl_from_sqlx!(IntakeError);
detour_errors::impl_into_status!(IntakeError);
