//! Triage's domain: the verdict on a case and the queues the desks work from.

use std::fmt;
use std::str::FromStr;

use detour_domain::{CaseCategory, CaseId, Instant, Segment, Severity, time};

/// `t` at the precision the database keeps (microseconds), so that an event and the stored
/// record it describes carry the same instants.
pub fn stored_precision(t: Instant) -> Instant {
    time::from_micros(time::to_micros(t)).unwrap_or(t)
}

/// A desk's work list. Stored and sent by name; the names are part of the contract with the
/// desks' tooling, so they never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Queue {
    /// Injuries, illness and stranded travelers: duty of care comes before anything else.
    Safety,
    Air,
    Hotel,
    GroundAndTour,
    Billing,
    General,
}

impl Queue {
    pub const ALL: &'static [Queue] =
        &[Queue::Safety, Queue::Air, Queue::Hotel, Queue::GroundAndTour, Queue::Billing, Queue::General];

    pub fn as_str(&self) -> &'static str {
        match self {
            Queue::Safety => "safety",
            Queue::Air => "air",
            Queue::Hotel => "hotel",
            Queue::GroundAndTour => "ground-and-tour",
            Queue::Billing => "billing",
            Queue::General => "general",
        }
    }
}

impl fmt::Display for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a known queue")]
pub struct UnknownQueue(pub String);

impl FromStr for Queue {
    type Err = UnknownQueue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Queue::ALL
            .iter()
            .copied()
            .find(|q| q.as_str() == s)
            .ok_or_else(|| UnknownQueue(s.chars().take(64).collect()))
    }
}

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
