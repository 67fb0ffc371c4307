//! Triage's storage: one interface, a PostgreSQL and a SQLite implementation generated from the
//! same SQL (both backends accept `$n` parameters and `ON CONFLICT`), and one contract test suite
//! run against both (`tests/it/repository.rs`).

use async_trait::async_trait;
use detour_audit::{Audit, AuditWrite, Outcome, Target};
use detour_domain::{CaseId, Instant, time};
use detour_proto::events::v1::Envelope;
use detour_storage::decode::{instant, optional_instant, parse};
use detour_storage::keyset::{self, Keyset};

use crate::error::TriageError;
use crate::model::{Applied, Cursor, Queue, Triage};

/// Everything triage stores. Each method is one transaction; the events it emits are written
/// to the outbox inside that transaction.
#[async_trait]
pub trait TriageRepository: Send + Sync + 'static {
    /// Stores a new case's triage with its `CaseTriaged` event (`triaged`) and its audit record,
    /// once: a redelivered event, or another event for a case that already has a triage, changes
    /// nothing and records nothing.
    async fn record_triage(
        &self,
        consumer: &str,
        event_id: &str,
        triage: &Triage,
        triaged: &Envelope,
        audit: &Audit,
    ) -> Result<Applied, TriageError>;

    /// Takes a resolved case out of its queue, once per event. `NotFound` when triage has not
    /// recorded the case yet (its `CaseOpened` is still to be applied); nothing is kept then,
    /// so the event can be delivered again. Taking the case out is audited; a redelivery or a
    /// second resolution changes and records nothing.
    async fn resolve(
        &self,
        consumer: &str,
        event_id: &str,
        case_id: CaseId,
        at: Instant,
        audit: &Audit,
    ) -> Result<Applied, TriageError>;

    async fn get_triage(&self, case_id: CaseId) -> Result<Option<Triage>, TriageError>;

    /// The unresolved triages of `queue`, earliest first-response deadline first, with the
    /// cursor of the next page when there is one.
    async fn list_queue(
        &self,
        queue: Queue,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<(Vec<Triage>, Option<Cursor>), TriageError>;
}

/// A queue is worked most urgent first: earliest first-response deadline.
const PAGE: Keyset = Keyset::ascending("first_response_due", "case_id");

/// The repository on one backend, for [`detour_events::sql_repositories!`]. The body is written
/// once, so the two implementations cannot drift apart.
macro_rules! sql_repository {
    ($name:ident, $db:ty, $pool:ty, $row:ty, $enqueue:path, $mark_processed:path, $begin:literal) => {
        impl $name {
            fn triage_from_row(row: &$row) -> Result<Triage, TriageError> {
                use sqlx::Row;
                Ok(Triage {
                    case_id: parse(&row.try_get::<String, _>("case_id")?)?,
                    category: parse(&row.try_get::<String, _>("category")?)?,
                    severity: parse(&row.try_get::<String, _>("severity")?)?,
                    queue: parse(&row.try_get::<String, _>("queue")?)?,
                    needs_supplier: row.try_get("needs_supplier")?,
                    rationale: row.try_get("rationale")?,
                    received_at: instant(row.try_get("received_at")?)?,
                    first_response_due: instant(row.try_get("first_response_due")?)?,
                    resolution_due: instant(row.try_get("resolution_due")?)?,
                    triaged_at: instant(row.try_get("triaged_at")?)?,
                    resolved_at: optional_instant(row.try_get("resolved_at")?)?,
                })
            }
        }

        #[async_trait]
        impl TriageRepository for $name {
            async fn record_triage(
                &self,
                consumer: &str,
                event_id: &str,
                triage: &Triage,
                triaged: &Envelope,
                audit: &Audit,
            ) -> Result<Applied, TriageError> {
                let mut tx = self.pool.begin_with($begin).await?;
                if !$mark_processed(&mut tx, consumer, event_id).await? {
                    return Ok(Applied::Unchanged);
                }
                let inserted = sqlx::query(
                    "INSERT INTO triages (case_id, category, severity, queue, needs_supplier, rationale, \
                     received_at, first_response_due, resolution_due, triaged_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (case_id) DO NOTHING",
                )
                .bind(triage.case_id.to_string())
                .bind(triage.category.as_str())
                .bind(triage.severity.as_str())
                .bind(triage.queue.as_str())
                .bind(triage.needs_supplier)
                .bind(&triage.rationale)
                .bind(time::to_micros(triage.received_at))
                .bind(time::to_micros(triage.first_response_due))
                .bind(time::to_micros(triage.resolution_due))
                .bind(time::to_micros(triage.triaged_at))
                .execute(&mut *tx)
                .await?;
                // The case was triaged under another event id (intake re-sent its opening):
                // the first verdict stands and downstream services heard of it already.
                if inserted.rows_affected() == 0 {
                    tx.commit().await?;
                    return Ok(Applied::Unchanged);
                }
                $enqueue(&mut tx, detour_domain::events::streams::TRIAGE, triaged).await?;
                // The case's queue is what the triage touched besides the case itself.
                let record =
                    audit.record(Some(triage.case_id), vec![Target::new("queue", triage.queue.as_str())], Outcome::Ok);
                AuditWrite::append_audit(&mut *tx, &record).await?;
                tx.commit().await?;
                self.committed();
                Ok(Applied::Applied)
            }

            async fn resolve(
                &self,
                consumer: &str,
                event_id: &str,
                case_id: CaseId,
                at: Instant,
                audit: &Audit,
            ) -> Result<Applied, TriageError> {
                let mut tx = self.pool.begin_with($begin).await?;
                if !$mark_processed(&mut tx, consumer, event_id).await? {
                    return Ok(Applied::Unchanged);
                }
                let done = sqlx::query("UPDATE triages SET resolved_at = $1 WHERE case_id = $2 AND resolved_at IS NULL")
                    .bind(time::to_micros(at))
                    .bind(case_id.to_string())
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    let known = sqlx::query("SELECT 1 FROM triages WHERE case_id = $1")
                        .bind(case_id.to_string())
                        .fetch_optional(&mut *tx)
                        .await?;
                    if known.is_none() {
                        // Dropping the transaction forgets the processed mark as well.
                        return Err(TriageError::NotFound(case_id));
                    }
                    tx.commit().await?;
                    return Ok(Applied::Unchanged);
                }
                AuditWrite::append_audit(&mut *tx, &audit.record(Some(case_id), Vec::new(), Outcome::Ok)).await?;
                tx.commit().await?;
                Ok(Applied::Applied)
            }

            async fn get_triage(&self, case_id: CaseId) -> Result<Option<Triage>, TriageError> {
                let row = sqlx::query("SELECT * FROM triages WHERE case_id = $1")
                    .bind(case_id.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(Self::triage_from_row).transpose()
            }

            async fn list_queue(
                &self,
                queue: Queue,
                after: Option<Cursor>,
                limit: u32,
            ) -> Result<(Vec<Triage>, Option<Cursor>), TriageError> {
                let mut q = sqlx::QueryBuilder::<$db>::new("SELECT * FROM triages WHERE queue = ");
                q.push_bind(queue.as_str()).push(" AND resolved_at IS NULL");
                let after = after.map(|c| (c.first_response_due_micros, c.case_id.to_string()));
                PAGE.push_page(&mut q, after, limit);
                let rows = q.build().fetch_all(&self.pool).await?;
                let triages = rows.iter().map(Self::triage_from_row).collect::<Result<Vec<_>, _>>()?;
                Ok(keyset::page(triages, limit, |t| Cursor {
                    first_response_due_micros: time::to_micros(t.first_response_due),
                    case_id: t.case_id,
                }))
            }
        }
    };
}

detour_events::sql_repositories!(TriageRepository {
    postgres: PgTriageRepository,
    sqlite: SqliteTriageRepository,
    body: sql_repository,
});
