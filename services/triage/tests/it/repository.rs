//! The repository contract: one suite, written once, run against a fresh SQLite file and a
//! fresh PostgreSQL database.

use std::sync::Arc;

use detour_audit::{Audit, AuditFilter, AuditLog, AuditRecord, Target};
use detour_domain::events::{self, streams};
use detour_domain::{Actor, CaseCategory, CaseId, EventId, Instant, Severity, time, wire};
use detour_events::consumer::EventHandler;
use detour_proto::events::v1::Envelope;
use detour_proto::events::v1::envelope::Event;
use detour_testkit::{Backend, TestDb, event_id, outbox};
use detour_triage::consumer::{GROUP, Triager, case_triaged};
use detour_triage::error::TriageError;
use detour_triage::model::{Applied, Cursor, Queue, Triage};
use detour_triage::repo::{self, TriageRepository};

use crate::common::{at, base, case_opened, case_resolved, flight_segment};

pub struct Store {
    repo: Arc<dyn TriageRepository>,
    db: TestDb,
}

async fn store(backend: Backend) -> Store {
    let db = TestDb::fresh(backend, detour_triage::NAME, detour_triage::MIGRATIONS).await;
    Store { repo: repo::for_db(&db, None), db }
}

impl Store {
    /// Stores `t` as a fresh event would, and answers the event.
    async fn record(&self, t: &Triage) -> Envelope {
        let event = triaged(t);
        let id = event.event_id.as_ref().unwrap().value.clone();
        assert_eq!(
            self.repo.record_triage(GROUP, &id, t, &event, &opened()).await.unwrap(),
            Applied::Applied
        );
        event
    }

    /// Resolves `case_id` as intake's `CaseResolved` with id `event` would.
    async fn resolve(&self, event: &str, case_id: CaseId, at: Instant) -> Result<Applied, TriageError> {
        self.repo.resolve(GROUP, event, case_id, at, &resolved()).await
    }

    /// The case's audit trail, newest first.
    async fn trail(&self, case_id: CaseId) -> Vec<AuditRecord> {
        let filter = AuditFilter { case_id: Some(case_id), ..Default::default() };
        AuditLog::new(detour_triage::NAME, (*self.db).clone()).list(&filter, None, 10).await.unwrap()
    }
}

/// Triage acting for the agent who opened (or resolved) the case.
fn for_agent() -> Actor {
    Actor::service("triage", Some("agent-7".into()))
}

/// What the consumer audits when it applies a `CaseOpened`.
fn opened() -> Audit {
    Audit { actor: for_agent(), action: "event detour.events.v1.CaseOpened".into(), trace_id: None }
}

/// What the consumer audits when it applies a `CaseResolved`.
fn resolved() -> Audit {
    Audit { actor: for_agent(), action: "event detour.events.v1.CaseResolved".into(), trace_id: None }
}

fn triaged(t: &Triage) -> Envelope {
    let segment = wire::segment_from_proto(&flight_segment()).unwrap();
    case_triaged(t, &segment, &for_agent())
}

/// A triage in `queue` whose first response is due `due_minutes` after the base instant.
fn triage(queue: Queue, due_minutes: i64) -> Triage {
    let received_at = base();
    Triage {
        case_id: CaseId::new(),
        category: CaseCategory::FlightCancellation,
        severity: Severity::High,
        queue,
        needs_supplier: true,
        rationale: "Classified flight_cancellation on \"cancel\".".into(),
        received_at,
        first_response_due: at(time::to_micros(received_at) + due_minutes * 60_000_000),
        resolution_due: at(time::to_micros(received_at) + 24 * 3_600_000_000),
        triaged_at: at(time::to_micros(received_at) + 1_000_000),
        resolved_at: None,
    }
}

fn resolved_at() -> Instant {
    at(time::to_micros(base()) + 7_200_000_000)
}

async fn applying_a_triage_twice_stores_it_once_with_one_event(s: Store) {
    let t = triage(Queue::Air, 45);
    let event = s.record(&t).await;
    let again = s.repo.record_triage(GROUP, &event_id(&event), &t, &event, &opened()).await.unwrap();
    assert_eq!(again, Applied::Unchanged);

    assert_eq!(s.repo.get_triage(t.case_id).await.unwrap(), Some(t.clone()));
    let outbox = outbox(&s.db).await;
    assert_eq!(outbox.len(), 1, "one CaseTriaged, however often the event is applied");
    let (stream, stored) = &outbox[0];
    assert_eq!(stream, streams::TRIAGE);
    assert_eq!(event_id(stored), event_id(&event));
    assert_eq!(stored.case_id.as_ref().unwrap().value, t.case_id.to_string());
    let Some(Event::CaseTriaged(e)) = &stored.event else { panic!("not CaseTriaged: {stored:?}") };
    assert_eq!(CaseCategory::from_proto(e.category), Some(CaseCategory::FlightCancellation));
    assert_eq!(Severity::from_proto(e.severity), Some(Severity::High));
    assert_eq!(e.queue, "air");
    assert!(e.needs_supplier);
    assert_eq!(e.first_response_due.as_ref().and_then(time::from_proto), Some(t.first_response_due));
    assert_eq!(e.segment.as_ref().map(|s| s.supplier_code.as_str()), Some("CA"));
}

async fn a_second_opening_of_a_case_keeps_the_first_verdict(s: Store) {
    let first = triage(Queue::Air, 45);
    s.record(&first).await;
    let mut second = triage(Queue::Billing, 60);
    second.case_id = first.case_id;
    let event = triaged(&second);
    let outcome = s.repo.record_triage(GROUP, &event_id(&event), &second, &event, &opened()).await.unwrap();
    assert_eq!(outcome, Applied::Unchanged);
    assert_eq!(s.repo.get_triage(first.case_id).await.unwrap(), Some(first.clone()));
    assert_eq!(outbox(&s.db).await.len(), 1);
    assert_eq!(s.trail(first.case_id).await.len(), 1, "only the first verdict is audited");
}

async fn resolving_takes_a_case_out_of_its_queue_once(s: Store) {
    let a = triage(Queue::Air, 30);
    let b = triage(Queue::Air, 45);
    s.record(&a).await;
    s.record(&b).await;

    let event = EventId::new().to_string();
    assert_eq!(s.resolve(&event, a.case_id, resolved_at()).await.unwrap(), Applied::Applied);
    assert_eq!(s.resolve(&event, a.case_id, resolved_at()).await.unwrap(), Applied::Unchanged);
    let other_event = EventId::new().to_string();
    let later = at(time::to_micros(resolved_at()) + 1_000_000);
    assert_eq!(s.resolve(&other_event, a.case_id, later).await.unwrap(), Applied::Unchanged);

    let stored = s.repo.get_triage(a.case_id).await.unwrap().unwrap();
    assert_eq!(stored.resolved_at, Some(resolved_at()), "the first resolution stands");
    let (open, next) = s.repo.list_queue(Queue::Air, None, 50).await.unwrap();
    assert_eq!(open.iter().map(|t| t.case_id).collect::<Vec<_>>(), [b.case_id]);
    assert_eq!(next, None);
    assert_eq!(outbox(&s.db).await.len(), 2, "resolving emits nothing");
}

async fn resolving_an_unknown_case_is_not_found_and_keeps_nothing(s: Store) {
    let t = triage(Queue::Hotel, 60);
    let event = EventId::new().to_string();
    let err = s.resolve(&event, t.case_id, resolved_at()).await.unwrap_err();
    assert!(matches!(err, TriageError::NotFound(id) if id == t.case_id), "{err:?}");
    assert_eq!(s.repo.get_triage(t.case_id).await.unwrap(), None);
    assert!(s.trail(t.case_id).await.is_empty(), "nothing changed, nothing is audited");

    // The event was not marked processed, so its redelivery after the opening applies.
    s.record(&t).await;
    assert_eq!(s.resolve(&event, t.case_id, resolved_at()).await.unwrap(), Applied::Applied);
    assert!(s.repo.list_queue(Queue::Hotel, None, 10).await.unwrap().0.is_empty());
}

async fn queues_list_open_cases_most_urgent_first_across_pages(s: Store) {
    let mut expected = Vec::new();
    for due in [90, 30, 60, 30, 45, 120] {
        let t = triage(Queue::Air, due);
        s.record(&t).await;
        expected.push(t);
    }
    // Neither another queue's case nor a resolved one is listed.
    s.record(&triage(Queue::Hotel, 1)).await;
    let done = triage(Queue::Air, 2);
    s.record(&done).await;
    s.resolve(&EventId::new().to_string(), done.case_id, resolved_at()).await.unwrap();
    expected.sort_by_key(|t| (t.first_response_due, t.case_id));

    let (page1, next1) = s.repo.list_queue(Queue::Air, None, 4).await.unwrap();
    let next1 = next1.expect("a second page");
    let last = page1.last().unwrap();
    assert_eq!(
        next1,
        Cursor { first_response_due_micros: time::to_micros(last.first_response_due), case_id: last.case_id }
    );
    let (page2, next2) = s.repo.list_queue(Queue::Air, Some(next1), 4).await.unwrap();
    assert_eq!(next2, None);
    let listed: Vec<CaseId> = page1.iter().chain(&page2).map(|t| t.case_id).collect();
    assert_eq!(listed, expected.iter().map(|t| t.case_id).collect::<Vec<_>>());

    // A page that ends exactly at the last case says there is no next one.
    let (all, next) = s.repo.list_queue(Queue::Air, None, 6).await.unwrap();
    assert_eq!((all.len(), next), (6, None));
    assert!(s.repo.list_queue(Queue::Safety, None, 50).await.unwrap().0.is_empty());
}

async fn a_triage_and_its_resolution_are_audited_once_each(s: Store) {
    let t = triage(Queue::Air, 45);
    let event = s.record(&t).await;
    // Redelivered, and opened again under another event id: nothing changes, nothing is audited.
    let again = s.repo.record_triage(GROUP, &event_id(&event), &t, &event, &opened()).await.unwrap();
    assert_eq!(again, Applied::Unchanged);
    let reopened = s.repo.record_triage(GROUP, &EventId::new().to_string(), &t, &event, &opened()).await;
    assert_eq!(reopened.unwrap(), Applied::Unchanged);

    let trail = s.trail(t.case_id).await;
    assert_eq!(trail.len(), 1, "{trail:?}");
    let r = &trail[0];
    assert_eq!(r.service, "triage");
    assert_eq!(r.actor, for_agent());
    assert_eq!(r.action, "event detour.events.v1.CaseOpened");
    assert_eq!(r.case_id, Some(t.case_id));
    assert_eq!(r.targets, [Target::new("queue", "air")]);
    assert_eq!(r.outcome, "ok");
    assert_eq!(r.trace_id, None);

    let resolution = EventId::new().to_string();
    assert_eq!(s.resolve(&resolution, t.case_id, resolved_at()).await.unwrap(), Applied::Applied);
    assert_eq!(s.resolve(&resolution, t.case_id, resolved_at()).await.unwrap(), Applied::Unchanged);
    let trail = s.trail(t.case_id).await;
    assert_eq!(trail.len(), 2, "one record per change: {trail:?}");
    let r = &trail[0];
    assert_eq!((r.action.as_str(), r.outcome.as_str()), ("event detour.events.v1.CaseResolved", "ok"));
    assert_eq!((&r.actor, r.case_id, r.targets.as_slice()), (&for_agent(), Some(t.case_id), &[][..]));
    assert!(s.trail(CaseId::new()).await.is_empty());
}

async fn the_consumer_triages_for_the_agent_who_opened_the_case(s: Store) {
    let triager = Triager::new(s.repo.clone());
    let case_id = CaseId::new();
    let opening = case_opened(case_id, "Flight CA981 was cancelled", base());
    triager.handle(&event_id(&opening), opening.clone()).await.unwrap();
    triager.handle(&event_id(&opening), opening.clone()).await.unwrap();
    let queue = s.repo.get_triage(case_id).await.unwrap().unwrap().queue;

    let outbox = outbox(&s.db).await;
    assert_eq!(outbox.len(), 1);
    let (_, emitted) = &outbox[0];
    assert!(matches!(emitted.event, Some(Event::CaseTriaged(_))), "{emitted:?}");
    assert_eq!(events::actor_of(emitted), Some(for_agent()), "the agent travels down the chain");

    let resolution = case_resolved(case_id, resolved_at());
    triager.handle(&event_id(&resolution), resolution.clone()).await.unwrap();
    triager.handle(&event_id(&resolution), resolution).await.unwrap();

    let trail = s.trail(case_id).await;
    let seen: Vec<(&str, &Actor, &[Target])> =
        trail.iter().map(|r| (r.action.as_str(), &r.actor, r.targets.as_slice())).collect();
    let queue = [Target::new("queue", queue.as_str())];
    assert_eq!(
        seen,
        [
            ("event detour.events.v1.CaseResolved", &for_agent(), &[][..]),
            ("event detour.events.v1.CaseOpened", &for_agent(), &queue[..]),
        ]
    );
}

async fn an_unknown_case_has_no_triage(s: Store) {
    assert_eq!(s.repo.get_triage(CaseId::new()).await.unwrap(), None);
    assert!(outbox(&s.db).await.is_empty());
}

detour_testkit::both_backends!(
    store;
    applying_a_triage_twice_stores_it_once_with_one_event,
    a_second_opening_of_a_case_keeps_the_first_verdict,
    resolving_takes_a_case_out_of_its_queue_once,
    resolving_an_unknown_case_is_not_found_and_keeps_nothing,
    queues_list_open_cases_most_urgent_first_across_pages,
    a_triage_and_its_resolution_are_audited_once_each,
    the_consumer_triages_for_the_agent_who_opened_the_case,
    an_unknown_case_has_no_triage,
);
