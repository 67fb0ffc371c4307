//! Helpers shared by the repository and gRPC tests.

use detour_domain::{CaseId, Instant, events, time};
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

/// Intake's `CaseOpened` for a new case.
pub fn case_opened(case_id: CaseId, description: &str, received_at: Instant) -> Envelope {
    events::envelope(
        "intake",
        case_id,
        received_at,
        Event::CaseOpened(CaseOpened {
            case_number: "DT-0000001".into(),
            traveler: Some(common::Traveler {
                id: None,
                full_name: "Li Wei".into(),
                email: "li.wei@example.com".into(),
                phone: String::new(),
                preferred_language: "zh-CN".into(),
            }),
            segment: Some(flight_segment()),
            channel: common::Channel::Wechat as i32,
            description: description.into(),
            requested_outcomes: vec![],
            received_at: Some(time::to_proto(received_at)),
        }),
    )
}

pub fn case_resolved(case_id: CaseId, resolved_at: Instant) -> Envelope {
    events::envelope(
        "intake",
        case_id,
        resolved_at,
        Event::CaseResolved(CaseResolved {
            resolution: "Rebooked on the next flight".into(),
            resolved_at: Some(time::to_proto(resolved_at)),
        }),
    )
}
