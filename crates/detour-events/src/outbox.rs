//! The transactional outbox: services write events in the transaction that makes the change,
//! and the [`Relay`] hands committed events to the event bus.
//!
//! Write side, called inside the service's own transaction:
//! - [`enqueue_pg`] / [`enqueue_sqlite`] add an event to the `outbox` table;
//! - [`mark_processed_pg`] / [`mark_processed_sqlite`] record that a consumer applied an event,
//!   and tell it whether it already had (called first in the transaction applying the event).
//!
//! Both tables come from the platform migration of `detour-storage`; the SQL text here is the
//! same on both backends.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use detour_proto::events::v1::Envelope;
use detour_storage::{Db, Micros, StorageError};
use prost::Message;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use sqlx::{AssertSqlSafe, PgConnection, SqliteConnection};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::bus::{BusError, EventBus};
use crate::metrics::{EventMetrics, StreamOutcomeLabels};
use crate::trace;

/// Events per multi-row insert (5 parameters each).
const ENQUEUE_CHUNK: usize = 500;
const INSERT_OUTBOX: &str =
    "INSERT INTO outbox (event_id, stream, payload, created_at, case_id) VALUES ($1, $2, $3, $4, $5)";
const FORGET_PUBLISHED: &str = "DELETE FROM outbox WHERE case_id = $1 AND published_at IS NOT NULL";
const INSERT_PROCESSED: &str = "INSERT INTO processed_events (consumer, event_id, processed_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
const MARK_PUBLISHED: &str = "UPDATE outbox SET published_at = $1 WHERE seq = $2";
const MARK_PUBLISHED_MANY: &str = "UPDATE outbox SET published_at = $1 WHERE seq = ANY($2)";
const MARK_FAILED: &str = "UPDATE outbox SET attempts = attempts + 1 WHERE seq = $1";
const BACKLOG: &str = "SELECT stream, COUNT(*) FROM outbox WHERE published_at IS NULL GROUP BY stream";

pub(crate) fn now_micros() -> Micros {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// An outbox row ready to insert.
struct NewRow {
    event_id: String,
    payload: Vec<u8>,
    created_at: Micros,
}

impl NewRow {
    /// Copies the envelope, stamps the current trace context into the copy and encodes it. The
    /// caller's envelope is left untouched: the stored copy is the one that travels.
    fn new(envelope: &Envelope) -> Result<Self, StorageError> {
        let event_id = envelope
            .event_id
            .as_ref()
            .map(|id| id.value.clone())
            .filter(|id| !id.is_empty())
            .ok_or_else(|| StorageError::Corrupt("event envelope has no event_id".to_owned()))?;
        let mut envelope = envelope.clone();
        trace::inject_current(&mut envelope.trace_context);
        Ok(Self { event_id, payload: envelope.encode_to_vec(), created_at: now_micros() })
    }
}

/// The write side on one backend; the SQL is the same on both, only the connection type differs.
macro_rules! write_side {
    ($(#[$enqueue_doc:meta])* $enqueue:ident, $(#[$many_doc:meta])* $enqueue_many:ident, $(#[$mark_doc:meta])* $mark_processed:ident, $conn:ty, $db:ty) => {
        $(#[$enqueue_doc])*
        pub async fn $enqueue(
            tx: &mut $conn,
            stream: &str,
            envelope: &Envelope,
        ) -> Result<(), StorageError> {
            let row = NewRow::new(envelope)?;
            let case_id = envelope.case_id.as_ref().map(|c| c.value.as_str()).filter(|c| !c.is_empty());
            sqlx::query(INSERT_OUTBOX)
                .bind(row.event_id)
                .bind(stream)
                .bind(row.payload)
                .bind(row.created_at)
                .bind(case_id)
                .execute(&mut *tx)
                .await?;
            Ok(())
        }

        $(#[$many_doc])*
        pub async fn $enqueue_many(
            tx: &mut $conn,
            stream: &str,
            envelopes: &[Envelope],
        ) -> Result<(), StorageError> {
            // Bound parameters per statement stay far below either backend's limit.
            for chunk in envelopes.chunks(ENQUEUE_CHUNK) {
                let rows = chunk.iter().map(NewRow::new).collect::<Result<Vec<_>, _>>()?;
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO outbox (event_id, stream, payload, created_at, case_id) ",
                );
                q.push_values(rows.into_iter().zip(chunk), |mut b, (row, envelope)| {
                    let case_id = envelope
                        .case_id
                        .as_ref()
                        .map(|c| c.value.clone())
                        .filter(|c| !c.is_empty());
                    b.push_bind(row.event_id)
                        .push_bind(stream.to_owned())
                        .push_bind(row.payload)
                        .push_bind(row.created_at)
                        .push_bind(case_id);
                });
                q.build().execute(&mut *tx).await?;
            }
            Ok(())
        }

        $(#[$mark_doc])*
        pub async fn $mark_processed(
            tx: &mut $conn,
            consumer: &str,
            event_id: &str,
        ) -> Result<bool, StorageError> {
            let done = sqlx::query(INSERT_PROCESSED)
                .bind(consumer)
                .bind(event_id)
                .bind(now_micros())
                .execute(&mut *tx)
                .await?;
            Ok(done.rows_affected() == 1)
        }
    };
}

write_side!(
    /// Adds `envelope` to the outbox as part of the caller's transaction (pass `&mut *tx`), to be
    /// published to `stream` once that transaction commits; nothing is published if it rolls back.
    ///
    /// The stored copy carries the W3C trace context of the current tracing span (the caller's
    /// `envelope` is not modified). Fails with [`StorageError::Corrupt`] when the envelope has no
    /// event id, and with a unique violation when the event id was already enqueued.
    /// Call [`RelayHandle::notify`] after committing so the event goes out at once.
    enqueue_pg,
    /// [`enqueue_pg`] for many events in one statement per few hundred: a fan-out that opens
    /// thousands of cases writes their events without a round trip each.
    enqueue_many_pg,
    /// Records that `consumer` applied `event_id`, in the caller's transaction. Returns false when
    /// it already had: the caller then skips the event (and commits or rolls back, either is fine).
    /// Call it first, so that a concurrent duplicate delivery blocks on the row lock (PostgreSQL) or
    /// the write lock (SQLite) instead of applying the event twice.
    mark_processed_pg,
    PgConnection,
    sqlx::Postgres
);

write_side!(
    /// [`enqueue_pg`] for SQLite.
    enqueue_sqlite,
    /// [`enqueue_many_pg`] for SQLite.
    enqueue_many_sqlite,
    /// [`mark_processed_pg`] for SQLite.
    mark_processed_sqlite,
    SqliteConnection,
    sqlx::Sqlite
);

/// Drops the already published outbox copies of a case's events, inside the caller's
/// transaction: erasure uses it, since events carry the case's free text. Unpublished rows stay
/// (they must still go out) and are gone once a later erasure or cleanup runs after publishing.
#[async_trait::async_trait]
pub trait ForgetPublished {
    async fn forget_published(&mut self, case_id: &str) -> Result<u64, StorageError>;
}

macro_rules! forget_on {
    ($conn:ty) => {
        #[async_trait::async_trait]
        impl ForgetPublished for $conn {
            async fn forget_published(&mut self, case_id: &str) -> Result<u64, StorageError> {
                let done = sqlx::query(FORGET_PUBLISHED).bind(case_id).execute(&mut *self).await?;
                Ok(done.rows_affected())
            }
        }
    };
}

forget_on!(PgConnection);
forget_on!(SqliteConnection);

/// [`enqueue_many_pg`] / [`enqueue_many_sqlite`] by connection type, for code written once for
/// both backends.
#[async_trait::async_trait]
pub trait EnqueueMany {
    async fn enqueue_many(&mut self, stream: &str, envelopes: &[Envelope]) -> Result<(), StorageError>;
}

#[async_trait::async_trait]
impl EnqueueMany for PgConnection {
    async fn enqueue_many(&mut self, stream: &str, envelopes: &[Envelope]) -> Result<(), StorageError> {
        enqueue_many_pg(self, stream, envelopes).await
    }
}

#[async_trait::async_trait]
impl EnqueueMany for SqliteConnection {
    async fn enqueue_many(&mut self, stream: &str, envelopes: &[Envelope]) -> Result<(), StorageError> {
        enqueue_many_sqlite(self, stream, envelopes).await
    }
}

#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// Rows read per pass.
    pub batch_size: u32,
    /// How often the outbox is read when nobody calls [`RelayHandle::notify`] (other replicas'
    /// commits, rows left after a failure).
    pub poll_interval: Duration,
    /// First wait after a failure; doubles with each further failure up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            batch_size: 100,
            poll_interval: Duration::from_millis(250),
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// Wakes the relay. Cheap to clone; keep one wherever events are enqueued.
#[derive(Debug, Clone)]
pub struct RelayHandle {
    wake: Arc<Notify>,
}

impl RelayHandle {
    /// Call after committing a transaction that enqueued events. A wake-up sent while the relay
    /// is busy is kept, so the relay reads the outbox again right after its current pass.
    pub fn notify(&self) {
        self.wake.notify_one();
    }
}

/// Moves committed outbox rows to the event bus, oldest first, at least once each.
///
/// On PostgreSQL each pass locks its rows (`FOR UPDATE SKIP LOCKED`) for the length of the
/// publishing, so several replicas share the outbox without publishing a row twice; order then
/// holds within one replica's batch, not across replicas. On SQLite (one process per file) rows
/// are read without a lock and each is marked in its own statement, so no write transaction
/// stays open while the bus is waited on.
///
/// When publishing to a stream fails, that stream's later rows wait (its order is kept) and the
/// stream backs off, doubling from [`RelaySettings::min_backoff`]; other streams carry on.
pub struct Relay {
    db: Db,
    bus: Arc<dyn EventBus>,
    metrics: EventMetrics,
    settings: RelaySettings,
    wake: Arc<Notify>,
    backoff: HashMap<String, StreamBackoff>,
    /// Streams whose backlog gauge was last set above zero, to reset when they drain.
    backlogged: HashSet<String>,
    /// When the backlog was last counted: while full batches follow each other (a storm), it
    /// is counted at most once per [`BACKLOG_EVERY`], since counting scans what is pending.
    backlog_counted: Option<Instant>,
}

/// How often the backlog gauge is refreshed while the relay is busy.
const BACKLOG_EVERY: Duration = Duration::from_secs(1);

struct StreamBackoff {
    failures: u32,
    until: Instant,
}

enum RowOutcome {
    Published,
    Failed,
    Cancelled,
}

/// One row as the relay reads it: seq, event_id, stream, payload.
type OutboxRow = (i64, String, String, Vec<u8>);

fn backoff_after(settings: &RelaySettings, failures: u32) -> Duration {
    let factor = 1u32.checked_shl(failures.saturating_sub(1).min(16)).unwrap_or(u32::MAX);
    settings.min_backoff.saturating_mul(factor).min(settings.max_backoff)
}

/// The batch query: unpublished rows in order, skipping `excluded` streams (bound as `$1…$n`).
fn select_batch_sql(excluded: usize, lock: bool) -> String {
    let mut sql =
        String::from("SELECT seq, event_id, stream, payload FROM outbox WHERE published_at IS NULL");
    if excluded > 0 {
        let params: Vec<String> = (1..=excluded).map(|i| format!("${i}")).collect();
        sql.push_str(&format!(" AND stream NOT IN ({})", params.join(", ")));
    }
    sql.push_str(&format!(" ORDER BY seq LIMIT ${}", excluded + 1));
    if lock {
        sql.push_str(" FOR UPDATE SKIP LOCKED");
    }
    sql
}

impl Relay {
    /// Starts the relay on the current Tokio runtime. It runs until `shutdown` is cancelled,
    /// finishing (and recording) the row it is publishing at most.
    pub fn spawn(
        db: Db,
        bus: Arc<dyn EventBus>,
        metrics: EventMetrics,
        settings: RelaySettings,
        shutdown: CancellationToken,
    ) -> (RelayHandle, JoinHandle<()>) {
        let wake = Arc::new(Notify::new());
        let relay = Self {
            db,
            bus,
            metrics,
            settings,
            wake: wake.clone(),
            backoff: HashMap::new(),
            backlogged: HashSet::new(),
            backlog_counted: None,
        };
        let task = tokio::spawn(relay.run(shutdown));
        (RelayHandle { wake }, task)
    }

    async fn run(mut self, shutdown: CancellationToken) {
        let mut db_failures = 0u32;
        while !shutdown.is_cancelled() {
            let wait = match self.pass(&shutdown).await {
                Ok(read) => {
                    db_failures = 0;
                    let full = read >= self.settings.batch_size as usize;
                    let counted_lately = self.backlog_counted.is_some_and(|at| at.elapsed() < BACKLOG_EVERY);
                    if !(full && counted_lately) {
                        if let Err(e) = self.refresh_backlog().await {
                            tracing::debug!(error = %e, "could not count the outbox backlog");
                        }
                        self.backlog_counted = Some(Instant::now());
                    }
                    if full { Duration::ZERO } else { self.idle_wait() }
                }
                Err(e) => {
                    db_failures = db_failures.saturating_add(1);
                    tracing::warn!(error = %e, failures = db_failures, "outbox relay could not read or mark the outbox");
                    backoff_after(&self.settings, db_failures)
                }
            };
            if wait.is_zero() {
                // A full batch: more rows are probably waiting.
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
        tracing::debug!("outbox relay stopped");
    }

    /// Until the next poll, or the end of the earliest stream backoff if sooner.
    fn idle_wait(&self) -> Duration {
        let now = Instant::now();
        self.backoff
            .values()
            .map(|b| b.until.saturating_duration_since(now))
            .fold(self.settings.poll_interval, Duration::min)
    }

    fn streams_in_backoff(&self) -> Vec<String> {
        let now = Instant::now();
        self.backoff.iter().filter(|(_, b)| b.until > now).map(|(stream, _)| stream.clone()).collect()
    }

    /// Reads one batch and publishes it. Returns how many rows were read.
    async fn pass(&mut self, shutdown: &CancellationToken) -> Result<usize, StorageError> {
        match self.db.clone() {
            Db::Postgres(pool) => self.pass_pg(&pool, shutdown).await,
            Db::Sqlite(pool) => self.pass_sqlite(&pool, shutdown).await,
        }
    }

    async fn pass_pg(&mut self, pool: &PgPool, shutdown: &CancellationToken) -> Result<usize, StorageError> {
        let excluded = self.streams_in_backoff();
        let sql = select_batch_sql(excluded.len(), true);
        let mut tx = pool.begin().await?;
        let mut query = sqlx::query_as::<_, OutboxRow>(AssertSqlSafe(sql));
        for stream in &excluded {
            query = query.bind(stream);
        }
        let rows = query.bind(i64::from(self.settings.batch_size)).fetch_all(&mut *tx).await?;
        let read = rows.len();
        let mut blocked = HashSet::new();
        // Marked together at the end, one statement for the batch: the same transaction would
        // commit them together anyway.
        let mut published = Vec::with_capacity(read);
        for (seq, event_id, stream, payload) in rows {
            if blocked.contains(&stream) {
                continue;
            }
            match self.publish_row(&stream, &event_id, payload, shutdown).await {
                RowOutcome::Published => published.push(seq),
                RowOutcome::Failed => {
                    sqlx::query(MARK_FAILED).bind(seq).execute(&mut *tx).await?;
                    blocked.insert(stream);
                }
                RowOutcome::Cancelled => break,
            }
        }
        if !published.is_empty() {
            sqlx::query(MARK_PUBLISHED_MANY).bind(now_micros()).bind(&published).execute(&mut *tx).await?;
        }
        // Committed even when cancelled: the rows already published stay marked.
        tx.commit().await?;
        Ok(read)
    }

    async fn pass_sqlite(
        &mut self,
        pool: &SqlitePool,
        shutdown: &CancellationToken,
    ) -> Result<usize, StorageError> {
        let excluded = self.streams_in_backoff();
        let sql = select_batch_sql(excluded.len(), false);
        let mut query = sqlx::query_as::<_, OutboxRow>(AssertSqlSafe(sql));
        for stream in &excluded {
            query = query.bind(stream);
        }
        let rows = query.bind(i64::from(self.settings.batch_size)).fetch_all(pool).await?;
        let read = rows.len();
        let mut blocked = HashSet::new();
        for (seq, event_id, stream, payload) in rows {
            if blocked.contains(&stream) {
                continue;
            }
            match self.publish_row(&stream, &event_id, payload, shutdown).await {
                RowOutcome::Published => {
                    sqlx::query(MARK_PUBLISHED).bind(now_micros()).bind(seq).execute(pool).await?;
                }
                RowOutcome::Failed => {
                    sqlx::query(MARK_FAILED).bind(seq).execute(pool).await?;
                    blocked.insert(stream);
                }
                RowOutcome::Cancelled => break,
            }
        }
        Ok(read)
    }

    async fn publish_row(
        &mut self,
        stream: &str,
        event_id: &str,
        payload: Vec<u8>,
        shutdown: &CancellationToken,
    ) -> RowOutcome {
        let published = tokio::select! {
            biased;
            () = shutdown.cancelled() => return RowOutcome::Cancelled,
            result = self.bus.publish(stream, event_id, Bytes::from(payload)) => result,
        };
        match published {
            Ok(()) => {
                self.metrics.published.get_or_create(&EventMetrics::stream(stream)).inc();
                self.backoff.remove(stream);
                RowOutcome::Published
            }
            Err(e) => {
                let outcome = match e {
                    BusError::NoSubscribers => "no_subscribers",
                    BusError::Timeout => "timeout",
                    _ => "transport",
                };
                self.metrics
                    .publish_failures
                    .get_or_create(&StreamOutcomeLabels { stream: stream.to_owned(), outcome })
                    .inc();
                let failures = self.backoff.get(stream).map_or(0, |b| b.failures).saturating_add(1);
                let delay = backoff_after(&self.settings, failures);
                self.backoff
                    .insert(stream.to_owned(), StreamBackoff { failures, until: Instant::now() + delay });
                // No consumer yet is a normal state of an embedded start-up, not worth a warning.
                if matches!(e, BusError::NoSubscribers) {
                    tracing::debug!(stream, event_id, "no consumer group yet; event waits in the outbox");
                } else {
                    tracing::warn!(stream, event_id, error = %e, failures, retry_in = ?delay, "publishing an outbox event failed");
                }
                RowOutcome::Failed
            }
        }
    }

    async fn refresh_backlog(&mut self) -> Result<(), StorageError> {
        let counts: Vec<(String, i64)> = match &self.db {
            Db::Postgres(pool) => sqlx::query_as(BACKLOG).fetch_all(pool).await?,
            Db::Sqlite(pool) => sqlx::query_as(BACKLOG).fetch_all(pool).await?,
        };
        let now_backlogged: HashSet<String> = counts.iter().map(|(stream, _)| stream.clone()).collect();
        for drained in self.backlogged.difference(&now_backlogged) {
            self.metrics.outbox_backlog.get_or_create(&EventMetrics::stream(drained)).set(0);
        }
        for (stream, count) in counts {
            self.metrics.outbox_backlog.get_or_create(&EventMetrics::stream(&stream)).set(count);
        }
        self.backlogged = now_backlogged;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_query_excludes_backed_off_streams() {
        assert_eq!(
            select_batch_sql(0, false),
            "SELECT seq, event_id, stream, payload FROM outbox WHERE published_at IS NULL ORDER BY seq LIMIT $1"
        );
        assert_eq!(
            select_batch_sql(2, true),
            "SELECT seq, event_id, stream, payload FROM outbox WHERE published_at IS NULL \
             AND stream NOT IN ($1, $2) ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = RelaySettings {
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..Default::default()
        };
        assert_eq!(backoff_after(&s, 1), Duration::from_millis(100));
        assert_eq!(backoff_after(&s, 2), Duration::from_millis(200));
        assert_eq!(backoff_after(&s, 4), Duration::from_millis(800));
        assert_eq!(backoff_after(&s, 5), Duration::from_secs(1));
        assert_eq!(backoff_after(&s, u32::MAX), Duration::from_secs(1));
    }
}
