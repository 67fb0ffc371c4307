//! Helpers shared by the repository and gRPC tests.

use detour_domain::{Actor, CaseId, Instant, events, time};
use detour_proto::common::v1 as common;
use detour_proto::events::v1::{CaseOpened, CaseResolved, Envelope, envelope::Event};

/// An instant with whole microseconds, as the database keeps them.
pub fn at(micros: i64) -> Instant {
    time::from_micros(micros).unwrap()
}

pub fn base() -> Instant {
    at(1_790_000_000_000_000)
}

/// The desk agent whose calls to intake open and resolve the tests' cases.
pub fn agent() -> Actor {
    Actor::user("agent-7", ["agent"])
}

/// Feedback acting for `user`, as it does applying an event that user set off.
pub fn feedback_for(user: &str) -> Actor {
    Actor::service("feedback", Some(user.into()))
}

/// The traveler-facing app answering a survey for the traveler signed in to it.
pub fn traveler_app() -> Actor {
    Actor::service("traveler-app", Some("traveler-42".into()))
}

pub fn case_opened(case_id: CaseId, received_at: Instant) -> Envelope {
    events::envelope(
        "intake",
        case_id,
        received_at,
        &agent(),
        Event::CaseOpened(CaseOpened {
            case_number: "DT-0000001".into(),
            traveler_id: None,
            preferred_language: String::new(),
            segment: None,
            channel: common::Channel::App as i32,
            description: "Hotel room was dirty".into(),
            requested_outcomes: vec![],
            received_at: Some(time::to_proto(received_at)),
            incident_id: None,
        }),
    )
}

pub fn case_resolved(case_id: CaseId, resolved_at: Instant) -> Envelope {
    events::envelope(
        "intake",
        case_id,
        resolved_at,
        &agent(),
        Event::CaseResolved(CaseResolved {
            resolution: "Refunded one night".into(),
            resolved_at: Some(time::to_proto(resolved_at)),
        }),
    )
}
