//! Surveys the traveler once intake resolves their case.

use std::sync::Arc;

use async_trait::async_trait;
use detour_audit::Audit;
use detour_domain::{Actor, SurveyId, events, time};
use detour_events::consumer::{EventHandler, HandlerError};
use detour_proto::common::v1 as common;
use detour_proto::events::v1::{Envelope, SurveySent, envelope::Event};

use crate::NAME;
use crate::model::{self, Applied, Survey};
use crate::repo::FeedbackRepository;

/// The consumer group feedback reads intake's stream with.
pub const GROUP: &str = "feedback";

pub struct SurveySender {
    repo: Arc<dyn FeedbackRepository>,
}

impl SurveySender {
    pub fn new(repo: Arc<dyn FeedbackRepository>) -> Self {
        Self { repo }
    }
}

/// The `SurveySent` event of a new survey, sent by `actor` (feedback acting for the user who
/// resolved the case).
pub fn survey_sent(survey: &Survey, actor: &Actor) -> Envelope {
    events::envelope(
        NAME,
        survey.case_id,
        survey.sent_at,
        actor,
        Event::SurveySent(SurveySent {
            survey_id: Some(common::SurveyId { value: survey.id.to_string() }),
            sent_at: Some(time::to_proto(survey.sent_at)),
        }),
    )
}

#[async_trait]
impl EventHandler for SurveySender {
    async fn handle(&self, event_id: &str, envelope: Envelope) -> Result<(), HandlerError> {
        match envelope.event.as_ref() {
            Some(Event::CaseResolved(_)) => {}
            Some(_) => return Ok(()),
            None => return Err(HandlerError::permanent("event has no payload")),
        }
        let case_id = events::case_id_of(&envelope)
            .ok_or_else(|| HandlerError::permanent("event names no valid case"))?;
        let survey = Survey { id: SurveyId::new(), case_id, sent_at: model::now(), answer: None };
        let audit = Audit::of_event(NAME, &envelope);
        let sent = survey_sent(&survey, &audit.actor);
        match self.repo.send_survey(GROUP, event_id, &survey, &sent, &audit).await {
            Ok(Applied::Applied) => {
                tracing::info!(%case_id, survey_id = %survey.id, "survey sent");
                Ok(())
            }
            Ok(Applied::Unchanged) => {
                tracing::debug!(event_id, %case_id, "event already applied or the case has its survey");
                Ok(())
            }
            Err(e) => Err(HandlerError::transient(e)),
        }
    }
}
