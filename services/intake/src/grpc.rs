//! The gRPC boundary: requests are validated into domain values here and answers built from
//! them; nothing below this module sees a proto type other than the event envelope.

use std::sync::Arc;

use detour_audit::{Audit, AuditLog, Outcome, Target};
use detour_domain::wire::{self, MAX_TEXT_CHARS};
use detour_domain::{
    Actor, CaseCategory, CaseId, CaseStatus, Channel, NotificationId, PersonalData, RequestedOutcome,
    Traveler, TravelerId, events, sla, time,
};
use detour_errors::Violations;
use detour_proto::common::v1 as common;
use detour_proto::events::v1::{CaseOpened, CaseResolved, envelope::Event};
use detour_proto::intake::v1 as pb;
use detour_proto::intake::v1::intake_service_server::IntakeService;
use tonic::{Request, Response, Status};

use crate::NAME;
use crate::contact;
use crate::crisis::{DueNotification, NewNotification, Purpose, segment_key};
use crate::error::IntakeError;
use crate::keys::PersonalDataKeys;
use crate::model::{
    Case, CaseFilter, Cursor, NewCase, OpenOutcome, Resolution, StoredPersonal, StoredTraveler,
};
use crate::repo::{IntakeRepository, OpenRequest};

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 500;
const MAX_IDEMPOTENCY_KEY: usize = 128;

pub struct IntakeApi {
    pub(crate) repo: Arc<dyn IntakeRepository>,
    pub(crate) keys: Arc<PersonalDataKeys>,
    pub(crate) audit: AuditLog,
    /// Wakes the fan-out worker when a disruption is reported.
    pub(crate) fanout: Option<Arc<tokio::sync::Notify>>,
    /// Hands acknowledgements to this process's notification dispatcher.
    pub(crate) dispatch: Option<crate::dispatch::Handoff>,
    /// Sheds contacts by priority under overload.
    pub(crate) admission: Option<detour_admission::Admission>,
    /// Per-caller rate limits on new contacts.
    pub(crate) limiter: Option<Arc<dyn detour_admission::RateLimiter>>,
    /// Writes contacts arriving together in one transaction; without it each goes alone.
    pub(crate) group_commit: Option<crate::group_commit::GroupCommit>,
}

impl IntakeApi {
    pub fn new(repo: Arc<dyn IntakeRepository>, keys: Arc<PersonalDataKeys>, audit: AuditLog) -> Self {
        Self {
            repo,
            keys,
            audit,
            fanout: None,
            dispatch: None,
            admission: None,
            limiter: None,
            group_commit: None,
        }
    }

    /// Admission control and per-caller rate limits on OpenCase.
    pub fn with_admission(
        mut self,
        admission: detour_admission::Admission,
        limiter: Arc<dyn detour_admission::RateLimiter>,
    ) -> Self {
        self.admission = Some(admission);
        self.limiter = Some(limiter);
        self
    }

    /// Opens contacts through this group commit.
    pub fn with_group_commit(mut self, group_commit: crate::group_commit::GroupCommit) -> Self {
        self.group_commit = Some(group_commit);
        self
    }

    /// Wakes these background workers when there is work for them.
    pub fn with_workers(
        mut self,
        fanout: Arc<tokio::sync::Notify>,
        dispatch: crate::dispatch::Handoff,
    ) -> Self {
        self.fanout = Some(fanout);
        self.dispatch = Some(dispatch);
        self
    }

    /// A case as the caller sees it: personal data opened with its data key.
    async fn reveal(&self, case: &Case) -> Result<pb::Case, IntakeError> {
        let personal = match &case.traveler.personal {
            StoredPersonal::Sealed(sealed) => Some(self.keys.open(case.id, sealed).await?),
            StoredPersonal::Erased { .. } => None,
        };
        Ok(case_to_proto(case, personal.as_ref()))
    }

    async fn open(
        &self,
        audit: &Audit,
        req: pb::OpenCaseRequest,
        priority: contact::Priority,
    ) -> Result<pb::OpenCaseResponse, IntakeError> {
        let mut new = self.new_case(req).await?;
        let ack_channel = new.acknowledgement.as_ref().and_then(|a| a.channels.first().copied());
        let language = new.language.clone().unwrap_or_default();
        let opened = events::envelope(NAME, new.id, new.received_at, &audit.actor, case_opened(&new));
        // The acknowledgement is written leased to this process and handed to its dispatcher
        // after the commit, so it costs no claim; past the handoff's room it is left to the claim.
        let handing = match (&self.dispatch, &mut new.acknowledgement) {
            (Some(handoff), Some(ack)) => handoff.reserve(1).map(|reservation| {
                ack.leased_until = Some(reservation.until);
                (handoff, reservation, ack.clone())
            }),
            _ => None,
        };
        let outcome = match &self.group_commit {
            Some(group) => group.open(OpenRequest { new, opened, audit: audit.clone() }).await?,
            None => self.repo.open_case(new, opened, audit).await?,
        };
        match (handing, &outcome) {
            (
                Some((handoff, reservation, ack)),
                OpenOutcome::Created(case) | OpenOutcome::Merged(case, _),
            ) => {
                handoff.hand(reservation, vec![written_ack(ack, case)]);
            }
            (None, OpenOutcome::Created(_) | OpenOutcome::Merged(..)) => {
                if let Some(handoff) = &self.dispatch {
                    handoff.wake();
                }
            }
            // A replay wrote nothing: a reservation goes back unused.
            (_, OpenOutcome::Replayed(..)) => {}
        }
        let (case, ack, replayed, merged) = match outcome {
            OpenOutcome::Created(c) => {
                let ack = c.acknowledgement_id;
                (c, ack, false, false)
            }
            OpenOutcome::Replayed(c, ack) => (c, ack, true, false),
            OpenOutcome::Merged(c, ack) => (c, ack, false, true),
        };
        tracing::info!(case_id = %case.id, case_number = %case.number, replayed, merged, "case accepted");
        Ok(pb::OpenCaseResponse {
            case_id: Some(common::CaseId { value: case.id.to_string() }),
            case_number: case.number,
            first_response_due: Some(time::to_proto(case.first_response_due)),
            replayed,
            merged,
            language: if replayed { case.language.clone().unwrap_or_default() } else { language },
            acknowledgement_id: ack.map(|a| common::NotificationId { value: a.to_string() }),
            acknowledgement_channel: if replayed { 0 } else { ack_channel.map_or(0, Channel::to_proto) },
            priority: contact::priority_to_proto(priority),
        })
    }

    async fn resolve(&self, audit: &Audit, req: pb::ResolveCaseRequest) -> Result<pb::Case, IntakeError> {
        let mut v = Violations::new();
        let id = wire::required_id::<CaseId>(
            &mut v,
            "case_id.value",
            req.case_id.as_ref().map(|c| c.value.as_str()),
        );
        let text = wire::text(&mut v, "resolution", &req.resolution, MAX_TEXT_CHARS, false);
        let Some(id) = id.filter(|_| v.is_empty()) else {
            return Err(IntakeError::Invalid(v));
        };
        let resolution = Resolution { text, at: time::now() };
        let event = case_resolved(id, &resolution, &audit.actor);
        let case = self.repo.resolve_case(id, resolution, event, audit).await?;
        self.reveal(&case).await
    }

    async fn export(
        &self,
        audit: &Audit,
        traveler: TravelerId,
    ) -> Result<pb::ExportTravelerResponse, IntakeError> {
        let cases = self.repo.cases_of_traveler(traveler).await?;
        let Some(first) = cases.first() else {
            return Err(IntakeError::TravelerNotFound(traveler));
        };
        // The newest sealed copy is the traveler's current data; older cases may hold older details.
        let mut personal = None;
        for case in cases.iter().rev() {
            if let StoredPersonal::Sealed(sealed) = &case.traveler.personal {
                personal = Some(self.keys.open(case.id, sealed).await?);
                break;
            }
        }
        let json =
            export_json(traveler, first.traveler.preferred_language.as_deref(), personal.as_ref(), &cases);
        let record = audit.record(None, vec![Target::new("traveler", traveler)], Outcome::Ok);
        self.audit.append(&record).await?;
        Ok(pb::ExportTravelerResponse {
            json: json.to_string(),
            case_count: i32::try_from(cases.len()).unwrap_or(i32::MAX),
        })
    }

    async fn erase(
        &self,
        audit: &Audit,
        req: &pb::EraseTravelerRequest,
    ) -> Result<pb::EraseTravelerResponse, IntakeError> {
        let mut v = Violations::new();
        let traveler = wire::required_id::<TravelerId>(
            &mut v,
            "traveler_id.value",
            req.traveler_id.as_ref().map(|t| t.value.as_str()),
        );
        wire::text(&mut v, "reason", &req.reason, MAX_REASON_CHARS, false);
        let Some(traveler) = traveler.filter(|_| v.is_empty()) else {
            return Err(IntakeError::Invalid(v));
        };
        let at = time::now();
        let erased = self.repo.erase_traveler(traveler, at, audit).await?;
        tracing::info!(traveler_id = %traveler, cases = erased.len(), "personal data erased");
        Ok(pb::EraseTravelerResponse {
            cases_erased: i32::try_from(erased.len()).unwrap_or(i32::MAX),
            erased_at: Some(time::to_proto(at)),
        })
    }
}

/// An erasure's reason is for the audit trail: a reference, not a story.
const MAX_REASON_CHARS: usize = 500;

fn traveler_id_of(raw: Option<&common::TravelerId>) -> Result<TravelerId, IntakeError> {
    wire::id_from_message("traveler_id.value", raw).map_err(IntakeError::Invalid)
}

fn export_json(
    traveler: TravelerId,
    language: Option<&str>,
    personal: Option<&PersonalData>,
    cases: &[Case],
) -> serde_json::Value {
    use serde_json::json;
    let erased_at = cases.iter().find_map(|c| match c.traveler.personal {
        StoredPersonal::Erased { at } => Some(at),
        StoredPersonal::Sealed(_) => None,
    });
    json!({
        "exported_at": time::now().to_rfc3339(),
        "traveler": {
            "traveler_id": traveler.to_string(),
            "preferred_language": language,
            "full_name": personal.map(PersonalData::full_name),
            "email": personal.and_then(PersonalData::email),
            "phone": personal.and_then(PersonalData::phone),
            "document_number": personal.and_then(PersonalData::document_number),
            "personal_data_erased_at": if personal.is_none() { erased_at.map(|t| t.to_rfc3339()) } else { None },
        },
        "cases": cases.iter().map(|c| json!({
            "case_id": c.id.to_string(),
            "case_number": c.number,
            "status": c.status.as_str(),
            "channel": c.channel.as_str(),
            "opened_at": c.opened_at.to_rfc3339(),
            "description": c.description,
            "requested_outcomes": c.requested_outcomes.iter().map(|o| o.as_str()).collect::<Vec<_>>(),
            "segment": serde_json::to_value(&c.segment).unwrap_or_default(),
            "category": c.category.map(|x| x.as_str()),
            "severity": c.severity.map(|x| x.as_str()),
            "resolved_at": c.resolved_at.map(|t| t.to_rfc3339()),
            "resolution": c.resolution,
            "timeline": c.timeline.iter().map(|t| json!({
                "at": t.at.to_rfc3339(),
                "kind": t.kind,
                "actor": t.actor,
                "summary": t.summary,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

impl IntakeApi {
    /// Validates the request, identifies the traveler (in full, or by a handle the registry
    /// knows) and seals their personal data for the new case.
    async fn new_case(&self, req: pb::OpenCaseRequest) -> Result<NewCase, IntakeError> {
        let mut v = Violations::new();
        let by_handle = req.traveler.as_ref().is_some_and(|t| t.full_name.trim().is_empty());
        // The id as sent: a traveler sent without one gets a fresh id per request, which must not
        // make a retry look like another request.
        let sent_id = req
            .traveler
            .as_ref()
            .and_then(|t| t.id.as_ref())
            .map(|i| i.value.trim().to_owned())
            .unwrap_or_default();
        let traveler = if by_handle {
            None
        } else {
            wire::nested(&mut v, "traveler", req.traveler.as_ref(), wire::traveler_from_proto)
        };
        let segment = wire::nested(&mut v, "segment", req.segment.as_ref(), wire::segment_from_proto);
        let channel = wire::channel(&mut v, "channel", req.channel);
        if channel == Some(Channel::Proactive) {
            v.add("channel", "PROACTIVE cases are opened by ReportDisruption, not by a contact");
        }
        let description = wire::text(&mut v, "description", &req.description, MAX_TEXT_CHARS, false);
        let requested_outcomes =
            wire::requested_outcomes(&mut v, "requested_outcomes", &req.requested_outcomes);
        let key = req.idempotency_key.trim();
        let idempotency_key = if key.is_empty() {
            None
        } else if key.len() > MAX_IDEMPOTENCY_KEY || !key.chars().all(|c| c.is_ascii_graphic()) {
            v.add(
                "idempotency_key",
                format!("must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters"),
            );
            None
        } else {
            Some(key.to_owned())
        };
        let (Some(segment), Some(channel), true) = (segment, channel, v.is_empty()) else {
            return Err(IntakeError::Invalid(v));
        };
        let (traveler, preferred) = match (traveler, &req.traveler) {
            (Some(mut t), _) => {
                // A traveler sent in full but without an id is still the registry's traveler
                // when their phone or e-mail says so: their contacts then merge like any other.
                // One the registry does not know gets the id their name and handle always give.
                let registered = if sent_id.is_empty() {
                    let known = self.known_by_contact(&t.personal).await?;
                    if known.is_none()
                        && let Some(id) = self.keys.walk_in_id(&t.personal).await?
                    {
                        t.id = id;
                    }
                    known
                } else {
                    self.repo.registered_traveler(t.id).await?
                };
                if let Some(r) = &registered {
                    t.id = r.id;
                }
                (t, registered.map(|r| r.contact_channels).unwrap_or_default())
            }
            (None, Some(raw)) => {
                let (registered, personal) = self.identify(raw, &segment.booking_reference).await?;
                let traveler = Traveler {
                    id: registered.id,
                    preferred_language: registered.preferred_language.clone(),
                    personal,
                };
                (traveler, registered.contact_channels)
            }
            (None, None) => {
                v.add("traveler", "is required");
                return Err(IntakeError::Invalid(v));
            }
        };
        let p = &traveler.personal;
        let fingerprint = fingerprint(&[
            &sent_id,
            p.full_name(),
            p.email().unwrap_or_default(),
            p.phone().unwrap_or_default(),
            p.document_number().unwrap_or_default(),
            &serde_json::to_string(&segment).unwrap_or_default(),
            channel.as_str(),
            &description,
        ]);
        let received_at = time::now();
        let id = CaseId::new();
        let language = traveler
            .preferred_language
            .as_deref()
            .map(|l| crate::fanout::language_of(Some(l)))
            .or_else(|| contact::detect_language(&description))
            .map(str::to_owned);
        let channels = contact::reply_channels(channel, &preferred, p.email().is_some(), p.phone().is_some());
        let acknowledgement = (!channels.is_empty()).then(|| NewNotification {
            id: NotificationId::new(),
            case_id: id,
            incident_id: None,
            traveler_id: traveler.id,
            purpose: Purpose::Acknowledgement,
            channels,
            language: language.clone().unwrap_or_else(|| "en".into()),
            at: received_at,
            leased_until: None,
        });
        let sealed = self.keys.seal(id, &traveler.personal).await?;
        Ok(NewCase {
            id,
            traveler: StoredTraveler {
                id: traveler.id,
                preferred_language: traveler.preferred_language,
                personal: StoredPersonal::Sealed(sealed),
            },
            segment_key: Some(segment_key(&segment)),
            segment,
            channel,
            description,
            requested_outcomes,
            received_at,
            // Before triage the golden hour applies; triage tightens it for safety cases.
            first_response_due: received_at + sla::first_response_within(None, None),
            idempotency_key,
            fingerprint,
            incident_id: None,
            language,
            acknowledgement,
        })
    }
}

/// How urgent an OpenCase is, read before the request is validated (admission comes first).
fn contact_priority(req: &pb::OpenCaseRequest) -> contact::Priority {
    let outcomes: Vec<_> =
        req.requested_outcomes.iter().filter_map(|o| RequestedOutcome::from_proto(*o)).collect();
    contact::priority(Channel::from_proto(req.channel).unwrap_or(Channel::Web), &req.description, &outcomes)
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

pub(crate) fn case_opened(case: &NewCase) -> Event {
    Event::CaseOpened(CaseOpened {
        // Assigned in the repository's transaction, which fills it in.
        case_number: String::new(),
        traveler_id: Some(common::TravelerId { value: case.traveler.id.to_string() }),
        preferred_language: case.traveler.preferred_language.clone().unwrap_or_default(),
        segment: Some(wire::segment_to_proto(&case.segment)),
        channel: case.channel.to_proto(),
        description: case.description.clone(),
        requested_outcomes: case.requested_outcomes.iter().map(|o| o.to_proto()).collect(),
        received_at: Some(time::to_proto(case.received_at)),
        incident_id: case.incident_id.map(|i| common::IncidentId { value: i.to_string() }),
    })
}

pub(crate) fn case_resolved(
    id: CaseId,
    resolution: &Resolution,
    actor: &Actor,
) -> detour_proto::events::v1::Envelope {
    events::envelope(
        NAME,
        id,
        resolution.at,
        actor,
        Event::CaseResolved(CaseResolved {
            resolution: resolution.text.clone(),
            resolved_at: Some(time::to_proto(resolution.at)),
        }),
    )
}

/// `personal` is the case's opened personal data, `None` once erased.
pub fn case_to_proto(c: &Case, personal: Option<&PersonalData>) -> pb::Case {
    let traveler = match personal {
        Some(p) => wire::traveler_to_proto(&Traveler {
            id: c.traveler.id,
            preferred_language: c.traveler.preferred_language.clone(),
            personal: p.clone(),
        }),
        None => common::Traveler {
            id: Some(common::TravelerId { value: c.traveler.id.to_string() }),
            preferred_language: c.traveler.preferred_language.clone().unwrap_or_default(),
            ..Default::default()
        },
    };
    let erased_at = match c.traveler.personal {
        StoredPersonal::Erased { at } => Some(time::to_proto(at)),
        StoredPersonal::Sealed(_) => None,
    };
    pb::Case {
        case_id: Some(common::CaseId { value: c.id.to_string() }),
        case_number: c.number.clone(),
        status: c.status.to_proto(),
        traveler: Some(traveler),
        personal_data_erased_at: erased_at,
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
        incident_id: c.incident_id.map(|i| common::IncidentId { value: i.to_string() }),
        language: c.language.clone().unwrap_or_default(),
        interactions: c
            .interactions
            .iter()
            .map(|i| pb::Interaction {
                at: Some(time::to_proto(i.at)),
                channel: i.channel.to_proto(),
                description: i.description.clone(),
                requested_outcomes: i.requested_outcomes.iter().map(|o| o.to_proto()).collect(),
            })
            .collect(),
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
        let audit = Audit::of_request(&request)?;
        // Refused before any work: under a flood the cheapest answer is the best one. Shed
        // contacts are not audited (that would be a write per refusal, at the worst moment);
        // the admission metrics count them.
        let priority = contact_priority(request.get_ref());
        if let Some(limiter) = &self.limiter
            && priority != contact::Priority::Safety
        {
            let source = format!("{}:{}", audit.actor.kind.as_str(), audit.actor.id);
            limiter.check(&source, 1).await?;
        }
        let _permit = match &self.admission {
            Some(a) => Some(a.admit(priority).await?),
            None => None,
        };
        let result = self.open(&audit, request.into_inner(), priority).await;
        Ok(Response::new(self.audit.refusal(&audit, None, result).await?))
    }

    async fn get_case(
        &self,
        request: Request<pb::GetCaseRequest>,
    ) -> Result<Response<pb::GetCaseResponse>, Status> {
        let id = case_id(request.get_ref().case_id.as_ref())?;
        let case = self.repo.get_case(id).await?.ok_or(IntakeError::CaseNotFound(id))?;
        Ok(Response::new(pb::GetCaseResponse { case: Some(self.reveal(&case).await?) }))
    }

    async fn list_cases(
        &self,
        request: Request<pb::ListCasesRequest>,
    ) -> Result<Response<pb::ListCasesResponse>, Status> {
        let (filter, cursor, limit) = list_request(request.get_ref())?;
        let (cases, next) = self.repo.list_cases(&filter, cursor, limit).await?;
        let mut answered = Vec::with_capacity(cases.len());
        for case in &cases {
            answered.push(self.reveal(case).await?);
        }
        Ok(Response::new(pb::ListCasesResponse {
            cases: answered,
            next_page_token: next.as_ref().map(encode_cursor).unwrap_or_default(),
        }))
    }

    async fn resolve_case(
        &self,
        request: Request<pb::ResolveCaseRequest>,
    ) -> Result<Response<pb::ResolveCaseResponse>, Status> {
        let audit = Audit::of_request(&request)?;
        let req = request.into_inner();
        let target = req.case_id.as_ref().and_then(|c| c.value.parse().ok());
        let result = self.resolve(&audit, req).await;
        let case = self.audit.refusal(&audit, target, result).await?;
        Ok(Response::new(pb::ResolveCaseResponse { case: Some(case) }))
    }

    async fn export_traveler(
        &self,
        request: Request<pb::ExportTravelerRequest>,
    ) -> Result<Response<pb::ExportTravelerResponse>, Status> {
        let audit = Audit::of_request(&request)?;
        let result = match traveler_id_of(request.get_ref().traveler_id.as_ref()) {
            Ok(traveler) => self.export(&audit, traveler).await,
            Err(e) => Err(e),
        };
        Ok(Response::new(self.audit.refusal(&audit, None, result).await?))
    }

    async fn erase_traveler(
        &self,
        request: Request<pb::EraseTravelerRequest>,
    ) -> Result<Response<pb::EraseTravelerResponse>, Status> {
        let audit = Audit::of_request(&request)?;
        let result = self.erase(&audit, request.get_ref()).await;
        Ok(Response::new(self.audit.refusal(&audit, None, result).await?))
    }

    async fn upsert_trip(
        &self,
        request: Request<pb::UpsertTripRequest>,
    ) -> Result<Response<pb::UpsertTripResponse>, Status> {
        let audit = Audit::of_request(&request)?;
        let result = self.upsert_trip(&audit, request.get_ref()).await;
        Ok(Response::new(self.audit.refusal(&audit, None, result).await?))
    }

    async fn import_itineraries(
        &self,
        request: Request<tonic::Streaming<pb::ImportItinerariesRequest>>,
    ) -> Result<Response<pb::ImportItinerariesResponse>, Status> {
        let audit = Audit::of_request(&request)?;
        let result = self.import(&audit, request.into_inner()).await;
        Ok(Response::new(self.audit.refusal(&audit, None, result).await?))
    }

    async fn find_travelers(
        &self,
        request: Request<pb::FindTravelersRequest>,
    ) -> Result<Response<pb::FindTravelersResponse>, Status> {
        Ok(Response::new(self.find(request.get_ref()).await?))
    }

    async fn report_disruption(
        &self,
        request: Request<pb::ReportDisruptionRequest>,
    ) -> Result<Response<pb::ReportDisruptionResponse>, Status> {
        let audit = Audit::of_request(&request)?;
        let result = self.report(&audit, request.get_ref()).await;
        Ok(Response::new(self.audit.refusal(&audit, None, result).await?))
    }

    async fn get_incident(
        &self,
        request: Request<pb::GetIncidentRequest>,
    ) -> Result<Response<pb::GetIncidentResponse>, Status> {
        Ok(Response::new(self.get_incident_view(request.get_ref()).await?))
    }

    async fn list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        Ok(Response::new(self.notifications(request.get_ref()).await?))
    }

    async fn acknowledge_notification(
        &self,
        request: Request<pb::AcknowledgeNotificationRequest>,
    ) -> Result<Response<pb::AcknowledgeNotificationResponse>, Status> {
        let audit = Audit::of_request(&request)?;
        let result = self.acknowledge(&audit, request.get_ref()).await;
        Ok(Response::new(self.audit.refusal(&audit, None, result).await?))
    }
}

/// The acknowledgement a contact just wrote, as the dispatcher sends it: on the case it opened,
/// or on the open case it joined (whose sealed copy of the traveler's data the message opens).
fn written_ack(mut ack: NewNotification, case: &Case) -> DueNotification {
    ack.case_id = case.id;
    let sealed = match &case.traveler.personal {
        StoredPersonal::Sealed(sealed) => Some(sealed.clone()),
        StoredPersonal::Erased { .. } => None,
    };
    DueNotification::written(ack, case.number.clone(), case.first_response_due, sealed, None)
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
