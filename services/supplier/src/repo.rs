//! Supplier coordination's storage: one interface, a PostgreSQL and a SQLite implementation
//! generated from the same SQL (both backends accept `$n` parameters and `ON CONFLICT`), and one
//! contract test suite run against both (`tests/it/repository.rs`).

use async_trait::async_trait;
use detour_audit::{Audit, AuditWrite, Outcome, Target};
use detour_domain::{SupplierRequestId, time};
use detour_proto::events::v1::Envelope;
use detour_storage::decode::{self, corrupt, instant, parse};
use detour_storage::keyset::{self, Keyset};

use crate::error::SupplierError;
use crate::model::{
    Cursor, NewSupplierRequest, Opened, RequestFilter, RequestStatus, SupplierAnswer, SupplierRequest,
};

/// Everything supplier coordination stores. Each method is one transaction; events it emits are
/// written to the outbox inside that transaction.
#[async_trait]
pub trait SupplierRepository: Send + Sync + 'static {
    /// Applies one triage event: opens the case's request and emits `opened` (its
    /// `SupplierRequestOpened`) and the audit record of `audit`, unless `event_id` was applied
    /// before or the case already has a request, in which case nothing changes and nothing is
    /// emitted or recorded.
    async fn open_request(
        &self,
        consumer: &str,
        event_id: &str,
        new: NewSupplierRequest,
        opened: Envelope,
        audit: &Audit,
    ) -> Result<Opened, SupplierError>;

    async fn get_request(&self, id: SupplierRequestId) -> Result<Option<SupplierRequest>, SupplierError>;

    /// Newest first; the cursor of the next page when there is one.
    async fn list_requests(
        &self,
        filter: &RequestFilter,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<(Vec<SupplierRequest>, Option<Cursor>), SupplierError>;

    /// Records the answer to an open request, emits `responded` (its `SupplierResponded`) and
    /// appends the audit record of `audit`. An answered request keeps its first answer: a second
    /// one is refused (and the caller records the refusal).
    async fn record_response(
        &self,
        id: SupplierRequestId,
        answer: SupplierAnswer,
        responded: Envelope,
        audit: &Audit,
    ) -> Result<SupplierRequest, SupplierError>;
}

/// Requests are listed newest first.
const PAGE: Keyset = Keyset::descending("opened_at", "request_id");

/// The repository on one backend, for [`detour_events::sql_repositories!`]. The body is written
/// once, so the two implementations cannot drift apart.
macro_rules! sql_repository {
    ($name:ident, $db:ty, $pool:ty, $row:ty, $enqueue:path, $mark_processed:path, $begin:literal) => {
        impl $name {
            fn request_from_row(row: &$row) -> Result<SupplierRequest, SupplierError> {
                use sqlx::Row;
                let segment: String = row.try_get("segment")?;
                let status: RequestStatus = parse(&row.try_get::<String, _>("status")?)?;
                let outcome: Option<String> = row.try_get("outcome")?;
                let responded_at: Option<i64> = row.try_get("responded_at")?;
                let answer = match (status, outcome, responded_at) {
                    (RequestStatus::Open, _, _) => None,
                    (RequestStatus::Answered, Some(outcome), Some(at)) => Some(SupplierAnswer {
                        outcome: parse(&outcome)?,
                        details: row.try_get::<Option<String>, _>("details")?.unwrap_or_default(),
                        responded_at: instant(at)?,
                    }),
                    (RequestStatus::Answered, _, _) => return Err(corrupt("answered request without its answer").into()),
                };
                Ok(SupplierRequest {
                    id: parse(&row.try_get::<String, _>("request_id")?)?,
                    case_id: parse(&row.try_get::<String, _>("case_id")?)?,
                    supplier_code: row.try_get("supplier_code")?,
                    segment: decode::json(&segment)?,
                    category: parse(&row.try_get::<String, _>("category")?)?,
                    severity: parse(&row.try_get::<String, _>("severity")?)?,
                    status,
                    opened_at: instant(row.try_get("opened_at")?)?,
                    response_due: instant(row.try_get("response_due")?)?,
                    answer,
                })
            }

            async fn load(
                conn: &mut <$db as sqlx::Database>::Connection,
                id: SupplierRequestId,
            ) -> Result<Option<SupplierRequest>, SupplierError> {
                let row = sqlx::query("SELECT * FROM supplier_requests WHERE request_id = $1")
                    .bind(id.to_string())
                    .fetch_optional(&mut *conn)
                    .await?;
                row.as_ref().map(Self::request_from_row).transpose()
            }
        }

        #[async_trait]
        impl SupplierRepository for $name {
            async fn open_request(
                &self,
                consumer: &str,
                event_id: &str,
                new: NewSupplierRequest,
                opened: Envelope,
                audit: &Audit,
            ) -> Result<Opened, SupplierError> {
                use sqlx::Row;
                let mut tx = self.pool.begin_with($begin).await?;
                if !$mark_processed(&mut tx, consumer, event_id).await? {
                    return Ok(Opened::AlreadyProcessed);
                }
                // The unique case_id settles a race between two triage events of one case: the
                // loser waits for the winner's commit and then inserts nothing.
                let inserted = sqlx::query(
                    "INSERT INTO supplier_requests (request_id, case_id, supplier_code, segment, category, \
                     severity, status, opened_at, response_due) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (case_id) DO NOTHING",
                )
                .bind(new.id.to_string())
                .bind(new.case_id.to_string())
                .bind(&new.supplier_code)
                .bind(decode::to_json(&new.segment)?)
                .bind(new.category.as_str())
                .bind(new.severity.as_str())
                .bind(RequestStatus::Open.as_str())
                .bind(time::to_micros(new.opened_at))
                .bind(time::to_micros(new.response_due))
                .execute(&mut *tx)
                .await?;
                if inserted.rows_affected() == 0 {
                    let existing: String = sqlx::query("SELECT request_id FROM supplier_requests WHERE case_id = $1")
                        .bind(new.case_id.to_string())
                        .fetch_one(&mut *tx)
                        .await?
                        .try_get("request_id")?;
                    // Committed so that the event is recorded as handled and not looked at again.
                    tx.commit().await?;
                    return Ok(Opened::CaseHasRequest(parse(&existing)?));
                }
                $enqueue(&mut tx, detour_domain::events::streams::SUPPLIER, &opened).await?;
                let record =
                    audit.record(Some(new.case_id), vec![Target::new("supplier_request", new.id)], Outcome::Ok);
                AuditWrite::append_audit(&mut *tx, &record).await?;
                tx.commit().await?;
                self.committed();
                Ok(Opened::Opened(new.id))
            }

            async fn get_request(&self, id: SupplierRequestId) -> Result<Option<SupplierRequest>, SupplierError> {
                let mut conn = self.pool.acquire().await?;
                Self::load(&mut conn, id).await
            }

            async fn list_requests(
                &self,
                filter: &RequestFilter,
                after: Option<Cursor>,
                limit: u32,
            ) -> Result<(Vec<SupplierRequest>, Option<Cursor>), SupplierError> {
                let mut q = sqlx::QueryBuilder::<$db>::new("SELECT * FROM supplier_requests WHERE 1 = 1");
                if let Some(c) = filter.case_id {
                    q.push(" AND case_id = ").push_bind(c.to_string());
                }
                if let Some(code) = &filter.supplier_code {
                    q.push(" AND supplier_code = ").push_bind(code.clone());
                }
                if let Some(s) = filter.status {
                    q.push(" AND status = ").push_bind(s.as_str());
                }
                let after = after.map(|c| (c.opened_at_micros, c.request_id.to_string()));
                PAGE.push_page(&mut q, after, limit);
                let rows = q.build().fetch_all(&self.pool).await?;
                let requests = rows.iter().map(Self::request_from_row).collect::<Result<Vec<_>, _>>()?;
                Ok(keyset::page(requests, limit, |r| Cursor {
                    opened_at_micros: time::to_micros(r.opened_at),
                    request_id: r.id,
                }))
            }

            async fn record_response(
                &self,
                id: SupplierRequestId,
                answer: SupplierAnswer,
                responded: Envelope,
                audit: &Audit,
            ) -> Result<SupplierRequest, SupplierError> {
                let mut tx = self.pool.begin_with($begin).await?;
                let done = sqlx::query(
                    "UPDATE supplier_requests SET status = $1, outcome = $2, details = $3, responded_at = $4 \
                     WHERE request_id = $5 AND status = $6",
                )
                .bind(RequestStatus::Answered.as_str())
                .bind(answer.outcome.as_str())
                .bind(&answer.details)
                .bind(time::to_micros(answer.responded_at))
                .bind(id.to_string())
                .bind(RequestStatus::Open.as_str())
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(match Self::load(&mut tx, id).await? {
                        Some(_) => SupplierError::AlreadyAnswered(id),
                        None => SupplierError::RequestNotFound(id),
                    });
                }
                $enqueue(&mut tx, detour_domain::events::streams::SUPPLIER, &responded).await?;
                let request = Self::load(&mut tx, id).await?.ok_or(SupplierError::RequestNotFound(id))?;
                let record =
                    audit.record(Some(request.case_id), vec![Target::new("supplier_request", id)], Outcome::Ok);
                AuditWrite::append_audit(&mut *tx, &record).await?;
                tx.commit().await?;
                self.committed();
                Ok(request)
            }
        }
    };
}

detour_events::sql_repositories!(SupplierRepository {
    postgres: PgSupplierRepository,
    sqlite: SqliteSupplierRepository,
    body: sql_repository,
});
