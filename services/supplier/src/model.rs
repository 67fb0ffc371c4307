//! Supplier coordination's domain: the request a case's supplier gets, and its answer.

use chrono::Duration;
use detour_domain::{CaseCategory, CaseId, Instant, Segment, Severity, SupplierRequestId};

pub use detour_domain::SupplierOutcome;
pub use detour_domain::time::now;

detour_domain::stored_names!(
    /// A request is open until the supplier's answer is recorded, and answered once only.
    RequestStatus, "request status", proto = detour_proto::supplier::v1::RequestStatus, {
    Open => "open",
    Answered => "answered",
});

/// How long a supplier has to answer. Urgent cases cannot wait for the next business day: the
/// traveler may still be stranded, so the supplier is chased within two hours.
pub fn response_within(severity: Severity) -> Duration {
    match severity {
        Severity::Critical | Severity::High => Duration::hours(2),
        Severity::Medium | Severity::Low => Duration::hours(24),
    }
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
