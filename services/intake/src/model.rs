//! Intake's domain: the case as the traveler and the desk see it.

use detour_domain::{
    CaseCategory, CaseId, CaseStatus, Channel, Instant, RequestedOutcome, Segment, Severity, Traveler,
};

/// A validated request to open a case.
#[derive(Debug, Clone)]
pub struct NewCase {
    pub id: CaseId,
    pub traveler: Traveler,
    pub segment: Segment,
    pub channel: Channel,
    pub description: String,
    pub requested_outcomes: Vec<RequestedOutcome>,
    pub received_at: Instant,
    pub first_response_due: Instant,
    pub idempotency_key: Option<String>,
    /// Identifies the request's content, so a reused idempotency key with another request is
    /// refused rather than silently answered with the wrong case.
    pub fingerprint: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    pub at: Instant,
    pub kind: String,
    pub actor: String,
    pub summary: String,
}

#[derive(Debug, Clone)]
pub struct Case {
    pub id: CaseId,
    pub number: String,
    pub status: CaseStatus,
    pub traveler: Traveler,
    pub segment: Segment,
    pub channel: Channel,
    pub description: String,
    pub requested_outcomes: Vec<RequestedOutcome>,
    pub category: Option<CaseCategory>,
    pub severity: Option<Severity>,
    pub queue: Option<String>,
    pub opened_at: Instant,
    pub first_response_due: Instant,
    pub resolution_due: Option<Instant>,
    pub resolved_at: Option<Instant>,
    pub resolution: Option<String>,
    /// Oldest first; empty when read for a list.
    pub timeline: Vec<TimelineEntry>,
}

#[derive(Debug)]
pub enum OpenOutcome {
    Created(Case),
    /// The idempotency key was seen before: the original case.
    Replayed(Case),
}

#[derive(Debug, Clone, Default)]
pub struct CaseFilter {
    pub status: Option<CaseStatus>,
    pub category: Option<CaseCategory>,
    pub channel: Option<Channel>,
    pub opened_after: Option<Instant>,
    pub opened_before: Option<Instant>,
}

/// Position after the last case of a page (cases are listed newest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub opened_at_micros: i64,
    pub case_id: CaseId,
}

/// Triage's verdict, as intake records it.
#[derive(Debug, Clone)]
pub struct TriageFacts {
    pub category: CaseCategory,
    pub severity: Severity,
    pub queue: String,
    pub first_response_due: Instant,
    pub resolution_due: Instant,
}

#[derive(Debug, Clone)]
pub struct Resolution {
    pub text: String,
    pub at: Instant,
}

/// What another service's event changes on a case.
#[derive(Debug, Clone)]
pub struct CaseChange {
    pub case_id: CaseId,
    pub status: Option<CaseStatus>,
    pub triage: Option<TriageFacts>,
    pub timeline: TimelineEntry,
    /// Set when the event resolves the case (an accepted offer).
    pub resolve: Option<Resolution>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    Applied,
    AlreadyProcessed,
}
