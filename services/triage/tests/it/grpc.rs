//! The service through its real host: events published on the bus reach the consumer, and the
//! RPCs answer over a TCP socket.

use std::time::Duration;

use detour_domain::events::{self, streams};
use detour_domain::{Actor, CaseCategory, CaseId, Severity, time};
use detour_proto::common::v1 as common;
use detour_proto::events::v1::Envelope;
use detour_proto::events::v1::envelope::Event;
use detour_proto::triage::v1 as pb;
use detour_proto::triage::v1::triage_service_client::TriageServiceClient;
use detour_testkit::Channel;
use detour_testkit::{Service, sqlite_settings, violated_fields as fields};
use prost::Message;

use crate::common::{case_opened, case_resolved};

type Server = Service<TriageServiceClient<Channel>>;

/// Triage alone on a loopback port with a SQLite file, sharing an in-process bus with the test;
/// returns once health says it serves.
async fn start() -> Server {
    Service::start(detour_triage::MODULE, TriageServiceClient::new).await
}

fn case_id(id: CaseId) -> Option<common::CaseId> {
    Some(common::CaseId { value: id.to_string() })
}

#[tokio::test]
async fn an_opened_case_is_triaged_announced_and_leaves_its_queue_when_resolved() {
    let mut server = start().await;
    let mut downstream = server.bus.subscribe(streams::TRIAGE, "downstream-test", "t1").await.unwrap();

    let id = CaseId::new();
    // Intake's clock has nanoseconds; the database keeps microseconds.
    let received_at = crate::common::base() + chrono::Duration::nanoseconds(123_456);
    server
        .publish(streams::INTAKE, &case_opened(id, "航班CA981取消了，我们全家滞留在机场", received_at))
        .await;

    let got =
        server.client.get_triage(pb::GetTriageRequest { case_id: case_id(id) }).await.unwrap().into_inner();
    let t = got.triage.unwrap();
    assert_eq!(CaseCategory::from_proto(t.category), Some(CaseCategory::FlightCancellation));
    assert_eq!(Severity::from_proto(t.severity), Some(Severity::Critical));
    assert_eq!(t.queue, "safety");
    assert!(t.needs_supplier);
    assert!(t.rationale.contains("滞留"), "{}", t.rationale);
    let due = t.first_response_due.as_ref().and_then(time::from_proto).unwrap();
    let expected =
        crate::common::base() + chrono::Duration::microseconds(123) + chrono::Duration::minutes(30);
    assert_eq!(due, expected, "counted from reception");

    let batch = downstream.next_batch(1, Duration::from_secs(10)).await.unwrap();
    assert_eq!(batch.len(), 1, "CaseTriaged reaches the triage stream");
    let env = Envelope::decode(batch[0].payload.clone()).unwrap();
    downstream.ack(&batch[0]).await.unwrap();
    assert_eq!(env.producer, "triage");
    assert_eq!(env.case_id.as_ref().unwrap().value, id.to_string());
    assert_eq!(
        events::actor_of(&env),
        Some(Actor::service("triage", Some("agent-7".into()))),
        "triage acts for the agent who opened the case"
    );
    let Some(Event::CaseTriaged(e)) = env.event else { panic!("not CaseTriaged") };
    assert_eq!((e.category, e.severity, e.queue.as_str()), (t.category, t.severity, "safety"));
    assert_eq!((&e.first_response_due, &e.resolution_due), (&t.first_response_due, &t.resolution_due));
    assert_eq!(env.occurred_at, t.triaged_at, "the event and the record carry the same instants");
    assert_eq!(e.segment.unwrap().service_reference, "CA981");

    let queue =
        |name: &str| pb::ListQueueRequest { queue: name.into(), page_size: 0, page_token: String::new() };
    let listed = server.client.list_queue(queue("safety")).await.unwrap().into_inner();
    assert_eq!(listed.triages.len(), 1);
    assert_eq!(listed.triages[0].case_id, case_id(id));
    assert!(listed.next_page_token.is_empty());

    server.publish(streams::INTAKE, &case_resolved(id, received_at + chrono::Duration::hours(2))).await;
    let listed = server.client.list_queue(queue("safety")).await.unwrap().into_inner();
    assert!(listed.triages.is_empty(), "a resolved case leaves its queue");
    assert!(server.client.get_triage(pb::GetTriageRequest { case_id: case_id(id) }).await.is_ok());

    server.stop().await;
}

#[tokio::test]
async fn bad_requests_name_the_field_and_unknown_cases_are_not_found() {
    let mut server = start().await;
    let c = &mut server.client;

    let missing = c.get_triage(pb::GetTriageRequest { case_id: None }).await.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::InvalidArgument);
    assert_eq!(fields(&missing), ["case_id.value"]);
    let malformed =
        c.get_triage(pb::GetTriageRequest { case_id: Some(common::CaseId { value: "nope".into() }) });
    let malformed = malformed.await.unwrap_err();
    assert_eq!(
        (malformed.code(), fields(&malformed)),
        (tonic::Code::InvalidArgument, vec!["case_id.value".to_owned()])
    );

    let unknown = c.get_triage(pb::GetTriageRequest { case_id: case_id(CaseId::new()) }).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    let no_queue = c.list_queue(pb::ListQueueRequest::default()).await.unwrap_err();
    assert_eq!(
        (no_queue.code(), fields(&no_queue)),
        (tonic::Code::InvalidArgument, vec!["queue".to_owned()])
    );
    let bad_page =
        pb::ListQueueRequest { queue: "lounge".into(), page_size: 501, page_token: "not-a-token".into() };
    let bad_page = c.list_queue(bad_page).await.unwrap_err();
    assert_eq!(bad_page.code(), tonic::Code::InvalidArgument);
    assert_eq!(fields(&bad_page), ["queue", "page_size", "page_token"]);

    server.stop().await;
}

#[tokio::test]
async fn run_serves_on_its_own_bus_until_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let server = detour_testkit::Server::run_with(
        sqlite_settings(dir.path()),
        |settings, listener, stop| async move { detour_triage::run(&settings, listener, stop).await },
    )
    .await;
    server.wait_serving(detour_proto::service_names::TRIAGE).await;
    server.stop().await;
}
