//! Intake's domain: the case as the traveler and the desk see it.

use detour_domain::{
    CaseCategory, CaseId, CaseStatus, Channel, IncidentId, Instant, NotificationId, RequestedOutcome,
    Segment, Severity, TravelerId,
};

use crate::crisis::NewNotification;
use serde::{Deserialize, Serialize};

/// What intake stores of a traveler: the id and language in the clear, the rest sealed (or gone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTraveler {
    pub id: TravelerId,
    pub preferred_language: Option<String>,
    pub personal: StoredPersonal,
}

/// The traveler fields kept in the clear, as the `traveler` column holds them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TravelerRef {
    pub id: TravelerId,
    pub preferred_language: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredPersonal {
    Sealed(SealedPersonal),
    /// Erased on the traveler's request (or dropped by the migration to encryption).
    Erased {
        at: Instant,
    },
}

/// Name, contact details and document number, sealed with one version of a tenant's data key.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedPersonal {
    pub tenant: String,
    pub key_version: i64,
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for SealedPersonal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedPersonal")
            .field("tenant", &self.tenant)
            .field("key_version", &self.key_version)
            .field("bytes", &self.ciphertext.len())
            .finish()
    }
}

/// One version of a tenant's data key, as stored: wrapped by a KEK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDataKey {
    pub tenant: String,
    pub version: i64,
    pub kek_id: String,
    pub wrapped: Vec<u8>,
    pub created_at: Instant,
}

/// A validated request to open a case.
#[derive(Debug, Clone)]
pub struct NewCase {
    pub id: CaseId,
    pub traveler: StoredTraveler,
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
    /// Set when the case is opened for a reported disruption.
    pub incident_id: Option<IncidentId>,
    /// The language the traveler is answered in (preferred, else detected).
    pub language: Option<String>,
    /// Identifies the problem: the traveler's later contacts with the same key merge into this
    /// case while it is open.
    pub segment_key: Option<String>,
    /// The acknowledgement to queue with the case (its `case_id` is the case's, or, when the
    /// contact is merged, the open case's).
    pub acknowledgement: Option<NewNotification>,
}

/// A later contact about an open case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interaction {
    pub at: Instant,
    pub channel: Channel,
    pub description: String,
    pub requested_outcomes: Vec<RequestedOutcome>,
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
    pub traveler: StoredTraveler,
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
    pub incident_id: Option<IncidentId>,
    pub language: Option<String>,
    /// The acknowledgement queued when the case was opened.
    pub acknowledgement_id: Option<NotificationId>,
    /// Oldest first; empty when read for a list.
    pub interactions: Vec<Interaction>,
}

/// The case in a `Replayed` or `Merged` outcome comes without its timeline and interactions.
#[derive(Debug)]
pub enum OpenOutcome {
    Created(Case),
    /// The idempotency key was seen before: the original case, and the acknowledgement sent
    /// for that request.
    Replayed(Case, Option<NotificationId>),
    /// The traveler already had this problem open: the contact was added to that case.
    Merged(Case, Option<NotificationId>),
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
