//! The audit trail.
//!
//! A handler knows who is calling and which action they asked for ([`Audit::of_request`]); a
//! consumer knows which event it is applying and whose action started the chain
//! ([`Audit::of_event`]). The repository turns that into an [`AuditRecord`] with the targets and
//! the outcome and appends it in the transaction of the change ([`AuditWrite`]), so a change and
//! its record commit or vanish together. A refused action left nothing to commit with; the
//! handler records it on its own ([`AuditLog::refused`]).
//!
//! Records hold identifiers only (subject ids, service names, case and offer ids), never names or
//! contact details, so they can be kept for good and erasure never has to touch them. The
//! table's triggers refuse every update and delete, on both backends.

use detour_auth::{AuthorizedRpc, Caller, Principal};
use detour_domain::{Actor, AuditId, CaseId, Instant, events, time};
use detour_errors::ErrorCode;
use detour_proto::events::v1::Envelope;
use serde::{Deserialize, Serialize};

mod grpc;
mod store;

pub use grpc::AuditApi;
pub use store::{AuditFilter, AuditLog, AuditWrite, Cursor};

/// Who is acting, on what action, from which trace: known at the boundary, before the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    pub actor: Actor,
    /// The RPC (`detour.intake.v1.IntakeService/OpenCase`) or `event detour.events.v1.CaseOpened`.
    pub action: String,
    pub trace_id: Option<String>,
}

impl Audit {
    /// The caller of a request, as the auth layer identified them, and the RPC they called.
    /// Fails with `UNAUTHENTICATED` when no principal is attached: a state change by nobody is
    /// not one the suite makes.
    pub fn of_request<T>(request: &tonic::Request<T>) -> Result<Self, tonic::Status> {
        let principal = Principal::from_request(request)
            .ok_or_else(|| tonic::Status::unauthenticated("no authenticated caller"))?;
        let action = request
            .extensions()
            .get::<AuthorizedRpc>()
            .map_or_else(|| "unknown rpc".to_owned(), |rpc| rpc.as_str().to_owned());
        Ok(Self { actor: actor_of(principal), action, trace_id: detour_telemetry::current_trace_id() })
    }

    /// Service `service` applying `env`: it acts for the end user of the event's own actor.
    pub fn of_event(service: &str, env: &Envelope) -> Self {
        let upstream = events::actor_of(env);
        let name = events::event_name(env).unwrap_or("Unknown");
        Self {
            actor: Actor::reacting_to(service, upstream.as_ref()),
            action: format!("event detour.events.v1.{name}"),
            trace_id: detour_telemetry::current_trace_id()
                .or_else(|| trace_id_of_context(env.trace_context.get("traceparent"))),
        }
    }

    /// An action taken by `service` on its own (a timer, a sweep), for nobody in particular.
    pub fn of_service(service: &str, action: impl Into<String>) -> Self {
        Self {
            actor: Actor::service(service, None),
            action: action.into(),
            trace_id: detour_telemetry::current_trace_id(),
        }
    }

    /// The record of this action's outcome, stamped now.
    pub fn record(&self, case_id: Option<CaseId>, targets: Vec<Target>, outcome: Outcome) -> AuditRecord {
        AuditRecord {
            id: AuditId::new(),
            at: time::now(),
            service: String::new(),
            actor: self.actor.clone(),
            action: self.action.clone(),
            case_id,
            targets,
            trace_id: self.trace_id.clone(),
            outcome: outcome.as_str().to_owned(),
        }
    }
}

/// The actor behind a principal: identifiers and role names only.
pub fn actor_of(principal: &Principal) -> Actor {
    match &principal.caller {
        Caller::User { subject, roles } => Actor::user(subject.clone(), roles.iter().map(|r| r.as_str())),
        Caller::Service { name, on_behalf_of } => Actor::service(name.clone(), on_behalf_of.clone()),
    }
}

/// The trace id inside a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`).
fn trace_id_of_context(traceparent: Option<&String>) -> Option<String> {
    let id = traceparent?.split('-').nth(1)?;
    (id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()) && id.chars().any(|c| c != '0'))
        .then(|| id.to_owned())
}

/// Something besides the case that an action touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub kind: String,
    pub id: String,
}

impl Target {
    pub fn new(kind: &str, id: impl ToString) -> Self {
        Self { kind: kind.to_owned(), id: id.to_string() }
    }
}

/// How an action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The change was made.
    Ok,
    /// A retry of a change made earlier (same idempotency key): nothing new was made.
    Replayed,
    /// Refused, for the reason the caller was given.
    Refused(ErrorCode),
}

impl Outcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Replayed => "replayed",
            Self::Refused(code) => code.as_str(),
        }
    }
}

/// One entry of the trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: AuditId,
    pub at: Instant,
    /// The service whose state the action changed; filled in when read back.
    pub service: String,
    pub actor: Actor,
    pub action: String,
    pub case_id: Option<CaseId>,
    pub targets: Vec<Target>,
    pub trace_id: Option<String>,
    pub outcome: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_are_read_from_traceparent_only_when_well_formed() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned();
        assert_eq!(trace_id_of_context(Some(&ok)).as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        for bad in
            ["", "00-xyz-00f067aa0ba902b7-01", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"]
        {
            assert_eq!(trace_id_of_context(Some(&bad.to_owned())), None, "{bad}");
        }
    }

    #[test]
    fn an_event_is_applied_for_the_user_who_started_the_chain() {
        let agent = Actor::user("u-9", ["agent"]);
        let env = events::envelope(
            "intake",
            CaseId::new(),
            time::now(),
            &agent,
            detour_proto::events::v1::envelope::Event::CaseResolved(Default::default()),
        );
        let audit = Audit::of_event("feedback", &env);
        assert_eq!(audit.actor, Actor::service("feedback", Some("u-9".into())));
        assert_eq!(audit.action, "event detour.events.v1.CaseResolved");
        assert_eq!(Outcome::Refused(ErrorCode::NotFound).as_str(), "not_found");
    }
}
