//! Compensation's domain: what it knows of a case, and the offers it makes.

use detour_domain::{CaseCategory, CaseId, Instant, Money, OfferId, Severity};

pub use detour_domain::SupplierOutcome;
pub use detour_domain::time::now;

detour_domain::stored_names!(
    /// An offer is proposed until the traveler accepts it, and accepted once only.
    OfferStatus, "offer status", proto = detour_proto::compensation::v1::OfferStatus, {
    Proposed => "proposed",
    Accepted => "accepted",
});

/// What triage told compensation about a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseContext {
    pub case_id: CaseId,
    pub category: CaseCategory,
    pub severity: Severity,
    /// When set, no offer is made before the supplier has answered.
    pub needs_supplier: bool,
    /// What the traveler paid for the segment, when known.
    pub price: Option<Money>,
    pub triaged_at: Instant,
}

/// The first offer of the compensation ladder; later rungs (after a decline) come with the
/// ladder's second step.
pub const FIRST_RUNG: i32 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOffer {
    pub id: OfferId,
    pub case_id: CaseId,
    /// The step of the ladder: one offer per case and rung.
    pub rung: i32,
    pub amount: Money,
    pub policy_rule: String,
    pub rationale: String,
    pub proposed_at: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub id: OfferId,
    pub case_id: CaseId,
    pub amount: Money,
    pub status: OfferStatus,
    pub policy_rule: String,
    pub rationale: String,
    pub proposed_at: Instant,
    /// Set exactly when the status is accepted.
    pub accepted_at: Option<Instant>,
}

/// What applying an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Applied; `proposed` is the offer it made, `None` when it made none (no offer due yet, or
    /// the case already has its offer on that rung).
    Applied { proposed: Option<OfferId> },
    /// This event was applied before.
    AlreadyProcessed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_now_is_whole_microseconds() {
        for s in OfferStatus::ALL {
            assert_eq!(s.as_str().parse::<OfferStatus>().unwrap(), *s);
        }
        assert!("declined".parse::<OfferStatus>().is_err());
        assert_eq!(now().timestamp_subsec_nanos() % 1_000, 0);
    }
}
