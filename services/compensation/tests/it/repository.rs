//! The repository contract: one suite, run against a fresh SQLite file and a fresh PostgreSQL
//! database, so the two implementations behave the same.

use std::sync::Arc;

use detour_audit::{Audit, AuditFilter, AuditLog, AuditRecord, Target};
use detour_compensation::consumer::{GROUP, OfferProposer, offer_proposed};
use detour_compensation::error::CompensationError;
use detour_compensation::grpc::offer_accepted;
use detour_compensation::model::{Applied, CaseContext, FIRST_RUNG, NewOffer, OfferStatus};
use detour_compensation::policy::Policy;
use detour_compensation::repo::{self, CompensationRepository};
use detour_domain::events::{self, streams};
use detour_domain::{Actor, CaseCategory, CaseId, Instant, Money, OfferId, Severity};
use detour_events::consumer::EventHandler;
use detour_proto::events::v1::SupplierOutcome as WireOutcome;
use detour_proto::events::v1::envelope::Event;
use detour_testkit::{Backend, TestDb, count_rows, event_id, outbox};

use crate::common::{at, compensation_for, eur as wire_eur, responded, triaged};

pub struct Fixture {
    repo: Arc<dyn CompensationRepository>,
    db: TestDb,
}

async fn fixture(backend: Backend) -> Fixture {
    let db = TestDb::fresh(backend, detour_compensation::NAME, detour_compensation::MIGRATIONS).await;
    Fixture { repo: repo::for_db(&db, None), db }
}

impl Fixture {
    /// The case's audit trail, newest first.
    async fn trail(&self, case_id: CaseId) -> Vec<AuditRecord> {
        let filter = AuditFilter { case_id: Some(case_id), ..Default::default() };
        AuditLog::new(detour_compensation::NAME, (*self.db).clone()).list(&filter, None, 10).await.unwrap()
    }
}

/// What the consumer audits applying an event: compensation acting for the agent-7.
fn applying(event: &str) -> Audit {
    Audit {
        actor: compensation_for("agent-7"),
        action: format!("event detour.events.v1.{event}"),
        trace_id: None,
    }
}

/// Finance staff accepting an offer for the traveler.
fn finance() -> Actor {
    Actor::user("fin-2", ["finance"])
}

fn finance_accepts() -> Audit {
    Audit {
        actor: finance(),
        action: "detour.compensation.v1.CompensationService/AcceptOffer".into(),
        trace_id: None,
    }
}

detour_testkit::both_backends!(
    fixture;
    a_triage_delivered_twice_proposes_one_offer_and_emits_once,
    a_case_gets_one_first_offer_whichever_events_propose_it,
    a_case_waiting_for_its_supplier_gets_its_offer_from_the_answer,
    the_latest_triage_sets_the_context,
    an_offer_is_accepted_once,
    offers_are_listed_oldest_first_per_case,
    changes_are_audited_once_each,
    the_consumer_proposes_for_the_user_behind_the_event,
);

fn eur(minor: i64) -> Money {
    Money::new(minor, "EUR".parse().unwrap())
}

fn context(case_id: CaseId, needs_supplier: bool, price: Option<Money>, triaged_at: Instant) -> CaseContext {
    CaseContext {
        case_id,
        category: CaseCategory::FlightCancellation,
        severity: Severity::High,
        needs_supplier,
        price,
        triaged_at,
    }
}

fn new_offer(case_id: CaseId, rung: i32, amount: Money, proposed_at: Instant) -> NewOffer {
    NewOffer {
        id: OfferId::new(),
        case_id,
        rung,
        amount,
        policy_rule: "company.first_offer_30pct".into(),
        rationale: "30 % of the price".into(),
        proposed_at,
    }
}

/// An offer with the event the consumer would emit for it.
fn with_event(offer: NewOffer) -> (NewOffer, detour_proto::events::v1::Envelope) {
    let event = offer_proposed(&offer, &compensation_for("agent-7"));
    (offer, event)
}

async fn propose(f: &Fixture, event_id: &str, offer: NewOffer) -> Applied {
    let (offer, event) = with_event(offer);
    f.repo.propose(GROUP, event_id, offer, event, &applying("SupplierResponded")).await.unwrap()
}

async fn a_triage_delivered_twice_proposes_one_offer_and_emits_once(f: Fixture) {
    let case_id = CaseId::new();
    let ctx = context(case_id, false, Some(eur(1_001)), at(1_796_000_000));
    let offer = new_offer(case_id, FIRST_RUNG, eur(300), at(1_796_000_001));
    let id = offer.id;
    let applied = f
        .repo
        .record_triage(GROUP, "evt-1", ctx.clone(), Some(with_event(offer.clone())), &applying("CaseTriaged"))
        .await
        .unwrap();
    assert_eq!(applied, Applied::Applied { proposed: Some(id) });
    // A redelivery works its offer out again, under a fresh id; the processed record stops it.
    let again = NewOffer { id: OfferId::new(), ..offer.clone() };
    let applied = f
        .repo
        .record_triage(GROUP, "evt-1", ctx.clone(), Some(with_event(again)), &applying("CaseTriaged"))
        .await
        .unwrap();
    assert_eq!(applied, Applied::AlreadyProcessed);

    assert_eq!(count_rows(&f.db, "offers").await, 1);
    assert_eq!(count_rows(&f.db, "outbox").await, 1);
    let events = outbox(&f.db).await;
    assert_eq!(events[0].0, streams::COMPENSATION);
    assert_eq!(events[0].1.case_id.as_ref().unwrap().value, case_id.to_string());
    let Some(Event::OfferProposed(e)) = events[0].1.event.as_ref() else { panic!("{:?}", events[0].1) };
    assert_eq!(e.offer_id.as_ref().unwrap().value, id.to_string());
    assert_eq!(e.amount.as_ref().map(|m| (m.amount_minor, m.currency.as_str())), Some((300, "EUR")));
    assert_eq!(e.policy_rule, "company.first_offer_30pct");
    assert_eq!(e.rationale, "30 % of the price");

    let stored = f.repo.get_offer(id).await.unwrap().unwrap();
    assert_eq!(stored.case_id, case_id);
    assert_eq!(stored.amount, eur(300));
    assert_eq!(stored.status, OfferStatus::Proposed);
    assert_eq!(stored.policy_rule, offer.policy_rule);
    assert_eq!(stored.rationale, offer.rationale);
    assert_eq!(stored.proposed_at, offer.proposed_at);
    assert_eq!(stored.accepted_at, None);
    assert_eq!(f.repo.list_offers(case_id).await.unwrap(), vec![stored]);
    assert_eq!(f.repo.case_context(case_id).await.unwrap(), Some(ctx));
}

async fn a_case_gets_one_first_offer_whichever_events_propose_it(f: Fixture) {
    let case_id = CaseId::new();
    let ctx = context(case_id, false, Some(eur(1_000)), at(1_796_000_000));
    let first = new_offer(case_id, FIRST_RUNG, eur(300), at(1_796_000_001));
    let first_id = first.id;
    let applied = f
        .repo
        .record_triage(GROUP, "evt-1", ctx.clone(), Some(with_event(first)), &applying("CaseTriaged"))
        .await
        .unwrap();
    assert_eq!(applied, Applied::Applied { proposed: Some(first_id) });

    let from_supplier = new_offer(case_id, FIRST_RUNG, eur(0), at(1_796_000_002));
    assert_eq!(propose(&f, "evt-2", from_supplier).await, Applied::Applied { proposed: None });
    let retriaged = new_offer(case_id, FIRST_RUNG, eur(300), at(1_796_000_003));
    let applied = f
        .repo
        .record_triage(GROUP, "evt-3", ctx, Some(with_event(retriaged)), &applying("CaseTriaged"))
        .await
        .unwrap();
    assert_eq!(applied, Applied::Applied { proposed: None });

    assert_eq!(count_rows(&f.db, "offers").await, 1);
    assert_eq!(count_rows(&f.db, "outbox").await, 1);
    assert_eq!(count_rows(&f.db, "processed_events").await, 3);
    let offers = f.repo.list_offers(case_id).await.unwrap();
    assert_eq!(offers.iter().map(|o| (o.id, o.amount)).collect::<Vec<_>>(), [(first_id, eur(300))]);
}

async fn a_case_waiting_for_its_supplier_gets_its_offer_from_the_answer(f: Fixture) {
    let case_id = CaseId::new();
    assert_eq!(f.repo.case_context(case_id).await.unwrap(), None);
    let ctx = context(case_id, true, None, at(1_796_000_000));
    let applied =
        f.repo.record_triage(GROUP, "evt-1", ctx.clone(), None, &applying("CaseTriaged")).await.unwrap();
    assert_eq!(applied, Applied::Applied { proposed: None });
    assert_eq!(count_rows(&f.db, "offers").await, 0);
    assert_eq!(count_rows(&f.db, "outbox").await, 0);
    assert_eq!(f.repo.case_context(case_id).await.unwrap(), Some(ctx));

    let offer = new_offer(case_id, FIRST_RUNG, eur(5_000), at(1_796_000_100));
    let id = offer.id;
    assert_eq!(propose(&f, "evt-2", offer.clone()).await, Applied::Applied { proposed: Some(id) });
    let redelivered = NewOffer { id: OfferId::new(), ..offer };
    assert_eq!(propose(&f, "evt-2", redelivered).await, Applied::AlreadyProcessed);
    assert_eq!(count_rows(&f.db, "offers").await, 1);
    assert_eq!(count_rows(&f.db, "outbox").await, 1);
}

async fn the_latest_triage_sets_the_context(f: Fixture) {
    let case_id = CaseId::new();
    let cny = Money::new(520_000, "CNY".parse().unwrap());
    let first = context(case_id, true, Some(cny), at(1_796_000_000));
    f.repo.record_triage(GROUP, "evt-1", first, None, &applying("CaseTriaged")).await.unwrap();
    let newer = CaseContext {
        category: CaseCategory::FeeDispute,
        severity: Severity::Low,
        ..context(case_id, false, None, at(1_796_000_600))
    };
    f.repo.record_triage(GROUP, "evt-2", newer.clone(), None, &applying("CaseTriaged")).await.unwrap();
    assert_eq!(f.repo.case_context(case_id).await.unwrap(), Some(newer.clone()));
    // A retried, older triage arriving last must not undo the newer verdict.
    let stale = context(case_id, true, Some(cny), at(1_796_000_300));
    f.repo.record_triage(GROUP, "evt-3", stale, None, &applying("CaseTriaged")).await.unwrap();
    assert_eq!(f.repo.case_context(case_id).await.unwrap(), Some(newer));
}

async fn an_offer_is_accepted_once(f: Fixture) {
    let case_id = CaseId::new();
    let offer = new_offer(case_id, FIRST_RUNG, eur(300), at(1_796_000_000));
    let id = offer.id;
    propose(&f, "evt-1", offer).await;
    let proposed = f.repo.get_offer(id).await.unwrap().unwrap();

    let accepted_at = at(1_796_000_500);
    let accepted = f
        .repo
        .accept_offer(id, accepted_at, offer_accepted(&proposed, accepted_at, &finance()), &finance_accepts())
        .await
        .unwrap();
    assert_eq!(accepted.status, OfferStatus::Accepted);
    assert_eq!(accepted.accepted_at, Some(accepted_at));
    assert_eq!(f.repo.get_offer(id).await.unwrap(), Some(accepted.clone()));
    let events = outbox(&f.db).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].0, streams::COMPENSATION);
    let Some(Event::OfferAccepted(e)) = events[1].1.event.as_ref() else { panic!("{:?}", events[1].1) };
    assert_eq!(e.offer_id.as_ref().unwrap().value, id.to_string());
    assert_eq!(e.amount.as_ref().map(|m| m.amount_minor), Some(300));

    let later = at(1_796_000_900);
    let event = offer_accepted(&proposed, later, &finance());
    let err = f.repo.accept_offer(id, later, event, &finance_accepts()).await.unwrap_err();
    assert!(matches!(err, CompensationError::AlreadyAccepted(x) if x == id), "{err:?}");
    assert_eq!(count_rows(&f.db, "outbox").await, 2);
    assert_eq!(f.repo.get_offer(id).await.unwrap().unwrap().accepted_at, Some(accepted_at));

    let ghost = detour_compensation::model::Offer { id: OfferId::new(), ..proposed };
    let event = offer_accepted(&ghost, later, &finance());
    let err = f.repo.accept_offer(ghost.id, later, event, &finance_accepts()).await.unwrap_err();
    assert!(matches!(err, CompensationError::OfferNotFound(x) if x == ghost.id), "{err:?}");
    assert_eq!(f.repo.get_offer(ghost.id).await.unwrap(), None);
    assert_eq!(count_rows(&f.db, "outbox").await, 2);
}

async fn offers_are_listed_oldest_first_per_case(f: Fixture) {
    let case_a = CaseId::new();
    let case_b = CaseId::new();
    // Inserted newest first, so only the ordering can put them right.
    let second_rung = new_offer(case_a, FIRST_RUNG + 1, eur(500), at(1_796_100_000));
    let first_rung = new_offer(case_a, FIRST_RUNG, eur(300), at(1_796_000_000));
    let other_case = new_offer(case_b, FIRST_RUNG, eur(900), at(1_796_050_000));
    let ids = [second_rung.id, first_rung.id, other_case.id];
    propose(&f, "evt-1", second_rung).await;
    propose(&f, "evt-2", first_rung).await;
    propose(&f, "evt-3", other_case).await;

    let listed: Vec<OfferId> = f.repo.list_offers(case_a).await.unwrap().iter().map(|o| o.id).collect();
    assert_eq!(listed, [ids[1], ids[0]]);
    let listed: Vec<OfferId> = f.repo.list_offers(case_b).await.unwrap().iter().map(|o| o.id).collect();
    assert_eq!(listed, [ids[2]]);
    assert!(f.repo.list_offers(CaseId::new()).await.unwrap().is_empty());
}

async fn changes_are_audited_once_each(f: Fixture) {
    let case_id = CaseId::new();
    let ctx = context(case_id, false, Some(eur(1_000)), at(1_796_000_000));
    let offer = new_offer(case_id, FIRST_RUNG, eur(300), at(1_796_000_001));
    let id = offer.id;
    let triage = applying("CaseTriaged");
    let applied = f.repo.record_triage(GROUP, "evt-1", ctx.clone(), Some(with_event(offer.clone())), &triage);
    assert_eq!(applied.await.unwrap(), Applied::Applied { proposed: Some(id) });
    // Redelivered: nothing changes, nothing is audited.
    let again = f.repo.record_triage(GROUP, "evt-1", ctx.clone(), Some(with_event(offer.clone())), &triage);
    assert_eq!(again.await.unwrap(), Applied::AlreadyProcessed);
    // An older triage arriving late, and an answer for a rung already offered, change nothing.
    let stale = context(case_id, true, None, at(1_796_000_000 - 60));
    let applied = f.repo.record_triage(GROUP, "evt-2", stale, None, &triage).await.unwrap();
    assert_eq!(applied, Applied::Applied { proposed: None });
    let late = new_offer(case_id, FIRST_RUNG, eur(0), at(1_796_000_002));
    assert_eq!(propose(&f, "evt-3", late).await, Applied::Applied { proposed: None });

    let trail = f.trail(case_id).await;
    assert_eq!(trail.len(), 1, "{trail:?}");
    let r = &trail[0];
    assert_eq!(r.service, "compensation");
    assert_eq!(r.actor, compensation_for("agent-7"));
    assert_eq!(r.action, "event detour.events.v1.CaseTriaged");
    assert_eq!(r.case_id, Some(case_id));
    assert_eq!(r.targets, [Target::new("offer", id)]);
    assert_eq!(r.outcome, "ok");

    // A newer triage changes the case's context even without an offer: audited, no target.
    let newer = context(case_id, false, Some(eur(2_000)), at(1_796_000_600));
    f.repo.record_triage(GROUP, "evt-4", newer, None, &triage).await.unwrap();
    let trail = f.trail(case_id).await;
    assert_eq!(trail.len(), 2, "{trail:?}");
    assert!(trail[0].targets.is_empty(), "{trail:?}");

    let proposed = f.repo.get_offer(id).await.unwrap().unwrap();
    let accepted_at = at(1_796_001_000);
    let event = offer_accepted(&proposed, accepted_at, &finance());
    f.repo.accept_offer(id, accepted_at, event.clone(), &finance_accepts()).await.unwrap();
    f.repo.accept_offer(id, accepted_at, event, &finance_accepts()).await.unwrap_err();
    let trail = f.trail(case_id).await;
    assert_eq!(trail.len(), 3, "the refused second acceptance is the handler's to record: {trail:?}");
    let r = &trail[0];
    assert_eq!(
        (&r.actor, r.action.as_str()),
        (&finance(), "detour.compensation.v1.CompensationService/AcceptOffer")
    );
    assert_eq!(
        (r.case_id, r.targets.as_slice(), r.outcome.as_str()),
        (Some(case_id), &[Target::new("offer", id)][..], "ok")
    );

    let events = outbox(&f.db).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events::actor_of(&events[1].1), Some(finance()), "the acceptance is the finance user's");
}

async fn the_consumer_proposes_for_the_user_behind_the_event(f: Fixture) {
    let proposer = OfferProposer::new(f.repo.clone(), Policy::company().unwrap());

    // No supplier to ask: the offer comes with the triage, for the agent behind it.
    let direct = CaseId::new();
    let triage = triaged(direct, at(1_796_000_000), CaseCategory::FlightDelay, false, Some(wire_eur(1_001)));
    proposer.handle(&event_id(&triage), triage.clone()).await.unwrap();
    proposer.handle(&event_id(&triage), triage).await.unwrap();
    let events = outbox(&f.db).await;
    assert_eq!(events.len(), 1);
    assert!(matches!(events[0].1.event, Some(Event::OfferProposed(_))), "{:?}", events[0].1);
    assert_eq!(events::actor_of(&events[0].1), Some(compensation_for("agent-7")));
    let offer = f.repo.list_offers(direct).await.unwrap().remove(0);
    let trail = f.trail(direct).await;
    assert_eq!(trail.len(), 1, "{trail:?}");
    assert_eq!(
        (&trail[0].actor, trail[0].action.as_str()),
        (&compensation_for("agent-7"), "event detour.events.v1.CaseTriaged")
    );
    assert_eq!(trail[0].targets, [Target::new("offer", offer.id)]);

    // Through the supplier: the offer comes with the partner's answer, for the partner.
    let asked = CaseId::new();
    let triage = triaged(asked, at(1_796_000_000), CaseCategory::FlightDelay, true, Some(wire_eur(100_000)));
    proposer.handle(&event_id(&triage), triage).await.unwrap();
    let answer = responded(asked, WireOutcome::FaultAccepted);
    proposer.handle(&event_id(&answer), answer.clone()).await.unwrap();
    proposer.handle(&event_id(&answer), answer).await.unwrap();
    let events = outbox(&f.db).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events::actor_of(&events[1].1), Some(compensation_for("partner-ca")));
    let offer = f.repo.list_offers(asked).await.unwrap().remove(0);
    let trail = f.trail(asked).await;
    let seen: Vec<(&str, &str, &[Target])> = trail
        .iter()
        .map(|r| (r.actor.on_behalf_of.as_deref().unwrap(), r.action.as_str(), r.targets.as_slice()))
        .collect();
    let offered = [Target::new("offer", offer.id)];
    assert_eq!(
        seen,
        [
            ("partner-ca", "event detour.events.v1.SupplierResponded", &offered[..]),
            ("agent-7", "event detour.events.v1.CaseTriaged", &[][..]),
        ]
    );
}
