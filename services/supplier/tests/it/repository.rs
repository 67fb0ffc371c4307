//! The repository contract: one suite, run against a fresh SQLite file and a fresh PostgreSQL
//! database, so the two implementations behave the same.

use std::sync::Arc;

use chrono::Duration;
use detour_audit::{Audit, AuditFilter, AuditLog, AuditRecord, Target};
use detour_domain::events::{self, streams};
use detour_domain::{Actor, CaseCategory, CaseId, Instant, Severity, SupplierRequestId, wire};
use detour_events::consumer::EventHandler;
use detour_proto::events::v1::envelope::Event;
use detour_supplier::consumer::{GROUP, RequestOpener};
use detour_supplier::error::SupplierError;
use detour_supplier::model::{
    NewSupplierRequest, Opened, RequestFilter, RequestStatus, SupplierAnswer, SupplierOutcome,
    SupplierRequest,
};
use detour_supplier::repo::{self, SupplierRepository};
use detour_testkit::{Backend, TestDb, count_rows, event_id, outbox};

use crate::common::{at, flight, supplier_for_agent, triaged};

pub struct Fixture {
    repo: Arc<dyn SupplierRepository>,
    db: TestDb,
}

async fn fixture(backend: Backend) -> Fixture {
    let db = TestDb::fresh(backend, detour_supplier::NAME, detour_supplier::MIGRATIONS).await;
    Fixture { repo: repo::for_db(&db, None), db }
}

impl Fixture {
    /// The case's audit trail, newest first.
    async fn trail(&self, case_id: CaseId) -> Vec<AuditRecord> {
        let filter = AuditFilter { case_id: Some(case_id), ..Default::default() };
        AuditLog::new(detour_supplier::NAME, (*self.db).clone()).list(&filter, None, 10).await.unwrap()
    }
}

/// What the consumer audits when it applies triage's verdict on a case an agent opened.
fn triage_applied() -> Audit {
    Audit { actor: supplier_for_agent(), action: "event detour.events.v1.CaseTriaged".into(), trace_id: None }
}

/// A partner's staff answering through the partner gateway.
fn partner() -> Actor {
    Actor::user("partner-ca", ["partner"])
}

/// What the handler audits when the partner records an answer.
fn partner_answers() -> Audit {
    Audit {
        actor: partner(),
        action: "detour.supplier.v1.SupplierService/RecordSupplierResponse".into(),
        trace_id: None,
    }
}

detour_testkit::both_backends!(
    fixture;
    applying_a_triage_event_twice_opens_one_request_and_emits_once,
    a_case_keeps_its_first_request_when_triaged_again,
    an_open_request_is_answered_once,
    answering_an_unknown_request_is_not_found,
    pages_are_newest_first_and_filters_combine,
    opening_and_answering_are_audited_once_each,
    the_consumer_opens_requests_for_the_agent_behind_the_triage,
);

fn new_request(case_id: CaseId, supplier: &str, opened_at: Instant) -> NewSupplierRequest {
    let segment = wire::segment_from_proto(&flight(supplier)).unwrap();
    NewSupplierRequest {
        id: SupplierRequestId::new(),
        case_id,
        supplier_code: supplier.to_owned(),
        segment,
        category: CaseCategory::FlightCancellation,
        severity: Severity::High,
        opened_at,
        response_due: opened_at + Duration::hours(2),
    }
}

/// Opens a request as the consumer does, with the event it would emit.
async fn open(f: &Fixture, event_id: &str, new: NewSupplierRequest) -> Opened {
    let opened = detour_supplier::consumer::request_opened(&new, &supplier_for_agent());
    f.repo.open_request(GROUP, event_id, new, opened, &triage_applied()).await.unwrap()
}

fn answer(outcome: SupplierOutcome) -> SupplierAnswer {
    SupplierAnswer { outcome, details: "ATC strike at PEK".into(), responded_at: at(1_796_010_000) }
}

async fn record(
    f: &Fixture,
    request: &SupplierRequest,
    answer: SupplierAnswer,
) -> Result<SupplierRequest, SupplierError> {
    let event = detour_supplier::grpc::supplier_responded(request, &answer, &partner());
    f.repo.record_response(request.id, answer, event, &partner_answers()).await
}

async fn applying_a_triage_event_twice_opens_one_request_and_emits_once(f: Fixture) {
    let case_id = CaseId::new();
    let new = new_request(case_id, "CA", at(1_796_000_000));
    let id = new.id;
    assert_eq!(open(&f, "evt-1", new.clone()).await, Opened::Opened(id));
    // A redelivery builds a fresh request id; the processed record must still stop it.
    let again = NewSupplierRequest { id: SupplierRequestId::new(), ..new.clone() };
    assert_eq!(open(&f, "evt-1", again).await, Opened::AlreadyProcessed);

    assert_eq!(count_rows(&f.db, "supplier_requests").await, 1);
    assert_eq!(count_rows(&f.db, "outbox").await, 1);
    let events = outbox(&f.db).await;
    assert_eq!(events[0].0, streams::SUPPLIER);
    let Some(Event::SupplierRequestOpened(e)) = events[0].1.event.as_ref() else {
        panic!("{:?}", events[0].1)
    };
    assert_eq!(e.request_id.as_ref().unwrap().value, id.to_string());
    assert_eq!(e.supplier_code, "CA");

    let stored = f.repo.get_request(id).await.unwrap().unwrap();
    assert_eq!(stored.case_id, case_id);
    assert_eq!(stored.status, RequestStatus::Open);
    assert_eq!(stored.segment, new.segment);
    assert_eq!(stored.category, CaseCategory::FlightCancellation);
    assert_eq!(stored.severity, Severity::High);
    assert_eq!(stored.opened_at, new.opened_at);
    assert_eq!(stored.response_due, new.response_due);
    assert_eq!(stored.answer, None);
}

async fn a_case_keeps_its_first_request_when_triaged_again(f: Fixture) {
    let case_id = CaseId::new();
    let first = new_request(case_id, "CA", at(1_796_000_000));
    let first_id = first.id;
    assert_eq!(open(&f, "evt-1", first).await, Opened::Opened(first_id));
    let second = new_request(case_id, "MU", at(1_796_000_100));
    assert_eq!(open(&f, "evt-2", second).await, Opened::CaseHasRequest(first_id));

    assert_eq!(count_rows(&f.db, "supplier_requests").await, 1);
    assert_eq!(count_rows(&f.db, "outbox").await, 1);
    // The second event counts as handled, so a redelivery of it is skipped early.
    assert_eq!(count_rows(&f.db, "processed_events").await, 2);
    let stored = f.repo.get_request(first_id).await.unwrap().unwrap();
    assert_eq!(stored.supplier_code, "CA");
}

async fn an_open_request_is_answered_once(f: Fixture) {
    let new = new_request(CaseId::new(), "CA", at(1_796_000_000));
    let id = new.id;
    open(&f, "evt-1", new).await;
    let request = f.repo.get_request(id).await.unwrap().unwrap();

    let answered = record(&f, &request, answer(SupplierOutcome::ExtraordinaryCircumstances)).await.unwrap();
    assert_eq!(answered.status, RequestStatus::Answered);
    assert_eq!(answered.answer, Some(answer(SupplierOutcome::ExtraordinaryCircumstances)));
    assert_eq!(f.repo.get_request(id).await.unwrap().unwrap(), answered);

    let events = outbox(&f.db).await;
    assert_eq!(events.len(), 2);
    let Some(Event::SupplierResponded(e)) = events[1].1.event.as_ref() else { panic!("{:?}", events[1].1) };
    assert_eq!(e.request_id.as_ref().unwrap().value, id.to_string());
    assert_eq!(e.outcome, detour_proto::events::v1::SupplierOutcome::ExtraordinaryCircumstances as i32);
    assert_eq!(e.details, "ATC strike at PEK");
    assert_eq!(e.supplier_code, "CA");
    assert_eq!(events[1].1.case_id, events[0].1.case_id);

    let err = record(&f, &request, answer(SupplierOutcome::FaultAccepted)).await.unwrap_err();
    assert!(matches!(err, SupplierError::AlreadyAnswered(x) if x == id), "{err:?}");
    assert_eq!(count_rows(&f.db, "outbox").await, 2);
    let kept = f.repo.get_request(id).await.unwrap().unwrap();
    assert_eq!(kept.answer.unwrap().outcome, SupplierOutcome::ExtraordinaryCircumstances);
}

async fn answering_an_unknown_request_is_not_found(f: Fixture) {
    let new = new_request(CaseId::new(), "CA", at(1_796_000_000));
    let ghost = SupplierRequest {
        id: new.id,
        case_id: new.case_id,
        supplier_code: new.supplier_code.clone(),
        segment: new.segment.clone(),
        category: new.category,
        severity: new.severity,
        status: RequestStatus::Open,
        opened_at: new.opened_at,
        response_due: new.response_due,
        answer: None,
    };
    let err = record(&f, &ghost, answer(SupplierOutcome::Disputed)).await.unwrap_err();
    assert!(matches!(err, SupplierError::RequestNotFound(x) if x == new.id), "{err:?}");
    assert!(f.repo.get_request(new.id).await.unwrap().is_none());
    assert_eq!(count_rows(&f.db, "outbox").await, 0);
    assert_eq!(count_rows(&f.db, "audit_log").await, 0, "a refusal is the handler's to record");
}

async fn pages_are_newest_first_and_filters_combine(f: Fixture) {
    // Two requests share an instant, so the keyset must break the tie on the id.
    let opened = [1_796_000_000, 1_796_000_300, 1_796_000_300, 1_796_000_600, 1_796_000_900];
    let suppliers = ["CA", "MU", "CA", "CA", "MU"];
    let mut made = Vec::new();
    for (i, (secs, supplier)) in opened.iter().zip(suppliers).enumerate() {
        let new = new_request(CaseId::new(), supplier, at(*secs));
        made.push((new.id, new.case_id, *secs, supplier));
        open(&f, &format!("evt-{i}"), new).await;
    }
    let mut expected = made.clone();
    expected.sort_by_key(|m| std::cmp::Reverse((m.2, m.0)));
    let expected: Vec<SupplierRequestId> = expected.iter().map(|m| m.0).collect();

    let mut seen = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let (page, next) = f.repo.list_requests(&RequestFilter::default(), after, 2).await.unwrap();
        assert!(page.len() <= 2);
        seen.extend(page.iter().map(|r| r.id));
        pages += 1;
        match next {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, expected);
    assert_eq!(pages, 3);
    let (all, next) = f.repo.list_requests(&RequestFilter::default(), None, 5).await.unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!(next, None, "an exactly full last page has no next page");

    let mu = RequestFilter { supplier_code: Some("MU".into()), ..Default::default() };
    let (page, _) = f.repo.list_requests(&mu, None, 50).await.unwrap();
    assert_eq!(page.iter().map(|r| r.id).collect::<Vec<_>>(), [made[4].0, made[1].0]);

    let answered = f.repo.get_request(made[3].0).await.unwrap().unwrap();
    record(&f, &answered, answer(SupplierOutcome::AlternativeOffered)).await.unwrap();
    let open_ca = RequestFilter {
        supplier_code: Some("CA".into()),
        status: Some(RequestStatus::Open),
        ..Default::default()
    };
    let (page, _) = f.repo.list_requests(&open_ca, None, 50).await.unwrap();
    assert_eq!(page.iter().map(|r| r.id).collect::<Vec<_>>(), [made[2].0, made[0].0]);

    let by_case = RequestFilter { case_id: Some(made[1].1), ..Default::default() };
    let (page, _) = f.repo.list_requests(&by_case, None, 50).await.unwrap();
    assert_eq!(page.iter().map(|r| r.id).collect::<Vec<_>>(), [made[1].0]);
}

async fn opening_and_answering_are_audited_once_each(f: Fixture) {
    let case_id = CaseId::new();
    let new = new_request(case_id, "CA", at(1_796_000_000));
    let id = new.id;
    assert_eq!(open(&f, "evt-1", new.clone()).await, Opened::Opened(id));
    // Redelivered, and triaged again under another event: nothing new, nothing audited.
    let again = NewSupplierRequest { id: SupplierRequestId::new(), ..new.clone() };
    assert_eq!(open(&f, "evt-1", again.clone()).await, Opened::AlreadyProcessed);
    assert_eq!(open(&f, "evt-2", again).await, Opened::CaseHasRequest(id));

    let trail = f.trail(case_id).await;
    assert_eq!(trail.len(), 1, "{trail:?}");
    let r = &trail[0];
    assert_eq!(r.service, "supplier");
    assert_eq!(r.actor, supplier_for_agent());
    assert_eq!(r.action, "event detour.events.v1.CaseTriaged");
    assert_eq!(r.case_id, Some(case_id));
    assert_eq!(r.targets, [Target::new("supplier_request", id)]);
    assert_eq!(r.outcome, "ok");

    let request = f.repo.get_request(id).await.unwrap().unwrap();
    record(&f, &request, answer(SupplierOutcome::FaultAccepted)).await.unwrap();
    record(&f, &request, answer(SupplierOutcome::Disputed)).await.unwrap_err();
    let trail = f.trail(case_id).await;
    assert_eq!(trail.len(), 2, "the refused second answer is not the repository's to record: {trail:?}");
    let r = &trail[0];
    assert_eq!(r.actor, partner());
    assert_eq!(r.action, "detour.supplier.v1.SupplierService/RecordSupplierResponse");
    assert_eq!((r.case_id, r.outcome.as_str()), (Some(case_id), "ok"));
    assert_eq!(r.targets, [Target::new("supplier_request", id)]);

    let events = outbox(&f.db).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events::actor_of(&events[1].1), Some(partner()), "the answer is the partner's");
}

async fn the_consumer_opens_requests_for_the_agent_behind_the_triage(f: Fixture) {
    let opener = RequestOpener::new(f.repo.clone());
    let case_id = CaseId::new();
    let triage = triaged(case_id, at(1_796_000_000), Severity::High, true);
    opener.handle(&event_id(&triage), triage.clone()).await.unwrap();
    opener.handle(&event_id(&triage), triage).await.unwrap();

    let events = outbox(&f.db).await;
    assert_eq!(events.len(), 1);
    let env = &events[0].1;
    assert!(matches!(env.event, Some(Event::SupplierRequestOpened(_))), "{env:?}");
    assert_eq!(events::actor_of(env), Some(supplier_for_agent()), "the agent travels down the chain");

    let (requests, _) = f.repo.list_requests(&RequestFilter::default(), None, 10).await.unwrap();
    let trail = f.trail(case_id).await;
    assert_eq!(trail.len(), 1, "{trail:?}");
    assert_eq!(trail[0].actor, supplier_for_agent());
    assert_eq!(trail[0].action, "event detour.events.v1.CaseTriaged");
    assert_eq!(trail[0].targets, [Target::new("supplier_request", requests[0].id)]);
}
