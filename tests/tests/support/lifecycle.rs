//! One case through the whole suite, checked at every step through the public RPCs.

use std::time::Duration;

use detour_proto::audit::v1 as audit;
use detour_proto::audit::v1::audit_service_client::AuditServiceClient;
use detour_proto::common::v1 as common;
use detour_proto::compensation::v1 as comp;
use detour_proto::compensation::v1::compensation_service_client::CompensationServiceClient;
use detour_proto::events::v1::SupplierOutcome;
use detour_proto::feedback::v1 as fb;
use detour_proto::feedback::v1::feedback_service_client::FeedbackServiceClient;
use detour_proto::intake::v1 as intake;
use detour_proto::intake::v1::intake_service_client::IntakeServiceClient;
use detour_proto::supplier::v1 as sup;
use detour_proto::supplier::v1::supplier_service_client::SupplierServiceClient;
use detour_proto::triage::v1 as tri;
use detour_proto::triage::v1::triage_service_client::TriageServiceClient;
use detour_testkit::Channel;
use detour_testkit::eventually;

const STEP: Duration = Duration::from_secs(20);

/// Where each service answers (all the same address in `detour dev`).
#[derive(Clone)]
pub struct Clients {
    pub intake: IntakeServiceClient<Channel>,
    pub triage: TriageServiceClient<Channel>,
    pub supplier: SupplierServiceClient<Channel>,
    pub compensation: CompensationServiceClient<Channel>,
    pub feedback: FeedbackServiceClient<Channel>,
    /// One per host: each answers for the services it runs.
    pub audit: Vec<AuditServiceClient<Channel>>,
}

impl Clients {
    pub fn new(
        intake: Channel,
        triage: Channel,
        supplier: Channel,
        compensation: Channel,
        feedback: Channel,
    ) -> Self {
        let audit = [&intake, &triage, &supplier, &compensation, &feedback]
            .into_iter()
            .map(|c| AuditServiceClient::new(c.clone()))
            .collect();
        Self {
            intake: IntakeServiceClient::new(intake),
            triage: TriageServiceClient::new(triage),
            supplier: SupplierServiceClient::new(supplier),
            compensation: CompensationServiceClient::new(compensation),
            feedback: FeedbackServiceClient::new(feedback),
            audit,
        }
    }

    pub fn single(channel: Channel) -> Self {
        let mut clients =
            Self::new(channel.clone(), channel.clone(), channel.clone(), channel.clone(), channel);
        clients.audit.truncate(1);
        clients
    }

    /// Every audit record of a case, from every host, oldest first.
    pub async fn audit_trail(&self, case_id: &str) -> Vec<audit::AuditRecord> {
        let mut records = Vec::new();
        for client in &self.audit {
            let mut client = client.clone();
            let mut page_token = String::new();
            loop {
                let page = client
                    .list_audit_records(audit::ListAuditRecordsRequest {
                        case_id: case_ref(case_id),
                        page_size: 2,
                        page_token: page_token.clone(),
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner();
                records.extend(page.records);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
        }
        records.sort_by_key(|r| r.at.map(|t| (t.seconds, t.nanos)));
        records
    }
}

/// A flight cancellation as an agent types it from a phone call.
pub fn cancelled_flight(idempotency_key: &str, name: &str) -> intake::OpenCaseRequest {
    intake::OpenCaseRequest {
        traveler: Some(common::Traveler {
            id: None,
            full_name: name.to_owned(),
            email: format!("{}@example.com", name.to_lowercase().replace(' ', ".")),
            phone: "+8613800138000".into(),
            preferred_language: "en".into(),
            document_number: "E73912458".into(),
        }),
        segment: Some(common::Segment {
            starts_at: Some(prost_types::Timestamp { seconds: 1_796_290_800, nanos: 0 }),
            booking_reference: "PNR7Q2".into(),
            price: Some(common::Money { amount_minor: 520_000, currency: "CNY".into() }),
            ..detour_testkit::flight_segment()
        }),
        channel: common::Channel::Phone as i32,
        description:
            "My flight CA981 to New York was cancelled at the gate and nobody tells me what happens next"
                .into(),
        requested_outcomes: vec![
            common::RequestedOutcome::Rebooking as i32,
            common::RequestedOutcome::Refund as i32,
        ],
        idempotency_key: idempotency_key.to_owned(),
    }
}

pub fn case_ref(id: &str) -> Option<common::CaseId> {
    Some(common::CaseId { value: id.to_owned() })
}

pub async fn get_case(c: &mut Clients, id: &str) -> intake::Case {
    c.intake
        .get_case(intake::GetCaseRequest { case_id: case_ref(id) })
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap()
}

/// Runs the lifecycle and returns the case id. Every step must become visible through the
/// owning service's RPCs and in the case's timeline.
pub async fn run(c: &mut Clients, key: &str) -> String {
    // Intake acknowledges at once with a number and the golden-hour deadline.
    let ack = c.intake.open_case(cancelled_flight(key, "Li Wei")).await.unwrap().into_inner();
    let id = ack.case_id.clone().unwrap().value;
    assert!(ack.case_number.starts_with("DT-"), "{}", ack.case_number);
    assert!(!ack.replayed);
    let due = ack.first_response_due.unwrap().seconds - now_secs();
    assert!((3_500..=3_600).contains(&due), "first response due in {due} s");

    // A retry with the same key answers with the same case.
    let again = c.intake.open_case(cancelled_flight(key, "Li Wei")).await.unwrap().into_inner();
    assert!(again.replayed);
    assert_eq!(again.case_id.unwrap().value, id);

    // Triage classifies it and queues it.
    let triage = eventually("triage", STEP, || {
        let mut t = c.triage.clone();
        let id = id.clone();
        async move { t.get_triage(tri::GetTriageRequest { case_id: case_ref(&id) }).await.ok() }
    })
    .await
    .into_inner()
    .triage
    .unwrap();
    assert_eq!(triage.category, common::CaseCategory::FlightCancellation as i32);
    assert!(triage.needs_supplier);

    // Supplier coordination asks the airline.
    let request = eventually("supplier request", STEP, || {
        let mut s = c.supplier.clone();
        let id = id.clone();
        async move {
            let list = s
                .list_supplier_requests(sup::ListSupplierRequestsRequest {
                    case_id: case_ref(&id),
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner();
            list.requests.into_iter().next()
        }
    })
    .await;
    assert_eq!(request.supplier_code, "CA");
    let answered = c
        .supplier
        .record_supplier_response(sup::RecordSupplierResponseRequest {
            request_id: request.request_id.clone(),
            outcome: SupplierOutcome::AlternativeOffered as i32,
            details: "Seat on CA989 tomorrow 13:00".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap();
    assert_eq!(answered.status, sup::RequestStatus::Answered as i32);

    // Compensation proposes the company's first rung: 30 % of the segment price.
    let offer = eventually("offer", STEP, || {
        let mut s = c.compensation.clone();
        let id = id.clone();
        async move {
            let list =
                s.list_offers(comp::ListOffersRequest { case_id: case_ref(&id) }).await.ok()?.into_inner();
            list.offers.into_iter().next()
        }
    })
    .await;
    let amount = offer.amount.clone().unwrap();
    assert_eq!((amount.amount_minor, amount.currency.as_str()), (156_000, "CNY"));
    c.compensation.accept_offer(comp::AcceptOfferRequest { offer_id: offer.offer_id.clone() }).await.unwrap();

    // The accepted offer resolves the case.
    eventually("resolution", STEP, || {
        let mut c = c.clone();
        let id = id.clone();
        async move { (get_case(&mut c, &id).await.status == common::CaseStatus::Resolved as i32).then_some(()) }
    })
    .await;

    // Feedback surveys the traveler, who answers.
    let survey = eventually("survey", STEP, || {
        let mut f = c.feedback.clone();
        let id = id.clone();
        async move {
            let list =
                f.list_surveys(fb::ListSurveysRequest { case_id: case_ref(&id) }).await.ok()?.into_inner();
            list.surveys.into_iter().next()
        }
    })
    .await;
    c.feedback
        .submit_survey_response(fb::SubmitSurveyResponseRequest {
            survey_id: survey.survey_id.clone(),
            score: 4,
            comment: "Rebooked quickly".into(),
        })
        .await
        .unwrap();

    // The case's timeline tells the whole story, once each.
    let expected = [
        "case.opened",
        "case.triaged",
        "supplier.requested",
        "supplier.responded",
        "offer.proposed",
        "offer.accepted",
        "case.resolved",
        "survey.sent",
        "survey.answered",
    ];
    let case = eventually("complete timeline", STEP, || {
        let mut c = c.clone();
        let id = id.clone();
        async move {
            let case = get_case(&mut c, &id).await;
            (case.timeline.len() >= expected.len()).then_some(case)
        }
    })
    .await;
    let kinds: Vec<&str> = case.timeline.iter().map(|t| t.kind.as_str()).collect();
    for kind in expected {
        assert_eq!(kinds.iter().filter(|k| **k == kind).count(), 1, "{kind} once in {kinds:?}");
    }
    assert_eq!(case.category, common::CaseCategory::FlightCancellation as i32);

    // And the desk finds it among resolved cases.
    let resolved = c
        .intake
        .list_cases(intake::ListCasesRequest {
            status: common::CaseStatus::Resolved as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(resolved.cases.iter().any(|k| k.case_id.as_ref().map(|i| i.value.as_str()) == Some(id.as_str())));

    check_audit_trail(c, &id).await;
    id
}

/// Every state change of the run left its audit record in the service that made it, with the
/// caller (or the service acting for them), a trace id and the outcome.
async fn check_audit_trail(c: &Clients, id: &str) {
    // Each change the lifecycle made, as (service, action, outcome). Intake applies every other
    // service's event to the case view, so it records one per timeline entry it added.
    let mut expected: Vec<(&str, String, &str)> = vec![
        ("intake", "detour.intake.v1.IntakeService/OpenCase".into(), "ok"),
        ("intake", "detour.intake.v1.IntakeService/OpenCase".into(), "replayed"),
        ("triage", "event detour.events.v1.CaseOpened".into(), "ok"),
        ("triage", "event detour.events.v1.CaseResolved".into(), "ok"),
        ("supplier", "event detour.events.v1.CaseTriaged".into(), "ok"),
        ("supplier", "detour.supplier.v1.SupplierService/RecordSupplierResponse".into(), "ok"),
        ("compensation", "event detour.events.v1.CaseTriaged".into(), "ok"),
        ("compensation", "event detour.events.v1.SupplierResponded".into(), "ok"),
        ("compensation", "detour.compensation.v1.CompensationService/AcceptOffer".into(), "ok"),
        ("feedback", "event detour.events.v1.CaseResolved".into(), "ok"),
        ("feedback", "detour.feedback.v1.FeedbackService/SubmitSurveyResponse".into(), "ok"),
    ];
    for event in [
        "CaseTriaged",
        "SupplierRequestOpened",
        "SupplierResponded",
        "OfferProposed",
        "OfferAccepted",
        "SurveySent",
        "SurveyAnswered",
    ] {
        expected.push(("intake", format!("event detour.events.v1.{event}"), "ok"));
    }
    let records = eventually("audit trail", STEP, || async {
        let records = c.audit_trail(id).await;
        (records.len() >= expected.len()).then_some(records)
    })
    .await;
    let mut found: Vec<(&str, String, &str)> =
        records.iter().map(|r| (r.service.as_str(), r.action.clone(), r.outcome.as_str())).collect();
    found.sort();
    expected.sort();
    assert_eq!(found, expected, "the case's audit trail");
    for r in &records {
        let actor = r.actor.as_ref().unwrap();
        // The end user travels with the events: every change is the admin's or made on their behalf.
        let end_user =
            if actor.kind == common::ActorKind::User as i32 { &actor.id } else { &actor.on_behalf_of };
        assert_eq!(end_user, "admin-1", "{r:?}");
        assert_eq!(r.trace_id.len(), 32, "a trace id on {r:?}");
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
