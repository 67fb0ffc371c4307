//! Triages each case intake opens, and takes resolved cases out of their queues.

use std::sync::Arc;

use async_trait::async_trait;
use detour_audit::Audit;
use detour_domain::{Actor, Segment, events, time, wire};
use detour_events::consumer::{EventHandler, HandlerError};
use detour_proto::events::v1::{CaseOpened, CaseTriaged, Envelope, envelope::Event};

use crate::NAME;
use crate::classify;
use crate::error::TriageError;
use crate::model::{Applied, OpenedCase, Triage};
use crate::repo::TriageRepository;

/// The consumer group triage reads intake's stream with.
pub const GROUP: &str = "triage";

pub struct Triager {
    repo: Arc<dyn TriageRepository>,
}

impl Triager {
    pub fn new(repo: Arc<dyn TriageRepository>) -> Self {
        Self { repo }
    }
}

fn permanent(why: impl Into<String>) -> HandlerError {
    HandlerError::permanent(why.into())
}

/// The case an envelope's `CaseOpened` describes. Intake validated it on the way in, so a
/// payload that does not validate here is a bad event, never worth retrying.
pub fn opened_case(env: &Envelope, opened: &CaseOpened) -> Result<OpenedCase, HandlerError> {
    let case_id = events::case_id_of(env).ok_or_else(|| permanent("event names no valid case"))?;
    let received_at = opened
        .received_at
        .as_ref()
        .and_then(time::from_proto)
        .or_else(|| events::occurred_at(env))
        .map(time::truncate)
        .ok_or_else(|| permanent("CaseOpened has no valid received_at"))?;
    let segment = opened.segment.as_ref().ok_or_else(|| permanent("CaseOpened has no segment"))?;
    let segment =
        wire::segment_from_proto(segment).map_err(|v| permanent(format!("CaseOpened segment: {v}")))?;
    Ok(OpenedCase { case_id, description: opened.description.clone(), segment, received_at })
}

/// The `CaseTriaged` event of a triage, made by `actor` (triage acting for whoever opened the
/// case). The segment travels with it so that supplier and compensation need not read intake's
/// data.
pub fn case_triaged(triage: &Triage, segment: &Segment, actor: &Actor) -> Envelope {
    events::envelope(
        NAME,
        triage.case_id,
        triage.triaged_at,
        actor,
        Event::CaseTriaged(CaseTriaged {
            category: triage.category.to_proto(),
            severity: triage.severity.to_proto(),
            queue: triage.queue.as_str().to_owned(),
            first_response_due: Some(time::to_proto(triage.first_response_due)),
            resolution_due: Some(time::to_proto(triage.resolution_due)),
            needs_supplier: triage.needs_supplier,
            segment: Some(wire::segment_to_proto(segment)),
            rationale: triage.rationale.clone(),
        }),
    )
}

fn outcome(event_id: &str, result: Result<Applied, TriageError>) -> Result<(), HandlerError> {
    match result {
        Ok(Applied::Applied) => Ok(()),
        Ok(Applied::Unchanged) => {
            tracing::debug!(event_id, "event already applied or changes nothing");
            Ok(())
        }
        // CaseOpened comes first on intake's stream, but a retried CaseOpened can fall behind
        // the case's CaseResolved: wait for it rather than give up on the case.
        Err(TriageError::NotFound(id)) => {
            Err(HandlerError::transient(format!("case {id} is not triaged yet")))
        }
        Err(e) => Err(HandlerError::transient(e)),
    }
}

#[async_trait]
impl EventHandler for Triager {
    async fn handle(&self, event_id: &str, envelope: Envelope) -> Result<(), HandlerError> {
        let audit = Audit::of_event(NAME, &envelope);
        match envelope.event.as_ref() {
            Some(Event::CaseOpened(opened)) => {
                let case = opened_case(&envelope, opened)?;
                let triage = classify::triage(&case, time::now());
                let event = case_triaged(&triage, &case.segment, &audit.actor);
                let result = self.repo.record_triage(GROUP, event_id, &triage, &event, &audit).await;
                if let Ok(Applied::Applied) = result {
                    tracing::info!(
                        case_id = %triage.case_id, category = %triage.category, severity = %triage.severity,
                        queue = %triage.queue, "case triaged"
                    );
                }
                outcome(event_id, result)
            }
            Some(Event::CaseResolved(resolved)) => {
                let case_id =
                    events::case_id_of(&envelope).ok_or_else(|| permanent("event names no valid case"))?;
                let at = resolved
                    .resolved_at
                    .as_ref()
                    .and_then(time::from_proto)
                    .or_else(|| events::occurred_at(&envelope))
                    .map(time::truncate)
                    .ok_or_else(|| permanent("CaseResolved has no valid resolved_at"))?;
                outcome(event_id, self.repo.resolve(GROUP, event_id, case_id, at, &audit).await)
            }
            Some(_) => Ok(()),
            None => Err(permanent("event has no payload")),
        }
    }
}
