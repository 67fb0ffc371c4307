//! Proposes a case's first offer from triage's and the supplier's events.
//!
//! A case that needs no supplier gets its offer as soon as it is triaged; the others when the
//! supplier answers. The two arrive on different streams and may come in either order, so a
//! supplier answer for a case not triaged here yet is retried until its triage has arrived.

use std::sync::Arc;

use async_trait::async_trait;
use detour_audit::Audit;
use detour_domain::{Actor, CaseCategory, OfferId, Severity, events, wire};
use detour_errors::Violations;
use detour_events::consumer::{EventHandler, HandlerError};
use detour_proto::common::v1 as common;
use detour_proto::events::v1::{CaseTriaged, Envelope, OfferProposed, SupplierResponded, envelope::Event};

use crate::NAME;
use crate::model::{Applied, CaseContext, FIRST_RUNG, NewOffer, SupplierOutcome};
use crate::policy::Policy;
use crate::repo::CompensationRepository;

/// The consumer group compensation reads triage's and the supplier's streams with.
pub const GROUP: &str = "compensation";

pub struct OfferProposer {
    repo: Arc<dyn CompensationRepository>,
    policy: Policy,
}

impl OfferProposer {
    pub fn new(repo: Arc<dyn CompensationRepository>, policy: Policy) -> Self {
        Self { repo, policy }
    }

    /// The case's first offer under the policy, with its event made by `actor`.
    fn first_offer(
        &self,
        case: &CaseContext,
        supplier: Option<SupplierOutcome>,
        actor: &Actor,
    ) -> Result<(NewOffer, Envelope), HandlerError> {
        let proposal = self
            .policy
            .first_offer(case, supplier)
            .map_err(|e| permanent(format!("no offer can be worked out for case {}: {e}", case.case_id)))?;
        let offer = NewOffer {
            id: OfferId::new(),
            case_id: case.case_id,
            rung: FIRST_RUNG,
            amount: proposal.amount,
            policy_rule: proposal.rule.to_owned(),
            rationale: proposal.rationale,
            proposed_at: crate::model::now(),
        };
        let event = offer_proposed(&offer, actor);
        Ok((offer, event))
    }

    async fn triaged(
        &self,
        event_id: &str,
        env: &Envelope,
        t: &CaseTriaged,
        audit: &Audit,
    ) -> Result<Applied, HandlerError> {
        let context = context_of(env, t)?;
        let offer = if context.needs_supplier {
            None
        } else {
            Some(self.first_offer(&context, None, &audit.actor)?)
        };
        self.repo.record_triage(GROUP, event_id, context, offer, audit).await.map_err(HandlerError::transient)
    }

    async fn supplier_responded(
        &self,
        event_id: &str,
        env: &Envelope,
        r: &SupplierResponded,
        audit: &Audit,
    ) -> Result<Applied, HandlerError> {
        let case_id = events::case_id_of(env).ok_or_else(|| permanent("event names no valid case"))?;
        let outcome = SupplierOutcome::from_proto(r.outcome)
            .ok_or_else(|| permanent("supplier answer without outcome"))?;
        let context = self.repo.case_context(case_id).await.map_err(HandlerError::transient)?;
        let Some(context) = context else {
            return Err(HandlerError::transient(format!(
                "case {case_id} has not been triaged here yet; its triage event may still be on its way"
            )));
        };
        let (offer, event) = self.first_offer(&context, Some(outcome), &audit.actor)?;
        self.repo.propose(GROUP, event_id, offer, event, audit).await.map_err(HandlerError::transient)
    }
}

fn permanent(why: impl Into<String>) -> HandlerError {
    HandlerError::permanent(why.into())
}

/// What a triage event tells compensation about its case.
pub(crate) fn context_of(env: &Envelope, t: &CaseTriaged) -> Result<CaseContext, HandlerError> {
    let case_id = events::case_id_of(env).ok_or_else(|| permanent("event names no valid case"))?;
    let triaged_at = events::occurred_at(env).ok_or_else(|| permanent("event has no valid occurred_at"))?;
    let category =
        CaseCategory::from_proto(t.category).ok_or_else(|| permanent("triage without category"))?;
    let severity = Severity::from_proto(t.severity).ok_or_else(|| permanent("triage without severity"))?;
    // Only the price matters here; the rest of the segment is intake's and triage's business.
    let price = match t.segment.as_ref().and_then(|s| s.price.as_ref()) {
        None => None,
        Some(m) => {
            let mut v = Violations::new();
            let price = wire::money_from_proto(&mut v, "segment.price", m);
            Some(
                price
                    .filter(|_| v.is_empty())
                    .ok_or_else(|| permanent(format!("triage carries a bad price: {v}")))?,
            )
        }
    };
    Ok(CaseContext { case_id, category, severity, needs_supplier: t.needs_supplier, price, triaged_at })
}

/// The `OfferProposed` event for a new offer, proposed by `actor` (compensation acting for the
/// user behind the event that called for it).
pub fn offer_proposed(offer: &NewOffer, actor: &Actor) -> Envelope {
    events::envelope(
        NAME,
        offer.case_id,
        offer.proposed_at,
        actor,
        Event::OfferProposed(OfferProposed {
            offer_id: Some(common::OfferId { value: offer.id.to_string() }),
            amount: Some(wire::money_to_proto(&offer.amount)),
            policy_rule: offer.policy_rule.clone(),
            rationale: offer.rationale.clone(),
        }),
    )
}

#[async_trait]
impl EventHandler for OfferProposer {
    async fn handle(&self, event_id: &str, envelope: Envelope) -> Result<(), HandlerError> {
        let audit = Audit::of_event(NAME, &envelope);
        let applied = match envelope.event.as_ref() {
            Some(Event::CaseTriaged(t)) => self.triaged(event_id, &envelope, t, &audit).await?,
            Some(Event::SupplierResponded(r)) => {
                self.supplier_responded(event_id, &envelope, r, &audit).await?
            }
            _ => return Ok(()),
        };
        match applied {
            Applied::Applied { proposed: Some(offer_id) } => {
                tracing::info!(case_id = ?events::case_id_of(&envelope), %offer_id, "offer proposed");
            }
            Applied::Applied { proposed: None } => tracing::debug!(event_id, "event applied; no new offer"),
            Applied::AlreadyProcessed => tracing::debug!(event_id, "event already applied"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use detour_domain::{CaseId, Money, time};

    fn triaged(price: Option<common::Money>) -> (Envelope, CaseTriaged) {
        let t = CaseTriaged {
            category: CaseCategory::FlightDelay.to_proto(),
            severity: Severity::High.to_proto(),
            needs_supplier: true,
            segment: Some(common::Segment { price, ..Default::default() }),
            ..Default::default()
        };
        let env = events::envelope(
            "triage",
            CaseId::new(),
            time::from_micros(1_796_000_000_000_000).unwrap(),
            &Actor::service("triage", Some("u-1".into())),
            Event::CaseTriaged(t.clone()),
        );
        (env, t)
    }

    #[test]
    fn the_context_keeps_the_price_and_the_triage_verdict() {
        let (env, t) = triaged(Some(common::Money { amount_minor: 520_000, currency: "CNY".into() }));
        let c = context_of(&env, &t).unwrap();
        assert_eq!(c.price, Some(Money::new(520_000, "CNY".parse().unwrap())));
        assert_eq!(
            (c.category, c.severity, c.needs_supplier),
            (CaseCategory::FlightDelay, Severity::High, true)
        );
        assert_eq!(time::to_micros(c.triaged_at), 1_796_000_000_000_000);
        let (env, t) = triaged(None);
        assert_eq!(context_of(&env, &t).unwrap().price, None);
    }

    #[test]
    fn a_bad_price_or_a_missing_verdict_is_a_permanent_failure() {
        let (env, t) = triaged(Some(common::Money { amount_minor: 100, currency: "XYZ".into() }));
        assert!(matches!(context_of(&env, &t), Err(HandlerError::Permanent(_))));
        let (env, mut t) = triaged(None);
        t.severity = 0;
        assert!(matches!(context_of(&env, &t), Err(HandlerError::Permanent(_))));
    }

    #[test]
    fn only_known_supplier_outcomes_are_accepted() {
        use detour_proto::events::v1::SupplierOutcome as P;
        assert_eq!(
            SupplierOutcome::from_proto(P::ExtraordinaryCircumstances as i32),
            Some(SupplierOutcome::ExtraordinaryCircumstances)
        );
        assert_eq!(SupplierOutcome::from_proto(P::Unspecified as i32), None);
        assert_eq!(SupplierOutcome::from_proto(77), None);
    }
}
