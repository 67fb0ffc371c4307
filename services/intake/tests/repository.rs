//! One contract suite for intake's repository, run against SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use chrono::Duration;
use detour_audit::{Audit, AuditFilter, AuditLog};
use detour_domain::{
    Actor, CaseCategory, CaseId, CaseStatus, Channel, SegmentKind, Severity, TravelerId, events, time,
};
use detour_intake::model::{
    Applied, CaseChange, CaseFilter, NewCase, OpenOutcome, Resolution, SealedPersonal, StoredDataKey,
    StoredPersonal, StoredTraveler, TimelineEntry, TriageFacts,
};
use detour_intake::repo::{self, IntakeRepository};
use detour_intake::{MIGRATIONS, NAME};
use detour_proto::events::v1::{CaseResolved, Envelope, SurveySent, envelope::Event};
use detour_testkit::{Backend, TestDb, outbox_count};

struct Fixture {
    repo: Arc<dyn IntakeRepository>,
    db: TestDb,
}

fn agent() -> Audit {
    Audit { actor: Actor::user("u-agent", ["agent"]), action: "test/OpenCase".into(), trace_id: None }
}

async fn trail(f: &Fixture, case: Option<CaseId>) -> Vec<detour_audit::AuditRecord> {
    let filter = AuditFilter { case_id: case, ..Default::default() };
    AuditLog::new(NAME, (*f.db).clone()).list(&filter, None, 100).await.unwrap()
}

async fn fixture(backend: Backend) -> Fixture {
    let db = TestDb::fresh(backend, NAME, MIGRATIONS).await;
    Fixture { repo: repo::for_db(&db, None), db }
}

fn new_case(key: Option<&str>, at_offset_secs: i64, channel: Channel) -> NewCase {
    let received_at = time::from_micros(1_796_000_000_000_000 + at_offset_secs * 1_000_000).unwrap();
    NewCase {
        id: CaseId::new(),
        // The repository stores what it is given; sealing is the keys' job (tested end to end).
        traveler: StoredTraveler {
            id: TravelerId::new(),
            preferred_language: Some("zh-CN".into()),
            personal: StoredPersonal::Sealed(SealedPersonal {
                tenant: "default".into(),
                key_version: 1,
                ciphertext: vec![1, 2, 3],
            }),
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
        &agent().actor,
        Event::CaseResolved(CaseResolved { resolution: String::new(), resolved_at: None }),
    )
}

async fn open(f: &Fixture, case: NewCase) -> CaseId {
    let env = opened(&case);
    match f.repo.open_case(case, env, &agent()).await.unwrap() {
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
    assert!(matches!(stored.traveler.personal, StoredPersonal::Sealed(ref s) if s.ciphertext == [1, 2, 3]));
    let records = trail(&f, Some(id)).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].actor, Actor::user("u-agent", ["agent"]));
    assert_eq!(records[0].action, "test/OpenCase");
    assert_eq!(records[0].outcome, "ok");
    assert_eq!(records[0].targets[0].kind, "traveler");
    assert_eq!(records[0].service, NAME);
}

async fn idempotency_key_replays_and_refuses_another_request(f: Fixture) {
    let first = open(&f, new_case(Some("k1"), 0, Channel::Phone)).await;
    let again = new_case(Some("k1"), 0, Channel::Phone);
    let env = opened(&again);
    match f.repo.open_case(again, env, &agent()).await.unwrap() {
        OpenOutcome::Replayed(c) => assert_eq!(c.id, first),
        OpenOutcome::Created(_) => panic!("a second case for one key"),
    }
    let mut other = new_case(Some("k1"), 0, Channel::Phone);
    other.fingerprint = "f2".into();
    let env = opened(&other);
    let err = f.repo.open_case(other, env, &agent()).await.unwrap_err();
    assert!(matches!(err, detour_intake::error::IntakeError::IdempotencyKeyReused(_)), "{err}");
    assert_eq!(outbox_count(&f.db).await, 1);
    let outcomes: Vec<String> = trail(&f, Some(first)).await.into_iter().map(|r| r.outcome).collect();
    assert_eq!(outcomes, ["replayed", "ok"], "newest first");
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
    assert_eq!(
        f.repo.apply_change("intake", "e1", triage_change(id), None, &triage()).await.unwrap(),
        Applied::Applied
    );
    assert_eq!(
        f.repo.apply_change("intake", "e1", triage_change(id), None, &triage()).await.unwrap(),
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
    let resolved = events::envelope(
        NAME,
        id,
        at,
        &triage().actor,
        Event::SurveySent(SurveySent { survey_id: None, sent_at: None }),
    );
    f.repo.apply_change("intake", "e2", change.clone(), Some(resolved.clone()), &triage()).await.unwrap();
    f.repo.apply_change("intake", "e2", change, Some(resolved), &triage()).await.unwrap();
    // Opened, triaged, resolved: one record each; the duplicate deliveries added none.
    let records = trail(&f, Some(id)).await;
    assert_eq!(records.len(), 3, "{records:?}");
    assert_eq!(records[0].actor, Actor::service("intake", Some("u-agent".into())));
    let case = f.repo.get_case(id).await.unwrap().unwrap();
    assert_eq!(case.status, CaseStatus::Resolved);
    assert_eq!(outbox_count(&f.db).await, 2, "CaseOpened and one CaseResolved");

    // A late triage event does not reopen it.
    f.repo.apply_change("intake", "e3", triage_change(id), None, &triage()).await.unwrap();
    assert_eq!(f.repo.get_case(id).await.unwrap().unwrap().status, CaseStatus::Resolved);

    // Resolving by hand now is refused, and an unknown case is not found.
    let again = f
        .repo
        .resolve_case(id, resolution.clone(), opened(&new_case(None, 0, Channel::Phone)), &agent())
        .await;
    assert!(matches!(again, Err(detour_intake::error::IntakeError::AlreadyResolved(_))));
    let unknown = f.repo.apply_change("intake", "e4", triage_change(CaseId::new()), None, &triage()).await;
    assert!(matches!(unknown, Err(detour_intake::error::IntakeError::CaseNotFound(_))));
    // The failed event left no processed-record behind: it can be retried.
    let id2 = open(&f, new_case(None, 1, Channel::Phone)).await;
    let mut retry = triage_change(id2);
    retry.case_id = id2;
    assert_eq!(f.repo.apply_change("intake", "e4", retry, None, &triage()).await.unwrap(), Applied::Applied);
}

fn triage() -> Audit {
    let env = events::envelope(
        "triage",
        CaseId::new(),
        time::now(),
        &Actor::user("u-agent", ["agent"]),
        Event::CaseResolved(CaseResolved::default()),
    );
    Audit::of_event(NAME, &env)
}

async fn erasure_removes_sealed_data_and_free_text_and_keeps_the_case(f: Fixture) {
    let mut case = new_case(None, 0, Channel::Email);
    case.description = "my passport E1234567 was lost".into();
    let traveler = case.traveler.id;
    let id = open(&f, case).await;
    let other = open(&f, new_case(None, 1, Channel::Email)).await;
    let at = time::now();
    let erased = f.repo.erase_traveler(traveler, at, &agent()).await.unwrap();
    assert_eq!(erased, [id]);
    let case = f.repo.get_case(id).await.unwrap().unwrap();
    assert_eq!(case.traveler.personal, StoredPersonal::Erased { at });
    assert_eq!(case.description, "");
    assert_eq!(case.traveler.id, traveler, "the anonymised case keeps its traveler id");
    assert!(case.timeline.iter().any(|t| t.kind == "personal_data.erased"), "{:?}", case.timeline);
    assert!(matches!(
        f.repo.get_case(other).await.unwrap().unwrap().traveler.personal,
        StoredPersonal::Sealed(_)
    ));
    // Again: nothing left to erase. Unknown traveler: not found.
    assert!(f.repo.erase_traveler(traveler, at, &agent()).await.unwrap().is_empty());
    let unknown = f.repo.erase_traveler(TravelerId::new(), at, &agent()).await;
    assert!(matches!(unknown, Err(detour_intake::error::IntakeError::TravelerNotFound(_))));
    assert_eq!(f.repo.cases_of_traveler(traveler).await.unwrap().len(), 1);
    assert_eq!(trail(&f, Some(id)).await.len(), 2, "opened and erased");
}

async fn data_keys_are_added_once_and_rewrapped_once(f: Fixture) {
    let key = |version: i64, kek: &str| StoredDataKey {
        tenant: "t1".into(),
        version,
        kek_id: kek.into(),
        wrapped: vec![9; 61],
        created_at: time::now(),
    };
    assert!(f.repo.add_data_key(&key(1, "k1"), &agent()).await.unwrap());
    assert!(!f.repo.add_data_key(&key(1, "k1"), &agent()).await.unwrap(), "a second replica lost the race");
    assert!(f.repo.add_data_key(&key(2, "k1"), &agent()).await.unwrap());
    assert_eq!(f.repo.data_keys("t1").await.unwrap().len(), 2);
    assert!(f.repo.data_keys("t2").await.unwrap().is_empty());
    let stored = f.repo.data_keys("t1").await.unwrap().remove(0);
    assert!(f.repo.rewrap_data_key(&stored, "k2", &[7; 61], &agent()).await.unwrap());
    assert!(!f.repo.rewrap_data_key(&stored, "k2", &[7; 61], &agent()).await.unwrap(), "already rewrapped");
    let all = f.repo.all_data_keys().await.unwrap();
    assert_eq!(all.iter().map(|k| k.kek_id.as_str()).collect::<Vec<_>>(), ["k2", "k1"]);
    assert_eq!(all[0].wrapped, vec![7; 61]);
    assert_eq!(trail(&f, None).await.len(), 3, "two keys added, one rewrapped");
}

async fn the_audit_log_refuses_updates_and_deletes(f: Fixture) {
    open(&f, new_case(None, 0, Channel::Phone)).await;
    for sql in ["UPDATE audit_log SET outcome = 'forged'", "DELETE FROM audit_log"] {
        let result = match &*f.db {
            detour_storage::Db::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
            detour_storage::Db::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
        };
        let err = result.expect_err(sql).to_string();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(trail(&f, None).await[0].outcome, "ok");
}

detour_testkit::both_backends!(
    on_sqlite, on_postgres;
    fixture;
    opening_stores_case_timeline_and_event_together,
    idempotency_key_replays_and_refuses_another_request,
    list_pages_newest_first_with_filters,
    events_apply_once_and_never_move_status_back,
    erasure_removes_sealed_data_and_free_text_and_keeps_the_case,
    data_keys_are_added_once_and_rewrapped_once,
    the_audit_log_refuses_updates_and_deletes,
);
