//! The gRPC boundary: requests are validated into domain values here and answers built from
//! them; nothing below this module sees a proto type other than the event envelope.

use std::sync::Arc;

use detour_domain::{CaseId, time, wire};
use detour_errors::Violations;
use detour_proto::common::v1 as common;
use detour_proto::triage::v1 as pb;
use detour_proto::triage::v1::triage_service_server::TriageService;
use tonic::{Request, Response, Status};

use crate::error::TriageError;
use crate::model::{Cursor, Queue, Triage};
use crate::repo::TriageRepository;

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 500;

pub struct TriageApi {
    repo: Arc<dyn TriageRepository>,
}

impl TriageApi {
    pub fn new(repo: Arc<dyn TriageRepository>) -> Self {
        Self { repo }
    }
}

pub fn triage_to_proto(t: &Triage) -> pb::Triage {
    pb::Triage {
        case_id: Some(common::CaseId { value: t.case_id.to_string() }),
        category: t.category.to_proto(),
        severity: t.severity.to_proto(),
        queue: t.queue.as_str().to_owned(),
        first_response_due: Some(time::to_proto(t.first_response_due)),
        resolution_due: Some(time::to_proto(t.resolution_due)),
        needs_supplier: t.needs_supplier,
        rationale: t.rationale.clone(),
        triaged_at: Some(time::to_proto(t.triaged_at)),
    }
}

fn encode_cursor(c: &Cursor) -> String {
    wire::encode_page_token(c.first_response_due_micros, &c.case_id)
}

fn decode_cursor(token: &str) -> Option<Cursor> {
    wire::decode_page_token(token)
        .map(|(first_response_due_micros, case_id)| Cursor { first_response_due_micros, case_id })
}

fn queue(v: &mut Violations, raw: &str) -> Option<Queue> {
    match raw.trim() {
        "" => {
            v.add("queue", "is required");
            None
        }
        name => match name.parse() {
            Ok(q) => Some(q),
            Err(e) => {
                let known: Vec<&str> = Queue::ALL.iter().map(Queue::as_str).collect();
                v.add("queue", format!("{e}; one of {}", known.join(", ")));
                None
            }
        },
    }
}

fn list_request(req: &pb::ListQueueRequest) -> Result<(Queue, Option<Cursor>, u32), TriageError> {
    let mut v = Violations::new();
    let queue = queue(&mut v, &req.queue);
    let limit = wire::page_size(&mut v, "page_size", req.page_size, DEFAULT_PAGE, MAX_PAGE);
    let cursor = wire::page_token(&mut v, "page_token", &req.page_token, decode_cursor);
    match queue {
        Some(queue) if v.is_empty() => Ok((queue, cursor, limit)),
        _ => Err(TriageError::Invalid(v)),
    }
}

#[tonic::async_trait]
impl TriageService for TriageApi {
    async fn get_triage(
        &self,
        request: Request<pb::GetTriageRequest>,
    ) -> Result<Response<pb::GetTriageResponse>, Status> {
        let id: CaseId = wire::id_from_message("case_id.value", request.get_ref().case_id.as_ref())
            .map_err(TriageError::Invalid)?;
        let triage = self.repo.get_triage(id).await?.ok_or(TriageError::NotFound(id))?;
        Ok(Response::new(pb::GetTriageResponse { triage: Some(triage_to_proto(&triage)) }))
    }

    async fn list_queue(
        &self,
        request: Request<pb::ListQueueRequest>,
    ) -> Result<Response<pb::ListQueueResponse>, Status> {
        let (queue, cursor, limit) = list_request(request.get_ref())?;
        let (triages, next) = self.repo.list_queue(queue, cursor, limit).await?;
        Ok(Response::new(pb::ListQueueResponse {
            triages: triages.iter().map(triage_to_proto).collect(),
            next_page_token: next.as_ref().map(encode_cursor).unwrap_or_default(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = Cursor { first_response_due_micros: 1_700_000_000_000_000, case_id: CaseId::new() };
        assert_eq!(decode_cursor(&encode_cursor(&c)), Some(c));
        assert_eq!(decode_cursor("%%%"), None);
        assert_eq!(decode_cursor(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("1|x")), None);
    }

    #[test]
    fn every_list_problem_is_reported_at_once() {
        let req = pb::ListQueueRequest { queue: "lounge".into(), page_size: 501, page_token: "??".into() };
        let Err(TriageError::Invalid(v)) = list_request(&req) else { panic!("accepted {req:?}") };
        let fields: Vec<&str> = v.as_slice().iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["queue", "page_size", "page_token"]);
        assert!(v.as_slice()[0].description.contains("ground-and-tour"), "{v}");
    }

    #[test]
    fn the_default_page_is_fifty() {
        let req = pb::ListQueueRequest { queue: " air ".into(), page_size: 0, page_token: String::new() };
        let (queue, cursor, limit) = list_request(&req).unwrap();
        assert_eq!((queue, cursor, limit), (Queue::Air, None, 50));
    }
}
