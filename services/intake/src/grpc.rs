//! The gRPC boundary: requests are validated into domain values here and answers built from
//! them; nothing below this module sees a proto type other than the event envelope.

use std::sync::Arc;

use detour_domain::wire::{self, MAX_TEXT_CHARS};
use detour_domain::{CaseCategory, CaseId, CaseStatus, Channel, events, sla, time};
use detour_errors::Violations;
use detour_proto::common::v1 as common;
use detour_proto::events::v1::{CaseOpened, CaseResolved, envelope::Event};
use detour_proto::intake::v1 as pb;
use detour_proto::intake::v1::intake_service_server::IntakeService;
use tonic::{Request, Response, Status};

use crate::NAME;
use crate::error::IntakeError;
use crate::model::{Case, CaseFilter, Cursor, NewCase, OpenOutcome, Resolution};
use crate::repo::IntakeRepository;

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 500;
const MAX_IDEMPOTENCY_KEY: usize = 128;

pub struct IntakeApi {
    repo: Arc<dyn IntakeRepository>,
}

impl IntakeApi {
    pub fn new(repo: Arc<dyn IntakeRepository>) -> Self {
        Self { repo }
    }
}

fn new_case(req: pb::OpenCaseRequest) -> Result<NewCase, IntakeError> {
    let mut v = Violations::new();
    let traveler = wire::nested(&mut v, "traveler", req.traveler.as_ref(), wire::traveler_from_proto);
    let segment = wire::nested(&mut v, "segment", req.segment.as_ref(), wire::segment_from_proto);
    let channel = wire::channel(&mut v, "channel", req.channel);
    let description = wire::text(&mut v, "description", &req.description, MAX_TEXT_CHARS, false);
    let requested_outcomes = wire::requested_outcomes(&mut v, "requested_outcomes", &req.requested_outcomes);
    let key = req.idempotency_key.trim();
    let idempotency_key = if key.is_empty() {
        None
    } else if key.len() > MAX_IDEMPOTENCY_KEY || !key.chars().all(|c| c.is_ascii_graphic()) {
        v.add("idempotency_key", format!("must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters"));
        None
    } else {
        Some(key.to_owned())
    };
    let (Some(traveler), Some(segment), Some(channel), true) = (traveler, segment, channel, v.is_empty())
    else {
        return Err(IntakeError::Invalid(v));
    };
    let fingerprint = fingerprint(&[
        &traveler.full_name,
        traveler.email.as_deref().unwrap_or_default(),
        traveler.phone.as_deref().unwrap_or_default(),
        &serde_json::to_string(&segment).unwrap_or_default(),
        channel.as_str(),
        &description,
    ]);
    let received_at = time::now();
    Ok(NewCase {
        id: CaseId::new(),
        traveler,
        segment,
        channel,
        description,
        requested_outcomes,
        received_at,
        // Before triage the golden hour applies; triage tightens it for safety cases.
        first_response_due: received_at + sla::first_response_within(None, None),
        idempotency_key,
        fingerprint,
    })
}

/// FNV-1a over the request's identifying fields: stable across releases, unlike std's hasher.
fn fingerprint(parts: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain(std::iter::once(0x1f)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

fn case_opened(case: &NewCase) -> Event {
    Event::CaseOpened(CaseOpened {
        // Assigned in the repository's transaction, which fills it in.
        case_number: String::new(),
        traveler: Some(wire::traveler_to_proto(&case.traveler)),
        segment: Some(wire::segment_to_proto(&case.segment)),
        channel: case.channel.to_proto(),
        description: case.description.clone(),
        requested_outcomes: case.requested_outcomes.iter().map(|o| o.to_proto()).collect(),
        received_at: Some(time::to_proto(case.received_at)),
    })
}

pub(crate) fn case_resolved(id: CaseId, resolution: &Resolution) -> detour_proto::events::v1::Envelope {
    events::envelope(
        NAME,
        id,
        resolution.at,
        Event::CaseResolved(CaseResolved {
            resolution: resolution.text.clone(),
            resolved_at: Some(time::to_proto(resolution.at)),
        }),
    )
}

pub fn case_to_proto(c: &Case) -> pb::Case {
    pb::Case {
        case_id: Some(common::CaseId { value: c.id.to_string() }),
        case_number: c.number.clone(),
        status: c.status.to_proto(),
        traveler: Some(wire::traveler_to_proto(&c.traveler)),
        segment: Some(wire::segment_to_proto(&c.segment)),
        channel: c.channel.to_proto(),
        description: c.description.clone(),
        requested_outcomes: c.requested_outcomes.iter().map(|o| o.to_proto()).collect(),
        category: c.category.map_or(0, CaseCategory::to_proto),
        severity: c.severity.map_or(0, |s| s.to_proto()),
        queue: c.queue.clone().unwrap_or_default(),
        opened_at: Some(time::to_proto(c.opened_at)),
        first_response_due: Some(time::to_proto(c.first_response_due)),
        resolution_due: c.resolution_due.map(time::to_proto),
        resolved_at: c.resolved_at.map(time::to_proto),
        resolution: c.resolution.clone().unwrap_or_default(),
        timeline: c
            .timeline
            .iter()
            .map(|t| common::TimelineEntry {
                at: Some(time::to_proto(t.at)),
                kind: t.kind.clone(),
                actor: t.actor.clone(),
                summary: t.summary.clone(),
            })
            .collect(),
    }
}

fn encode_cursor(c: &Cursor) -> String {
    wire::encode_page_token(c.opened_at_micros, &c.case_id)
}

fn decode_cursor(token: &str) -> Option<Cursor> {
    wire::decode_page_token(token).map(|(opened_at_micros, case_id)| Cursor { opened_at_micros, case_id })
}

fn list_request(req: &pb::ListCasesRequest) -> Result<(CaseFilter, Option<Cursor>, u32), IntakeError> {
    let mut v = Violations::new();
    let status = (req.status != 0).then(|| CaseStatus::from_proto(req.status)).flatten();
    if req.status != 0 && status.is_none() {
        v.add("status", "is not a known case status");
    }
    let category = (req.category != 0).then(|| CaseCategory::from_proto(req.category)).flatten();
    if req.category != 0 && category.is_none() {
        v.add("category", "is not a known case category");
    }
    let channel = (req.channel != 0).then(|| Channel::from_proto(req.channel)).flatten();
    if req.channel != 0 && channel.is_none() {
        v.add("channel", "is not a known channel");
    }
    let opened_after = wire::optional_instant(&mut v, "opened_after", req.opened_after.as_ref());
    let opened_before = wire::optional_instant(&mut v, "opened_before", req.opened_before.as_ref());
    let limit = wire::page_size(&mut v, "page_size", req.page_size, DEFAULT_PAGE, MAX_PAGE);
    let cursor = wire::page_token(&mut v, "page_token", &req.page_token, decode_cursor);
    let filter = CaseFilter { status, category, channel, opened_after, opened_before };
    v.finish((filter, cursor, limit)).map_err(IntakeError::Invalid)
}

fn case_id(raw: Option<&common::CaseId>) -> Result<CaseId, IntakeError> {
    wire::id_from_message("case_id.value", raw).map_err(IntakeError::Invalid)
}

#[tonic::async_trait]
impl IntakeService for IntakeApi {
    async fn open_case(
        &self,
        request: Request<pb::OpenCaseRequest>,
    ) -> Result<Response<pb::OpenCaseResponse>, Status> {
        let new = new_case(request.into_inner())?;
        let opened = events::envelope(NAME, new.id, new.received_at, case_opened(&new));
        let outcome = self.repo.open_case(new, opened).await?;
        let (case, replayed) = match outcome {
            OpenOutcome::Created(c) => (c, false),
            OpenOutcome::Replayed(c) => (c, true),
        };
        tracing::info!(case_id = %case.id, case_number = %case.number, replayed, "case accepted");
        Ok(Response::new(pb::OpenCaseResponse {
            case_id: Some(common::CaseId { value: case.id.to_string() }),
            case_number: case.number,
            first_response_due: Some(time::to_proto(case.first_response_due)),
            replayed,
        }))
    }

    async fn get_case(
        &self,
        request: Request<pb::GetCaseRequest>,
    ) -> Result<Response<pb::GetCaseResponse>, Status> {
        let id = case_id(request.get_ref().case_id.as_ref())?;
        let case = self.repo.get_case(id).await?.ok_or(IntakeError::CaseNotFound(id))?;
        Ok(Response::new(pb::GetCaseResponse { case: Some(case_to_proto(&case)) }))
    }

    async fn list_cases(
        &self,
        request: Request<pb::ListCasesRequest>,
    ) -> Result<Response<pb::ListCasesResponse>, Status> {
        let (filter, cursor, limit) = list_request(request.get_ref())?;
        let (cases, next) = self.repo.list_cases(&filter, cursor, limit).await?;
        Ok(Response::new(pb::ListCasesResponse {
            cases: cases.iter().map(case_to_proto).collect(),
            next_page_token: next.as_ref().map(encode_cursor).unwrap_or_default(),
        }))
    }

    async fn resolve_case(
        &self,
        request: Request<pb::ResolveCaseRequest>,
    ) -> Result<Response<pb::ResolveCaseResponse>, Status> {
        let req = request.into_inner();
        let mut v = Violations::new();
        let id = wire::required_id::<CaseId>(
            &mut v,
            "case_id.value",
            req.case_id.as_ref().map(|c| c.value.as_str()),
        );
        let text = wire::text(&mut v, "resolution", &req.resolution, MAX_TEXT_CHARS, false);
        let Some(id) = id.filter(|_| v.is_empty()) else {
            return Err(IntakeError::Invalid(v).into());
        };
        let resolution = Resolution { text, at: time::now() };
        let event = case_resolved(id, &resolution);
        let case = self.repo.resolve_case(id, resolution, event).await?;
        Ok(Response::new(pb::ResolveCaseResponse { case: Some(case_to_proto(&case)) }))
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = Cursor { opened_at_micros: 1_700_000_000_000_000, case_id: CaseId::new() };
        assert_eq!(decode_cursor(&encode_cursor(&c)), Some(c));
        assert_eq!(decode_cursor("%%%"), None);
        assert_eq!(decode_cursor(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("1|x")), None);
    }

    #[test]
    fn fingerprints_differ_when_any_part_differs() {
        assert_eq!(fingerprint(&["a", "b"]), fingerprint(&["a", "b"]));
        assert_ne!(fingerprint(&["a", "b"]), fingerprint(&["ab", ""]));
    }
}
