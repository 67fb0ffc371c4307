//! `detour.audit.v1.AuditService` for the services one host runs: each keeps its own trail, the
//! answer merges them newest first.

use detour_domain::wire::{self, decode_page_token, encode_page_token};
use detour_domain::{CaseId, time};
use detour_errors::{ErrorCode, ServiceError, Violations};
use detour_proto::audit::v1 as pb;
use detour_proto::audit::v1::audit_service_server::AuditService;
use detour_proto::common::v1 as common;
use detour_storage::StorageError;
use tonic::{Request, Response, Status};

use crate::AuditRecord;
use crate::store::{AuditFilter, AuditLog, Cursor};

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 500;
const MAX_ACTOR_ID: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{0}")]
    Invalid(Violations),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

impl ServiceError for AuditError {
    fn error_code(&self) -> ErrorCode {
        match self {
            Self::Invalid(_) => ErrorCode::InvalidArgument,
            Self::Storage(e) => e.error_code(),
        }
    }

    fn field_violations(&self) -> Option<&Violations> {
        match self {
            Self::Invalid(v) => Some(v),
            Self::Storage(_) => None,
        }
    }
}

detour_errors::impl_into_status!(AuditError);

/// Reads the trails of `logs`, one per hosted service.
#[derive(Debug, Clone)]
pub struct AuditApi {
    logs: Vec<AuditLog>,
}

impl AuditApi {
    pub fn new(logs: Vec<AuditLog>) -> Self {
        Self { logs }
    }

    pub fn into_server(self) -> pb::audit_service_server::AuditServiceServer<Self> {
        pb::audit_service_server::AuditServiceServer::new(self)
    }
}

fn filter_of(req: &pb::ListAuditRecordsRequest) -> Result<(AuditFilter, Option<Cursor>, u32), AuditError> {
    let mut v = Violations::new();
    let case_id: Option<CaseId> =
        wire::optional_id(&mut v, "case_id.value", req.case_id.as_ref().map(|c| c.value.as_str()));
    let actor = req.actor_id.trim();
    let actor_id = if actor.is_empty() {
        None
    } else if actor.chars().count() > MAX_ACTOR_ID {
        v.add("actor_id", format!("must be at most {MAX_ACTOR_ID} characters"));
        None
    } else {
        Some(actor.to_owned())
    };
    let from = wire::optional_instant(&mut v, "from", req.from.as_ref());
    let to = wire::optional_instant(&mut v, "to", req.to.as_ref());
    if let (Some(f), Some(t)) = (from, to)
        && f >= t
    {
        v.add("to", "must be after from");
    }
    let limit = wire::page_size(&mut v, "page_size", req.page_size, DEFAULT_PAGE, MAX_PAGE);
    let after = wire::page_token(&mut v, "page_token", &req.page_token, |t| {
        decode_page_token::<String>(t).map(|(at_micros, audit_id)| Cursor { at_micros, audit_id })
    });
    v.finish((AuditFilter { case_id, actor_id, from, to }, after, limit)).map_err(AuditError::Invalid)
}

fn to_proto(r: &AuditRecord) -> pb::AuditRecord {
    pb::AuditRecord {
        audit_id: r.id.to_string(),
        at: Some(time::to_proto(r.at)),
        service: r.service.clone(),
        actor: Some(r.actor.to_proto()),
        action: r.action.clone(),
        case_id: r.case_id.map(|c| common::CaseId { value: c.to_string() }),
        targets: r
            .targets
            .iter()
            .map(|t| pb::AuditTarget { kind: t.kind.clone(), id: t.id.clone() })
            .collect(),
        trace_id: r.trace_id.clone().unwrap_or_default(),
        outcome: r.outcome.clone(),
    }
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn list_audit_records(
        &self,
        request: Request<pb::ListAuditRecordsRequest>,
    ) -> Result<Response<pb::ListAuditRecordsResponse>, Status> {
        let (filter, after, limit) = filter_of(request.get_ref())?;
        let pages = futures::future::try_join_all(
            self.logs.iter().map(|log| log.list(&filter, after.clone(), limit)),
        )
        .await
        .map_err(AuditError::from)?;
        // Each trail gave its newest `limit + 1` after the cursor; the merged newest `limit` are
        // therefore exact, and one more tells whether a next page exists.
        let mut records: Vec<AuditRecord> = pages.into_iter().flatten().collect();
        records.sort_by_key(|r| std::cmp::Reverse((r.at, r.id)));
        let more = records.len() > limit as usize;
        records.truncate(limit as usize);
        let next_page_token = match (more, records.last()) {
            (true, Some(last)) => encode_page_token(time::to_micros(last.at), &last.id),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListAuditRecordsResponse {
            records: records.iter().map(to_proto).collect(),
            next_page_token,
        }))
    }
}
