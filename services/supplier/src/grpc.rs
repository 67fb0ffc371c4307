//! The gRPC boundary: requests are validated into domain values here and answers built from
//! them; nothing below this module sees a proto type other than the event envelope.

use std::sync::Arc;

use detour_audit::{Audit, AuditLog};
use detour_domain::{Actor, CaseId, SupplierRequestId, events, time, wire};
use detour_errors::Violations;
use detour_proto::common::v1 as common;
use detour_proto::events::v1 as ev;
use detour_proto::supplier::v1 as pb;
use detour_proto::supplier::v1::supplier_service_server::SupplierService;
use tonic::{Request, Response, Status};

use crate::NAME;
use crate::error::SupplierError;
use crate::model::{Cursor, RequestFilter, RequestStatus, SupplierAnswer, SupplierOutcome, SupplierRequest};
use crate::repo::SupplierRepository;

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 500;
pub const MAX_DETAILS_CHARS: usize = 4_000;

pub struct SupplierApi {
    repo: Arc<dyn SupplierRepository>,
    audit: AuditLog,
}

impl SupplierApi {
    pub fn new(repo: Arc<dyn SupplierRepository>, audit: AuditLog) -> Self {
        Self { repo, audit }
    }

    /// Records the answer `req` carries for `audit`'s caller. `case_id` is set as soon as the
    /// request's case is known, so that a refusal is recorded against it.
    async fn respond(
        &self,
        audit: &Audit,
        req: &pb::RecordSupplierResponseRequest,
        case_id: &mut Option<CaseId>,
    ) -> Result<SupplierRequest, SupplierError> {
        let (id, answer) = answer(req)?;
        // The event names the case and the supplier, which never change once the request is
        // open; the repository's conditional update still decides who answers first.
        let current = self.repo.get_request(id).await?.ok_or(SupplierError::RequestNotFound(id))?;
        *case_id = Some(current.case_id);
        if current.status == RequestStatus::Answered {
            return Err(SupplierError::AlreadyAnswered(id));
        }
        let event = supplier_responded(&current, &answer, &audit.actor);
        let updated = self.repo.record_response(id, answer, event, audit).await?;
        tracing::info!(request_id = %id, case_id = %updated.case_id, "supplier response recorded");
        Ok(updated)
    }
}

pub fn request_to_proto(r: &SupplierRequest) -> pb::SupplierRequest {
    pb::SupplierRequest {
        request_id: Some(common::SupplierRequestId { value: r.id.to_string() }),
        case_id: Some(common::CaseId { value: r.case_id.to_string() }),
        supplier_code: r.supplier_code.clone(),
        segment: Some(wire::segment_to_proto(&r.segment)),
        category: r.category.to_proto(),
        status: r.status.to_proto(),
        opened_at: Some(time::to_proto(r.opened_at)),
        response_due: Some(time::to_proto(r.response_due)),
        outcome: r.answer.as_ref().map_or(0, |a| a.outcome.to_proto()),
        details: r.answer.as_ref().map(|a| a.details.clone()).unwrap_or_default(),
        responded_at: r.answer.as_ref().map(|a| time::to_proto(a.responded_at)),
    }
}

/// The `SupplierResponded` event for `answer` to `request`, recorded by `actor`.
pub fn supplier_responded(request: &SupplierRequest, answer: &SupplierAnswer, actor: &Actor) -> ev::Envelope {
    events::envelope(
        NAME,
        request.case_id,
        answer.responded_at,
        actor,
        ev::envelope::Event::SupplierResponded(ev::SupplierResponded {
            request_id: Some(common::SupplierRequestId { value: request.id.to_string() }),
            supplier_code: request.supplier_code.clone(),
            outcome: answer.outcome.to_proto(),
            details: answer.details.clone(),
            responded_at: Some(time::to_proto(answer.responded_at)),
        }),
    )
}

fn encode_cursor(c: &Cursor) -> String {
    wire::encode_page_token(c.opened_at_micros, &c.request_id)
}

fn decode_cursor(token: &str) -> Option<Cursor> {
    wire::decode_page_token(token)
        .map(|(opened_at_micros, request_id)| Cursor { opened_at_micros, request_id })
}

/// A supplier code as segments carry it: upper-cased, 2 to 16 letters or digits.
fn supplier_code_filter(v: &mut Violations, field: &str, raw: &str) -> Option<String> {
    let code = raw.trim().to_ascii_uppercase();
    if code.is_empty() {
        return None;
    }
    if !(2..=16).contains(&code.len()) || !code.chars().all(|c| c.is_ascii_alphanumeric()) {
        v.add(field, "must be 2 to 16 letters or digits");
        return None;
    }
    Some(code)
}

fn list_request(
    req: &pb::ListSupplierRequestsRequest,
) -> Result<(RequestFilter, Option<Cursor>, u32), SupplierError> {
    let mut v = Violations::new();
    let case_id =
        wire::optional_id::<CaseId>(&mut v, "case_id.value", req.case_id.as_ref().map(|c| c.value.as_str()));
    let supplier_code = supplier_code_filter(&mut v, "supplier_code", &req.supplier_code);
    let status = (req.status != 0).then(|| RequestStatus::from_proto(req.status)).flatten();
    if req.status != 0 && status.is_none() {
        v.add("status", "is not a known request status");
    }
    let limit = wire::page_size(&mut v, "page_size", req.page_size, DEFAULT_PAGE, MAX_PAGE);
    let cursor = wire::page_token(&mut v, "page_token", &req.page_token, decode_cursor);
    v.finish((RequestFilter { case_id, supplier_code, status }, cursor, limit))
        .map_err(SupplierError::Invalid)
}

fn request_id(raw: Option<&common::SupplierRequestId>) -> Result<SupplierRequestId, SupplierError> {
    wire::id_from_message("request_id.value", raw).map_err(SupplierError::Invalid)
}

/// The validated answer, stamped now.
fn answer(
    req: &pb::RecordSupplierResponseRequest,
) -> Result<(SupplierRequestId, SupplierAnswer), SupplierError> {
    let mut v = Violations::new();
    let id = wire::required_id::<SupplierRequestId>(
        &mut v,
        "request_id.value",
        req.request_id.as_ref().map(|r| r.value.as_str()),
    );
    let outcome = SupplierOutcome::from_proto(req.outcome);
    if outcome.is_none() {
        let problem = if req.outcome == 0 { "is required" } else { "is not a known supplier outcome" };
        v.add("outcome", problem);
    }
    let details = wire::text(&mut v, "details", &req.details, MAX_DETAILS_CHARS, true);
    match (id, outcome) {
        (Some(id), Some(outcome)) if v.is_empty() => {
            Ok((id, SupplierAnswer { outcome, details, responded_at: crate::model::now() }))
        }
        _ => Err(SupplierError::Invalid(v)),
    }
}

#[tonic::async_trait]
impl SupplierService for SupplierApi {
    async fn get_supplier_request(
        &self,
        request: Request<pb::GetSupplierRequestRequest>,
    ) -> Result<Response<pb::GetSupplierRequestResponse>, Status> {
        let id = request_id(request.get_ref().request_id.as_ref())?;
        let found = self.repo.get_request(id).await?.ok_or(SupplierError::RequestNotFound(id))?;
        Ok(Response::new(pb::GetSupplierRequestResponse { request: Some(request_to_proto(&found)) }))
    }

    async fn list_supplier_requests(
        &self,
        request: Request<pb::ListSupplierRequestsRequest>,
    ) -> Result<Response<pb::ListSupplierRequestsResponse>, Status> {
        let (filter, cursor, limit) = list_request(request.get_ref())?;
        let (requests, next) = self.repo.list_requests(&filter, cursor, limit).await?;
        Ok(Response::new(pb::ListSupplierRequestsResponse {
            requests: requests.iter().map(request_to_proto).collect(),
            next_page_token: next.as_ref().map(encode_cursor).unwrap_or_default(),
        }))
    }

    async fn record_supplier_response(
        &self,
        request: Request<pb::RecordSupplierResponseRequest>,
    ) -> Result<Response<pb::RecordSupplierResponseResponse>, Status> {
        let audit = Audit::of_request(&request)?;
        let req = request.into_inner();
        let mut case_id = None;
        let result = self.respond(&audit, &req, &mut case_id).await;
        let updated = self.audit.refusal(&audit, case_id, result).await?;
        Ok(Response::new(pb::RecordSupplierResponseResponse { request: Some(request_to_proto(&updated)) }))
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = Cursor { opened_at_micros: 1_700_000_000_000_000, request_id: SupplierRequestId::new() };
        assert_eq!(decode_cursor(&encode_cursor(&c)), Some(c));
        assert_eq!(decode_cursor("%%%"), None);
        assert_eq!(decode_cursor(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("1|x")), None);
    }

    #[test]
    fn every_outcome_maps_to_the_wire_and_back() {
        for o in SupplierOutcome::ALL {
            assert_eq!(SupplierOutcome::from_proto(o.to_proto()), Some(*o));
        }
        assert_eq!(SupplierOutcome::from_proto(0), None);
        assert_eq!(SupplierOutcome::from_proto(99), None);
    }

    #[test]
    fn an_answer_reports_every_problem_at_once() {
        let req = pb::RecordSupplierResponseRequest {
            request_id: None,
            outcome: 0,
            details: "x".repeat(MAX_DETAILS_CHARS + 1),
        };
        let Err(SupplierError::Invalid(v)) = answer(&req) else { panic!("expected violations") };
        let fields: Vec<&str> = v.as_slice().iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["request_id.value", "outcome", "details"]);
    }

    #[test]
    fn supplier_codes_are_matched_upper_case() {
        let mut v = Violations::new();
        assert_eq!(supplier_code_filter(&mut v, "supplier_code", " ca "), Some("CA".to_owned()));
        assert_eq!(supplier_code_filter(&mut v, "supplier_code", ""), None);
        assert!(v.is_empty());
        assert_eq!(supplier_code_filter(&mut v, "supplier_code", "c-a"), None);
        assert_eq!(v.as_slice()[0].field, "supplier_code");
    }
}
