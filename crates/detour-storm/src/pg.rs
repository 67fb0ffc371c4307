//! Ceiling B: plain single-row INSERTs into the suite's own PostgreSQL, one autocommitted
//! statement per request, from the same generator and concurrency as intake. Intake does more
//! per case than one insert (sealing, the outbox, the audit record, in one transaction), so
//! this bounds what any storage-backed design could reach on the machine.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Executor};

use crate::error::StormError;
use crate::load::Target;
use crate::stats::Outcome;

/// A scratch schema with one table, created for the run and dropped after it.
#[derive(Debug)]
pub struct PgCeiling {
    pool: PgPool,
    schema: String,
    insert: String,
    payload: Vec<u8>,
}

impl PgCeiling {
    /// Connects `connections` sessions (all opened now, so connecting is not measured) and
    /// creates `storm_scratch_<random>.inserts`.
    pub async fn prepare(url: &str, connections: u32, payload: Vec<u8>) -> Result<Self, StormError> {
        let connections = connections.max(1);
        let pool = PgPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(Duration::from_secs(30))
            .connect(url)
            .await?;
        let schema = format!("storm_scratch_{}", uuid::Uuid::now_v7().simple());
        pool.execute(AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).await?;
        // Shaped like a case row: a key, a human number, an opaque blob, a timestamp.
        pool.execute(AssertSqlSafe(format!(
            "CREATE TABLE {schema}.inserts (id BIGINT PRIMARY KEY, case_number TEXT NOT NULL, \
             payload BYTEA NOT NULL, created_at BIGINT NOT NULL)"
        )))
        .await?;
        let mut held = Vec::with_capacity(connections as usize);
        for _ in 0..connections {
            held.push(pool.acquire().await?);
        }
        drop(held);
        let insert = format!(
            "INSERT INTO {schema}.inserts (id, case_number, payload, created_at) VALUES ($1, $2, $3, $4)"
        );
        Ok(Self { pool, schema, insert, payload })
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Rows in the scratch table.
    pub async fn rows(&self) -> Result<i64, StormError> {
        let sql = format!("SELECT COUNT(*) FROM {}.inserts", self.schema);
        Ok(sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql)).fetch_one(&self.pool).await?)
    }

    /// Drops the scratch schema and closes the sessions.
    pub async fn drop_schema(self) -> Result<(), StormError> {
        let result = self.pool.execute(AssertSqlSafe(format!("DROP SCHEMA {} CASCADE", self.schema))).await;
        self.pool.close().await;
        result.map(|_| ()).map_err(StormError::from)
    }
}

impl Target for PgCeiling {
    async fn call(&self, seq: u64) -> Outcome {
        {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            let result = sqlx::query(AssertSqlSafe(self.insert.as_str()))
                .bind(i64::try_from(seq).unwrap_or(i64::MAX))
                .bind(format!("DT-STORM-{seq:08}"))
                .bind(self.payload.clone())
                .bind(i64::try_from(now.as_micros()).unwrap_or(i64::MAX))
                .execute(&self.pool)
                .await;
            match result {
                Ok(_) => Outcome::ok(None),
                Err(_) => Outcome::error("DB_ERROR"),
            }
        }
    }
}
