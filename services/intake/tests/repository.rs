//! One contract suite for intake's repository, run against SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use chrono::Duration;
use detour_domain::{
    CaseCategory, CaseId, CaseStatus, Channel, SegmentKind, Severity, Traveler, TravelerId, events, time,
};
use detour_intake::model::{
    Applied, CaseChange, CaseFilter, NewCase, OpenOutcome, Resolution, TimelineEntry, TriageFacts,
};
use detour_intake::repo::{self, IntakeRepository};
use detour_intake::{MIGRATIONS, NAME};
use detour_proto::events::v1::{CaseResolved, Envelope, SurveySent, envelope::Event};
use detour_testkit::{Backend, TestDb, outbox_count};

struct Fixture {
    repo: Arc<dyn IntakeRepository>,
    db: TestDb,
}

async fn fixture(backend: Backend) -> Fixture {
    let db = TestDb::fresh(backend, NAME, MIGRATIONS).await;
    Fixture { repo: repo::for_db(&db, None), db }
}

fn new_case(key: Option<&str>, at_offset_secs: i64, channel: Channel) -> NewCase {
    let received_at = time::from_micros(1_796_000_000_000_000 + at_offset_secs * 1_000_000).unwrap();
    NewCase {
        id: CaseId::new(),
        traveler: Traveler {
            id: TravelerId::new(),
            full_name: "Li Wei".into(),
            email: Some("li.wei@example.com".into()),
            phone: None,
            preferred_language: Some("zh-CN".into()),
        },
        segment: detour_domain::Segment {
            kind: SegmentKind::Flight,
            supplier_code: "CA".into(),
            service_reference: "CA981".into(),
            origin: Some("PEK".into()),
            destination: Some("JFK".into()),
            starts_at: received_at,
            ends_at: None,
            booking_reference: "PNR".into(),
            price: None,
        },
        channel,
        description: "cancelled".into(),
        requested_outcomes: vec![],
        received_at,
        first_response_due: received_at + Duration::hours(1),
        idempotency_key: key.map(str::to_owned),
        fingerprint: "f1".into(),
    }
}

fn opened(case: &NewCase) -> Envelope {
    events::envelope(
        NAME,
        case.id,
        case.received_at,
        Event::CaseResolved(CaseResolved { resolution: String::new(), resolved_at: None }),
    )
}

async fn open(f: &Fixture, case: NewCase) -> CaseId {
    let env = opened(&case);
    match f.repo.open_case(case, env).await.unwrap() {
        OpenOutcome::Created(c) => c.id,
        OpenOutcome::Replayed(_) => panic!("expected a new case"),
    }
}

async fn opening_stores_case_timeline_and_event_together(f: Fixture) {
    let case = new_case(None, 0, Channel::Phone);
    let id = open(&f, case).await;
    let stored = f.repo.get_case(id).await.unwrap().unwrap();
    assert_eq!(stored.status, CaseStatus::Open);
    assert!(stored.number.starts_with("DT-"));
    assert_eq!(stored.timeline.len(), 1);
    assert_eq!(stored.timeline[0].kind, "case.opened");
    assert_eq!(outbox_count(&f.db).await, 1);
    assert!(f.repo.get_case(CaseId::new()).await.unwrap().is_none());
}

async fn idempotency_key_replays_and_refuses_another_request(f: Fixture) {
    let first = open(&f, new_case(Some("k1"), 0, Channel::Phone)).await;
    let again = new_case(Some("k1"), 0, Channel::Phone);
    let env = opened(&again);
    match f.repo.open_case(again, env).await.unwrap() {
        OpenOutcome::Replayed(c) => assert_eq!(c.id, first),
        OpenOutcome::Created(_) => panic!("a second case for one key"),
    }
    let mut other = new_case(Some("k1"), 0, Channel::Phone);
    other.fingerprint = "f2".into();
    let env = opened(&other);
    let err = f.repo.open_case(other, env).await.unwrap_err();
    assert!(matches!(err, detour_intake::error::IntakeError::IdempotencyKeyReused(_)), "{err}");
    assert_eq!(outbox_count(&f.db).await, 1);
}

async fn list_pages_newest_first_with_filters(f: Fixture) {
    let mut ids = Vec::new();
    for i in 0..5 {
        let channel = if i % 2 == 0 { Channel::Phone } else { Channel::Email };
        ids.push(open(&f, new_case(None, i, channel)).await);
    }
    let (page1, next) = f.repo.list_cases(&CaseFilter::default(), None, 2).await.unwrap();
    assert_eq!(page1.iter().map(|c| c.id).collect::<Vec<_>>(), [ids[4], ids[3]]);
    let (page2, next) = f.repo.list_cases(&CaseFilter::default(), next, 2).await.unwrap();
    assert_eq!(page2.iter().map(|c| c.id).collect::<Vec<_>>(), [ids[2], ids[1]]);
    let (page3, next) = f.repo.list_cases(&CaseFilter::default(), next, 2).await.unwrap();
    assert_eq!(page3.iter().map(|c| c.id).collect::<Vec<_>>(), [ids[0]]);
    assert!(next.is_none());
    let email = CaseFilter { channel: Some(Channel::Email), ..Default::default() };
    let (emails, _) = f.repo.list_cases(&email, None, 10).await.unwrap();
    assert_eq!(emails.iter().map(|c| c.id).collect::<Vec<_>>(), [ids[3], ids[1]]);
    let window = CaseFilter {
        opened_after: Some(time::from_micros(1_796_000_001_000_000).unwrap()),
        opened_before: Some(time::from_micros(1_796_000_003_000_000).unwrap()),
        ..Default::default()
    };
    let (windowed, _) = f.repo.list_cases(&window, None, 10).await.unwrap();
    assert_eq!(windowed.len(), 2);
}

fn triage_change(id: CaseId) -> CaseChange {
    let at = time::now();
    CaseChange {
        case_id: id,
        status: Some(CaseStatus::Triaged),
        triage: Some(TriageFacts {
            category: CaseCategory::FlightCancellation,
            severity: Severity::High,
            queue: "air".into(),
            first_response_due: at + Duration::minutes(45),
            resolution_due: at + Duration::hours(24),
        }),
        timeline: TimelineEntry {
            at,
            kind: "case.triaged".into(),
            actor: "triage".into(),
            summary: "air".into(),
        },
        resolve: None,
    }
}

async fn events_apply_once_and_never_move_status_back(f: Fixture) {
    let id = open(&f, new_case(None, 0, Channel::Phone)).await;
    assert_eq!(f.repo.apply_change("intake", "e1", triage_change(id), None).await.unwrap(), Applied::Applied);
    assert_eq!(
        f.repo.apply_change("intake", "e1", triage_change(id), None).await.unwrap(),
        Applied::AlreadyProcessed
    );
    let case = f.repo.get_case(id).await.unwrap().unwrap();
    assert_eq!(case.status, CaseStatus::Triaged);
    assert_eq!(case.category, Some(CaseCategory::FlightCancellation));
    assert_eq!(case.timeline.len(), 2);

    // An accepted offer resolves the case and emits CaseResolved once.
    let at = time::now();
    let resolution = Resolution { text: "accepted".into(), at };
    let change = CaseChange {
        case_id: id,
        status: None,
        triage: None,
        timeline: TimelineEntry {
            at,
            kind: "offer.accepted".into(),
            actor: "compensation".into(),
            summary: "ok".into(),
        },
        resolve: Some(resolution.clone()),
    };
    let resolved =
        events::envelope(NAME, id, at, Event::SurveySent(SurveySent { survey_id: None, sent_at: None }));
    f.repo.apply_change("intake", "e2", change.clone(), Some(resolved.clone())).await.unwrap();
    f.repo.apply_change("intake", "e2", change, Some(resolved)).await.unwrap();
    let case = f.repo.get_case(id).await.unwrap().unwrap();
    assert_eq!(case.status, CaseStatus::Resolved);
    assert_eq!(outbox_count(&f.db).await, 2, "CaseOpened and one CaseResolved");

    // A late triage event does not reopen it.
    f.repo.apply_change("intake", "e3", triage_change(id), None).await.unwrap();
    assert_eq!(f.repo.get_case(id).await.unwrap().unwrap().status, CaseStatus::Resolved);

    // Resolving by hand now is refused, and an unknown case is not found.
    let again = f.repo.resolve_case(id, resolution.clone(), opened(&new_case(None, 0, Channel::Phone))).await;
    assert!(matches!(again, Err(detour_intake::error::IntakeError::AlreadyResolved(_))));
    let unknown = f.repo.apply_change("intake", "e4", triage_change(CaseId::new()), None).await;
    assert!(matches!(unknown, Err(detour_intake::error::IntakeError::CaseNotFound(_))));
    // The failed event left no processed-record behind: it can be retried.
    let id2 = open(&f, new_case(None, 1, Channel::Phone)).await;
    let mut retry = triage_change(id2);
    retry.case_id = id2;
    assert_eq!(f.repo.apply_change("intake", "e4", retry, None).await.unwrap(), Applied::Applied);
}

detour_testkit::both_backends!(
    on_sqlite, on_postgres;
    fixture;
    opening_stores_case_timeline_and_event_together,
    idempotency_key_replays_and_refuses_another_request,
    list_pages_newest_first_with_filters,
    events_apply_once_and_never_move_status_back,
);
