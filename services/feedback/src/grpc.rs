//! The gRPC boundary: requests are validated into domain values here and answers built from
//! them; nothing below this module sees a proto type other than the event envelope.

use std::sync::Arc;

use detour_audit::{Audit, AuditLog};
use detour_domain::{Actor, CaseId, SurveyId, events, time, wire};
use detour_errors::Violations;
use detour_proto::common::v1 as common;
use detour_proto::events::v1::{Envelope, SurveyAnswered, envelope::Event};
use detour_proto::feedback::v1 as pb;
use detour_proto::feedback::v1::feedback_service_server::FeedbackService;
use tonic::{Request, Response, Status};

use crate::NAME;
use crate::error::FeedbackError;
use crate::model::{self, Answer, MAX_COMMENT_CHARS, Score, Survey};
use crate::repo::FeedbackRepository;

pub struct FeedbackApi {
    repo: Arc<dyn FeedbackRepository>,
    audit: AuditLog,
}

impl FeedbackApi {
    pub fn new(repo: Arc<dyn FeedbackRepository>, audit: AuditLog) -> Self {
        Self { repo, audit }
    }

    /// Records the answer `req` carries for `audit`'s caller. `case_id` is set as soon as the
    /// survey's case is known, so that a refusal is recorded against it.
    async fn answer(
        &self,
        audit: &Audit,
        req: &pb::SubmitSurveyResponseRequest,
        case_id: &mut Option<CaseId>,
    ) -> Result<Survey, FeedbackError> {
        let (id, answer) = answer_request(req)?;
        // Read first for the case the event is about; the repository checks the status again
        // inside its transaction, so a concurrent answer still loses.
        let survey = self.repo.get_survey(id).await?.ok_or(FeedbackError::NotFound(id))?;
        *case_id = Some(survey.case_id);
        if survey.answer.is_some() {
            return Err(FeedbackError::AlreadyAnswered(id));
        }
        let event = survey_answered(&survey, &answer, &audit.actor);
        let survey = self.repo.answer_survey(id, &answer, &event, audit).await?;
        tracing::info!(survey_id = %id, case_id = %survey.case_id, score = answer.score.get(), "survey answered");
        Ok(survey)
    }
}

pub fn survey_to_proto(s: &Survey) -> pb::Survey {
    pb::Survey {
        survey_id: Some(common::SurveyId { value: s.id.to_string() }),
        case_id: Some(common::CaseId { value: s.case_id.to_string() }),
        status: s.status().to_proto(),
        sent_at: Some(time::to_proto(s.sent_at)),
        score: s.answer.as_ref().map_or(0, |a| a.score.get()),
        comment: s.answer.as_ref().and_then(|a| a.comment.clone()).unwrap_or_default(),
        answered_at: s.answer.as_ref().map(|a| time::to_proto(a.answered_at)),
    }
}

/// The `SurveyAnswered` event of `survey` answered with `answer`, recorded by `actor`.
pub fn survey_answered(survey: &Survey, answer: &Answer, actor: &Actor) -> Envelope {
    events::envelope(
        NAME,
        survey.case_id,
        answer.answered_at,
        actor,
        Event::SurveyAnswered(SurveyAnswered {
            survey_id: Some(common::SurveyId { value: survey.id.to_string() }),
            score: answer.score.get(),
            answered_at: Some(time::to_proto(answer.answered_at)),
        }),
    )
}

fn survey_id(raw: Option<&common::SurveyId>) -> Result<SurveyId, FeedbackError> {
    wire::id_from_message("survey_id.value", raw).map_err(FeedbackError::Invalid)
}

fn answer_request(req: &pb::SubmitSurveyResponseRequest) -> Result<(SurveyId, Answer), FeedbackError> {
    let mut v = Violations::new();
    let id: Option<SurveyId> =
        wire::required_id(&mut v, "survey_id.value", req.survey_id.as_ref().map(|s| s.value.as_str()));
    let score = Score::new(req.score);
    if score.is_none() {
        v.add("score", format!("must be between {} and {}", Score::MIN, Score::MAX));
    }
    let comment = wire::text(&mut v, "comment", &req.comment, MAX_COMMENT_CHARS, true);
    match (id, score) {
        (Some(id), Some(score)) if v.is_empty() => {
            let comment = (!comment.is_empty()).then_some(comment);
            Ok((id, Answer { score, comment, answered_at: model::now() }))
        }
        _ => Err(FeedbackError::Invalid(v)),
    }
}

#[tonic::async_trait]
impl FeedbackService for FeedbackApi {
    async fn get_survey(
        &self,
        request: Request<pb::GetSurveyRequest>,
    ) -> Result<Response<pb::GetSurveyResponse>, Status> {
        let id = survey_id(request.get_ref().survey_id.as_ref())?;
        let survey = self.repo.get_survey(id).await?.ok_or(FeedbackError::NotFound(id))?;
        Ok(Response::new(pb::GetSurveyResponse { survey: Some(survey_to_proto(&survey)) }))
    }

    async fn list_surveys(
        &self,
        request: Request<pb::ListSurveysRequest>,
    ) -> Result<Response<pb::ListSurveysResponse>, Status> {
        let case_id: CaseId = wire::id_from_message("case_id.value", request.get_ref().case_id.as_ref())
            .map_err(FeedbackError::Invalid)?;
        let surveys = self.repo.list_surveys(case_id).await?;
        Ok(Response::new(pb::ListSurveysResponse { surveys: surveys.iter().map(survey_to_proto).collect() }))
    }

    async fn submit_survey_response(
        &self,
        request: Request<pb::SubmitSurveyResponseRequest>,
    ) -> Result<Response<pb::SubmitSurveyResponseResponse>, Status> {
        let audit = Audit::of_request(&request)?;
        let req = request.into_inner();
        let mut case_id = None;
        let result = self.answer(&audit, &req, &mut case_id).await;
        let survey = self.audit.refusal(&audit, case_id, result).await?;
        Ok(Response::new(pb::SubmitSurveyResponseResponse { survey: Some(survey_to_proto(&survey)) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(score: i32, comment: &str) -> pb::SubmitSurveyResponseRequest {
        pb::SubmitSurveyResponseRequest {
            survey_id: Some(common::SurveyId { value: SurveyId::new().to_string() }),
            score,
            comment: comment.into(),
        }
    }

    fn fields(err: FeedbackError) -> Vec<String> {
        match err {
            FeedbackError::Invalid(v) => v.as_slice().iter().map(|f| f.field.clone()).collect(),
            other => panic!("not a validation error: {other:?}"),
        }
    }

    #[test]
    fn an_answer_needs_a_score_from_one_to_five_and_a_short_comment() {
        let (_, answer) = answer_request(&request(4, "  Quick and kind  ")).unwrap();
        assert_eq!(answer.score.get(), 4);
        assert_eq!(answer.comment.as_deref(), Some("Quick and kind"));
        assert_eq!(answer_request(&request(5, " ")).unwrap().1.comment, None);
        assert_eq!(fields(answer_request(&request(0, "")).unwrap_err()), ["score"]);
        let long = "好".repeat(MAX_COMMENT_CHARS + 1);
        assert_eq!(fields(answer_request(&request(6, &long)).unwrap_err()), ["score", "comment"]);
        assert!(answer_request(&request(5, &"好".repeat(MAX_COMMENT_CHARS))).is_ok());
    }

    #[test]
    fn a_missing_survey_id_is_named() {
        let req = pb::SubmitSurveyResponseRequest { survey_id: None, score: 3, comment: String::new() };
        assert_eq!(fields(answer_request(&req).unwrap_err()), ["survey_id.value"]);
    }
}
