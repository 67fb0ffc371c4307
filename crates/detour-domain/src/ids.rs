//! Typed identifiers: a case id cannot be passed where an offer id is expected. All are UUIDv7,
//! so they sort by creation time and index well.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {kind} (expected a UUID)")]
pub struct IdParseError {
    pub kind: &'static str,
    pub value: String,
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub const KIND: &'static str = $kind;

            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// The id named by 16 bytes of a digest: the same bytes always give the same id.
            /// A UUID of version 8 (custom), so it is never mistaken for a drawn one.
            pub fn derived(bytes: [u8; 16]) -> Self {
                Self(Uuid::new_v8(bytes))
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s.trim())
                    .map(Self)
                    .map_err(|_| IdParseError { kind: $kind, value: s.chars().take(64).collect() })
            }
        }
    };
}

typed_id!(
    /// A traveler's case, from acceptance to archive.
    CaseId, "case id"
);
typed_id!(TravelerId, "traveler id");
typed_id!(SupplierRequestId, "supplier request id");
typed_id!(OfferId, "offer id");
typed_id!(SurveyId, "survey id");
typed_id!(
    /// A domain event; consumers record it to apply each event once.
    EventId, "event id"
);
typed_id!(
    /// One disruption and every case it caused.
    IncidentId, "incident id"
);
typed_id!(
    /// One message to a traveler, through however many channels it takes.
    NotificationId, "notification id"
);
typed_id!(
    /// One audit record; time-ordered (UUIDv7), so the newest sort last.
    AuditId, "audit id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_garbage() {
        let id = CaseId::new();
        assert_eq!(id.to_string().parse::<CaseId>(), Ok(id));
        let err = "not-a-uuid".parse::<OfferId>().unwrap_err();
        assert_eq!(err.kind, "offer id");
    }

    #[test]
    fn ids_sort_by_creation() {
        let a = CaseId::new();
        let b = CaseId::new();
        assert!(a < b);
    }
}
