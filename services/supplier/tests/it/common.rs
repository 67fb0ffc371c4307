//! Helpers shared by the tests: instants, segments, the events other services publish, and the
//! service running alone.

use std::sync::Arc;

use detour_domain::{Actor, CaseCategory, CaseId, Instant, Severity, events, time};
use detour_events::EventBus;
use detour_proto::audit::v1 as audit_pb;
use detour_proto::audit::v1::audit_service_client::AuditServiceClient;
use detour_proto::common::v1 as common;
use detour_proto::events::v1::{CaseTriaged, Envelope, envelope::Event};
use detour_proto::supplier::v1::supplier_service_client::SupplierServiceClient;
use detour_testkit::Channel;
use detour_testkit::{Service, flight_segment, sqlite_settings};

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

/// The service hosted like [`start`] does, for tests that call it as different users and read
/// the host's audit trail.
pub struct Host {
    pub server: detour_testkit::Server,
    pub bus: Arc<dyn EventBus>,
    _dir: tempfile::TempDir,
}

impl Host {
    pub async fn start() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let bus = detour_events::connect_bus("inproc://").unwrap();
        let server = detour_testkit::Server::start(
            &sqlite_settings(dir.path()),
            &[detour_supplier::MODULE],
            bus.clone(),
        )
        .await;
        Host { server, bus, _dir: dir }
    }

    /// The audit records `filter` selects, newest first, as an admin reads them.
    pub async fn audit(&self, filter: audit_pb::ListAuditRecordsRequest) -> Vec<audit_pb::AuditRecord> {
        let mut client = AuditServiceClient::new(self.server.channel().await);
        client.list_audit_records(filter).await.unwrap().into_inner().records
    }

    /// The records of what `actor_id` did, or what was done on their behalf.
    pub async fn audit_of(&self, actor_id: &str) -> Vec<audit_pb::AuditRecord> {
        self.audit(audit_pb::ListAuditRecordsRequest { actor_id: actor_id.into(), ..Default::default() })
            .await
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }
}
