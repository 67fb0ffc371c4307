//! Storage of the itinerary registry, incidents and notifications: the crisis half of intake's
//! one repository interface ([`super::IntakeRepository`] extends [`CrisisRepository`]).

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use detour_audit::Audit;
use detour_domain::{IncidentId, Instant, NotificationId, TravelerId};
use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::crisis::{
    Affected, AffectedCursor, DisruptionReport, DueNotification, FanoutBatch, FanoutTarget, FanoutWritten,
    Incident, IncidentCounts, Notification, NotificationCursor, NotificationScope, RegisteredTraveler,
    ReportOutcome, Scope, SendResult, StoredTrip,
};
use crate::error::IntakeError;
use crate::keys::Handle;

#[async_trait]
pub trait CrisisRepository: Send + Sync + 'static {
    /// Stores trips, each replacing an earlier version of itself, in one transaction; answers,
    /// per trip, whether it was new.
    async fn upsert_trips(&self, trips: &[StoredTrip], audit: &Audit) -> Result<Vec<bool>, IntakeError>;

    /// Travelers on the segments `scope` covers, by (traveler, booking, position).
    async fn find_travelers(
        &self,
        scope: &Scope,
        after: Option<AffectedCursor>,
        limit: u32,
    ) -> Result<(Vec<Affected>, Option<AffectedCursor>), IntakeError>;

    async fn registered_traveler(&self, id: TravelerId) -> Result<Option<RegisteredTraveler>, IntakeError>;

    /// Travelers whose e-mail or phone has this lookup index.
    async fn travelers_by_index(
        &self,
        handle: Handle,
        index: &str,
    ) -> Result<Vec<RegisteredTraveler>, IntakeError>;

    async fn travelers_of_booking(
        &self,
        booking_reference: &str,
    ) -> Result<Vec<RegisteredTraveler>, IntakeError>;

    /// Declares the incident for `report`'s scope, or updates it (a new revision when what
    /// travelers must be told changed).
    async fn report_disruption(
        &self,
        report: &DisruptionReport,
        audit: &Audit,
    ) -> Result<(Incident, ReportOutcome), IntakeError>;

    async fn incident(&self, id: IncidentId) -> Result<Option<(Incident, IncidentCounts)>, IntakeError>;

    /// Takes the fan-out of one incident that is behind its revision, for this replica until
    /// `lease_until`; at the start of a pass the scope's travelers are captured as targets.
    /// Answers the incident and where the pass stands (the last traveler done).
    async fn claim_fanout(
        &self,
        now: Instant,
        lease_until: Instant,
    ) -> Result<Option<(Incident, Option<TravelerId>)>, IntakeError>;

    /// The next targets of an incident's pass, in traveler id order, with the last traveler id
    /// scanned (the next call's `after`; `None` when the pass is through). A target whose trip
    /// no longer holds the traveler or the segment is skipped. What each target was told
    /// (`existing`) is looked up only from `revision` 2 on: before that nobody can have been told
    /// of an earlier one, and a batch written twice is settled by `write_fanout`.
    async fn fanout_targets(
        &self,
        incident: IncidentId,
        revision: i32,
        after: Option<TravelerId>,
        limit: u32,
    ) -> Result<(Vec<FanoutTarget>, Option<TravelerId>), IntakeError>;

    /// Writes one batch: the cases not opened yet (a traveler already holding one for this
    /// incident is skipped, so a batch written twice opens nothing twice), the update
    /// notifications, their events and audit records; moves the pass's cursor and lease.
    /// Answers how many cases were opened and their numbers. A new case's notification written
    /// with `leased_until` stays leased; one that went to an existing case instead is due now.
    async fn write_fanout(
        &self,
        incident: IncidentId,
        batch: &FanoutBatch,
        lease_until: Instant,
        audit: &Audit,
    ) -> Result<FanoutWritten, IntakeError>;

    /// Marks `revision` told to everyone and releases the lease.
    async fn finish_fanout(
        &self,
        incident: IncidentId,
        revision: i32,
        at: Instant,
    ) -> Result<(), IntakeError>;

    /// Claims up to `limit` notifications due at `now` for this dispatcher until `lease_until`.
    async fn claim_notifications(
        &self,
        now: Instant,
        lease_until: Instant,
        limit: u32,
    ) -> Result<Vec<DueNotification>, IntakeError>;

    /// Records the attempts and moves each notification on.
    async fn record_sends(&self, results: &[SendResult], at: Instant) -> Result<(), IntakeError>;

    async fn list_notifications(
        &self,
        scope: NotificationScope,
        after: Option<NotificationCursor>,
        limit: u32,
    ) -> Result<(Vec<Notification>, Option<NotificationCursor>), IntakeError>;

    /// The traveler saw it. Acknowledging twice changes nothing.
    async fn acknowledge_notification(
        &self,
        id: NotificationId,
        at: Instant,
        audit: &Audit,
    ) -> Result<Notification, IntakeError>;
}

/// Appends ` AND ` the condition that segment alias `s` lies in `scope`.
pub(super) fn push_scope<DB: Database>(q: &mut QueryBuilder<DB>, scope: &Scope)
where
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
    use detour_domain::time::to_micros;
    let (from, until) = match scope {
        Scope::Flight { .. } => (0, 0),
        Scope::Airport { window, .. }
        | Scope::Property { window, .. }
        | Scope::Operator { window, .. }
        | Scope::Area { window, .. } => (to_micros(window.from), to_micros(window.until)),
    };
    match scope {
        Scope::Flight { flight_number, local_date } => {
            q.push(" AND s.kind = 'flight' AND s.service_reference = ")
                .push_bind(flight_number.clone())
                .push(" AND s.local_date = ")
                .push_bind(local_date.to_string());
        }
        Scope::Airport { airport, departures_only, .. } => {
            q.push(" AND s.kind = 'flight' AND ((s.origin = ")
                .push_bind(airport.clone())
                .push(" AND s.starts_at >= ")
                .push_bind(from)
                .push(" AND s.starts_at < ")
                .push_bind(until)
                .push(")");
            if !departures_only {
                q.push(" OR (s.destination = ")
                    .push_bind(airport.clone())
                    .push(" AND s.ends_at >= ")
                    .push_bind(from)
                    .push(" AND s.ends_at < ")
                    .push_bind(until)
                    .push(")");
            }
            q.push(")");
        }
        Scope::Property { property_code, .. } => {
            q.push(" AND s.kind = 'hotel' AND s.supplier_code = ")
                .push_bind(property_code.clone())
                .push(" AND s.starts_at < ")
                .push_bind(until)
                .push(" AND COALESCE(s.ends_at, s.starts_at) > ")
                .push_bind(from);
        }
        Scope::Operator { operator_code, .. } => {
            q.push(" AND s.kind IN ('ground_transport', 'tour') AND s.supplier_code = ")
                .push_bind(operator_code.clone())
                .push(" AND s.starts_at < ")
                .push_bind(until)
                .push(" AND COALESCE(s.ends_at, s.starts_at) >= ")
                .push_bind(from);
        }
        Scope::Area { locations, .. } => {
            q.push(" AND ((s.origin IN (");
            let mut sep = q.separated(", ");
            for l in locations {
                sep.push_bind(l.clone());
            }
            q.push(") AND s.starts_at >= ")
                .push_bind(from)
                .push(" AND s.starts_at < ")
                .push_bind(until)
                .push(") OR (s.destination IN (");
            let mut sep = q.separated(", ");
            for l in locations {
                sep.push_bind(l.clone());
            }
            q.push(") AND s.starts_at < ")
                .push_bind(until)
                .push(" AND COALESCE(s.ends_at, s.starts_at) >= ")
                .push_bind(from)
                .push("))");
        }
    }
}

/// Appends `(v1, v2, …)` binding each value.
pub(super) fn push_in<DB: Database>(q: &mut QueryBuilder<DB>, values: impl IntoIterator<Item = String>)
where
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
    q.push("(");
    let mut sep = q.separated(", ");
    for v in values {
        sep.push_bind(v);
    }
    q.push(")");
}

/// Keeps the last trip of each booking reference, in the order of first appearance: an import
/// that names a trip twice stores its last version.
pub(super) fn last_of_each(trips: &[StoredTrip]) -> (Vec<&StoredTrip>, Vec<usize>) {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut kept: Vec<&StoredTrip> = Vec::new();
    let mut slot_of_input = Vec::with_capacity(trips.len());
    for t in trips {
        match index.get(t.booking_reference.as_str()) {
            Some(&i) => {
                kept[i] = t;
                slot_of_input.push(i);
            }
            None => {
                index.insert(&t.booking_reference, kept.len());
                slot_of_input.push(kept.len());
                kept.push(t);
            }
        }
    }
    (kept, slot_of_input)
}

/// The travelers of `trips`, each once (the last version wins).
pub(super) fn distinct_travelers<'t>(trips: &[&'t StoredTrip]) -> Vec<&'t RegisteredTraveler> {
    let mut seen: HashMap<TravelerId, usize> = HashMap::new();
    let mut out: Vec<&RegisteredTraveler> = Vec::new();
    for t in trips.iter().flat_map(|t| &t.travelers) {
        match seen.get(&t.id) {
            Some(&i) => out[i] = t,
            None => {
                seen.insert(t.id, out.len());
                out.push(t);
            }
        }
    }
    out
}

pub(super) fn distinct<T: std::hash::Hash + Eq + Clone>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut seen = HashSet::new();
    items.into_iter().filter(|i| seen.insert(i.clone())).collect()
}

/// Rows per multi-row insert: at most ~16 parameters a row, far below SQLite's 32,766 and
/// PostgreSQL's 65,535 bound parameters.
pub(super) const ROWS_PER_INSERT: usize = 500;
