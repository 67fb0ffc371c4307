//! Supplier coordination's domain: the request a case's supplier gets, and its answer.

use std::fmt;
use std::str::FromStr;

use chrono::{Duration, SubsecRound};
use detour_domain::taxonomy::UnknownName;
use detour_domain::{CaseCategory, CaseId, Instant, Segment, Severity, SupplierRequestId};

/// A closed vocabulary stored as stable snake_case names (never the proto number).
macro_rules! stored_names {
    ($(#[$doc:meta])* $name:ident, $kind:literal, { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(&self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownName { kind: $kind, value: s.chars().take(64).collect() }),
                }
            }
        }
    };
}

stored_names!(
    /// A request is open until the supplier's answer is recorded, and answered once only.
    RequestStatus, "request status", {
    Open => "open",
    Answered => "answered",
});

stored_names!(
    /// What the supplier said about the case.
    SupplierOutcome, "supplier outcome", {
    /// Another flight, another room.
    AlternativeOffered => "alternative_offered",
    FaultAccepted => "fault_accepted",
    /// The supplier disputes the traveler's account.
    Disputed => "disputed",
    /// Weather, strike, air traffic control: beyond the supplier's control.
    ExtraordinaryCircumstances => "extraordinary_circumstances",
});

/// How long a supplier has to answer. Urgent cases cannot wait for the next business day: the
/// traveler may still be stranded, so the supplier is chased within two hours.
pub fn response_within(severity: Severity) -> Duration {
    match severity {
        Severity::Critical | Severity::High => Duration::hours(2),
        Severity::Medium | Severity::Low => Duration::hours(24),
    }
}

/// The current instant at the precision the store keeps (microseconds), so that an event and
/// the row written with it state the same time.
pub fn now() -> Instant {
    detour_domain::time::now().trunc_subsecs(6)
}

/// A request to open for a triaged case.
#[derive(Debug, Clone)]
pub struct NewSupplierRequest {
    pub id: SupplierRequestId,
    pub case_id: CaseId,
    pub supplier_code: String,
    pub segment: Segment,
    pub category: CaseCategory,
    pub severity: Severity,
    pub opened_at: Instant,
    pub response_due: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupplierAnswer {
    pub outcome: SupplierOutcome,
    /// Empty when the supplier gave no details.
    pub details: String,
    pub responded_at: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupplierRequest {
    pub id: SupplierRequestId,
    pub case_id: CaseId,
    pub supplier_code: String,
    pub segment: Segment,
    pub category: CaseCategory,
    pub severity: Severity,
    pub status: RequestStatus,
    pub opened_at: Instant,
    pub response_due: Instant,
    /// Set exactly when the status is answered.
    pub answer: Option<SupplierAnswer>,
}

#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    pub case_id: Option<CaseId>,
    /// Upper-case, as segments store it.
    pub supplier_code: Option<String>,
    pub status: Option<RequestStatus>,
}

/// Position after the last request of a page (requests are listed newest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub opened_at_micros: i64,
    pub request_id: SupplierRequestId,
}

/// What applying a triage event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    Opened(SupplierRequestId),
    /// The case already has its request (an earlier triage of the same case): nothing new.
    CaseHasRequest(SupplierRequestId),
    /// This event was applied before.
    AlreadyProcessed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urgent_cases_get_a_two_hour_supplier_deadline_and_the_rest_a_day() {
        assert_eq!(response_within(Severity::Critical), Duration::hours(2));
        assert_eq!(response_within(Severity::High), Duration::hours(2));
        assert_eq!(response_within(Severity::Medium), Duration::hours(24));
        assert_eq!(response_within(Severity::Low), Duration::hours(24));
    }

    #[test]
    fn now_is_whole_microseconds() {
        assert_eq!(now().timestamp_subsec_nanos() % 1_000, 0);
    }

    #[test]
    fn stored_names_round_trip() {
        for s in RequestStatus::ALL {
            assert_eq!(s.as_str().parse::<RequestStatus>().unwrap(), *s);
        }
        for o in SupplierOutcome::ALL {
            assert_eq!(o.as_str().parse::<SupplierOutcome>().unwrap(), *o);
        }
        assert!("closed".parse::<RequestStatus>().is_err());
    }
}
