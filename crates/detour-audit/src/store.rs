//! The audit table on both backends: appended to inside a caller's transaction, read back by case,
//! user and time.

use async_trait::async_trait;
use detour_domain::{Actor, ActorKind, CaseId, Instant, time};
use detour_errors::ServiceError;
use detour_storage::decode::{self, instant, parse};
use detour_storage::keyset::Keyset;
use detour_storage::{Db, StorageError};
use sqlx::{PgConnection, SqliteConnection};

use crate::{Audit, AuditRecord, Outcome, Target};

const INSERT: &str = "INSERT INTO audit_log (audit_id, at, actor_kind, actor_id, actor_roles, on_behalf_of, \
                      action, case_id, targets, trace_id, outcome) \
                      VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

/// Newest first; the id (time-ordered) breaks ties within a microsecond.
const PAGE: Keyset = Keyset::descending("at", "audit_id");

/// Appends a record on a connection, inside whatever transaction the caller has open (pass
/// `&mut *tx`).
#[async_trait]
pub trait AuditWrite {
    async fn append_audit(&mut self, record: &AuditRecord) -> Result<(), StorageError>;

    /// Appends many records with a few multi-row inserts (a fan-out audits thousands of cases).
    async fn append_audit_many(&mut self, records: &[AuditRecord]) -> Result<(), StorageError>;
}

/// Records per multi-row insert (11 parameters each).
const APPEND_CHUNK: usize = 400;

macro_rules! append_on {
    ($conn:ty, $db:ty) => {
        #[async_trait]
        impl AuditWrite for $conn {
            async fn append_audit(&mut self, r: &AuditRecord) -> Result<(), StorageError> {
                sqlx::query(INSERT)
                    .bind(r.id.to_string())
                    .bind(time::to_micros(r.at))
                    .bind(r.actor.kind.as_str())
                    .bind(&r.actor.id)
                    .bind(decode::to_json(&r.actor.roles)?)
                    .bind(r.actor.on_behalf_of.as_deref())
                    .bind(&r.action)
                    .bind(r.case_id.map(|c| c.to_string()))
                    .bind(decode::to_json(&r.targets)?)
                    .bind(r.trace_id.as_deref())
                    .bind(&r.outcome)
                    .execute(&mut *self)
                    .await?;
                Ok(())
            }

            async fn append_audit_many(&mut self, records: &[AuditRecord]) -> Result<(), StorageError> {
                for chunk in records.chunks(APPEND_CHUNK) {
                    let mut rows = Vec::with_capacity(chunk.len());
                    for r in chunk {
                        rows.push((r, decode::to_json(&r.actor.roles)?, decode::to_json(&r.targets)?));
                    }
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO audit_log (audit_id, at, actor_kind, actor_id, actor_roles, on_behalf_of, \
                         action, case_id, targets, trace_id, outcome) ",
                    );
                    q.push_values(rows, |mut b, (r, roles, targets)| {
                        b.push_bind(r.id.to_string())
                            .push_bind(time::to_micros(r.at))
                            .push_bind(r.actor.kind.as_str())
                            .push_bind(r.actor.id.clone())
                            .push_bind(roles)
                            .push_bind(r.actor.on_behalf_of.clone())
                            .push_bind(r.action.clone())
                            .push_bind(r.case_id.map(|c| c.to_string()))
                            .push_bind(targets)
                            .push_bind(r.trace_id.clone())
                            .push_bind(r.outcome.clone());
                    });
                    q.build().execute(&mut *self).await?;
                }
                Ok(())
            }
        }
    };
}

append_on!(PgConnection, sqlx::Postgres);
append_on!(SqliteConnection, sqlx::Sqlite);

/// Which records to list; every filter is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub case_id: Option<CaseId>,
    /// Records made by this user or service, or by a service on this user's behalf.
    pub actor_id: Option<String>,
    pub from: Option<Instant>,
    pub to: Option<Instant>,
}

/// The position after a page's last record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub at_micros: i64,
    pub audit_id: String,
}

/// One service's audit table.
#[derive(Debug, Clone)]
pub struct AuditLog {
    service: &'static str,
    db: Db,
}

macro_rules! list_on {
    ($pool:expr, $db:ty, $service:expr, $filter:expr, $after:expr, $limit:expr) => {{
        let mut q = sqlx::QueryBuilder::<$db>::new("SELECT * FROM audit_log WHERE 1 = 1");
        if let Some(c) = $filter.case_id {
            q.push(" AND case_id = ").push_bind(c.to_string());
        }
        if let Some(a) = &$filter.actor_id {
            q.push(" AND (actor_id = ").push_bind(a.clone());
            q.push(" OR on_behalf_of = ").push_bind(a.clone()).push(")");
        }
        if let Some(t) = $filter.from {
            q.push(" AND at >= ").push_bind(time::to_micros(t));
        }
        if let Some(t) = $filter.to {
            q.push(" AND at < ").push_bind(time::to_micros(t));
        }
        // One row over the limit is asked for by push_page; the caller trims.
        PAGE.push_page(&mut q, $after.map(|c: Cursor| (c.at_micros, c.audit_id)), $limit);
        let rows = q.build().fetch_all($pool).await?;
        rows.iter().map(|row| from_row(row, $service)).collect::<Result<Vec<_>, StorageError>>()
    }};
}

fn from_row<R: sqlx::Row>(row: &R, service: &str) -> Result<AuditRecord, StorageError>
where
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
{
    let kind: String = row.try_get("actor_kind")?;
    let roles: String = row.try_get("actor_roles")?;
    let targets: String = row.try_get("targets")?;
    Ok(AuditRecord {
        id: parse(&row.try_get::<String, _>("audit_id")?)?,
        at: instant(row.try_get("at")?)?,
        service: service.to_owned(),
        actor: Actor {
            kind: ActorKind::parse(&kind).ok_or_else(|| decode::corrupt(format!("actor kind `{kind}`")))?,
            id: row.try_get("actor_id")?,
            roles: decode::json(&roles)?,
            on_behalf_of: row.try_get("on_behalf_of")?,
        },
        action: row.try_get("action")?,
        case_id: decode::optional(row.try_get("case_id")?)?,
        targets: decode::json(&targets)?,
        trace_id: row.try_get("trace_id")?,
        outcome: row.try_get("outcome")?,
    })
}

impl AuditLog {
    pub fn new(service: &'static str, db: Db) -> Self {
        Self { service, db }
    }

    /// Appends `record` in a transaction of its own, for an action that changed nothing (a
    /// refusal) and so has no transaction to join.
    pub async fn append(&self, record: &AuditRecord) -> Result<(), StorageError> {
        match &self.db {
            Db::Postgres(pool) => pool.acquire().await?.append_audit(record).await,
            Db::Sqlite(pool) => pool.acquire().await?.append_audit(record).await,
        }
    }

    /// Passes `result` through, first recording a refusal when it is one. The refusal is what
    /// the caller was told; a failure to record it is logged, never put in the caller's way.
    /// Internal and availability failures are left to logs and traces: they are ours, not a
    /// decision about the caller's request.
    pub async fn refusal<T, E: ServiceError>(
        &self,
        audit: &Audit,
        case_id: Option<CaseId>,
        result: Result<T, E>,
    ) -> Result<T, E> {
        if let Err(e) = &result {
            let code = e.error_code();
            if code.is_client_facing() {
                let record = audit.record(case_id, Vec::<Target>::new(), Outcome::Refused(code));
                if let Err(err) = self.append(&record).await {
                    tracing::error!(error = %err, action = %audit.action, "audit record of a refusal was not written");
                }
            }
        }
        result
    }

    /// A page of records newest first, after `after`; `limit + 1` rows at most, so the caller
    /// can tell whether another page follows.
    pub async fn list(
        &self,
        filter: &AuditFilter,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StorageError> {
        match &self.db {
            Db::Postgres(pool) => list_on!(pool, sqlx::Postgres, self.service, filter, after, limit),
            Db::Sqlite(pool) => list_on!(pool, sqlx::Sqlite, self.service, filter, after, limit),
        }
    }
}
