//! The repository contract: one suite, written once, run against a fresh SQLite file and a
//! fresh PostgreSQL database.

use std::sync::Arc;

use detour_domain::events::streams;
use detour_domain::{CaseId, SurveyId, time};
use detour_feedback::consumer::{GROUP, survey_sent};
use detour_feedback::error::FeedbackError;
use detour_feedback::grpc::survey_answered;
use detour_feedback::model::{Answer, Applied, Score, Survey, SurveyStatus};
use detour_feedback::repo::{self, FeedbackRepository};
use detour_proto::events::v1::envelope::Event;
use detour_testkit::{Backend, TestDb, event_id, outbox};

use crate::common::{at, base};

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
        let outcome = self.repo.send_survey(GROUP, &event, &survey, &survey_sent(&survey)).await.unwrap();
        assert_eq!(outcome, Applied::Applied);
        survey
    }
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
    let sent = survey_sent(&survey);
    let event = detour_domain::EventId::new().to_string();
    assert_eq!(s.repo.send_survey(GROUP, &event, &survey, &sent).await.unwrap(), Applied::Applied);
    assert_eq!(s.repo.send_survey(GROUP, &event, &survey, &sent).await.unwrap(), Applied::Unchanged);

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
    let outcome = s.repo.send_survey(GROUP, &event, &second, &survey_sent(&second)).await.unwrap();
    assert_eq!(outcome, Applied::Unchanged);
    assert_eq!(s.repo.list_surveys(case_id).await.unwrap(), [first]);
    assert_eq!(s.repo.get_survey(second.id).await.unwrap(), None);
    assert_eq!(outbox(&s.db).await.len(), 1);
}

async fn a_survey_takes_one_answer(s: Store) {
    let sent = s.send(CaseId::new()).await;
    let first = answer(4, Some("Fast and friendly"));
    let stored = s.repo.answer_survey(sent.id, &first, &survey_answered(&sent, &first)).await.unwrap();
    assert_eq!(stored.status(), SurveyStatus::Answered);
    assert_eq!(stored.answer.as_ref(), Some(&first));
    assert_eq!(s.repo.get_survey(sent.id).await.unwrap(), Some(stored.clone()));

    let second = answer(1, None);
    let err = s.repo.answer_survey(sent.id, &second, &survey_answered(&sent, &second)).await.unwrap_err();
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
    let stored = s.repo.answer_survey(sent.id, &bare, &survey_answered(&sent, &bare)).await.unwrap();
    assert_eq!(stored.answer, Some(bare));
}

async fn answering_an_unknown_survey_is_not_found(s: Store) {
    let ghost = survey(CaseId::new());
    let a = answer(3, None);
    let err = s.repo.answer_survey(ghost.id, &a, &survey_answered(&ghost, &a)).await.unwrap_err();
    assert!(matches!(err, FeedbackError::NotFound(id) if id == ghost.id), "{err:?}");
    assert_eq!(s.repo.get_survey(ghost.id).await.unwrap(), None);
    assert!(outbox(&s.db).await.is_empty());
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
);
