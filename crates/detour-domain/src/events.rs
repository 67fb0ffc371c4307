//! Event streams and envelope construction shared by producers and consumers.

use detour_proto::common::v1 as pb;
use detour_proto::events::v1::{Envelope, envelope};

use crate::{Actor, CaseId, EventId, Instant, time};

/// One stream per producing service; every consuming service reads it with its own group.
pub mod streams {
    pub const INTAKE: &str = "detour.intake.events";
    pub const TRIAGE: &str = "detour.triage.events";
    pub const SUPPLIER: &str = "detour.supplier.events";
    pub const COMPENSATION: &str = "detour.compensation.events";
    pub const FEEDBACK: &str = "detour.feedback.events";
}

/// A new envelope with a fresh event id, made by `actor`.
pub fn envelope(
    producer: &str,
    case_id: CaseId,
    at: Instant,
    actor: &Actor,
    event: envelope::Event,
) -> Envelope {
    Envelope {
        actor: Some(actor.to_proto()),
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

/// The event's message name ("CaseOpened"), for audit records and logs; `None` when empty.
pub fn event_name(env: &Envelope) -> Option<&'static str> {
    use envelope::Event as E;
    Some(match env.event.as_ref()? {
        E::CaseOpened(_) => "CaseOpened",
        E::CaseTriaged(_) => "CaseTriaged",
        E::SupplierRequestOpened(_) => "SupplierRequestOpened",
        E::SupplierResponded(_) => "SupplierResponded",
        E::OfferProposed(_) => "OfferProposed",
        E::OfferAccepted(_) => "OfferAccepted",
        E::CaseResolved(_) => "CaseResolved",
        E::SurveySent(_) => "SurveySent",
        E::SurveyAnswered(_) => "SurveyAnswered",
    })
}

/// Who made the change an envelope reports, when it says.
pub fn actor_of(env: &Envelope) -> Option<Actor> {
    env.actor.as_ref().and_then(Actor::from_proto)
}

/// The envelope's instant, or `None` when missing or out of range.
pub fn occurred_at(env: &Envelope) -> Option<Instant> {
    env.occurred_at.as_ref().and_then(time::from_proto)
}
