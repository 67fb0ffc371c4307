//! The service through its real host: events published on the bus reach the consumer, and the
//! RPCs answer over a TCP socket.

use std::time::Duration;

use detour_domain::events::{self, streams};
use detour_domain::{Actor, CaseId, SurveyId};
use detour_events::bus::Subscription;
use detour_proto::audit::v1 as audit_pb;
use detour_proto::common::v1 as common;
use detour_proto::events::v1::Envelope;
use detour_proto::events::v1::envelope::Event;
use detour_proto::feedback::v1 as pb;
use detour_proto::feedback::v1::feedback_service_client::FeedbackServiceClient;
use detour_testkit::audit_summary;
use detour_testkit::{Bearer, Channel, Role};
use detour_testkit::{Service, sqlite_settings, violated_fields as fields};
use prost::Message;
use tonic::service::interceptor::InterceptedService;

use crate::common::{base, case_opened, case_resolved, feedback_for, traveler_app};

type Server = Service<FeedbackServiceClient<Channel>>;

/// Feedback alone on a loopback port with a SQLite file, sharing an in-process bus with the
/// test; returns once health says it serves.
async fn start() -> Server {
    Service::start(detour_feedback::MODULE, FeedbackServiceClient::new).await
}

/// The next event feedback published downstream, acknowledged.
async fn next_event(sub: &mut Box<dyn Subscription>) -> Envelope {
    let batch = sub.next_batch(1, Duration::from_secs(10)).await.unwrap();
    assert_eq!(batch.len(), 1, "an event reaches the feedback stream");
    sub.ack(&batch[0]).await.unwrap();
    Envelope::decode(batch[0].payload.clone()).unwrap()
}

fn case_id(id: CaseId) -> Option<common::CaseId> {
    Some(common::CaseId { value: id.to_string() })
}

#[tokio::test]
async fn a_resolved_case_gets_one_survey_that_takes_one_answer() {
    let mut server = start().await;
    let mut downstream = server.bus.subscribe(streams::FEEDBACK, "downstream-test", "t1").await.unwrap();
    let id = CaseId::new();
    let list = |id: CaseId| pb::ListSurveysRequest { case_id: case_id(id) };

    // Only a resolution asks the traveler.
    server.publish(streams::INTAKE, &case_opened(id, base())).await;
    assert!(server.client.list_surveys(list(id)).await.unwrap().into_inner().surveys.is_empty());

    server.publish(streams::INTAKE, &case_resolved(id, base())).await;
    let surveys = server.client.list_surveys(list(id)).await.unwrap().into_inner().surveys;
    assert_eq!(surveys.len(), 1);
    let survey = surveys[0].clone();
    assert_eq!(survey.status, pb::SurveyStatus::Sent as i32);
    assert_eq!((survey.score, survey.answered_at), (0, None));

    let sent = next_event(&mut downstream).await;
    assert_eq!(sent.producer, "feedback");
    assert_eq!(events::actor_of(&sent), Some(feedback_for("agent-7")), "for the agent who resolved the case");
    let Some(Event::SurveySent(e)) = sent.event else { panic!("not SurveySent") };
    assert_eq!(e.survey_id, survey.survey_id);

    // Resolved again (another event): still one survey.
    server.publish(streams::INTAKE, &case_resolved(id, base())).await;
    let again = server.client.list_surveys(list(id)).await.unwrap().into_inner().surveys;
    assert_eq!(again, std::slice::from_ref(&survey));

    let answer = pb::SubmitSurveyResponseRequest {
        survey_id: survey.survey_id.clone(),
        score: 5,
        comment: "客服很快就帮我们改签了".into(),
    };
    let answered =
        server.client.submit_survey_response(answer.clone()).await.unwrap().into_inner().survey.unwrap();
    assert_eq!(answered.status, pb::SurveyStatus::Answered as i32);
    assert_eq!((answered.score, answered.comment.as_str()), (5, "客服很快就帮我们改签了"));
    assert!(answered.answered_at.is_some());
    let got =
        server.client.get_survey(pb::GetSurveyRequest { survey_id: survey.survey_id.clone() }).await.unwrap();
    assert_eq!(got.into_inner().survey, Some(answered.clone()));

    let event = next_event(&mut downstream).await;
    assert_eq!(events::actor_of(&event), Some(Actor::user("admin-1", ["admin"])), "the caller answered");
    let Some(Event::SurveyAnswered(e)) = event.event else { panic!("not SurveyAnswered") };
    assert_eq!((e.survey_id, e.score, e.answered_at), (survey.survey_id.clone(), 5, answered.answered_at));
    assert_eq!(event.case_id, case_id(id));

    let twice = server.client.submit_survey_response(answer).await.unwrap_err();
    assert_eq!(twice.code(), tonic::Code::FailedPrecondition);

    server.stop().await;
}

#[tokio::test]
async fn bad_requests_name_the_field_and_unknown_surveys_are_not_found() {
    let mut server = start().await;
    let c = &mut server.client;
    let some_survey = || Some(common::SurveyId { value: SurveyId::new().to_string() });

    let missing = c.get_survey(pb::GetSurveyRequest { survey_id: None }).await.unwrap_err();
    assert_eq!(
        (missing.code(), fields(&missing)),
        (tonic::Code::InvalidArgument, vec!["survey_id.value".to_owned()])
    );
    let unknown = c.get_survey(pb::GetSurveyRequest { survey_id: some_survey() }).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    let no_case = c.list_surveys(pb::ListSurveysRequest { case_id: None }).await.unwrap_err();
    assert_eq!(
        (no_case.code(), fields(&no_case)),
        (tonic::Code::InvalidArgument, vec!["case_id.value".to_owned()])
    );
    let bad_case = pb::ListSurveysRequest { case_id: Some(common::CaseId { value: "DT-0000001".into() }) };
    let bad_case = c.list_surveys(bad_case).await.unwrap_err();
    assert_eq!(fields(&bad_case), ["case_id.value"]);

    let zero = pb::SubmitSurveyResponseRequest { survey_id: some_survey(), score: 0, comment: String::new() };
    let zero = c.submit_survey_response(zero).await.unwrap_err();
    assert_eq!((zero.code(), fields(&zero)), (tonic::Code::InvalidArgument, vec!["score".to_owned()]));
    let long = pb::SubmitSurveyResponseRequest { survey_id: None, score: 6, comment: "x".repeat(2_001) };
    let long = c.submit_survey_response(long).await.unwrap_err();
    assert_eq!(long.code(), tonic::Code::InvalidArgument);
    assert_eq!(fields(&long), ["survey_id.value", "score", "comment"]);

    let ghost =
        pb::SubmitSurveyResponseRequest { survey_id: some_survey(), score: 3, comment: String::new() };
    let ghost = c.submit_survey_response(ghost).await.unwrap_err();
    assert_eq!(ghost.code(), tonic::Code::NotFound);

    server.stop().await;
}

#[tokio::test]
async fn run_serves_on_its_own_bus_until_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let server = detour_testkit::Server::run_with(
        sqlite_settings(dir.path()),
        |settings, listener, stop| async move { detour_feedback::run(&settings, listener, stop).await },
    )
    .await;
    server.wait_serving(detour_proto::service_names::FEEDBACK).await;
    server.stop().await;
}

/// A client calling as the traveler app, for the traveler signed in to it.
async fn traveler_app_client(server: &detour_testkit::Server) -> FeedbackServiceClient<Channel> {
    let token = server.issuer.mint_service("traveler-app", Some("traveler-42"), Duration::from_secs(3600));
    let bearer = Bearer::new(&token.unwrap()).unwrap();
    FeedbackServiceClient::new(InterceptedService::new(server.raw_channel().await, bearer))
}

#[tokio::test]
async fn answers_and_refusals_are_audited_as_the_caller() {
    const RPC: &str = "detour.feedback.v1.FeedbackService/SubmitSurveyResponse";
    let host = start().await;
    let mut admin = FeedbackServiceClient::new(host.server.channel_as("admin-3", &[Role::Admin]).await);

    let ghost = pb::SubmitSurveyResponseRequest {
        survey_id: Some(common::SurveyId { value: SurveyId::new().to_string() }),
        score: 3,
        comment: String::new(),
    };
    let err = admin.submit_survey_response(ghost).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    let trail = host.audit_of("admin-3").await;
    assert_eq!(trail.len(), 1, "{trail:?}");
    let refused = &trail[0];
    assert_eq!(refused.service, "feedback");
    assert_eq!(refused.outcome, "not_found");
    assert_eq!(refused.action, RPC);
    assert_eq!(refused.case_id, None, "an unknown survey names no case");
    assert!(refused.targets.is_empty());
    let actor = refused.actor.as_ref().unwrap();
    assert_eq!(actor.kind, common::ActorKind::User as i32);
    assert_eq!((actor.id.as_str(), actor.roles.as_slice()), ("admin-3", &["admin".to_owned()][..]));

    let zero = pb::SubmitSurveyResponseRequest { survey_id: None, score: 0, comment: String::new() };
    assert_eq!(admin.submit_survey_response(zero).await.unwrap_err().code(), tonic::Code::InvalidArgument);
    assert_eq!(host.audit_of("admin-3").await[0].outcome, "invalid_argument");

    // The agent resolves a case; the traveler answers its survey through their app, twice.
    let mut downstream = host.bus.subscribe(streams::FEEDBACK, "downstream-test", "t1").await.unwrap();
    let case_id = CaseId::new();
    detour_testkit::publish(&host.bus, streams::INTAKE, &case_resolved(case_id, base())).await;
    let list = pb::ListSurveysRequest { case_id: Some(common::CaseId { value: case_id.to_string() }) };
    let survey = admin.list_surveys(list).await.unwrap().into_inner().surveys.remove(0);
    let mut app = traveler_app_client(&host.server).await;
    let answer = pb::SubmitSurveyResponseRequest {
        survey_id: survey.survey_id.clone(),
        score: 4,
        comment: "Quick".into(),
    };
    app.submit_survey_response(answer.clone()).await.unwrap();
    let twice = app.submit_survey_response(answer).await.unwrap_err();
    assert_eq!(twice.code(), tonic::Code::FailedPrecondition, "{twice:?}");

    let by_case = audit_pb::ListAuditRecordsRequest {
        case_id: Some(common::CaseId { value: case_id.to_string() }),
        ..Default::default()
    };
    let trail = host.audit(by_case).await;
    let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        audit_summary(&trail),
        [s("traveler-app", "failed_precondition"), s("traveler-app", "ok"), s("feedback", "ok")]
    );
    assert_eq!((trail[0].action.as_str(), trail[1].action.as_str()), (RPC, RPC));
    assert_eq!(trail[2].action, "event detour.events.v1.CaseResolved");
    let app_actor = trail[1].actor.as_ref().unwrap();
    assert_eq!(app_actor.kind, common::ActorKind::Service as i32);
    assert_eq!(app_actor.on_behalf_of, "traveler-42");
    assert_eq!(trail[2].actor.as_ref().unwrap().on_behalf_of, "agent-7");
    let target = audit_pb::AuditTarget { kind: "survey".into(), id: survey.survey_id.unwrap().value };
    for r in &trail[1..] {
        assert_eq!(r.targets, std::slice::from_ref(&target), "{r:?}");
    }
    for r in &trail {
        assert_eq!(r.trace_id.len(), 32, "a trace id on {r:?}");
    }
    assert_eq!(audit_summary(&host.audit_of("traveler-42").await), audit_summary(&trail[..2]));

    let sent = next_event(&mut downstream).await;
    assert_eq!(events::actor_of(&sent), Some(feedback_for("agent-7")));
    let answered = next_event(&mut downstream).await;
    assert!(matches!(answered.event, Some(Event::SurveyAnswered(_))), "{answered:?}");
    assert_eq!(events::actor_of(&answered), Some(traveler_app()));

    drop((admin, app));
    host.server.stop().await;
}
