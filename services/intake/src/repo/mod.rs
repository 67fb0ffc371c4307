//! Intake's storage: one interface, a PostgreSQL and a SQLite implementation generated from the
//! same SQL (both backends accept `$n` parameters and `RETURNING`), and one contract test suite
//! run against both (`tests/repository.rs`).

#[macro_use]
mod crisis_sql;
pub mod crisis;

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use detour_audit::{Audit, AuditWrite, Outcome, Target};
use detour_domain::{CaseId, CaseStatus, IncidentId, Instant, NotificationId, TravelerId, time};
use detour_proto::events::v1::Envelope;
use detour_proto::events::v1::envelope::Event;
use detour_storage::decode::{self, instant, optional_instant, parse};
use detour_storage::keyset::{self, Keyset};

pub use crisis::CrisisRepository;

use crate::crisis::{
    Affected, AffectedCursor, DeliveryAttempt, DisruptionReport, DueNotification, FanoutBatch, FanoutCase,
    FanoutTarget, FanoutWritten, Incident, IncidentCounts, NewNotification, NextStep, Notification,
    NotificationCursor, NotificationScope, NotificationStatus, RegisteredTraveler, ReportOutcome, Scope,
    SendResult, StoredTrip, normalise_reference,
};
use crate::error::IntakeError;
use crate::keys::Handle;
use crate::model::{
    Applied, Case, CaseChange, CaseFilter, Cursor, Interaction, NewCase, OpenOutcome, Resolution,
    SealedPersonal, StoredDataKey, StoredPersonal, StoredTraveler, TimelineEntry, TravelerRef,
};

/// Notifications are listed oldest first.
const NOTIFICATION_PAGE: Keyset = Keyset::ascending("created_at", "notification_id");

/// Everything intake stores. Each method is one transaction; events it emits are written to
/// the outbox inside that transaction. The itinerary registry, incidents and notifications are
/// declared in [`CrisisRepository`], part of the same interface.
#[async_trait]
pub trait IntakeRepository: CrisisRepository + Send + Sync + 'static {
    /// Stores the case with its `CaseOpened` event and its acknowledgement; or adds the contact
    /// to the traveler's open case about the same segment; or answers the original outcome when
    /// the idempotency key was seen before. A merged or replayed case is answered without its
    /// timeline and interactions: the acknowledgement needs the case, and reading a long
    /// timeline for every contact of a storm would cost more than the write
    /// ([`Self::get_case`] reads them).
    async fn open_case(
        &self,
        new: NewCase,
        opened: Envelope,
        audit: &Audit,
    ) -> Result<OpenOutcome, IntakeError>;

    /// Opens many contacts with one transaction and one commit (group commit), answering in
    /// the order given. New cases and contacts joining an open case are written together;
    /// contacts that replay an earlier key, later contacts of a key or segment already in the
    /// batch, and every contact of a batch that could not be written together, are answered
    /// one by one through [`Self::open_case`], so each gets the answer it would have had alone.
    async fn open_cases(&self, batch: Vec<OpenRequest>) -> Vec<Result<OpenOutcome, IntakeError>>;

    async fn get_case(&self, id: CaseId) -> Result<Option<Case>, IntakeError>;

    /// Newest first, without timelines; the cursor of the next page when there is one.
    async fn list_cases(
        &self,
        filter: &CaseFilter,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<(Vec<Case>, Option<Cursor>), IntakeError>;

    /// Resolves an open case and emits `CaseResolved` (`resolved`, whose event the caller built).
    async fn resolve_case(
        &self,
        id: CaseId,
        resolution: Resolution,
        resolved: Envelope,
        audit: &Audit,
    ) -> Result<Case, IntakeError>;

    /// Applies another service's event once: a second delivery of `event_id` changes nothing.
    /// `resolved` is the `CaseResolved` event to emit when the change resolves the case.
    async fn apply_change(
        &self,
        consumer: &str,
        event_id: &str,
        change: CaseChange,
        resolved: Option<Envelope>,
        audit: &Audit,
    ) -> Result<Applied, IntakeError>;

    /// Every case of one traveler, oldest first, with timelines.
    async fn cases_of_traveler(&self, traveler: TravelerId) -> Result<Vec<Case>, IntakeError>;

    /// Destroys the personal data of every case of `traveler` not erased yet (sealed contact
    /// details, free text, the request fingerprint) and notes it on each timeline. Answers the
    /// cases erased now; `TravelerNotFound` when the traveler has no case at all.
    async fn erase_traveler(
        &self,
        traveler: TravelerId,
        at: Instant,
        audit: &Audit,
    ) -> Result<Vec<CaseId>, IntakeError>;

    /// The data keys of one tenant, every version.
    async fn data_keys(&self, tenant: &str) -> Result<Vec<StoredDataKey>, IntakeError>;

    /// Every stored data key, of every tenant.
    async fn all_data_keys(&self) -> Result<Vec<StoredDataKey>, IntakeError>;

    /// Stores a new data key version; false when that version exists already (another replica
    /// made it first).
    async fn add_data_key(&self, key: &StoredDataKey, audit: &Audit) -> Result<bool, IntakeError>;

    /// Replaces `key`'s wrapping with one by KEK `kek_id`; false when someone else already
    /// rewrapped it.
    async fn rewrap_data_key(
        &self,
        key: &StoredDataKey,
        kek_id: &str,
        wrapped: &[u8],
        audit: &Audit,
    ) -> Result<bool, IntakeError>;
}

/// One contact for [`IntakeRepository::open_cases`].
#[derive(Debug, Clone)]
pub struct OpenRequest {
    pub new: NewCase,
    pub opened: Envelope,
    pub audit: Audit,
}

/// The case as [`IntakeRepository::open_case`] stores it, without reading it back.
fn created_case(new: &NewCase, number: i64, entry: TimelineEntry) -> Case {
    Case {
        id: new.id,
        number: case_number(number),
        status: CaseStatus::Open,
        traveler: new.traveler.clone(),
        segment: new.segment.clone(),
        channel: new.channel,
        description: new.description.clone(),
        requested_outcomes: new.requested_outcomes.clone(),
        category: None,
        severity: None,
        queue: None,
        // As stored: to the microsecond, so the answer equals a later read.
        opened_at: time::from_micros(time::to_micros(new.received_at)).unwrap_or(new.received_at),
        first_response_due: time::from_micros(time::to_micros(new.first_response_due))
            .unwrap_or(new.first_response_due),
        resolution_due: None,
        resolved_at: None,
        resolution: None,
        timeline: vec![entry],
        incident_id: new.incident_id,
        language: new.language.clone(),
        acknowledgement_id: new.acknowledgement.as_ref().map(|a| a.id),
        interactions: Vec::new(),
    }
}

fn opened_entry(new: &NewCase, number: i64) -> TimelineEntry {
    TimelineEntry {
        at: new.received_at,
        kind: "case.opened".into(),
        actor: "intake".into(),
        summary: format!("Case {} opened from {}", case_number(number), new.channel),
    }
}

/// The `CaseOpened` event with the case number the transaction drew.
/// How one transaction moves its incidents' progress counts (`incidents` columns), per incident.
#[derive(Debug, Default)]
struct Tally {
    by_incident: HashMap<String, Moves>,
}

#[derive(Debug, Default)]
struct Moves {
    cases_opened: i64,
    queued: i64,
    delivered: i64,
    acknowledged: i64,
    undeliverable: i64,
    last_delivered_at: Option<i64>,
}

impl Tally {
    fn incident(&mut self, id: impl Into<String>) -> &mut Moves {
        self.by_incident.entry(id.into()).or_default()
    }

    /// A notification leaving `from` for `to`.
    fn moved(&mut self, incident: impl Into<String>, from: NotificationStatus, to: NotificationStatus) {
        let moves = self.incident(incident);
        *moves.count(from) -= 1;
        *moves.count(to) += 1;
    }
}

impl Moves {
    fn count(&mut self, status: NotificationStatus) -> &mut i64 {
        match status {
            NotificationStatus::Pending => &mut self.queued,
            NotificationStatus::Delivered => &mut self.delivered,
            NotificationStatus::Acknowledged => &mut self.acknowledged,
            NotificationStatus::Undeliverable => &mut self.undeliverable,
        }
    }
}

fn numbered(opened: &Envelope, number: i64) -> Envelope {
    let mut opened = opened.clone();
    if let Some(Event::CaseOpened(e)) = opened.event.as_mut() {
        e.case_number = case_number(number);
    }
    opened
}

fn contact_entry(new: &NewCase) -> TimelineEntry {
    TimelineEntry {
        at: new.received_at,
        kind: "case.contact".into(),
        actor: "intake".into(),
        summary: format!("The traveler got in touch again by {}", new.channel),
    }
}

/// Which contacts of a batch can be written together: the first of each idempotency key and
/// of each traveler's segment. Later ones replay or merge into the first, which they can only
/// see once it is committed.
fn first_of_each(batch: &[OpenRequest]) -> Vec<usize> {
    let mut keys = HashSet::new();
    let mut segments = HashSet::new();
    let mut firsts = Vec::with_capacity(batch.len());
    for (i, r) in batch.iter().enumerate() {
        let new_key = r.new.idempotency_key.as_ref().is_none_or(|k| keys.insert(k.clone()));
        let new_segment =
            r.new.segment_key.as_ref().is_none_or(|k| segments.insert((r.new.traveler.id, k.clone())));
        if new_key && new_segment && matches!(r.new.traveler.personal, StoredPersonal::Sealed(_)) {
            firsts.push(i);
        }
    }
    firsts
}

/// Cases are listed newest first.
const PAGE: Keyset = Keyset::descending("opened_at", "case_id");

pub(crate) fn case_number(n: i64) -> String {
    format!("DT-{n:07}")
}

/// The repository on one backend, for [`detour_events::sql_repositories!`]. The body is written
/// once, so the two implementations cannot drift apart.
macro_rules! sql_repository {
    ($name:ident, $db:ty, $pool:ty, $row:ty, $enqueue:path, $mark_processed:path, $begin:literal) => {
        crisis_sql_repository!($name, $db, $row, $begin);

        impl $name {
            fn case_from_row(row: &$row) -> Result<Case, IntakeError> {
                use sqlx::Row;
                let traveler: TravelerRef = decode::json(&row.try_get::<String, _>("traveler")?)?;
                let segment: String = row.try_get("segment")?;
                let requested: String = row.try_get("requested_outcomes")?;
                let sealed: Option<Vec<u8>> = row.try_get("personal_data")?;
                let version: Option<i64> = row.try_get("data_key_version")?;
                let erased_at = optional_instant(row.try_get("personal_data_erased_at")?)?;
                let personal = match (sealed, version, erased_at) {
                    (Some(ciphertext), Some(key_version), None) => StoredPersonal::Sealed(SealedPersonal {
                        tenant: row.try_get("tenant")?,
                        key_version,
                        ciphertext,
                    }),
                    (None, None, Some(at)) => StoredPersonal::Erased { at },
                    _ => return Err(decode::corrupt("personal data is neither sealed nor erased").into()),
                };
                Ok(Case {
                    id: parse(&row.try_get::<String, _>("case_id")?)?,
                    number: row.try_get("case_number")?,
                    status: parse(&row.try_get::<String, _>("status")?)?,
                    traveler: StoredTraveler {
                        id: traveler.id,
                        preferred_language: traveler.preferred_language,
                        personal,
                    },
                    segment: decode::json(&segment)?,
                    channel: parse(&row.try_get::<String, _>("channel")?)?,
                    description: row.try_get("description")?,
                    requested_outcomes: decode::json(&requested)?,
                    category: decode::optional(row.try_get("category")?)?,
                    severity: decode::optional(row.try_get("severity")?)?,
                    queue: row.try_get("queue")?,
                    opened_at: instant(row.try_get("opened_at")?)?,
                    first_response_due: instant(row.try_get("first_response_due")?)?,
                    resolution_due: optional_instant(row.try_get("resolution_due")?)?,
                    resolved_at: optional_instant(row.try_get("resolved_at")?)?,
                    resolution: row.try_get("resolution")?,
                    timeline: Vec::new(),
                    incident_id: decode::optional(row.try_get("incident_id")?)?,
                    language: row.try_get("language")?,
                    acknowledgement_id: decode::optional(row.try_get("acknowledgement_id")?)?,
                    interactions: Vec::new(),
                })
            }

            fn data_key_from_row(row: &$row) -> Result<StoredDataKey, IntakeError> {
                use sqlx::Row;
                Ok(StoredDataKey {
                    tenant: row.try_get("tenant")?,
                    version: row.try_get("version")?,
                    kek_id: row.try_get("kek_id")?,
                    wrapped: row.try_get("wrapped")?,
                    created_at: instant(row.try_get("created_at")?)?,
                })
            }

            async fn load_case(
                conn: &mut <$db as sqlx::Database>::Connection,
                id: CaseId,
                with_timeline: bool,
            ) -> Result<Option<Case>, IntakeError> {
                if with_timeline {
                    return Ok(Self::load_cases(conn, &[id]).await?.remove(&id));
                }
                let row = sqlx::query("SELECT * FROM cases WHERE case_id = $1")
                    .bind(id.to_string())
                    .fetch_optional(&mut *conn)
                    .await?;
                row.as_ref().map(Self::case_from_row).transpose()
            }

            async fn add_timeline(
                conn: &mut <$db as sqlx::Database>::Connection,
                case_id: CaseId,
                entry: &TimelineEntry,
            ) -> Result<(), IntakeError> {
                sqlx::query("INSERT INTO case_timeline (case_id, at, kind, actor, summary) VALUES ($1, $2, $3, $4, $5)")
                    .bind(case_id.to_string())
                    .bind(time::to_micros(entry.at))
                    .bind(&entry.kind)
                    .bind(&entry.actor)
                    .bind(&entry.summary)
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            }

            /// The answer given to an earlier request with this key: the case it opened or was
            /// merged into, with its acknowledgement.
            async fn replay(
                &self,
                key: &str,
                fingerprint: &str,
            ) -> Result<Option<(Case, Option<NotificationId>)>, IntakeError> {
                use sqlx::Row;
                let mut conn = self.pool.acquire().await?;
                // One round trip for both tables: nearly every key is new, so both are always
                // asked. The key is unique per table; should a race leave it in both, the case
                // it opened is the answer.
                let row = sqlx::query(
                    "SELECT 0 AS preference, case_id, request_fingerprint, acknowledgement_id FROM cases \
                     WHERE idempotency_key = $1 \
                     UNION ALL SELECT 1, case_id, request_fingerprint, acknowledgement_id FROM case_interactions \
                     WHERE idempotency_key = $1 \
                     ORDER BY preference LIMIT 1",
                )
                .bind(key)
                .fetch_optional(&mut *conn)
                .await?;
                let Some(row) = row else { return Ok(None) };
                let stored: Option<String> = row.try_get("request_fingerprint")?;
                if stored.as_deref() != Some(fingerprint) {
                    let mut v = detour_errors::Violations::new();
                    v.add("idempotency_key", "was already used for a different request");
                    return Err(IntakeError::IdempotencyKeyReused(v));
                }
                let id: CaseId = parse(&row.try_get::<String, _>("case_id")?)?;
                let ack = decode::optional(row.try_get("acknowledgement_id")?)?;
                Ok(Self::load_case(&mut conn, id, false).await?.map(|c| (c, ack)))
            }
            async fn audit_replay(&self, case: &Case, audit: &Audit) -> Result<(), IntakeError> {
                let record = audit.record(Some(case.id), vec![Target::new("traveler", case.traveler.id)], Outcome::Replayed);
                self.pool.acquire().await?.append_audit(&record).await?;
                Ok(())
            }

            /// `None` when the idempotency key turned up meanwhile: the caller goes round again
            /// and replays.
            async fn try_open(&self, new: &NewCase, opened: &Envelope, audit: &Audit) -> Result<Option<OpenOutcome>, IntakeError> {
                use sqlx::Row;
                if !matches!(new.traveler.personal, StoredPersonal::Sealed(_)) {
                    return Err(decode::corrupt("a new case must carry sealed personal data").into());
                }
                let mut tx = self.pool.begin_with($begin).await?;
                let open = match &new.segment_key {
                    Some(key) => sqlx::query("SELECT case_id FROM cases WHERE traveler_id = $1 AND open_segment_key = $2")
                        .bind(new.traveler.id.to_string())
                        .bind(key)
                        .fetch_optional(&mut *tx)
                        .await?
                        .map(|r| r.try_get::<String, _>("case_id"))
                        .transpose()?,
                    None => None,
                };
                if let Some(open) = open {
                    // The open case may have been written by this very request's twin (a retry
                    // racing it) after the replay check: the key is unique per table, not across
                    // cases and interactions, so look again now the case is visible.
                    if let Some(key) = &new.idempotency_key
                        && sqlx::query(
                            "SELECT 1 AS seen FROM cases WHERE idempotency_key = $1 \
                             UNION ALL SELECT 1 FROM case_interactions WHERE idempotency_key = $1",
                        )
                        .bind(key)
                        .fetch_optional(&mut *tx)
                        .await?
                        .is_some()
                    {
                        return Ok(None);
                    }
                    let id: CaseId = parse(&open)?;
                    let ack = new.acknowledgement.as_ref().map(|a| a.id);
                    Self::insert_interactions(&mut tx, &[(new, id)]).await?;
                    Self::add_timeline(&mut tx, id, &contact_entry(new)).await?;
                    if let Some(ack) = &new.acknowledgement {
                        let mut ack = ack.clone();
                        ack.case_id = id;
                        Self::insert_notifications(&mut tx, std::slice::from_ref(&ack)).await?;
                    }
                    let record = audit.record(Some(id), vec![Target::new("traveler", new.traveler.id)], Outcome::Ok);
                    tx.append_audit(&record).await?;
                    let case = Self::load_case(&mut tx, id, false).await?.ok_or(IntakeError::CaseNotFound(id))?;
                    tx.commit().await?;
                    self.wrote("case_interactions", 1);
                    self.wrote("case_timeline", 1);
                    self.wrote("notifications", usize::from(ack.is_some()));
                    return Ok(Some(OpenOutcome::Merged(case, ack)));
                }
                let numbers = Self::number_cases(&mut tx, &[new.id]).await?;
                let number =
                    numbers.get(&new.id).copied().ok_or_else(|| decode::corrupt("a new case got no number"))?;
                Self::insert_cases(&mut tx, &[(new, new.acknowledgement.as_ref().map(|a| a.id))], &numbers, false).await?;
                let entry = opened_entry(new, number);
                Self::add_timeline(&mut tx, new.id, &entry).await?;
                $enqueue(&mut tx, detour_domain::events::streams::INTAKE, &numbered(opened, number)).await?;
                if let Some(ack) = &new.acknowledgement {
                    Self::insert_notifications(&mut tx, std::slice::from_ref(ack)).await?;
                }
                let record = audit.record(Some(new.id), vec![Target::new("traveler", new.traveler.id)], Outcome::Ok);
                tx.append_audit(&record).await?;
                tx.commit().await?;
                self.committed();
                self.wrote("cases", 1);
                self.wrote("case_timeline", 1);
                self.wrote("notifications", usize::from(new.acknowledgement.is_some()));
                // Everything stored is known here: answering from it saves three reads on the
                // hottest path of a storm.
                Ok(Some(OpenOutcome::Created(created_case(new, number, entry))))
            }

            /// Writes the new cases and the contacts joining open cases among `batch` in one
            /// transaction: the indexes written, with their outcomes. The rest (replays, later
            /// contacts of a key or segment already in the batch) are left to
            /// [`IntakeRepository::open_case`]. Any failure, a race with another replica on a
            /// unique index included, writes nothing.
            async fn try_open_batch(&self, batch: &[OpenRequest]) -> Result<Vec<(usize, OpenOutcome)>, IntakeError> {
                use sqlx::Row;
                let mut candidates = first_of_each(batch);
                if candidates.len() < 2 {
                    return Ok(Vec::new());
                }
                let mut tx = self.pool.begin_with($begin).await?;
                let travelers: HashSet<String> = candidates
                    .iter()
                    .filter(|&&i| batch[i].new.segment_key.is_some())
                    .map(|&i| batch[i].new.traveler.id.to_string())
                    .collect();
                // The traveler's open case about the segment, which the contact joins.
                let mut open: HashMap<(String, String), CaseId> = HashMap::new();
                if !travelers.is_empty() {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "SELECT case_id, traveler_id, open_segment_key FROM cases WHERE open_segment_key IS NOT NULL AND traveler_id IN ",
                    );
                    crisis::push_in(&mut q, travelers);
                    for row in q.build().fetch_all(&mut *tx).await? {
                        open.insert(
                            (row.try_get::<String, _>("traveler_id")?, row.try_get::<String, _>("open_segment_key")?),
                            parse(&row.try_get::<String, _>("case_id")?)?,
                        );
                    }
                }
                // Keys after open cases: an open case seen above is committed, so the request that
                // wrote it is seen here if it had this key (PostgreSQL reads each statement's own
                // snapshot). A key seen before is a retry: answered here from what the earlier request stored
                // when the request is the same, left to the one-by-one path (which refuses it)
                // when it is not.
                let keys: Vec<String> =
                    candidates.iter().filter_map(|&i| batch[i].new.idempotency_key.clone()).collect();
                let mut replays: Vec<(usize, CaseId, Option<NotificationId>)> = Vec::new();
                if !keys.is_empty() {
                    let columns = "idempotency_key, case_id, request_fingerprint, acknowledgement_id";
                    let mut q = sqlx::QueryBuilder::<$db>::new(format!(
                        "SELECT 0 AS preference, {columns} FROM cases WHERE idempotency_key IN "
                    ));
                    crisis::push_in(&mut q, keys.iter().cloned());
                    q.push(format!(" UNION ALL SELECT 1, {columns} FROM case_interactions WHERE idempotency_key IN "));
                    crisis::push_in(&mut q, keys.iter().cloned());
                    q.push(" ORDER BY preference");
                    // The case's row wins over an interaction's, as in the one-by-one replay.
                    let mut seen: HashMap<String, (String, Option<String>, Option<String>)> = HashMap::new();
                    for row in q.build().fetch_all(&mut *tx).await? {
                        seen.entry(row.try_get("idempotency_key")?).or_insert((
                            row.try_get("case_id")?,
                            row.try_get("request_fingerprint")?,
                            row.try_get("acknowledgement_id")?,
                        ));
                    }
                    let mut retained = Vec::with_capacity(candidates.len());
                    for i in candidates {
                        let new = &batch[i].new;
                        match new.idempotency_key.as_ref().and_then(|k| seen.get(k)) {
                            None => retained.push(i),
                            Some((case_id, stored, ack)) if stored.as_deref() == Some(new.fingerprint.as_str()) => {
                                replays.push((i, parse(case_id)?, decode::optional(ack.clone())?));
                            }
                            Some(_) => {}
                        }
                    }
                    candidates = retained;
                }
                if candidates.is_empty() && replays.is_empty() {
                    return Ok(Vec::new());
                }
                let joins = |n: &NewCase| {
                    n.segment_key.as_ref().and_then(|k| open.get(&(n.traveler.id.to_string(), k.clone())).copied())
                };
                let (merges, creates): (Vec<usize>, Vec<usize>) =
                    candidates.iter().partition(|&&i| joins(&batch[i].new).is_some());
                let merges: Vec<(usize, CaseId)> =
                    merges.into_iter().filter_map(|i| joins(&batch[i].new).map(|c| (i, c))).collect();

                let ids: Vec<CaseId> = creates.iter().map(|&i| batch[i].new.id).collect();
                let numbers = Self::number_cases(&mut tx, &ids).await?;
                let cases: Vec<(&NewCase, Option<NotificationId>)> = creates
                    .iter()
                    .map(|&i| (&batch[i].new, batch[i].new.acknowledgement.as_ref().map(|a| a.id)))
                    .collect();
                Self::insert_cases(&mut tx, &cases, &numbers, false).await?;
                let mut created = Vec::with_capacity(creates.len());
                let mut events = Vec::with_capacity(creates.len());
                let mut acks = Vec::with_capacity(candidates.len());
                let mut records = Vec::with_capacity(candidates.len());
                let mut timeline: Vec<(CaseId, TimelineEntry)> = Vec::with_capacity(candidates.len());
                for &i in &creates {
                    let r = &batch[i];
                    let number =
                        numbers.get(&r.new.id).copied().ok_or_else(|| decode::corrupt("a new case got no number"))?;
                    events.push(numbered(&r.opened, number));
                    acks.extend(r.new.acknowledgement.iter().cloned());
                    records.push(r.audit.record(
                        Some(r.new.id),
                        vec![Target::new("traveler", r.new.traveler.id)],
                        Outcome::Ok,
                    ));
                    let entry = opened_entry(&r.new, number);
                    timeline.push((r.new.id, entry.clone()));
                    created.push((i, created_case(&r.new, number, entry)));
                }
                let joining: Vec<(&NewCase, CaseId)> = merges.iter().map(|(i, c)| (&batch[*i].new, *c)).collect();
                Self::insert_interactions(&mut tx, &joining).await?;
                for (i, case_id) in &merges {
                    let r = &batch[*i];
                    timeline.push((*case_id, contact_entry(&r.new)));
                    if let Some(ack) = &r.new.acknowledgement {
                        let mut ack = ack.clone();
                        ack.case_id = *case_id;
                        acks.push(ack);
                    }
                    records.push(r.audit.record(
                        Some(*case_id),
                        vec![Target::new("traveler", r.new.traveler.id)],
                        Outcome::Ok,
                    ));
                }
                let entries: Vec<(CaseId, &TimelineEntry)> = timeline.iter().map(|(c, e)| (*c, e)).collect();
                Self::insert_timeline(&mut tx, &entries).await?;
                Self::insert_notifications(&mut tx, &acks).await?;
                detour_events::outbox::EnqueueMany::enqueue_many(&mut *tx, detour_domain::events::streams::INTAKE, &events)
                    .await?;
                let joined: Vec<CaseId> =
                    merges.iter().map(|(_, c)| *c).chain(replays.iter().map(|(_, c, _)| *c)).collect();
                let loaded = Self::load_case_rows(&mut tx, &joined).await?;
                for (i, case_id, _) in &replays {
                    let case = loaded.get(case_id).ok_or(IntakeError::CaseNotFound(*case_id))?;
                    records.push(batch[*i].audit.record(
                        Some(*case_id),
                        vec![Target::new("traveler", case.traveler.id)],
                        Outcome::Replayed,
                    ));
                }
                tx.append_audit_many(&records).await?;
                tx.commit().await?;
                self.committed();
                self.wrote("cases", creates.len());
                self.wrote("case_interactions", merges.len());
                self.wrote("case_timeline", timeline.len());
                self.wrote("notifications", acks.len());
                let mut answers: Vec<(usize, OpenOutcome)> =
                    created.into_iter().map(|(i, c)| (i, OpenOutcome::Created(c))).collect();
                for (i, case_id) in merges {
                    // A case may be answered twice (a contact joining it and the retry of an
                    // earlier one), so each answer takes a copy.
                    let case = loaded.get(&case_id).cloned().ok_or(IntakeError::CaseNotFound(case_id))?;
                    answers.push((i, OpenOutcome::Merged(case, batch[i].new.acknowledgement.as_ref().map(|a| a.id))));
                }
                for (i, case_id, ack) in replays {
                    let case = loaded.get(&case_id).cloned().ok_or(IntakeError::CaseNotFound(case_id))?;
                    answers.push((i, OpenOutcome::Replayed(case, ack)));
                }
                Ok(answers)
            }

            /// Loads the rows of `ids`, without timelines and interactions: what an
            /// acknowledgement needs, one query.
            async fn load_case_rows(
                conn: &mut <$db as sqlx::Database>::Connection,
                ids: &[CaseId],
            ) -> Result<HashMap<CaseId, Case>, IntakeError> {
                let mut cases = HashMap::with_capacity(ids.len());
                for chunk in ids.chunks(crisis::ROWS_PER_INSERT) {
                    let mut q = sqlx::QueryBuilder::<$db>::new("SELECT * FROM cases WHERE case_id IN ");
                    crisis::push_in(&mut q, chunk.iter().map(|c| c.to_string()));
                    for row in q.build().fetch_all(&mut *conn).await? {
                        let case = Self::case_from_row(&row)?;
                        cases.insert(case.id, case);
                    }
                }
                Ok(cases)
            }

            /// Loads `ids` with their timelines and interactions, three queries for them all.
            async fn load_cases(
                conn: &mut <$db as sqlx::Database>::Connection,
                ids: &[CaseId],
            ) -> Result<HashMap<CaseId, Case>, IntakeError> {
                use sqlx::Row;
                let mut cases = Self::load_case_rows(&mut *conn, ids).await?;
                for chunk in ids.chunks(crisis::ROWS_PER_INSERT) {
                    let ids = || chunk.iter().map(|c| c.to_string());
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "SELECT case_id, at, kind, actor, summary FROM case_timeline WHERE case_id IN ",
                    );
                    crisis::push_in(&mut q, ids());
                    q.push(" ORDER BY case_id, at, seq");
                    for r in q.build().fetch_all(&mut *conn).await? {
                        let id: CaseId = parse(&r.try_get::<String, _>("case_id")?)?;
                        if let Some(case) = cases.get_mut(&id) {
                            case.timeline.push(TimelineEntry {
                                at: instant(r.try_get("at")?)?,
                                kind: r.try_get("kind")?,
                                actor: r.try_get("actor")?,
                                summary: r.try_get("summary")?,
                            });
                        }
                    }
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "SELECT case_id, at, channel, description, requested_outcomes FROM case_interactions WHERE case_id IN ",
                    );
                    crisis::push_in(&mut q, ids());
                    q.push(" ORDER BY case_id, at, seq");
                    for r in q.build().fetch_all(&mut *conn).await? {
                        let id: CaseId = parse(&r.try_get::<String, _>("case_id")?)?;
                        if let Some(case) = cases.get_mut(&id) {
                            case.interactions.push(Interaction {
                                at: instant(r.try_get("at")?)?,
                                channel: parse(&r.try_get::<String, _>("channel")?)?,
                                description: r.try_get("description")?,
                                requested_outcomes: decode::json(&r.try_get::<String, _>("requested_outcomes")?)?,
                            });
                        }
                    }
                }
                Ok(cases)
            }

            /// Marks the case resolved inside `conn`'s transaction; false when it already was.
            async fn mark_resolved(
                conn: &mut <$db as sqlx::Database>::Connection,
                id: CaseId,
                resolution: &Resolution,
            ) -> Result<bool, IntakeError> {
                let done = sqlx::query(
                    "UPDATE cases SET status = $1, resolved_at = $2, resolution = $3, open_segment_key = NULL \
                     WHERE case_id = $4 AND status <> $1",
                )
                .bind(CaseStatus::Resolved.as_str())
                .bind(time::to_micros(resolution.at))
                .bind(&resolution.text)
                .bind(id.to_string())
                .execute(&mut *conn)
                .await?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                let entry = TimelineEntry {
                    at: resolution.at,
                    kind: "case.resolved".into(),
                    actor: "intake".into(),
                    summary: resolution.text.clone(),
                };
                Self::add_timeline(conn, id, &entry).await?;
                Ok(true)
            }
        }

        #[async_trait]
        impl IntakeRepository for $name {
            async fn open_case(&self, new: NewCase, opened: Envelope, audit: &Audit) -> Result<OpenOutcome, IntakeError> {
                // A request racing another with the same key, or the same traveler's contact about
                // the same segment, loses on a unique index and goes round again: then it is a
                // replay or a merge.
                for _ in 0..3 {
                    if let Some(key) = &new.idempotency_key {
                        if let Some((case, ack)) = self.replay(key, &new.fingerprint).await? {
                            self.audit_replay(&case, audit).await?;
                            return Ok(OpenOutcome::Replayed(case, ack));
                        }
                    }
                    match self.try_open(&new, &opened, audit).await {
                        Err(IntakeError::Storage(e)) if e.is_unique_violation() => continue,
                        Ok(None) => continue,
                        Ok(Some(outcome)) => return Ok(outcome),
                        Err(e) => return Err(e),
                    }
                }
                Err(detour_storage::StorageError::Corrupt("a contact kept racing another".into()).into())
            }
            async fn open_cases(&self, batch: Vec<OpenRequest>) -> Vec<Result<OpenOutcome, IntakeError>> {
                let mut written: HashMap<usize, OpenOutcome> = HashMap::new();
                if batch.len() > 1 {
                    match self.try_open_batch(&batch).await {
                        Ok(cases) => written.extend(cases),
                        Err(e) => tracing::debug!(error = %e, contacts = batch.len(), "group commit failed; opening one by one"),
                    }
                }
                let answers = batch.into_iter().enumerate().map(|(i, r)| {
                    let done = written.remove(&i);
                    async move {
                        match done {
                            Some(outcome) => Ok(outcome),
                            None => self.open_case(r.new, r.opened, &r.audit).await,
                        }
                    }
                });
                futures::future::join_all(answers).await
            }

            async fn get_case(&self, id: CaseId) -> Result<Option<Case>, IntakeError> {
                let mut conn = self.pool.acquire().await?;
                Self::load_case(&mut conn, id, true).await
            }

            async fn list_cases(
                &self,
                filter: &CaseFilter,
                after: Option<Cursor>,
                limit: u32,
            ) -> Result<(Vec<Case>, Option<Cursor>), IntakeError> {
                let mut q = sqlx::QueryBuilder::<$db>::new("SELECT * FROM cases WHERE 1 = 1");
                if let Some(s) = filter.status {
                    q.push(" AND status = ").push_bind(s.as_str());
                }
                if let Some(c) = filter.category {
                    q.push(" AND category = ").push_bind(c.as_str());
                }
                if let Some(c) = filter.channel {
                    q.push(" AND channel = ").push_bind(c.as_str());
                }
                if let Some(t) = filter.opened_after {
                    q.push(" AND opened_at >= ").push_bind(time::to_micros(t));
                }
                if let Some(t) = filter.opened_before {
                    q.push(" AND opened_at < ").push_bind(time::to_micros(t));
                }
                let after = after.map(|c| (c.opened_at_micros, c.case_id.to_string()));
                PAGE.push_page(&mut q, after, limit);
                let rows = q.build().fetch_all(&self.pool).await?;
                let cases = rows.iter().map(Self::case_from_row).collect::<Result<Vec<_>, _>>()?;
                Ok(keyset::page(cases, limit, |c| Cursor {
                    opened_at_micros: time::to_micros(c.opened_at),
                    case_id: c.id,
                }))
            }

            async fn resolve_case(
                &self,
                id: CaseId,
                resolution: Resolution,
                resolved: Envelope,
                audit: &Audit,
            ) -> Result<Case, IntakeError> {
                let mut tx = self.pool.begin_with($begin).await?;
                let case = Self::load_case(&mut tx, id, false).await?.ok_or(IntakeError::CaseNotFound(id))?;
                if case.status == CaseStatus::Resolved {
                    return Err(IntakeError::AlreadyResolved(id));
                }
                if !Self::mark_resolved(&mut tx, id, &resolution).await? {
                    return Err(IntakeError::AlreadyResolved(id));
                }
                $enqueue(&mut tx, detour_domain::events::streams::INTAKE, &resolved).await?;
                tx.append_audit(&audit.record(Some(id), Vec::new(), Outcome::Ok)).await?;
                let case = Self::load_case(&mut tx, id, true).await?.ok_or(IntakeError::CaseNotFound(id))?;
                tx.commit().await?;
                self.committed();
                Ok(case)
            }

            async fn apply_change(
                &self,
                consumer: &str,
                event_id: &str,
                change: CaseChange,
                resolved: Option<Envelope>,
                audit: &Audit,
            ) -> Result<Applied, IntakeError> {
                let mut tx = self.pool.begin_with($begin).await?;
                if !$mark_processed(&mut tx, consumer, event_id).await? {
                    return Ok(Applied::AlreadyProcessed);
                }
                let case = Self::load_case(&mut tx, change.case_id, false)
                    .await?
                    .ok_or(IntakeError::CaseNotFound(change.case_id))?;
                let status = change.status.map_or(case.status, |s| case.status.advance(s));
                match &change.triage {
                    Some(t) => {
                        sqlx::query(
                            "UPDATE cases SET status = $1, category = $2, severity = $3, queue = $4, \
                             first_response_due = $5, resolution_due = $6 WHERE case_id = $7",
                        )
                        .bind(status.as_str())
                        .bind(t.category.as_str())
                        .bind(t.severity.as_str())
                        .bind(&t.queue)
                        .bind(time::to_micros(t.first_response_due))
                        .bind(time::to_micros(t.resolution_due))
                        .bind(change.case_id.to_string())
                        .execute(&mut *tx)
                        .await?;
                    }
                    None => {
                        sqlx::query("UPDATE cases SET status = $1 WHERE case_id = $2")
                            .bind(status.as_str())
                            .bind(change.case_id.to_string())
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                Self::add_timeline(&mut tx, change.case_id, &change.timeline).await?;
                if let (Some(resolution), Some(event)) = (&change.resolve, &resolved) {
                    if Self::mark_resolved(&mut tx, change.case_id, resolution).await? {
                        $enqueue(&mut tx, detour_domain::events::streams::INTAKE, event).await?;
                    }
                }
                tx.append_audit(&audit.record(Some(change.case_id), Vec::new(), Outcome::Ok)).await?;
                tx.commit().await?;
                self.committed();
                Ok(Applied::Applied)
            }

            async fn cases_of_traveler(&self, traveler: TravelerId) -> Result<Vec<Case>, IntakeError> {
                use sqlx::Row;
                let mut conn = self.pool.acquire().await?;
                let ids = sqlx::query("SELECT case_id FROM cases WHERE traveler_id = $1 ORDER BY opened_at, case_id")
                    .bind(traveler.to_string())
                    .fetch_all(&mut *conn)
                    .await?;
                let mut cases = Vec::with_capacity(ids.len());
                for row in ids {
                    let id: CaseId = parse(&row.try_get::<String, _>("case_id")?)?;
                    if let Some(case) = Self::load_case(&mut conn, id, true).await? {
                        cases.push(case);
                    }
                }
                Ok(cases)
            }

            async fn erase_traveler(
                &self,
                traveler: TravelerId,
                at: Instant,
                audit: &Audit,
            ) -> Result<Vec<CaseId>, IntakeError> {
                use sqlx::Row;
                let mut tx = self.pool.begin_with($begin).await?;
                let known: i64 = sqlx::query("SELECT COUNT(*) AS n FROM cases WHERE traveler_id = $1")
                    .bind(traveler.to_string())
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get("n")?;
                if known == 0 {
                    return Err(IntakeError::TravelerNotFound(traveler));
                }
                // The free text is the traveler's own words and the resolution an agent's words to
                // them: both may name the person, so both go with the contact details.
                let rows = sqlx::query(
                    "UPDATE cases SET personal_data = NULL, data_key_version = NULL, personal_data_erased_at = $1, \
                     description = '', resolution = CASE WHEN resolution IS NULL THEN NULL ELSE '' END, \
                     request_fingerprint = NULL \
                     WHERE traveler_id = $2 AND personal_data_erased_at IS NULL RETURNING case_id",
                )
                .bind(time::to_micros(at))
                .bind(traveler.to_string())
                .fetch_all(&mut *tx)
                .await?;
                let mut erased = Vec::with_capacity(rows.len());
                for row in rows {
                    let id: CaseId = parse(&row.try_get::<String, _>("case_id")?)?;
                    let entry = TimelineEntry {
                        at,
                        kind: "personal_data.erased".into(),
                        actor: "intake".into(),
                        summary: "The traveler's personal data was erased on request".into(),
                    };
                    Self::add_timeline(&mut tx, id, &entry).await?;
                    sqlx::query(
                        "UPDATE case_interactions SET description = '', request_fingerprint = NULL WHERE case_id = $1",
                    )
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await?;
                    // The published CaseOpened copies carry the traveler's own words.
                    detour_events::outbox::ForgetPublished::forget_published(&mut *tx, &id.to_string()).await?;
                    tx.append_audit(&audit.record(Some(id), vec![Target::new("traveler", traveler)], Outcome::Ok)).await?;
                    erased.push(id);
                }
                // The itinerary registry's copy goes too; the bookings stay, anonymised.
                sqlx::query(
                    "UPDATE travelers SET personal_data = NULL, data_key_version = NULL, email_index = NULL, \
                     phone_index = NULL, personal_data_erased_at = $1 WHERE traveler_id = $2 AND personal_data IS NOT NULL",
                )
                .bind(time::to_micros(at))
                .bind(traveler.to_string())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(erased)
            }

            async fn data_keys(&self, tenant: &str) -> Result<Vec<StoredDataKey>, IntakeError> {
                let rows = sqlx::query("SELECT * FROM data_keys WHERE tenant = $1 ORDER BY version")
                    .bind(tenant)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(Self::data_key_from_row).collect()
            }

            async fn all_data_keys(&self) -> Result<Vec<StoredDataKey>, IntakeError> {
                let rows = sqlx::query("SELECT * FROM data_keys ORDER BY tenant, version").fetch_all(&self.pool).await?;
                rows.iter().map(Self::data_key_from_row).collect()
            }

            async fn add_data_key(&self, key: &StoredDataKey, audit: &Audit) -> Result<bool, IntakeError> {
                let mut tx = self.pool.begin_with($begin).await?;
                let inserted = sqlx::query(
                    "INSERT INTO data_keys (tenant, version, kek_id, wrapped, created_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (tenant, version) DO NOTHING",
                )
                .bind(&key.tenant)
                .bind(key.version)
                .bind(&key.kek_id)
                .bind(&key.wrapped)
                .bind(time::to_micros(key.created_at))
                .execute(&mut *tx)
                .await?;
                if inserted.rows_affected() == 0 {
                    return Ok(false);
                }
                let target = vec![Target::new("data_key", format!("{}/{}", key.tenant, key.version))];
                tx.append_audit(&audit.record(None, target, Outcome::Ok)).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn rewrap_data_key(
                &self,
                key: &StoredDataKey,
                kek_id: &str,
                wrapped: &[u8],
                audit: &Audit,
            ) -> Result<bool, IntakeError> {
                let mut tx = self.pool.begin_with($begin).await?;
                let done = sqlx::query(
                    "UPDATE data_keys SET kek_id = $1, wrapped = $2 WHERE tenant = $3 AND version = $4 AND kek_id = $5",
                )
                .bind(kek_id)
                .bind(wrapped)
                .bind(&key.tenant)
                .bind(key.version)
                .bind(&key.kek_id)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                let target = vec![
                    Target::new("data_key", format!("{}/{}", key.tenant, key.version)),
                    Target::new("kek", kek_id),
                ];
                tx.append_audit(&audit.record(None, target, Outcome::Ok)).await?;
                tx.commit().await?;
                Ok(true)
            }
        }
    };
}

detour_events::sql_repositories!(IntakeRepository {
    postgres: PgIntakeRepository,
    sqlite: SqliteIntakeRepository,
    body: sql_repository,
});
