//! One contract suite for intake's repository, run against SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use chrono::Duration;
use detour_audit::{Audit, AuditFilter, AuditLog};
use detour_domain::{
    Actor, CaseCategory, CaseId, CaseStatus, Channel, IncidentId, NotificationId, SegmentKind, Severity,
    TravelerId, events, time,
};
use detour_intake::crisis::{
    DeliveryAttempt, DisruptionKind, DisruptionReport, FanoutBatch, FanoutCase, FanoutTarget,
    NewNotification, NextStep, NotificationScope, NotificationStatus, Purpose, RegisteredTraveler,
    ReportOutcome, Scope, SendResult, StoredTrip, TripSegment, Window,
};
use detour_intake::keys::Handle;
use detour_intake::model::{
    Applied, CaseChange, CaseFilter, NewCase, OpenOutcome, Resolution, SealedPersonal, StoredDataKey,
    StoredPersonal, StoredTraveler, TimelineEntry, TriageFacts,
};
use detour_intake::repo::{self, IntakeRepository, OpenRequest};
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
        incident_id: None,
        language: Some("zh".into()),
        segment_key: None,
        acknowledgement: None,
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
        other => panic!("expected a new case: {other:?}"),
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
        OpenOutcome::Replayed(c, _) => assert_eq!(c.id, first),
        other => panic!("a second case for one key: {other:?}"),
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
    a_second_contact_about_an_open_segment_is_merged_and_replays_as_merged,
    trips_upsert_and_are_found_by_scope,
    fanout_writes_each_traveler_once_even_when_a_batch_is_written_twice,
    notifications_are_claimed_once_retried_then_moved_to_the_next_channel,
    a_handed_fanout_notification_stays_leased_and_one_on_an_existing_case_is_due,
    a_round_of_sends_is_recorded_together_and_an_unrecorded_claim_runs_out,
    a_group_commit_answers_each_contact_as_if_it_came_alone,
    leased_acknowledgements_are_left_to_their_writer_until_the_lease_runs_out,
);

fn ack(case: &NewCase, channels: Vec<Channel>) -> NewNotification {
    NewNotification {
        id: NotificationId::new(),
        case_id: case.id,
        incident_id: None,
        traveler_id: case.traveler.id,
        purpose: Purpose::Acknowledgement,
        channels,
        language: "en".into(),
        at: case.received_at,
        leased_until: None,
    }
}

async fn a_second_contact_about_an_open_segment_is_merged_and_replays_as_merged(f: Fixture) {
    let mut first = new_case(Some("m1"), 0, Channel::Phone);
    first.segment_key = Some("flight|CA|CA981|2026-12-03".into());
    first.acknowledgement = Some(ack(&first, vec![Channel::Sms]));
    let id = open(&f, first.clone()).await;
    let mut second = new_case(Some("m2"), 5, Channel::Email);
    second.traveler = first.traveler.clone();
    second.segment_key = first.segment_key.clone();
    second.fingerprint = "f-email".into();
    second.acknowledgement = Some(ack(&second, vec![Channel::Email]));
    let env = opened(&second);
    let merged_ack = match f.repo.open_case(second.clone(), env.clone(), &agent()).await.unwrap() {
        OpenOutcome::Merged(c, ack) => {
            assert_eq!(c.id, id);
            assert!(
                c.interactions.is_empty() && c.timeline.is_empty(),
                "answered without the history: {c:?}"
            );
            let stored = f.repo.get_case(id).await.unwrap().unwrap();
            assert_eq!(stored.interactions.len(), 1);
            assert_eq!(stored.interactions[0].channel, Channel::Email);
            assert_eq!((&c.number, c.first_response_due), (&stored.number, stored.first_response_due));
            ack.unwrap()
        }
        other => panic!("expected a merge: {other:?}"),
    };
    match f.repo.open_case(second, env, &agent()).await.unwrap() {
        OpenOutcome::Replayed(c, ack) => {
            assert_eq!(c.id, id);
            assert_eq!(ack, Some(merged_ack));
            let stored = f.repo.get_case(id).await.unwrap().unwrap();
            assert_eq!(stored.interactions.len(), 1, "a retry adds nothing");
        }
        other => panic!("expected a replay: {other:?}"),
    }
    // Both acknowledgements are queued on the one case; one event only.
    let (notes, _) = f.repo.list_notifications(NotificationScope::Case(id), None, 10).await.unwrap();
    assert_eq!(notes.len(), 2);
    assert_eq!(outbox_count(&f.db).await, 1);
    // Once resolved, the same segment opens a new case.
    let env = opened(&first);
    f.repo
        .resolve_case(id, Resolution { text: "rebooked".into(), at: time::now() }, env, &agent())
        .await
        .unwrap();
    let mut third = new_case(None, 10, Channel::Chat);
    third.traveler = first.traveler.clone();
    third.segment_key = first.segment_key.clone();
    assert_ne!(open(&f, third).await, id);
}

fn registered(n: u32) -> RegisteredTraveler {
    RegisteredTraveler {
        id: format!("00000000-0000-4000-8000-{n:012}").parse().unwrap(),
        preferred_language: Some("en".into()),
        contact_channels: vec![Channel::Sms, Channel::Email],
        sealed: Some(SealedPersonal { tenant: "default".into(), key_version: 1, ciphertext: vec![n as u8] }),
        email_index: Some(format!("email-{n}")),
        phone_index: Some(format!("phone-{n}")),
    }
}

fn flight_on(number: &str, starts_at: detour_domain::Instant) -> TripSegment {
    TripSegment {
        segment: detour_domain::Segment {
            kind: SegmentKind::Flight,
            supplier_code: number[..2].into(),
            service_reference: number.into(),
            origin: Some("PEK".into()),
            destination: Some("JFK".into()),
            starts_at,
            ends_at: Some(starts_at + Duration::hours(13)),
            booking_reference: String::new(),
            price: None,
        },
        local_date: starts_at.date_naive(),
    }
}

async fn store_trips(f: &Fixture, per_flight: u32) -> detour_domain::Instant {
    let departs = time::from_micros(1_796_259_600_000_000).unwrap();
    let trips: Vec<StoredTrip> = (0..per_flight)
        .map(|n| StoredTrip {
            booking_reference: format!("PNR{n:04}"),
            travelers: vec![registered(n)],
            segments: vec![flight_on("CA981", departs)],
            at: departs,
        })
        .collect();
    let created = f.repo.upsert_trips(&trips, &agent()).await.unwrap();
    assert!(created.iter().all(|c| *c));
    departs
}

async fn trips_upsert_and_are_found_by_scope(f: Fixture) {
    let departs = store_trips(&f, 30).await;
    let scope = Scope::Flight { flight_number: "CA981".into(), local_date: departs.date_naive() };
    let (page, next) = f.repo.find_travelers(&scope, None, 20).await.unwrap();
    assert_eq!(page.len(), 20);
    let (rest, end) = f.repo.find_travelers(&scope, next, 20).await.unwrap();
    assert_eq!((rest.len(), end), (10, None));
    let window = Window { from: departs - Duration::hours(1), until: departs + Duration::hours(1) };
    let airport = Scope::Airport { airport: "PEK".into(), window, departures_only: true };
    assert_eq!(f.repo.find_travelers(&airport, None, 100).await.unwrap().0.len(), 30);
    let elsewhere = Scope::Airport { airport: "SHA".into(), window, departures_only: false };
    assert!(f.repo.find_travelers(&elsewhere, None, 100).await.unwrap().0.is_empty());
    // Found by a handle's index, and by booking.
    let found = f.repo.travelers_by_index(Handle::Phone, "phone-7").await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].contact_channels, vec![Channel::Sms, Channel::Email]);
    assert_eq!(f.repo.travelers_of_booking("PNR0007").await.unwrap().len(), 1);
    // A trip named twice in one call stores its last version, once.
    let again = StoredTrip {
        booking_reference: "PNR0001".into(),
        travelers: vec![registered(1), registered(99)],
        segments: vec![flight_on("CA983", departs)],
        at: departs,
    };
    let created = f.repo.upsert_trips(&[again.clone(), again], &agent()).await.unwrap();
    assert_eq!(created, [false, false]);
    assert_eq!(f.repo.find_travelers(&scope, None, 100).await.unwrap().0.len(), 29);
}

fn report(departs: detour_domain::Instant, reason: &str) -> DisruptionReport {
    DisruptionReport {
        kind: DisruptionKind::FlightCancelled,
        scope: Scope::Flight { flight_number: "CA981".into(), local_date: departs.date_naive() },
        reason: reason.into(),
        delay_minutes: 0,
        diverted_to: None,
        at: departs,
    }
}

fn fanout_case(incident: IncidentId, t: &FanoutTarget) -> FanoutCase {
    let mut case = new_case(None, 0, Channel::Proactive);
    case.traveler.id = t.traveler.id;
    case.segment_key = Some(format!("seg-{}", t.traveler.id));
    case.incident_id = Some(incident);
    let notification = NewNotification {
        incident_id: Some(incident),
        purpose: Purpose::Disruption,
        ..ack(&case, vec![Channel::Sms])
    };
    let opened = opened(&case);
    FanoutCase { case, opened, notification }
}

async fn fanout_writes_each_traveler_once_even_when_a_batch_is_written_twice(f: Fixture) {
    let departs = store_trips(&f, 12).await;
    let (incident, outcome) = f.repo.report_disruption(&report(departs, "snow"), &agent()).await.unwrap();
    assert_eq!(outcome, ReportOutcome::Created);
    let (again, outcome) = f.repo.report_disruption(&report(departs, "snow"), &agent()).await.unwrap();
    assert_eq!((again.id, outcome), (incident.id, ReportOutcome::Unchanged));
    let now = time::now();
    let (claimed, cursor) = f.repo.claim_fanout(now, now + Duration::seconds(30)).await.unwrap().unwrap();
    assert_eq!((claimed.id, cursor), (incident.id, None));
    assert!(f.repo.claim_fanout(now, now + Duration::seconds(30)).await.unwrap().is_none(), "leased");
    let (targets, _) = f.repo.fanout_targets(incident.id, 1, None, 100).await.unwrap();
    assert_eq!(targets.len(), 12);
    let batch = FanoutBatch {
        revision: 1,
        new_cases: targets.iter().map(|t| fanout_case(incident.id, t)).collect(),
        updates: vec![],
        cursor: targets.last().unwrap().traveler.id,
    };
    let written = f.repo.write_fanout(incident.id, &batch, now, &agent()).await.unwrap();
    assert_eq!(written.opened, 12);
    assert_eq!(written.numbers.len(), 12);
    assert!(batch.new_cases.iter().all(|c| written.numbers.contains_key(&c.case.id)));
    // The same batch again (a replica that lost its lease), with fresh case ids: nothing new.
    let mut replay = batch.clone();
    for c in &mut replay.new_cases {
        c.case.id = CaseId::new();
    }
    let written = f.repo.write_fanout(incident.id, &replay, now, &agent()).await.unwrap();
    assert_eq!((written.opened, written.numbers.len()), (0, 0));
    f.repo.finish_fanout(incident.id, 1, now).await.unwrap();
    let (done, counts) = f.repo.incident(incident.id).await.unwrap().unwrap();
    assert!(done.fanout_done());
    assert_eq!((counts.affected_travelers, counts.cases_opened, counts.queued), (12, 12, 12));
    assert_eq!(outbox_count(&f.db).await, 12);
    // The counts follow the dispatcher: one given up, one to retry, ten delivered, one of them
    // then acknowledged by the traveler.
    let later = batch.new_cases[0].notification.at + Duration::hours(1);
    let due = f.repo.claim_notifications(later, later + Duration::seconds(60), 100).await.unwrap();
    assert_eq!(due.len(), 12);
    let results: Vec<SendResult> = due
        .iter()
        .enumerate()
        .map(|(i, d)| SendResult {
            id: d.notification.id,
            attempts: vec![DeliveryAttempt {
                at: later,
                channel: Channel::Sms,
                accepted: i > 1,
                detail: String::new(),
            }],
            moved: 0,
            next: match i {
                0 => NextStep::Undeliverable,
                1 => NextStep::Retry { at: later + Duration::seconds(30) },
                _ => NextStep::Delivered,
            },
        })
        .collect();
    f.repo.record_sends(&results, later).await.unwrap();
    f.repo.acknowledge_notification(due[2].notification.id, later, &agent()).await.unwrap();
    // Recording the same round again (a dispatcher retrying its write) moves nothing twice.
    f.repo.record_sends(&results, later).await.unwrap();
    let (_, counts) = f.repo.incident(incident.id).await.unwrap().unwrap();
    assert_eq!((counts.queued, counts.delivered, counts.acknowledged, counts.undeliverable), (1, 9, 1, 1));
    assert_eq!(counts.last_delivered_at.map(time::to_micros), Some(time::to_micros(later)));
    // A changed report is a new revision the worker picks up again.
    let (updated, outcome) =
        f.repo.report_disruption(&report(departs, "runway closed"), &agent()).await.unwrap();
    assert_eq!((outcome, updated.revision), (ReportOutcome::Updated, 2));
    let (claimed, _) = f.repo.claim_fanout(now, now).await.unwrap().unwrap();
    assert_eq!(claimed.revision, 2);
    let (targets, _) = f.repo.fanout_targets(incident.id, 2, None, 100).await.unwrap();
    assert!(targets.iter().all(|t| t.existing.is_some_and(|(_, told)| told == 1)));
}

async fn a_handed_fanout_notification_stays_leased_and_one_on_an_existing_case_is_due(f: Fixture) {
    let departs = store_trips(&f, 3).await;
    let (incident, _) = f.repo.report_disruption(&report(departs, "snow"), &agent()).await.unwrap();
    let now = time::now();
    f.repo.claim_fanout(now, now + Duration::seconds(30)).await.unwrap().unwrap();
    let (targets, _) = f.repo.fanout_targets(incident.id, 1, None, 100).await.unwrap();
    // The first traveler already wrote about the flight: the incident joins that open case.
    let mut own = new_case(None, 0, Channel::Phone);
    own.traveler.id = targets[0].traveler.id;
    own.segment_key = Some(format!("seg-{}", targets[0].traveler.id));
    let own_case = open(&f, own).await;
    let mut new_cases: Vec<FanoutCase> = targets.iter().map(|t| fanout_case(incident.id, t)).collect();
    let written_at = new_cases[0].notification.at;
    let lease = written_at + Duration::seconds(60);
    for c in &mut new_cases {
        c.notification.leased_until = Some(lease);
    }
    let batch = FanoutBatch {
        revision: 1,
        new_cases: new_cases.clone(),
        updates: vec![],
        cursor: targets[2].traveler.id,
    };
    let written = f.repo.write_fanout(incident.id, &batch, now, &agent()).await.unwrap();
    assert_eq!(written.opened, 2);
    assert!(!written.numbers.contains_key(&new_cases[0].case.id), "linked, not opened");
    assert!(
        written.numbers.contains_key(&new_cases[1].case.id)
            && written.numbers.contains_key(&new_cases[2].case.id)
    );
    // Only the notification on the existing case is left to the claim: the writer sends the
    // other two itself.
    let later = written_at + Duration::seconds(1);
    let due = f.repo.claim_notifications(later, later + Duration::seconds(60), 100).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].notification.case_id, own_case);
    // The writer died before sending them: once their lease runs out any dispatcher claims them.
    let (_, counts) = f.repo.incident(incident.id).await.unwrap().unwrap();
    assert_eq!(counts.queued, 3);
    assert!(f.repo.claim_notifications(lease - Duration::seconds(1), lease, 100).await.unwrap().is_empty());
    let claimed = claimed_cases(&f, lease + Duration::seconds(1)).await;
    let mut expected = vec![new_cases[1].case.id, new_cases[2].case.id];
    expected.sort();
    assert_eq!(claimed, expected);
}

async fn notifications_are_claimed_once_retried_then_moved_to_the_next_channel(f: Fixture) {
    let mut case = new_case(None, 0, Channel::Phone);
    case.acknowledgement = Some(ack(&case, vec![Channel::Sms, Channel::Email]));
    let note = case.acknowledgement.as_ref().unwrap().id;
    let queued_at = case.received_at;
    let case_id = open(&f, case).await;
    assert!(
        f.repo.claim_notifications(queued_at - Duration::seconds(1), queued_at, 10).await.unwrap().is_empty()
    );
    let now = queued_at + Duration::seconds(1);
    let lease = now + Duration::seconds(60);
    let due = f.repo.claim_notifications(now, lease, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].notification.channel(), Some(Channel::Sms));
    assert!(due[0].case_number.starts_with("DT-"));
    assert!(f.repo.claim_notifications(now, lease, 10).await.unwrap().is_empty(), "leased to the first");
    let attempt =
        |channel, accepted| DeliveryAttempt { at: now, channel, accepted, detail: "provider said no".into() };
    let retry_at = now + Duration::seconds(5);
    f.repo
        .record_sends(
            &[SendResult {
                id: note,
                attempts: vec![attempt(Channel::Sms, false)],
                moved: 0,
                next: NextStep::Retry { at: retry_at },
            }],
            now,
        )
        .await
        .unwrap();
    assert!(f.repo.claim_notifications(now, lease, 10).await.unwrap().is_empty(), "not due before the retry");
    let due = f.repo.claim_notifications(retry_at, lease, 10).await.unwrap();
    assert_eq!(due[0].notification.attempts_on_channel, 1);
    // SMS fails for the last time and e-mail, tried at once, for the first: the e-mail is
    // retried later.
    let email_retry_at = retry_at + Duration::seconds(5);
    f.repo
        .record_sends(
            &[SendResult {
                id: note,
                attempts: vec![attempt(Channel::Sms, false), attempt(Channel::Email, false)],
                moved: 1,
                next: NextStep::Retry { at: email_retry_at },
            }],
            now,
        )
        .await
        .unwrap();
    assert!(
        f.repo.claim_notifications(retry_at, lease, 10).await.unwrap().is_empty(),
        "not due before the retry"
    );
    let due = f.repo.claim_notifications(email_retry_at, lease, 10).await.unwrap();
    assert_eq!(due[0].notification.channel(), Some(Channel::Email));
    assert_eq!(due[0].notification.attempts_on_channel, 1);
    f.repo
        .record_sends(
            &[SendResult {
                id: note,
                attempts: vec![attempt(Channel::Email, true)],
                moved: 0,
                next: NextStep::Delivered,
            }],
            now,
        )
        .await
        .unwrap();
    assert!(f.repo.claim_notifications(retry_at + Duration::hours(1), lease, 10).await.unwrap().is_empty());
    let (notes, _) = f.repo.list_notifications(NotificationScope::Case(case_id), None, 10).await.unwrap();
    assert_eq!(notes[0].status, NotificationStatus::Delivered);
    assert_eq!(
        notes[0].attempts.iter().map(|a| (a.channel, a.accepted)).collect::<Vec<_>>(),
        [(Channel::Sms, false), (Channel::Sms, false), (Channel::Email, false), (Channel::Email, true)]
    );
    assert_eq!(notes[0].channel_index, 1);
    let acked = f.repo.acknowledge_notification(note, now, &agent()).await.unwrap();
    assert_eq!(acked.status, NotificationStatus::Acknowledged);
    let err = f.repo.acknowledge_notification(NotificationId::new(), now, &agent()).await.unwrap_err();
    assert!(matches!(err, detour_intake::error::IntakeError::NotificationNotFound(_)));
}

async fn a_round_of_sends_is_recorded_together_and_an_unrecorded_claim_runs_out(f: Fixture) {
    // Seven notifications claimed in one round: two retried at different times, three moved to
    // the next channel (one delivered there, one to retry there at once, one left to the claim
    // untried), one delivered, one undeliverable; the dispatcher records them in one call.
    let mut notes = Vec::new();
    let mut cases = Vec::new();
    let mut queued_at = None;
    for n in 0..7 {
        let mut case = new_case(Some(&format!("round-{n}")), 0, Channel::Phone);
        case.acknowledgement = Some(ack(&case, vec![Channel::Sms, Channel::Email]));
        notes.push(case.acknowledgement.as_ref().unwrap().id);
        queued_at = Some(case.received_at);
        cases.push(open(&f, case).await);
    }
    let now = queued_at.unwrap() + Duration::seconds(1);
    let lease = now + Duration::seconds(60);
    assert_eq!(f.repo.claim_notifications(now, lease, 10).await.unwrap().len(), 7);
    let attempt = DeliveryAttempt { at: now, channel: Channel::Sms, accepted: false, detail: "busy".into() };
    let send = |i: usize, next| SendResult { id: notes[i], attempts: vec![attempt.clone()], moved: 0, next };
    let on_email = |accepted| DeliveryAttempt { channel: Channel::Email, accepted, ..attempt.clone() };
    let failed_over = |i: usize, accepted, next| SendResult {
        id: notes[i],
        attempts: vec![attempt.clone(), on_email(accepted)],
        moved: 1,
        next,
    };
    let soon = now + Duration::seconds(5);
    let later = now + Duration::seconds(20);
    f.repo
        .record_sends(
            &[
                send(0, NextStep::Retry { at: soon }),
                send(1, NextStep::Retry { at: later }),
                failed_over(2, true, NextStep::Delivered),
                failed_over(3, false, NextStep::Retry { at: now }),
                send(4, NextStep::Delivered),
                send(5, NextStep::Undeliverable),
                SendResult { moved: 1, ..send(6, NextStep::NextChannel) },
            ],
            now,
        )
        .await
        .unwrap();
    let due_ids = |due: Vec<detour_intake::crisis::DueNotification>| {
        let mut ids: Vec<NotificationId> = due.into_iter().map(|d| d.notification.id).collect();
        ids.sort_by_key(ToString::to_string);
        ids
    };
    let sorted = |mut ids: Vec<NotificationId>| {
        ids.sort_by_key(ToString::to_string);
        ids
    };
    // Moved to e-mail and due there at once, tried once or not yet; the retries only at their
    // own times.
    let due = f.repo.claim_notifications(now, lease, 10).await.unwrap();
    assert!(due.iter().all(|d| d.notification.channel() == Some(Channel::Email)));
    let tries: Vec<i32> = due.iter().map(|d| d.notification.attempts_on_channel).collect();
    let expected = if due[0].notification.id == notes[3] { [1, 0] } else { [0, 1] };
    assert_eq!(tries, expected);
    assert_eq!(due_ids(due), sorted(vec![notes[3], notes[6]]));
    let due = f.repo.claim_notifications(soon, lease, 10).await.unwrap();
    assert_eq!(due[0].notification.attempts_on_channel, 1);
    assert_eq!(due_ids(due), vec![notes[0]]);
    assert_eq!(due_ids(f.repo.claim_notifications(later, lease, 10).await.unwrap()), vec![notes[1]]);
    // Nothing of this round is recorded again (a dispatcher that crashed after claiming): each
    // claim runs out at its lease, and then only the pending ones are claimed again.
    assert!(f.repo.claim_notifications(lease - Duration::seconds(1), lease, 10).await.unwrap().is_empty());
    let again = f
        .repo
        .claim_notifications(lease + Duration::seconds(1), lease + Duration::seconds(61), 10)
        .await
        .unwrap();
    assert_eq!(due_ids(again), sorted(vec![notes[0], notes[1], notes[3], notes[6]]));
    let f = &f;
    let status = |case| async move {
        let (notes, _) = f.repo.list_notifications(NotificationScope::Case(case), None, 10).await.unwrap();
        (notes[0].status, notes[0].channel_index, notes[0].attempts.len())
    };
    assert_eq!(status(cases[2]).await, (NotificationStatus::Delivered, 1, 2));
    assert_eq!(status(cases[4]).await, (NotificationStatus::Delivered, 0, 1));
    assert_eq!(status(cases[5]).await, (NotificationStatus::Undeliverable, 0, 1));
}

fn request(case: NewCase) -> OpenRequest {
    let opened = opened(&case);
    OpenRequest { new: case, opened, audit: agent() }
}

async fn a_group_commit_answers_each_contact_as_if_it_came_alone(f: Fixture) {
    // Before the batch: a case whose key is retried in the batch, and an open case about a
    // segment another contact in the batch raises again.
    let earlier = new_case(Some("g-earlier"), 0, Channel::Phone);
    let earlier_id = open(&f, earlier.clone()).await;
    let mut open_before = new_case(Some("g-open"), 0, Channel::Phone);
    open_before.segment_key = Some("flight|CA|CA981|2026-12-03".into());
    let open_before_id = open(&f, open_before.clone()).await;
    let events_before = outbox_count(&f.db).await;

    let mut batch = Vec::new();
    let mut fresh = Vec::new();
    for n in 0..5 {
        let mut c = new_case(Some(&format!("g-new-{n}")), 1, Channel::Email);
        c.segment_key = Some(format!("flight|CA|CA98{n}|2026-12-03"));
        c.acknowledgement = Some(ack(&c, vec![Channel::Email]));
        fresh.push(c.clone());
        batch.push(request(c));
    }
    // 5: the retry of an earlier request.
    batch.push(request(earlier.clone()));
    // 6: the same traveler and segment as the open case, on another channel.
    let mut again = new_case(Some("g-again"), 2, Channel::Sms);
    again.traveler = open_before.traveler.clone();
    again.segment_key = open_before.segment_key.clone();
    batch.push(request(again));
    // 7: the retry of contact 0, inside the same batch.
    batch.push(request(fresh[0].clone()));
    // 8: contact 1's traveler and segment again, inside the same batch, with its own key.
    let mut twin = new_case(Some("g-twin"), 3, Channel::Chat);
    twin.traveler = fresh[1].traveler.clone();
    twin.segment_key = fresh[1].segment_key.clone();
    twin.fingerprint = "f-twin".into();
    batch.push(request(twin));
    // 9: a reused key with another request.
    let mut reused = new_case(Some("g-new-2"), 4, Channel::Email);
    reused.fingerprint = "something else".into();
    batch.push(request(reused));

    let answers = f.repo.open_cases(batch).await;
    assert_eq!(answers.len(), 10);
    let mut created = Vec::new();
    for (n, answer) in answers.iter().take(5).enumerate() {
        match answer {
            Ok(OpenOutcome::Created(c)) => {
                assert_eq!(c.id, fresh[n].id);
                assert_eq!(c.acknowledgement_id, fresh[n].acknowledgement.as_ref().map(|a| a.id));
                let stored = f.repo.get_case(c.id).await.unwrap().unwrap();
                assert_eq!(
                    // The twin (contact 8) joins contact 1's case after it: the first entry is the opening.
                    (&stored.number, &stored.timeline[..1], stored.opened_at, stored.first_response_due),
                    (&c.number, &c.timeline[..], c.opened_at, c.first_response_due),
                    "answered as stored"
                );
                created.push(c.number.clone());
            }
            other => panic!("contact {n}: expected a new case, got {other:?}"),
        }
    }
    created.sort();
    created.dedup();
    assert_eq!(created.len(), 5, "five distinct case numbers");
    assert!(matches!(&answers[5], Ok(OpenOutcome::Replayed(c, _)) if c.id == earlier_id), "{:?}", answers[5]);
    // Newest first.
    let outcomes: Vec<String> = trail(&f, Some(earlier_id)).await.into_iter().map(|r| r.outcome).collect();
    assert_eq!(outcomes, ["replayed", "ok"], "the retry is audited as a replay on its case");
    match &answers[6] {
        Ok(OpenOutcome::Merged(c, _)) => {
            assert_eq!(c.id, open_before_id);
            assert!(
                c.interactions.is_empty() && c.timeline.is_empty(),
                "answered without the history: {c:?}"
            );
            let stored = f.repo.get_case(c.id).await.unwrap().unwrap();
            assert_eq!(stored.interactions.len(), 1);
            assert_eq!(stored.interactions[0].channel, Channel::Sms);
            let kinds: Vec<&str> = stored.timeline.iter().map(|t| t.kind.as_str()).collect();
            assert_eq!(kinds, ["case.opened", "case.contact"]);
            assert_eq!((&c.number, c.first_response_due), (&stored.number, stored.first_response_due));
        }
        other => panic!("expected a merge into the open case: {other:?}"),
    }
    assert!(
        matches!(&answers[7], Ok(OpenOutcome::Replayed(c, _)) if c.id == fresh[0].id),
        "{:?}",
        answers[7]
    );
    match &answers[8] {
        Ok(OpenOutcome::Merged(c, _)) => {
            assert_eq!(c.id, fresh[1].id);
            let stored = f.repo.get_case(c.id).await.unwrap().unwrap();
            assert_eq!(stored.interactions.len(), 1);
            assert_eq!(stored.interactions[0].channel, Channel::Chat);
        }
        other => panic!("expected the twin merged: {other:?}"),
    }
    assert!(
        matches!(&answers[9], Err(detour_intake::error::IntakeError::IdempotencyKeyReused(_))),
        "{:?}",
        answers[9]
    );
    // One CaseOpened per new case, one acknowledgement queued each, one audit record each.
    assert_eq!(outbox_count(&f.db).await - events_before, 5);
    for (n, c) in fresh.iter().enumerate() {
        let (notes, _) = f.repo.list_notifications(NotificationScope::Case(c.id), None, 10).await.unwrap();
        assert_eq!(notes.len(), 1, "acknowledgements of {}", c.id);
        // Contact 0's retry is audited as a replay on its case, the twin's contact on the case
        // it joined.
        assert_eq!(trail(&f, Some(c.id)).await.len(), if n < 2 { 2 } else { 1 }, "audit of contact {n}");
    }
    // Two contacts, one of them joining a case the batch above opened: each answered right.
    let mut late = new_case(Some("g-late"), 5, Channel::App);
    late.traveler = fresh[2].traveler.clone();
    late.segment_key = fresh[2].segment_key.clone();
    late.fingerprint = "f-late".into();
    let solo = new_case(Some("g-solo"), 5, Channel::App);
    let answers = f.repo.open_cases(vec![request(late), request(solo.clone())]).await;
    assert!(matches!(&answers[0], Ok(OpenOutcome::Merged(c, _)) if c.id == fresh[2].id), "{:?}", answers[0]);
    assert!(matches!(&answers[1], Ok(OpenOutcome::Created(c)) if c.id == solo.id), "{:?}", answers[1]);
}

async fn leased_acknowledgements_are_left_to_their_writer_until_the_lease_runs_out(f: Fixture) {
    let mut open_before = new_case(Some("l-open"), 0, Channel::Phone);
    open_before.segment_key = Some("flight|CA|CA981|2026-12-03".into());
    let open_before_id = open(&f, open_before.clone()).await;
    let written_at = open_before.received_at;
    let lease = written_at + Duration::seconds(60);
    let leased = |mut c: NewCase| {
        let mut a = ack(&c, vec![Channel::Sms]);
        a.leased_until = Some(lease);
        c.acknowledgement = Some(a);
        c
    };
    // Through the group commit: two new cases, and a contact joining the open case.
    let first = leased(new_case(Some("l-1"), 0, Channel::Sms));
    let second = leased(new_case(Some("l-2"), 0, Channel::Email));
    let mut again = leased(new_case(Some("l-again"), 0, Channel::Chat));
    again.traveler = open_before.traveler.clone();
    again.segment_key = open_before.segment_key.clone();
    let answers =
        f.repo.open_cases(vec![request(first.clone()), request(second.clone()), request(again)]).await;
    assert!(
        matches!(&answers[2], Ok(OpenOutcome::Merged(c, _)) if c.id == open_before_id),
        "{:?}",
        answers[2]
    );
    // Alone, and one written due, as a writer without room in its handoff does.
    let alone = leased(new_case(Some("l-alone"), 0, Channel::Sms));
    let alone_id = open(&f, alone).await;
    let mut due_now = new_case(Some("l-due"), 0, Channel::Sms);
    due_now.acknowledgement = Some(ack(&due_now, vec![Channel::Sms]));
    let due_id = open(&f, due_now).await;

    let now = written_at + Duration::seconds(1);
    let claimed = f.repo.claim_notifications(now, now + Duration::seconds(60), 100).await.unwrap();
    let ids: Vec<CaseId> = claimed.iter().map(|d| d.notification.case_id).collect();
    assert_eq!(ids, [due_id], "only the one written due");
    let ids = claimed_cases(&f, lease + Duration::seconds(1)).await;
    let mut expected = vec![first.id, second.id, open_before_id, alone_id];
    expected.sort();
    assert_eq!(
        ids, expected,
        "the writer died: every leased acknowledgement is claimed once its lease ran out"
    );
}

/// The cases of the notifications a dispatcher claims at `at`, sorted.
async fn claimed_cases(f: &Fixture, at: detour_domain::Instant) -> Vec<CaseId> {
    let mut cases: Vec<CaseId> = f
        .repo
        .claim_notifications(at, at + Duration::seconds(60), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.notification.case_id)
        .collect();
    cases.sort();
    cases
}
