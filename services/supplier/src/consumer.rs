//! Opens a supplier request when triage says the case's supplier must be asked.

use std::sync::Arc;

use async_trait::async_trait;
use detour_audit::Audit;
use detour_domain::{Actor, CaseCategory, Instant, Severity, SupplierRequestId, events, time, wire};
use detour_events::consumer::{EventHandler, HandlerError};
use detour_proto::common::v1 as common;
use detour_proto::events::v1::{Envelope, SupplierRequestOpened, envelope::Event};

use crate::NAME;
use crate::model::{NewSupplierRequest, Opened, response_within};
use crate::repo::SupplierRepository;

/// The consumer group supplier coordination reads triage's stream with.
pub const GROUP: &str = "supplier";

pub struct RequestOpener {
    repo: Arc<dyn SupplierRepository>,
}

impl RequestOpener {
    pub fn new(repo: Arc<dyn SupplierRepository>) -> Self {
        Self { repo }
    }
}

fn permanent(why: impl Into<String>) -> HandlerError {
    HandlerError::permanent(why.into())
}

/// The request a triage event calls for, opened at `now`; `None` for other events and for cases
/// that need no supplier.
pub(crate) fn request_for(env: &Envelope, now: Instant) -> Result<Option<NewSupplierRequest>, HandlerError> {
    let Some(Event::CaseTriaged(t)) = env.event.as_ref() else { return Ok(None) };
    if !t.needs_supplier {
        return Ok(None);
    }
    let case_id = events::case_id_of(env).ok_or_else(|| permanent("event names no valid case"))?;
    let triaged_at = events::occurred_at(env).ok_or_else(|| permanent("event has no valid occurred_at"))?;
    let category =
        CaseCategory::from_proto(t.category).ok_or_else(|| permanent("triage without category"))?;
    let severity = Severity::from_proto(t.severity).ok_or_else(|| permanent("triage without severity"))?;
    let segment =
        t.segment.as_ref().ok_or_else(|| permanent("triage asks for a supplier but carries no segment"))?;
    let segment = wire::segment_from_proto(segment)
        .map_err(|v| permanent(format!("triage carries a bad segment: {v}")))?;
    Ok(Some(NewSupplierRequest {
        id: SupplierRequestId::new(),
        case_id,
        supplier_code: segment.supplier_code.clone(),
        segment,
        category,
        severity,
        opened_at: now,
        // The traveler has been waiting since triage, not since this consumer caught up.
        response_due: triaged_at + response_within(severity),
    }))
}

/// The `SupplierRequestOpened` event for a new request, opened by `actor` (supplier
/// coordination acting for the user behind the triage).
pub fn request_opened(new: &NewSupplierRequest, actor: &Actor) -> Envelope {
    events::envelope(
        NAME,
        new.case_id,
        new.opened_at,
        actor,
        Event::SupplierRequestOpened(SupplierRequestOpened {
            request_id: Some(common::SupplierRequestId { value: new.id.to_string() }),
            supplier_code: new.supplier_code.clone(),
            response_due: Some(time::to_proto(new.response_due)),
        }),
    )
}

#[async_trait]
impl EventHandler for RequestOpener {
    async fn handle(&self, event_id: &str, envelope: Envelope) -> Result<(), HandlerError> {
        let Some(new) = request_for(&envelope, crate::model::now())? else { return Ok(()) };
        let audit = Audit::of_event(NAME, &envelope);
        let opened = request_opened(&new, &audit.actor);
        let case_id = new.case_id;
        match self.repo.open_request(GROUP, event_id, new, opened, &audit).await {
            Ok(Opened::Opened(id)) => {
                tracing::info!(%case_id, request_id = %id, "supplier request opened");
                Ok(())
            }
            Ok(Opened::CaseHasRequest(id)) => {
                tracing::info!(%case_id, request_id = %id, "case triaged again; its supplier request stands");
                Ok(())
            }
            Ok(Opened::AlreadyProcessed) => {
                tracing::debug!(event_id, "event already applied");
                Ok(())
            }
            Err(e) => Err(HandlerError::transient(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use detour_proto::events::v1::CaseTriaged;

    fn triaged(severity: Severity, needs_supplier: bool) -> Envelope {
        let segment = common::Segment {
            kind: common::SegmentKind::Hotel as i32,
            supplier_code: "htl42".into(),
            service_reference: "R-7".into(),
            starts_at: Some(prost_types::Timestamp { seconds: 1_796_000_000, nanos: 0 }),
            booking_reference: "ORD-1".into(),
            ..Default::default()
        };
        events::envelope(
            "triage",
            detour_domain::CaseId::new(),
            time::from_micros(1_796_000_000_000_000).unwrap(),
            &Actor::service("triage", Some("u-1".into())),
            Event::CaseTriaged(CaseTriaged {
                category: CaseCategory::HotelProblem.to_proto(),
                severity: severity.to_proto(),
                needs_supplier,
                segment: Some(segment),
                ..Default::default()
            }),
        )
    }

    #[test]
    fn the_deadline_counts_from_triage_and_the_supplier_comes_from_the_segment() {
        let now = time::from_micros(1_796_000_600_000_000).unwrap();
        let new = request_for(&triaged(Severity::Critical, true), now).unwrap().unwrap();
        assert_eq!(new.supplier_code, "HTL42");
        assert_eq!(new.opened_at, now);
        assert_eq!(time::to_micros(new.response_due), 1_796_000_000_000_000 + 2 * 3_600_000_000);
        let new = request_for(&triaged(Severity::Low, true), now).unwrap().unwrap();
        assert_eq!(time::to_micros(new.response_due), 1_796_000_000_000_000 + 24 * 3_600_000_000);
    }

    #[test]
    fn cases_without_a_supplier_question_and_other_events_are_ignored() {
        assert!(request_for(&triaged(Severity::High, false), time::now()).unwrap().is_none());
        let mut other = triaged(Severity::High, true);
        other.event = Some(Event::CaseResolved(Default::default()));
        assert!(request_for(&other, time::now()).unwrap().is_none());
    }

    #[test]
    fn a_triage_without_a_segment_is_a_permanent_failure() {
        let mut env = triaged(Severity::High, true);
        if let Some(Event::CaseTriaged(t)) = env.event.as_mut() {
            t.segment = None;
        }
        assert!(matches!(request_for(&env, time::now()), Err(HandlerError::Permanent(_))));
    }
}
