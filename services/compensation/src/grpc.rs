//! The gRPC boundary: requests are validated into domain values here and answers built from
//! them; nothing below this module sees a proto type other than the event envelope.

use std::sync::Arc;

use detour_audit::{Audit, AuditLog};
use detour_domain::{Actor, CaseId, OfferId, events, time, wire};
use detour_proto::common::v1 as common;
use detour_proto::compensation::v1 as pb;
use detour_proto::compensation::v1::compensation_service_server::CompensationService;
use detour_proto::events::v1 as ev;
use tonic::{Request, Response, Status};

use crate::NAME;
use crate::error::CompensationError;
use crate::model::{Offer, OfferStatus};
use crate::repo::CompensationRepository;

pub struct CompensationApi {
    repo: Arc<dyn CompensationRepository>,
    audit: AuditLog,
}

impl CompensationApi {
    pub fn new(repo: Arc<dyn CompensationRepository>, audit: AuditLog) -> Self {
        Self { repo, audit }
    }

    /// Accepts the offer `req` names for `audit`'s caller. `case_id` is set as soon as the
    /// offer's case is known, so that a refusal is recorded against it.
    async fn accept(
        &self,
        audit: &Audit,
        req: &pb::AcceptOfferRequest,
        case_id: &mut Option<CaseId>,
    ) -> Result<Offer, CompensationError> {
        let id = offer_id(req.offer_id.as_ref())?;
        // The event names the case and the amount, which never change once proposed; the
        // repository's conditional update still decides which acceptance counts.
        let current = self.repo.get_offer(id).await?.ok_or(CompensationError::OfferNotFound(id))?;
        *case_id = Some(current.case_id);
        if current.status == OfferStatus::Accepted {
            return Err(CompensationError::AlreadyAccepted(id));
        }
        let at = crate::model::now();
        let event = offer_accepted(&current, at, &audit.actor);
        let accepted = self.repo.accept_offer(id, at, event, audit).await?;
        tracing::info!(offer_id = %id, case_id = %accepted.case_id, "offer accepted");
        Ok(accepted)
    }
}

pub fn offer_to_proto(o: &Offer) -> pb::Offer {
    pb::Offer {
        offer_id: Some(common::OfferId { value: o.id.to_string() }),
        case_id: Some(common::CaseId { value: o.case_id.to_string() }),
        amount: Some(wire::money_to_proto(&o.amount)),
        status: o.status.to_proto(),
        policy_rule: o.policy_rule.clone(),
        rationale: o.rationale.clone(),
        proposed_at: Some(time::to_proto(o.proposed_at)),
        accepted_at: o.accepted_at.map(time::to_proto),
    }
}

/// The `OfferAccepted` event for `offer`, accepted `at` by `actor`.
pub fn offer_accepted(offer: &Offer, at: time::Instant, actor: &Actor) -> ev::Envelope {
    events::envelope(
        NAME,
        offer.case_id,
        at,
        actor,
        ev::envelope::Event::OfferAccepted(ev::OfferAccepted {
            offer_id: Some(common::OfferId { value: offer.id.to_string() }),
            amount: Some(wire::money_to_proto(&offer.amount)),
        }),
    )
}

fn offer_id(raw: Option<&common::OfferId>) -> Result<OfferId, CompensationError> {
    wire::id_from_message("offer_id.value", raw).map_err(CompensationError::Invalid)
}

fn case_id(raw: Option<&common::CaseId>) -> Result<CaseId, CompensationError> {
    wire::id_from_message("case_id.value", raw).map_err(CompensationError::Invalid)
}

#[tonic::async_trait]
impl CompensationService for CompensationApi {
    async fn get_offer(
        &self,
        request: Request<pb::GetOfferRequest>,
    ) -> Result<Response<pb::GetOfferResponse>, Status> {
        let id = offer_id(request.get_ref().offer_id.as_ref())?;
        let offer = self.repo.get_offer(id).await?.ok_or(CompensationError::OfferNotFound(id))?;
        Ok(Response::new(pb::GetOfferResponse { offer: Some(offer_to_proto(&offer)) }))
    }

    async fn list_offers(
        &self,
        request: Request<pb::ListOffersRequest>,
    ) -> Result<Response<pb::ListOffersResponse>, Status> {
        let case_id = case_id(request.get_ref().case_id.as_ref())?;
        let offers = self.repo.list_offers(case_id).await?;
        Ok(Response::new(pb::ListOffersResponse { offers: offers.iter().map(offer_to_proto).collect() }))
    }

    async fn accept_offer(
        &self,
        request: Request<pb::AcceptOfferRequest>,
    ) -> Result<Response<pb::AcceptOfferResponse>, Status> {
        let audit = Audit::of_request(&request)?;
        let req = request.into_inner();
        let mut case_id = None;
        let result = self.accept(&audit, &req, &mut case_id).await;
        let accepted = self.audit.refusal(&audit, case_id, result).await?;
        Ok(Response::new(pb::AcceptOfferResponse { offer: Some(offer_to_proto(&accepted)) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_required_and_well_formed() {
        let Err(CompensationError::Invalid(v)) = offer_id(None) else { panic!("expected violations") };
        assert_eq!(v.as_slice()[0].field, "offer_id.value");
        let bad = common::CaseId { value: "case-1".into() };
        let Err(CompensationError::Invalid(v)) = case_id(Some(&bad)) else { panic!("expected violations") };
        assert_eq!(v.as_slice()[0].field, "case_id.value");
        let good = OfferId::new();
        assert_eq!(offer_id(Some(&common::OfferId { value: good.to_string() })).unwrap(), good);
    }
}
