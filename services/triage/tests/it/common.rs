//! Helpers shared by the repository and gRPC tests.

use detour_domain::{Actor, CaseId, Instant, TravelerId, events, time};
use detour_proto::common::v1 as common;
use detour_proto::events::v1::{CaseOpened, CaseResolved, Envelope, envelope::Event};

/// An instant with whole microseconds, as the database keeps them.
pub fn at(micros: i64) -> Instant {
    time::from_micros(micros).unwrap()
}

pub fn base() -> Instant {
    at(1_790_000_000_000_000)
}

/// The usual flight, departing a day after [`base`].
pub fn flight_segment() -> common::Segment {
    let starts_at = Some(prost_types::Timestamp { seconds: 1_790_100_000, nanos: 0 });
    common::Segment { starts_at, ..detour_testkit::flight_segment() }
}

/// The desk agent whose calls to intake start the tests' chains of events.
pub fn agent() -> Actor {
    Actor::user("agent-7", ["agent"])
}

/// Intake's `CaseOpened` for a new case, opened by [`agent`].
pub fn case_opened(case_id: CaseId, description: &str, received_at: Instant) -> Envelope {
    events::envelope(
        "intake",
        case_id,
        received_at,
        &agent(),
        Event::CaseOpened(CaseOpened {
            case_number: "DT-0000001".into(),
            traveler_id: Some(common::TravelerId { value: TravelerId::new().to_string() }),
            preferred_language: "zh-CN".into(),
            segment: Some(flight_segment()),
            channel: common::Channel::Wechat as i32,
            description: description.into(),
            requested_outcomes: vec![],
            received_at: Some(time::to_proto(received_at)),
            incident_id: None,
        }),
    )
}

/// Intake's `CaseResolved`, resolved by [`agent`].
pub fn case_resolved(case_id: CaseId, resolved_at: Instant) -> Envelope {
    events::envelope(
        "intake",
        case_id,
        resolved_at,
        &agent(),
        Event::CaseResolved(CaseResolved {
            resolution: "Rebooked on the next flight".into(),
            resolved_at: Some(time::to_proto(resolved_at)),
        }),
    )
}
