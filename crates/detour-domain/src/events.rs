//! Event streams and envelope construction shared by producers and consumers.

use detour_proto::common::v1 as pb;
use detour_proto::events::v1::{Envelope, envelope};

use crate::{CaseId, EventId, Instant, time};

/// One stream per producing service; every consuming service reads it with its own group.
pub mod streams {
    pub const INTAKE: &str = "detour.intake.events";
    pub const TRIAGE: &str = "detour.triage.events";
    pub const SUPPLIER: &str = "detour.supplier.events";
    pub const COMPENSATION: &str = "detour.compensation.events";
    pub const FEEDBACK: &str = "detour.feedback.events";
}

/// A new envelope with a fresh event id.
pub fn envelope(producer: &str, case_id: CaseId, at: Instant, event: envelope::Event) -> Envelope {
    Envelope {
        event_id: Some(pb::EventId { value: EventId::new().to_string() }),
        producer: producer.to_owned(),
        case_id: Some(pb::CaseId { value: case_id.to_string() }),
        occurred_at: Some(time::to_proto(at)),
        trace_context: Default::default(),
        event: Some(event),
    }
}

/// The case an envelope is about, when it names a valid one.
pub fn case_id_of(env: &Envelope) -> Option<CaseId> {
    env.case_id.as_ref().and_then(|c| c.value.parse().ok())
}

/// The envelope's instant, or `None` when missing or out of range.
pub fn occurred_at(env: &Envelope) -> Option<Instant> {
    env.occurred_at.as_ref().and_then(time::from_proto)
}
