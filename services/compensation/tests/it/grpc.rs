//! The service through its real gRPC server, with triage's and the supplier's events published
//! on the bus.

use std::time::Duration;

use detour_domain::events::{self, streams};
use detour_domain::{Actor, CaseCategory, CaseId};
use detour_proto::audit::v1 as audit_pb;
use detour_proto::common::v1 as common;
use detour_proto::compensation::v1 as pb;
use detour_proto::compensation::v1::compensation_service_client::CompensationServiceClient;
use detour_proto::events::v1::{SupplierOutcome, envelope::Event};
use detour_testkit::audit_summary;
use detour_testkit::{Role, next_event, observe, publish, violated_fields};
use tonic::Code;

use crate::common::{Server, at, compensation_for, eur, responded, start, triaged};

fn by_case(case_id: CaseId) -> pb::ListOffersRequest {
    pb::ListOffersRequest { case_id: Some(common::CaseId { value: case_id.to_string() }) }
}

fn offer_id(value: &str) -> Option<common::OfferId> {
    Some(common::OfferId { value: value.to_owned() })
}

fn fields(status: &tonic::Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    violated_fields(status)
}

/// The case's offers as (amount, currency, rule).
async fn offers_of(s: &mut Server, case_id: CaseId) -> Vec<(i64, String, String)> {
    let offers = s.client.list_offers(by_case(case_id)).await.unwrap().into_inner().offers;
    offers
        .into_iter()
        .map(|o| {
            let amount = o.amount.unwrap();
            (amount.amount_minor, amount.currency, o.policy_rule)
        })
        .collect()
}

fn offer(minor: i64, currency: &str, rule: &str) -> (i64, String, String) {
    (minor, currency.to_owned(), rule.to_owned())
}

#[tokio::test]
async fn a_case_that_needs_no_supplier_gets_its_offer_at_triage() {
    let mut s = start().await;
    let (mut emitted, observer) = observe(&s.bus, streams::COMPENSATION).await;
    let case_id = CaseId::new();
    let triage = triaged(case_id, at(1_796_000_000), CaseCategory::FlightDelay, false, Some(eur(1_001)));
    publish(&s.bus, streams::TRIAGE, &triage).await;

    let listed = s.client.list_offers(by_case(case_id)).await.unwrap().into_inner().offers;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let o = &listed[0];
    assert_eq!(o.amount, Some(eur(300)));
    assert_eq!(o.policy_rule, "company.first_offer_30pct");
    assert!(o.rationale.contains("30 %"), "{}", o.rationale);
    assert_eq!(o.status, pb::OfferStatus::Proposed as i32);
    assert_eq!(o.case_id.as_ref().unwrap().value, case_id.to_string());
    assert!(o.proposed_at.is_some());
    assert!(o.accepted_at.is_none());
    let got = s.client.get_offer(pb::GetOfferRequest { offer_id: o.offer_id.clone() }).await.unwrap();
    assert_eq!(got.into_inner().offer.as_ref(), Some(o));

    // Triaged again: the first offer stands alone.
    let again = triaged(case_id, at(1_796_000_600), CaseCategory::FlightDelay, false, Some(eur(2_000)));
    publish(&s.bus, streams::TRIAGE, &again).await;
    assert_eq!(offers_of(&mut s, case_id).await, [offer(300, "EUR", "company.first_offer_30pct")]);

    let event = next_event(&mut emitted).await;
    assert_eq!(event.producer, "compensation");
    assert_eq!(events::actor_of(&event), Some(compensation_for("agent-7")), "for the agent behind the case");
    assert_eq!(event.case_id.as_ref().unwrap().value, case_id.to_string());
    assert_eq!(event.occurred_at, o.proposed_at);
    let Some(Event::OfferProposed(proposed)) = event.event else { panic!("{event:?}") };
    assert_eq!(proposed.offer_id, o.offer_id);
    assert_eq!(proposed.amount, o.amount);
    assert_eq!(proposed.policy_rule, o.policy_rule);
    assert_eq!(proposed.rationale, o.rationale);

    observer.abort();
    s.stop().await;
}

#[tokio::test]
async fn the_policy_applies_to_what_triage_and_the_supplier_said() {
    let mut s = start().await;

    let fault = CaseId::new();
    publish(
        &s.bus,
        streams::TRIAGE,
        &triaged(fault, at(1_796_000_000), CaseCategory::FlightDelay, true, Some(eur(100_000))),
    )
    .await;
    assert!(offers_of(&mut s, fault).await.is_empty(), "no offer before the supplier answers");
    publish(&s.bus, streams::SUPPLIER, &responded(fault, SupplierOutcome::FaultAccepted)).await;
    assert_eq!(offers_of(&mut s, fault).await, [offer(30_000, "EUR", "company.first_offer_30pct")]);
    // A second answer for the same case proposes nothing new.
    publish(&s.bus, streams::SUPPLIER, &responded(fault, SupplierOutcome::ExtraordinaryCircumstances)).await;
    assert_eq!(offers_of(&mut s, fault).await.len(), 1);

    let fee = CaseId::new();
    publish(
        &s.bus,
        streams::TRIAGE,
        &triaged(fee, at(1_796_000_000), CaseCategory::FeeDispute, false, Some(eur(4_500))),
    )
    .await;
    assert_eq!(offers_of(&mut s, fee).await, [offer(4_500, "EUR", "company.fee_dispute_refund")]);

    let unpriced = CaseId::new();
    publish(
        &s.bus,
        streams::TRIAGE,
        &triaged(unpriced, at(1_796_000_000), CaseCategory::StaffService, false, None),
    )
    .await;
    assert_eq!(offers_of(&mut s, unpriced).await, [offer(5_000, "EUR", "company.goodwill_no_price")]);

    s.stop().await;
}

#[tokio::test]
async fn a_supplier_answer_that_overtakes_its_triage_waits_for_it() {
    let mut s = start().await;
    let case_id = CaseId::new();
    let answer = responded(case_id, SupplierOutcome::ExtraordinaryCircumstances);
    // The in-process bus returns from publish once the group has handled the event, so the
    // answer is published in the background while the triage is still to come.
    let early = tokio::spawn({
        let bus = s.bus.clone();
        async move { publish(&bus, streams::SUPPLIER, &answer).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!early.is_finished(), "the answer was handled before its case was triaged");
    assert!(offers_of(&mut s, case_id).await.is_empty());

    let triage =
        triaged(case_id, at(1_796_000_000), CaseCategory::FlightCancellation, true, Some(eur(20_000)));
    publish(&s.bus, streams::TRIAGE, &triage).await;
    tokio::time::timeout(Duration::from_secs(10), early).await.unwrap().unwrap();
    assert_eq!(offers_of(&mut s, case_id).await, [offer(0, "EUR", "company.care_only_force_majeure")]);
    assert!(s.bus.dead_letters(streams::SUPPLIER).await.unwrap().is_empty());

    s.stop().await;
}

#[tokio::test]
async fn an_offer_is_accepted_once_and_the_acceptance_announced() {
    let mut s = start().await;
    let (mut emitted, observer) = observe(&s.bus, streams::COMPENSATION).await;
    let case_id = CaseId::new();
    publish(
        &s.bus,
        streams::TRIAGE,
        &triaged(case_id, at(1_796_000_000), CaseCategory::Baggage, false, Some(eur(9_000))),
    )
    .await;
    let proposed = s.client.list_offers(by_case(case_id)).await.unwrap().into_inner().offers.remove(0);

    let accept = pb::AcceptOfferRequest { offer_id: proposed.offer_id.clone() };
    let accepted = s.client.accept_offer(accept.clone()).await.unwrap().into_inner().offer.unwrap();
    assert_eq!(accepted.status, pb::OfferStatus::Accepted as i32);
    assert!(accepted.accepted_at.is_some());
    assert_eq!(
        (accepted.amount.as_ref(), accepted.proposed_at),
        (proposed.amount.as_ref(), proposed.proposed_at)
    );
    let err = s.client.accept_offer(accept).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let got = s.client.get_offer(pb::GetOfferRequest { offer_id: proposed.offer_id.clone() }).await.unwrap();
    assert_eq!(got.into_inner().offer, Some(accepted.clone()));

    let first = next_event(&mut emitted).await;
    assert!(matches!(first.event, Some(Event::OfferProposed(_))), "{first:?}");
    let second = next_event(&mut emitted).await;
    assert_eq!(second.case_id.as_ref().unwrap().value, case_id.to_string());
    assert_eq!(events::actor_of(&second), Some(Actor::user("admin-1", ["admin"])), "the caller accepted");
    assert_eq!(second.occurred_at, accepted.accepted_at);
    let Some(Event::OfferAccepted(e)) = second.event else { panic!("{second:?}") };
    assert_eq!(e.offer_id, proposed.offer_id);
    assert_eq!(e.amount, Some(eur(2_700)));

    observer.abort();
    s.stop().await;
}

#[tokio::test]
async fn bad_requests_name_their_fields_and_unknown_ids_are_not_found() {
    let mut s = start().await;
    let unknown = detour_domain::OfferId::new().to_string();

    let err = s.client.get_offer(pb::GetOfferRequest { offer_id: None }).await.unwrap_err();
    assert_eq!(fields(&err), ["offer_id.value"]);
    let err = s.client.get_offer(pb::GetOfferRequest { offer_id: offer_id("offer-1") }).await.unwrap_err();
    assert_eq!(fields(&err), ["offer_id.value"]);
    let err = s.client.get_offer(pb::GetOfferRequest { offer_id: offer_id(&unknown) }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    let err = s.client.accept_offer(pb::AcceptOfferRequest { offer_id: offer_id(" ") }).await.unwrap_err();
    assert_eq!(fields(&err), ["offer_id.value"]);
    let err =
        s.client.accept_offer(pb::AcceptOfferRequest { offer_id: offer_id(&unknown) }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    let err = s.client.list_offers(pb::ListOffersRequest { case_id: None }).await.unwrap_err();
    assert_eq!(fields(&err), ["case_id.value"]);
    let bad = pb::ListOffersRequest { case_id: Some(common::CaseId { value: "DT-0000001".into() }) };
    let err = s.client.list_offers(bad).await.unwrap_err();
    assert_eq!(fields(&err), ["case_id.value"]);
    assert!(offers_of(&mut s, CaseId::new()).await.is_empty());

    s.stop().await;
}

#[tokio::test]
async fn acceptances_and_refusals_are_audited_as_the_caller() {
    const RPC: &str = "detour.compensation.v1.CompensationService/AcceptOffer";
    let host = start().await;
    let mut finance = CompensationServiceClient::new(host.server.channel_as("fin-2", &[Role::Finance]).await);

    let unknown = pb::AcceptOfferRequest { offer_id: offer_id(&detour_domain::OfferId::new().to_string()) };
    let err = finance.accept_offer(unknown).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let trail = host.audit_of("fin-2").await;
    assert_eq!(trail.len(), 1, "{trail:?}");
    let refused = &trail[0];
    assert_eq!(refused.service, "compensation");
    assert_eq!(refused.outcome, "not_found");
    assert_eq!(refused.action, RPC);
    assert_eq!(refused.case_id, None, "an unknown offer names no case");
    assert!(refused.targets.is_empty());
    let actor = refused.actor.as_ref().unwrap();
    assert_eq!(actor.kind, common::ActorKind::User as i32);
    assert_eq!((actor.id.as_str(), actor.roles.as_slice()), ("fin-2", &["finance".to_owned()][..]));

    let malformed = pb::AcceptOfferRequest { offer_id: offer_id("offer-1") };
    assert_eq!(finance.accept_offer(malformed).await.unwrap_err().code(), Code::InvalidArgument);
    assert_eq!(host.audit_of("fin-2").await[0].outcome, "invalid_argument");

    // An offer proposed at triage for the agent's case, accepted, then accepted again.
    let (mut emitted, observer) = observe(&host.bus, streams::COMPENSATION).await;
    let case_id = CaseId::new();
    let triage = triaged(case_id, at(1_796_000_000), CaseCategory::Baggage, false, Some(eur(9_000)));
    publish(&host.bus, streams::TRIAGE, &triage).await;
    let offer = finance.list_offers(by_case(case_id)).await.unwrap().into_inner().offers.remove(0);
    let accept = pb::AcceptOfferRequest { offer_id: offer.offer_id.clone() };
    finance.accept_offer(accept.clone()).await.unwrap();
    let again = finance.accept_offer(accept).await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");

    let by_case = audit_pb::ListAuditRecordsRequest {
        case_id: Some(common::CaseId { value: case_id.to_string() }),
        ..Default::default()
    };
    let trail = host.audit(by_case).await;
    let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        audit_summary(&trail),
        [s("fin-2", "failed_precondition"), s("fin-2", "ok"), s("compensation", "ok")]
    );
    assert_eq!((trail[0].action.as_str(), trail[1].action.as_str()), (RPC, RPC));
    assert_eq!(trail[2].action, "event detour.events.v1.CaseTriaged");
    let target = audit_pb::AuditTarget { kind: "offer".into(), id: offer.offer_id.unwrap().value };
    for r in &trail[1..] {
        assert_eq!(r.targets, std::slice::from_ref(&target), "{r:?}");
    }
    for r in &trail {
        assert_eq!(r.trace_id.len(), 32, "a trace id on {r:?}");
    }
    assert_eq!(audit_summary(&host.audit_of("agent-7").await), audit_summary(&trail[2..]));

    let proposed = next_event(&mut emitted).await;
    assert!(matches!(proposed.event, Some(Event::OfferProposed(_))), "{proposed:?}");
    assert_eq!(events::actor_of(&proposed), Some(compensation_for("agent-7")));
    let accepted = next_event(&mut emitted).await;
    assert!(matches!(accepted.event, Some(Event::OfferAccepted(_))), "{accepted:?}");
    assert_eq!(events::actor_of(&accepted), Some(Actor::user("fin-2", ["finance"])));

    observer.abort();
    drop(finance);
    host.stop().await;
}
