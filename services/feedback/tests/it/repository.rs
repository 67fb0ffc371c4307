//! The repository contract: one suite, written once, run against a fresh SQLite file and a
//! fresh PostgreSQL database.

use std::sync::Arc;

use detour_audit::{Audit, AuditFilter, AuditLog, AuditRecord, Target};
use detour_domain::events::{self, streams};
use detour_domain::{CaseId, SurveyId, time};
use detour_events::consumer::EventHandler;
use detour_feedback::consumer::{GROUP, SurveySender, survey_sent};
use detour_feedback::error::FeedbackError;
use detour_feedback::grpc::survey_answered;
use detour_feedback::model::{Answer, Applied, Score, Survey, SurveyStatus};
use detour_feedback::repo::{self, FeedbackRepository};
use detour_proto::events::v1::envelope::Event;
use detour_testkit::{Backend, TestDb, count_rows, event_id, outbox};

use crate::common::{at, base, case_opened, case_resolved, feedback_for, traveler_app};

pub struct Store {
    repo: Arc<dyn FeedbackRepository>,
    db: TestDb,
}

async fn store(backend: Backend) -> Store {
    let db = TestDb::fresh(backend, detour_feedback::NAME, detour_feedback::MIGRATIONS).await;
    Store { repo: repo::for_db(&db, None), db }
}

impl Store {
    /// Sends a survey for `case_id` as a fresh `CaseResolved` would.
    async fn send(&self, case_id: CaseId) -> Survey {
        let survey = survey(case_id);
        let event = detour_domain::EventId::new().to_string();
        let outcome =
            self.repo.send_survey(GROUP, &event, &survey, &sent(&survey), &resolution()).await.unwrap();
        assert_eq!(outcome, Applied::Applied);
        survey
    }

    /// Answers `survey` as the traveler's app does.
    async fn answer(&self, survey: &Survey, answer: &Answer) -> Result<Survey, FeedbackError> {
        let event = survey_answered(survey, answer, &traveler_app());
        self.repo.answer_survey(survey.id, answer, &event, &app_answers()).await
    }

    /// The case's audit trail, newest first.
    async fn trail(&self, case_id: CaseId) -> Vec<AuditRecord> {
        let filter = AuditFilter { case_id: Some(case_id), ..Default::default() };
        AuditLog::new(detour_feedback::NAME, (*self.db).clone()).list(&filter, None, 10).await.unwrap()
    }
}

/// What the consumer audits applying the `CaseResolved` of agent-7.
fn resolution() -> Audit {
    Audit {
        actor: feedback_for("agent-7"),
        action: "event detour.events.v1.CaseResolved".into(),
        trace_id: None,
    }
}

/// What the handler audits when the traveler's app submits an answer.
fn app_answers() -> Audit {
    Audit {
        actor: traveler_app(),
        action: "detour.feedback.v1.FeedbackService/SubmitSurveyResponse".into(),
        trace_id: None,
    }
}

/// The `SurveySent` of `survey`, sent for agent-7.
fn sent(survey: &Survey) -> detour_proto::events::v1::Envelope {
    survey_sent(survey, &feedback_for("agent-7"))
}

fn survey(case_id: CaseId) -> Survey {
    Survey { id: SurveyId::new(), case_id, sent_at: base(), answer: None }
}

fn answer(score: i32, comment: Option<&str>) -> Answer {
    Answer {
        score: Score::new(score).unwrap(),
        comment: comment.map(str::to_owned),
        answered_at: at(time::to_micros(base()) + 86_400_000_000),
    }
}

async fn applying_a_resolution_twice_sends_one_survey_with_one_event(s: Store) {
    let case_id = CaseId::new();
    let survey = survey(case_id);
    let sent = sent(&survey);
    let event = detour_domain::EventId::new().to_string();
    assert_eq!(
        s.repo.send_survey(GROUP, &event, &survey, &sent, &resolution()).await.unwrap(),
        Applied::Applied
    );
    assert_eq!(
        s.repo.send_survey(GROUP, &event, &survey, &sent, &resolution()).await.unwrap(),
        Applied::Unchanged
    );

    let stored = s.repo.get_survey(survey.id).await.unwrap().unwrap();
    assert_eq!(stored, survey);
    assert_eq!(stored.status(), SurveyStatus::Sent);
    let outbox = outbox(&s.db).await;
    assert_eq!(outbox.len(), 1, "one SurveySent, however often the event is applied");
    let (stream, env) = &outbox[0];
    assert_eq!(stream, streams::FEEDBACK);
    assert_eq!(event_id(env), event_id(&sent));
    assert_eq!(env.case_id.as_ref().unwrap().value, case_id.to_string());
    let Some(Event::SurveySent(e)) = &env.event else { panic!("not SurveySent: {env:?}") };
    assert_eq!(e.survey_id.as_ref().unwrap().value, survey.id.to_string());
}

async fn a_second_resolution_of_a_case_sends_no_second_survey(s: Store) {
    let case_id = CaseId::new();
    let first = s.send(case_id).await;
    let second = survey(case_id);
    let event = detour_domain::EventId::new().to_string();
    let outcome = s.repo.send_survey(GROUP, &event, &second, &sent(&second), &resolution()).await.unwrap();
    assert_eq!(outcome, Applied::Unchanged);
    assert_eq!(s.repo.list_surveys(case_id).await.unwrap(), [first]);
    assert_eq!(s.repo.get_survey(second.id).await.unwrap(), None);
    assert_eq!(outbox(&s.db).await.len(), 1);
}

async fn a_survey_takes_one_answer(s: Store) {
    let sent = s.send(CaseId::new()).await;
    let first = answer(4, Some("Fast and friendly"));
    let stored = s.answer(&sent, &first).await.unwrap();
    assert_eq!(stored.status(), SurveyStatus::Answered);
    assert_eq!(stored.answer.as_ref(), Some(&first));
    assert_eq!(s.repo.get_survey(sent.id).await.unwrap(), Some(stored.clone()));

    let second = answer(1, None);
    let err = s.answer(&sent, &second).await.unwrap_err();
    assert!(matches!(err, FeedbackError::AlreadyAnswered(id) if id == sent.id), "{err:?}");
    assert_eq!(s.repo.get_survey(sent.id).await.unwrap(), Some(stored), "the first answer stands");

    let outbox = outbox(&s.db).await;
    assert_eq!(outbox.len(), 2, "SurveySent and one SurveyAnswered");
    let (stream, env) = &outbox[1];
    assert_eq!(stream, streams::FEEDBACK);
    let Some(Event::SurveyAnswered(e)) = &env.event else { panic!("not SurveyAnswered: {env:?}") };
    assert_eq!(e.score, 4);
    assert_eq!(e.answered_at.as_ref().and_then(time::from_proto), Some(first.answered_at));
}

async fn an_answer_without_a_comment_is_kept_without_one(s: Store) {
    let sent = s.send(CaseId::new()).await;
    let bare = answer(5, None);
    let stored = s.answer(&sent, &bare).await.unwrap();
    assert_eq!(stored.answer, Some(bare));
}

async fn answering_an_unknown_survey_is_not_found(s: Store) {
    let ghost = survey(CaseId::new());
    let a = answer(3, None);
    let err = s.answer(&ghost, &a).await.unwrap_err();
    assert!(matches!(err, FeedbackError::NotFound(id) if id == ghost.id), "{err:?}");
    assert_eq!(s.repo.get_survey(ghost.id).await.unwrap(), None);
    assert!(outbox(&s.db).await.is_empty());
    assert_eq!(count_rows(&s.db, "audit_log").await, 0, "a refusal is the handler's to record");
}

async fn surveys_are_listed_per_case(s: Store) {
    let a = s.send(CaseId::new()).await;
    let b = s.send(CaseId::new()).await;
    assert_eq!(s.repo.list_surveys(a.case_id).await.unwrap(), [a]);
    assert_eq!(s.repo.list_surveys(b.case_id).await.unwrap(), [b]);
    assert!(s.repo.list_surveys(CaseId::new()).await.unwrap().is_empty());
}

detour_testkit::both_backends!(
    store;
    applying_a_resolution_twice_sends_one_survey_with_one_event,
    a_second_resolution_of_a_case_sends_no_second_survey,
    a_survey_takes_one_answer,
    an_answer_without_a_comment_is_kept_without_one,
    answering_an_unknown_survey_is_not_found,
    surveys_are_listed_per_case,
    sending_and_answering_are_audited_once_each,
    the_consumer_surveys_for_the_agent_who_resolved_the_case,
);

async fn sending_and_answering_are_audited_once_each(s: Store) {
    let case_id = CaseId::new();
    let first = survey(case_id);
    let event = detour_domain::EventId::new().to_string();
    let applied = s.repo.send_survey(GROUP, &event, &first, &sent(&first), &resolution()).await.unwrap();
    assert_eq!(applied, Applied::Applied);
    // Redelivered, and resolved again under another event: nothing new, nothing audited.
    let again = s.repo.send_survey(GROUP, &event, &first, &sent(&first), &resolution()).await.unwrap();
    assert_eq!(again, Applied::Unchanged);
    let other = survey(case_id);
    let event = detour_domain::EventId::new().to_string();
    let again = s.repo.send_survey(GROUP, &event, &other, &sent(&other), &resolution()).await.unwrap();
    assert_eq!(again, Applied::Unchanged);

    let trail = s.trail(case_id).await;
    assert_eq!(trail.len(), 1, "{trail:?}");
    let r = &trail[0];
    assert_eq!(r.service, "feedback");
    assert_eq!(r.actor, feedback_for("agent-7"));
    assert_eq!(r.action, "event detour.events.v1.CaseResolved");
    assert_eq!(r.case_id, Some(case_id));
    assert_eq!(r.targets, [Target::new("survey", first.id)]);
    assert_eq!(r.outcome, "ok");

    s.answer(&first, &answer(2, Some("Slow"))).await.unwrap();
    s.answer(&first, &answer(5, None)).await.unwrap_err();
    let trail = s.trail(case_id).await;
    assert_eq!(trail.len(), 2, "the refused second answer is the handler's to record: {trail:?}");
    let r = &trail[0];
    assert_eq!(
        (&r.actor, r.action.as_str()),
        (&traveler_app(), "detour.feedback.v1.FeedbackService/SubmitSurveyResponse")
    );
    assert_eq!((r.case_id, r.outcome.as_str()), (Some(case_id), "ok"));
    assert_eq!(r.targets, [Target::new("survey", first.id)]);

    let events = outbox(&s.db).await;
    assert_eq!(events.len(), 2);
    assert_eq!(
        events::actor_of(&events[1].1),
        Some(traveler_app()),
        "the answer is the traveler's, via their app"
    );
}

async fn the_consumer_surveys_for_the_agent_who_resolved_the_case(s: Store) {
    let sender = SurveySender::new(s.repo.clone());
    let case_id = CaseId::new();
    let opened = case_opened(case_id, base());
    sender.handle(&event_id(&opened), opened).await.unwrap();
    assert!(s.trail(case_id).await.is_empty(), "an opening changes nothing here");

    let resolved = case_resolved(case_id, base());
    sender.handle(&event_id(&resolved), resolved.clone()).await.unwrap();
    sender.handle(&event_id(&resolved), resolved).await.unwrap();

    let events = outbox(&s.db).await;
    assert_eq!(events.len(), 1);
    assert!(matches!(events[0].1.event, Some(Event::SurveySent(_))), "{:?}", events[0].1);
    assert_eq!(
        events::actor_of(&events[0].1),
        Some(feedback_for("agent-7")),
        "the agent travels down the chain"
    );

    let survey = s.repo.list_surveys(case_id).await.unwrap().remove(0);
    let trail = s.trail(case_id).await;
    assert_eq!(trail.len(), 1, "{trail:?}");
    assert_eq!(
        (&trail[0].actor, trail[0].action.as_str()),
        (&feedback_for("agent-7"), "event detour.events.v1.CaseResolved")
    );
    assert_eq!(trail[0].targets, [Target::new("survey", survey.id)]);
}
