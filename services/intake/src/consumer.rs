//! Keeps each case's view current from the other services' events.

use std::sync::Arc;

use async_trait::async_trait;
use detour_audit::Audit;
use detour_domain::{CaseCategory, CaseStatus, Severity, events, sla, time};
use detour_events::consumer::{EventHandler, HandlerError};
use detour_proto::events::v1::{Envelope, SupplierOutcome, envelope::Event};

use crate::error::IntakeError;
use crate::grpc::case_resolved;
use crate::model::{Applied, CaseChange, Resolution, TimelineEntry, TriageFacts};
use crate::repo::IntakeRepository;

/// The consumer group intake reads every other service's stream with.
pub const GROUP: &str = "intake";

pub struct CaseViewUpdater {
    repo: Arc<dyn IntakeRepository>,
}

impl CaseViewUpdater {
    pub fn new(repo: Arc<dyn IntakeRepository>) -> Self {
        Self { repo }
    }
}

fn permanent(why: impl Into<String>) -> HandlerError {
    HandlerError::permanent(why.into())
}

fn money(m: Option<&detour_proto::common::v1::Money>) -> String {
    m.map(|m| {
        let mut v = detour_errors::Violations::new();
        detour_domain::wire::money_from_proto(&mut v, "amount", m)
            .map_or_else(|| "an amount".to_owned(), |m| m.to_string())
    })
    .unwrap_or_else(|| "an amount".to_owned())
}

/// What an event means for the case view; `None` for events intake does not track.
fn change_for(env: &Envelope) -> Result<Option<CaseChange>, HandlerError> {
    let case_id = events::case_id_of(env).ok_or_else(|| permanent("event names no valid case"))?;
    let at = events::occurred_at(env).ok_or_else(|| permanent("event has no valid occurred_at"))?;
    let actor = env.producer.clone();
    let entry = |kind: &str, summary: String| TimelineEntry {
        at,
        kind: kind.to_owned(),
        actor: actor.clone(),
        summary,
    };
    let Some(event) = env.event.as_ref() else { return Err(permanent("event has no payload")) };
    let change = match event {
        Event::CaseTriaged(t) => {
            let category =
                CaseCategory::from_proto(t.category).ok_or_else(|| permanent("triage without category"))?;
            let severity =
                Severity::from_proto(t.severity).ok_or_else(|| permanent("triage without severity"))?;
            let first_response_due = t
                .first_response_due
                .as_ref()
                .and_then(time::from_proto)
                .unwrap_or(at + sla::first_response_within(Some(category), Some(severity)));
            let resolution_due = t
                .resolution_due
                .as_ref()
                .and_then(time::from_proto)
                .unwrap_or(at + sla::resolution_within(category, severity));
            CaseChange {
                case_id,
                status: Some(CaseStatus::Triaged),
                triage: Some(TriageFacts {
                    category,
                    severity,
                    queue: t.queue.clone(),
                    first_response_due,
                    resolution_due,
                }),
                timeline: entry(
                    "case.triaged",
                    format!("Classified {category}, severity {severity}, queue {}: {}", t.queue, t.rationale),
                ),
                resolve: None,
            }
        }
        Event::SupplierRequestOpened(r) => CaseChange {
            case_id,
            status: Some(CaseStatus::AwaitingSupplier),
            triage: None,
            timeline: entry(
                "supplier.requested",
                format!("Asked supplier {} for its account and alternatives", r.supplier_code),
            ),
            resolve: None,
        },
        Event::SupplierResponded(r) => {
            let outcome = SupplierOutcome::try_from(r.outcome).map_or("an answer", |o| match o {
                SupplierOutcome::AlternativeOffered => "an alternative",
                SupplierOutcome::FaultAccepted => "acceptance of fault",
                SupplierOutcome::Disputed => "a dispute of the account",
                SupplierOutcome::ExtraordinaryCircumstances => "extraordinary circumstances",
                SupplierOutcome::Unspecified => "an answer",
            });
            CaseChange {
                case_id,
                status: None,
                triage: None,
                timeline: entry(
                    "supplier.responded",
                    format!("Supplier {} answered with {outcome}", r.supplier_code),
                ),
                resolve: None,
            }
        }
        Event::OfferProposed(o) => CaseChange {
            case_id,
            status: Some(CaseStatus::OfferProposed),
            triage: None,
            timeline: entry(
                "offer.proposed",
                format!("Offered {} ({})", money(o.amount.as_ref()), o.policy_rule),
            ),
            resolve: None,
        },
        Event::OfferAccepted(o) => {
            let text = format!("Traveler accepted the offer of {}", money(o.amount.as_ref()));
            CaseChange {
                case_id,
                status: None,
                triage: None,
                timeline: entry("offer.accepted", text.clone()),
                resolve: Some(Resolution { text, at }),
            }
        }
        Event::SurveySent(_) => CaseChange {
            case_id,
            status: None,
            triage: None,
            timeline: entry("survey.sent", "Satisfaction survey sent".to_owned()),
            resolve: None,
        },
        Event::SurveyAnswered(s) => CaseChange {
            case_id,
            status: None,
            triage: None,
            timeline: entry("survey.answered", format!("Traveler rated the handling {} of 5", s.score)),
            resolve: None,
        },
        Event::CaseOpened(_) | Event::CaseResolved(_) => return Ok(None),
    };
    Ok(Some(change))
}

#[async_trait]
impl EventHandler for CaseViewUpdater {
    async fn handle(&self, event_id: &str, envelope: Envelope) -> Result<(), HandlerError> {
        let Some(change) = change_for(&envelope)? else { return Ok(()) };
        let audit = Audit::of_event(crate::NAME, &envelope);
        let resolved = change.resolve.as_ref().map(|r| case_resolved(change.case_id, r, &audit.actor));
        match self.repo.apply_change(GROUP, event_id, change, resolved, &audit).await {
            Ok(Applied::Applied) => Ok(()),
            Ok(Applied::AlreadyProcessed) => {
                tracing::debug!(event_id, "event already applied");
                Ok(())
            }
            // Intake writes the case before any service can hear of it, so an unknown case
            // is a bad event, not a race.
            Err(IntakeError::CaseNotFound(id)) => Err(permanent(format!("case {id} is unknown"))),
            Err(e) => Err(HandlerError::transient(e)),
        }
    }
}
