//! Triage's domain: the verdict on a case and the queues the desks work from.

use detour_domain::{CaseCategory, CaseId, Instant, Segment, Severity};

detour_domain::stored_names!(
    /// A desk's work list. Stored and sent by name; the names are part of the contract with the
    /// desks' tooling, so they never change meaning.
    Queue, "queue", {
    /// Injuries, illness and stranded travelers: duty of care comes before anything else.
    Safety => "safety",
    Air => "air",
    Hotel => "hotel",
    GroundAndTour => "ground-and-tour",
    Billing => "billing",
    General => "general",
});

/// What triage needs to know about a newly opened case.
#[derive(Debug, Clone)]
pub struct OpenedCase {
    pub case_id: CaseId,
    pub description: String,
    pub segment: Segment,
    pub received_at: Instant,
}

/// The classifier's verdict, before deadlines are set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub category: CaseCategory,
    pub severity: Severity,
    pub queue: Queue,
    pub needs_supplier: bool,
    pub rationale: String,
}

/// A case's triage as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Triage {
    pub case_id: CaseId,
    pub category: CaseCategory,
    pub severity: Severity,
    pub queue: Queue,
    pub needs_supplier: bool,
    pub rationale: String,
    pub received_at: Instant,
    pub first_response_due: Instant,
    pub resolution_due: Instant,
    pub triaged_at: Instant,
    /// Set when intake resolves the case; the triage then leaves its queue.
    pub resolved_at: Option<Instant>,
}

/// Position after the last triage of a queue page (most urgent first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub first_response_due_micros: i64,
    pub case_id: CaseId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Applied,
    /// The event was applied before (a redelivery), or changes nothing (a second triage of
    /// the same case, a case already resolved).
    Unchanged,
}
