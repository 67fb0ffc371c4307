//! The service through its real gRPC server, with triage's events published on the bus.

use detour_domain::events::{self, streams};
use detour_domain::{Actor, CaseId, Severity};
use detour_proto::audit::v1 as audit_pb;
use detour_proto::common::v1 as common;
use detour_proto::events::v1::{SupplierOutcome, envelope::Event};
use detour_proto::supplier::v1 as pb;
use detour_proto::supplier::v1::supplier_service_client::SupplierServiceClient;
use detour_testkit::audit_summary;
use detour_testkit::{Role, next_event, observe, publish, violated_fields};
use tonic::Code;

use crate::common::{at, start, supplier_for_agent, triaged};

fn case_filter(case_id: CaseId) -> pb::ListSupplierRequestsRequest {
    pb::ListSupplierRequestsRequest {
        case_id: Some(common::CaseId { value: case_id.to_string() }),
        ..Default::default()
    }
}

fn request_id(value: &str) -> Option<common::SupplierRequestId> {
    Some(common::SupplierRequestId { value: value.to_owned() })
}

fn fields(status: &tonic::Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    violated_fields(status)
}

#[tokio::test]
async fn a_triaged_case_that_needs_its_supplier_gets_one_request() {
    let mut s = start().await;
    let (mut emitted, observer) = observe(&s.bus, streams::SUPPLIER).await;
    let case_id = CaseId::new();
    publish(&s.bus, streams::TRIAGE, &triaged(case_id, at(1_796_000_000), Severity::Critical, true)).await;
    // Triaged again later, at another severity: the first request stands.
    publish(&s.bus, streams::TRIAGE, &triaged(case_id, at(1_796_000_500), Severity::Low, true)).await;
    let no_supplier = CaseId::new();
    publish(&s.bus, streams::TRIAGE, &triaged(no_supplier, at(1_796_000_000), Severity::High, false)).await;

    let listed = s.client.list_supplier_requests(case_filter(case_id)).await.unwrap().into_inner();
    assert_eq!(listed.requests.len(), 1, "{listed:?}");
    assert!(listed.next_page_token.is_empty());
    let request = &listed.requests[0];
    assert_eq!(request.supplier_code, "CA");
    assert_eq!(request.status, pb::RequestStatus::Open as i32);
    assert_eq!(request.category, common::CaseCategory::FlightCancellation as i32);
    assert_eq!(request.response_due.as_ref().unwrap().seconds, 1_796_000_000 + 2 * 3600);
    let segment = request.segment.as_ref().unwrap();
    assert_eq!((segment.origin.as_str(), segment.destination.as_str()), ("PEK", "JFK"));
    assert_eq!(segment.price.as_ref().unwrap().amount_minor, 520_000);
    assert_eq!(request.outcome, 0);
    assert!(request.responded_at.is_none());

    let got = s
        .client
        .get_supplier_request(pb::GetSupplierRequestRequest { request_id: request.request_id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.request.as_ref(), Some(request));

    let none = s.client.list_supplier_requests(case_filter(no_supplier)).await.unwrap().into_inner();
    assert!(none.requests.is_empty(), "{none:?}");

    let event = next_event(&mut emitted).await;
    assert_eq!(event.producer, "supplier");
    assert_eq!(events::actor_of(&event), Some(supplier_for_agent()));
    assert_eq!(event.occurred_at, request.opened_at);
    assert_eq!(event.case_id.as_ref().unwrap().value, case_id.to_string());
    let Some(Event::SupplierRequestOpened(opened)) = event.event else { panic!("{event:?}") };
    assert_eq!(opened.request_id, request.request_id);
    assert_eq!(opened.supplier_code, "CA");
    assert_eq!(opened.response_due, request.response_due);

    observer.abort();
    s.stop().await;
}

#[tokio::test]
async fn an_answer_closes_the_request_once_and_is_announced() {
    let mut s = start().await;
    let (mut emitted, observer) = observe(&s.bus, streams::SUPPLIER).await;
    let case_id = CaseId::new();
    publish(&s.bus, streams::TRIAGE, &triaged(case_id, at(1_796_000_000), Severity::Medium, true)).await;
    let listed = s.client.list_supplier_requests(case_filter(case_id)).await.unwrap().into_inner();
    let id = listed.requests[0].request_id.clone();
    assert_eq!(listed.requests[0].response_due.as_ref().unwrap().seconds, 1_796_000_000 + 24 * 3600);

    let answer = pb::RecordSupplierResponseRequest {
        request_id: id.clone(),
        outcome: SupplierOutcome::FaultAccepted as i32,
        details: "  Crew shortage; we accept fault.  ".into(),
    };
    let answered =
        s.client.record_supplier_response(answer.clone()).await.unwrap().into_inner().request.unwrap();
    assert_eq!(answered.status, pb::RequestStatus::Answered as i32);
    assert_eq!(answered.outcome, SupplierOutcome::FaultAccepted as i32);
    assert_eq!(answered.details, "Crew shortage; we accept fault.");
    assert!(answered.responded_at.is_some());

    let again = s.client.record_supplier_response(answer).await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");
    let got = s
        .client
        .get_supplier_request(pb::GetSupplierRequestRequest { request_id: id.clone() })
        .await
        .unwrap();
    assert_eq!(got.into_inner().request, Some(answered.clone()));

    let answered_only = pb::ListSupplierRequestsRequest {
        status: pb::RequestStatus::Answered as i32,
        supplier_code: "ca".into(),
        ..Default::default()
    };
    let listed = s.client.list_supplier_requests(answered_only).await.unwrap().into_inner();
    assert_eq!(listed.requests, vec![answered.clone()]);

    let first = next_event(&mut emitted).await;
    assert!(matches!(first.event, Some(Event::SupplierRequestOpened(_))), "{first:?}");
    let second = next_event(&mut emitted).await;
    assert_eq!(second.case_id.as_ref().unwrap().value, case_id.to_string());
    assert_eq!(events::actor_of(&second), Some(Actor::user("admin-1", ["admin"])), "the caller answered");
    let Some(Event::SupplierResponded(responded)) = second.event else { panic!("{second:?}") };
    assert_eq!(responded.request_id, id);
    assert_eq!(responded.supplier_code, "CA");
    assert_eq!(responded.outcome, SupplierOutcome::FaultAccepted as i32);
    assert_eq!(responded.details, "Crew shortage; we accept fault.");
    assert_eq!(responded.responded_at, answered.responded_at);

    observer.abort();
    s.stop().await;
}

#[tokio::test]
async fn bad_requests_name_their_fields_and_unknown_ids_are_not_found() {
    let mut s = start().await;
    let unknown = detour_domain::SupplierRequestId::new().to_string();

    let err =
        s.client.get_supplier_request(pb::GetSupplierRequestRequest { request_id: None }).await.unwrap_err();
    assert_eq!(fields(&err), ["request_id.value"]);
    let err = s
        .client
        .get_supplier_request(pb::GetSupplierRequestRequest { request_id: request_id("not-a-uuid") })
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["request_id.value"]);
    let err = s
        .client
        .get_supplier_request(pb::GetSupplierRequestRequest { request_id: request_id(&unknown) })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    let err = s
        .client
        .record_supplier_response(pb::RecordSupplierResponseRequest {
            request_id: None,
            outcome: 0,
            details: "x".repeat(4_001),
        })
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["request_id.value", "outcome", "details"]);
    let err = s
        .client
        .record_supplier_response(pb::RecordSupplierResponseRequest {
            request_id: request_id(&unknown),
            outcome: 42,
            details: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["outcome"]);
    let err = s
        .client
        .record_supplier_response(pb::RecordSupplierResponseRequest {
            request_id: request_id(&unknown),
            outcome: SupplierOutcome::Disputed as i32,
            details: "x".repeat(4_000),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    let err = s
        .client
        .list_supplier_requests(pb::ListSupplierRequestsRequest {
            case_id: Some(common::CaseId { value: "case-1".into() }),
            supplier_code: "C-A".into(),
            status: 9,
            page_size: 501,
            page_token: "not a token".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["case_id.value", "supplier_code", "status", "page_size", "page_token"]);
    let err = s
        .client
        .list_supplier_requests(pb::ListSupplierRequestsRequest { page_size: -1, ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(fields(&err), ["page_size"]);

    s.stop().await;
}

#[tokio::test]
async fn requests_page_newest_first_through_the_api() {
    let mut s = start().await;
    let cases = [CaseId::new(), CaseId::new(), CaseId::new()];
    for case_id in cases {
        publish(&s.bus, streams::TRIAGE, &triaged(case_id, at(1_796_000_000), Severity::High, true)).await;
    }
    let page = |token: String| pb::ListSupplierRequestsRequest {
        page_size: 2,
        page_token: token,
        ..Default::default()
    };
    let first = s.client.list_supplier_requests(page(String::new())).await.unwrap().into_inner();
    assert_eq!(first.requests.len(), 2);
    assert!(!first.next_page_token.is_empty());
    let second =
        s.client.list_supplier_requests(page(first.next_page_token.clone())).await.unwrap().into_inner();
    assert_eq!(second.requests.len(), 1);
    assert!(second.next_page_token.is_empty());

    let order: Vec<String> = first
        .requests
        .iter()
        .chain(&second.requests)
        .map(|r| r.case_id.as_ref().unwrap().value.clone())
        .collect();
    let newest_first: Vec<String> = cases.iter().rev().map(ToString::to_string).collect();
    assert_eq!(order, newest_first);

    s.stop().await;
}

#[tokio::test]
async fn answers_and_refusals_are_audited_as_the_caller() {
    const RPC: &str = "detour.supplier.v1.SupplierService/RecordSupplierResponse";
    let host = start().await;
    let mut partner =
        SupplierServiceClient::new(host.server.channel_as("partner-ca", &[Role::Partner]).await);

    let unknown = pb::RecordSupplierResponseRequest {
        request_id: request_id(&detour_domain::SupplierRequestId::new().to_string()),
        outcome: SupplierOutcome::Disputed as i32,
        details: String::new(),
    };
    let err = partner.record_supplier_response(unknown).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let trail = host.audit_of("partner-ca").await;
    assert_eq!(trail.len(), 1, "{trail:?}");
    let refused = &trail[0];
    assert_eq!(refused.service, "supplier");
    assert_eq!(refused.outcome, "not_found");
    assert_eq!(refused.action, RPC);
    assert_eq!(refused.case_id, None, "an unknown request names no case");
    assert!(refused.targets.is_empty());
    assert!(refused.at.is_some() && !refused.audit_id.is_empty());
    let actor = refused.actor.as_ref().unwrap();
    assert_eq!(actor.kind, common::ActorKind::User as i32);
    assert_eq!((actor.id.as_str(), actor.roles.as_slice()), ("partner-ca", &["partner".to_owned()][..]));

    let invalid = pb::RecordSupplierResponseRequest { request_id: None, outcome: 0, details: String::new() };
    assert_eq!(partner.record_supplier_response(invalid).await.unwrap_err().code(), Code::InvalidArgument);
    assert_eq!(host.audit_of("partner-ca").await[0].outcome, "invalid_argument");

    // A request opened for the agent's case, answered by the partner, then answered again.
    let (mut emitted, observer) = observe(&host.bus, streams::SUPPLIER).await;
    let case_id = CaseId::new();
    publish(&host.bus, streams::TRIAGE, &triaged(case_id, at(1_796_000_000), Severity::High, true)).await;
    let listed = partner.list_supplier_requests(case_filter(case_id)).await.unwrap().into_inner();
    let answer = pb::RecordSupplierResponseRequest {
        request_id: listed.requests[0].request_id.clone(),
        outcome: SupplierOutcome::FaultAccepted as i32,
        details: "Crew shortage".into(),
    };
    partner.record_supplier_response(answer.clone()).await.unwrap();
    let again = partner.record_supplier_response(answer).await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");

    let by_case = audit_pb::ListAuditRecordsRequest {
        case_id: Some(common::CaseId { value: case_id.to_string() }),
        ..Default::default()
    };
    let trail = host.audit(by_case).await;
    let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        audit_summary(&trail),
        [s("partner-ca", "failed_precondition"), s("partner-ca", "ok"), s("supplier", "ok")]
    );
    assert_eq!((trail[0].action.as_str(), trail[1].action.as_str()), (RPC, RPC));
    assert_eq!(trail[2].action, "event detour.events.v1.CaseTriaged");
    let request = listed.requests[0].request_id.as_ref().unwrap().value.clone();
    let target = audit_pb::AuditTarget { kind: "supplier_request".into(), id: request };
    for r in &trail[1..] {
        assert_eq!(r.targets, std::slice::from_ref(&target), "{r:?}");
    }
    for r in &trail {
        assert_eq!(r.trace_id.len(), 32, "a trace id on {r:?}");
    }
    assert_eq!(trail[2].actor.as_ref().unwrap().on_behalf_of, "agent-7");
    // Everything the agent's case set off is found under the agent too.
    assert_eq!(audit_summary(&host.audit_of("agent-7").await), audit_summary(&trail[2..]));

    let opened = next_event(&mut emitted).await;
    assert!(matches!(opened.event, Some(Event::SupplierRequestOpened(_))), "{opened:?}");
    assert_eq!(events::actor_of(&opened), Some(supplier_for_agent()));
    let responded = next_event(&mut emitted).await;
    assert!(matches!(responded.event, Some(Event::SupplierResponded(_))), "{responded:?}");
    assert_eq!(events::actor_of(&responded), Some(Actor::user("partner-ca", ["partner"])));

    observer.abort();
    drop(partner);
    host.stop().await;
}
