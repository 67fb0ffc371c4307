//! Helpers shared by the tests: instants, segments, the events other services publish, and the
//! service running alone.

use detour_domain::{Actor, CaseCategory, CaseId, Instant, Severity, events, time};
use detour_proto::common::v1 as common;
use detour_proto::compensation::v1::compensation_service_client::CompensationServiceClient;
use detour_proto::events::v1::{CaseTriaged, Envelope, SupplierOutcome, SupplierResponded, envelope::Event};
use detour_testkit::Channel;
use detour_testkit::{Service, flight_segment};

pub fn at(seconds: i64) -> Instant {
    time::from_micros(seconds * 1_000_000).unwrap()
}

pub fn eur(minor: i64) -> common::Money {
    common::Money { amount_minor: minor, currency: "EUR".into() }
}

pub fn flight(price: Option<common::Money>) -> common::Segment {
    common::Segment { price, ..flight_segment() }
}

/// Triage acting for the agent who opened the case: the actor of the triage events here.
pub fn triage_for_agent() -> Actor {
    Actor::service("triage", Some("agent-7".into()))
}

/// The airline's staff who answer supplier requests through the partner gateway.
pub fn partner() -> Actor {
    Actor::user("partner-ca", ["partner"])
}

/// Compensation acting for `user`, as it does applying an event that user set off.
pub fn compensation_for(user: &str) -> Actor {
    Actor::service("compensation", Some(user.into()))
}

/// Triage's verdict on a case, as triage would publish it.
pub fn triaged(
    case_id: CaseId,
    occurred_at: Instant,
    category: CaseCategory,
    needs_supplier: bool,
    price: Option<common::Money>,
) -> Envelope {
    events::envelope(
        "triage",
        case_id,
        occurred_at,
        &triage_for_agent(),
        Event::CaseTriaged(CaseTriaged {
            category: category.to_proto(),
            severity: Severity::High.to_proto(),
            queue: "disruption".into(),
            first_response_due: None,
            resolution_due: None,
            needs_supplier,
            segment: Some(flight(price)),
            rationale: "classified by the test".into(),
        }),
    )
}

/// The supplier's answer on a case, as supplier coordination would publish it when [`partner`]
/// records it.
pub fn responded(case_id: CaseId, outcome: SupplierOutcome) -> Envelope {
    let now = time::now();
    events::envelope(
        "supplier",
        case_id,
        now,
        &partner(),
        Event::SupplierResponded(SupplierResponded {
            request_id: Some(common::SupplierRequestId {
                value: detour_domain::SupplierRequestId::new().to_string(),
            }),
            supplier_code: "CA".into(),
            outcome: outcome as i32,
            details: "answered by the test".into(),
            responded_at: Some(time::to_proto(now)),
        }),
    )
}

pub type Server = Service<CompensationServiceClient<Channel>>;

/// The service on a loopback port with a SQLite file and an in-process bus, once it serves.
pub async fn start() -> Server {
    Service::start(detour_compensation::MODULE, CompensationServiceClient::new).await
}
