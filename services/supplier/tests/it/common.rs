//! Helpers shared by the tests: instants, segments, the events other services publish, and the
//! service running alone.

use detour_domain::{Actor, CaseCategory, CaseId, Instant, Severity, events, time};
use detour_proto::common::v1 as common;
use detour_proto::events::v1::{CaseTriaged, Envelope, envelope::Event};
use detour_proto::supplier::v1::supplier_service_client::SupplierServiceClient;
use detour_testkit::Channel;
use detour_testkit::{Service, flight_segment};

pub fn at(seconds: i64) -> Instant {
    time::from_micros(seconds * 1_000_000).unwrap()
}

pub fn flight(supplier_code: &str) -> common::Segment {
    common::Segment {
        supplier_code: supplier_code.into(),
        price: Some(common::Money { amount_minor: 520_000, currency: "CNY".into() }),
        ..flight_segment()
    }
}

/// Triage acting for the agent who opened the case: the actor of the triage events here.
pub fn triage_for_agent() -> Actor {
    Actor::service("triage", Some("agent-7".into()))
}

/// Supplier coordination acting for that same agent, as it does applying their triage.
pub fn supplier_for_agent() -> Actor {
    Actor::service("supplier", Some("agent-7".into()))
}

pub fn triaged(case_id: CaseId, occurred_at: Instant, severity: Severity, needs_supplier: bool) -> Envelope {
    events::envelope(
        "triage",
        case_id,
        occurred_at,
        &triage_for_agent(),
        Event::CaseTriaged(CaseTriaged {
            category: CaseCategory::FlightCancellation.to_proto(),
            severity: severity.to_proto(),
            queue: "disruption".into(),
            first_response_due: None,
            resolution_due: None,
            needs_supplier,
            segment: Some(flight("ca")),
            rationale: "flight cancelled on the day".into(),
        }),
    )
}

pub type Server = Service<SupplierServiceClient<Channel>>;

/// The service on a loopback port with a SQLite file and an in-process bus, once it serves.
pub async fn start() -> Server {
    Service::start(detour_supplier::MODULE, SupplierServiceClient::new).await
}
