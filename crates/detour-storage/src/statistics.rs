//! Planner statistics kept current while tables grow by bulk writes.
//!
//! A storm fills tables from nothing to 100,000 rows in a minute: an itinerary import, then one
//! case and one notification per affected traveler. Autovacuum's analyze looks at a database at
//! most once a minute (and is off on some servers), so for the first minute PostgreSQL plans
//! against a table it believes is empty. It then picks sequential scans and walks the primary key
//! for `WHERE phone_index = $1 ORDER BY traveler_id LIMIT 10`, and keeps those plans in every
//! connection's prepared statements. Measured here: 16 ms a lookup on 20,000 travelers instead of
//! a few microseconds, and intake's throughput falling as the tables grew.
//!
//! So each repository counts the rows it writes per table and runs `ANALYZE` on a table once
//! the rows written since its last analysis reach [`GROWTH`] times the table's size at that
//! analysis (at least [`FIRST_ANALYZE_AFTER`]): 1,000, 4,000, 16,000, 64,000 rows, each
//! analysis sampling at most 30,000 rows. It is the first ones that matter (plans for an empty
//! table against plans for a real one); with doubling, the later ones cost a storm of 100,000
//! travelers nine percent of PostgreSQL's time. `ANALYZE` also invalidates the cached plans. It runs
//! in the background, one at a time per table, never on a request's path. SQLite plans from its
//! indexes without statistics and would block its one writer to gather them, so there this does
//! nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;

/// Rows written to a table before its first analysis by this process.
pub const FIRST_ANALYZE_AFTER: u64 = 1_000;

/// Rows written since the last analysis, per row the table had then, before the next one.
pub const GROWTH: u64 = 3;

/// Counts rows written per table and analyses a table once it has grown enough. Cheap to clone;
/// clones share the counts.
#[derive(Debug, Clone, Default)]
pub struct Statistics {
    postgres: Option<Arc<Keeper>>,
}

#[derive(Debug)]
struct Keeper {
    pool: PgPool,
    tables: Mutex<HashMap<&'static str, Growth>>,
}

#[derive(Debug)]
struct Growth {
    written: u64,
    analyze_after: u64,
    running: bool,
}

impl Statistics {
    /// Keeps no statistics (SQLite, or a repository that wants none).
    pub fn none() -> Self {
        Self::default()
    }

    pub fn postgres(pool: PgPool) -> Self {
        Self { postgres: Some(Arc::new(Keeper { pool, tables: Mutex::new(HashMap::new()) })) }
    }

    /// Records `rows` written to `table` by a committed transaction; starts an analysis in the
    /// background when the table has grown enough. `table` must be a plain table name in the
    /// connection's schema: it comes from the repository's own SQL, never from input.
    pub fn wrote(&self, table: &'static str, rows: u64) {
        let Some(keeper) = &self.postgres else { return };
        if rows == 0 || !crate::is_identifier(table) {
            return;
        }
        let due = {
            let Ok(mut tables) = keeper.tables.lock() else { return };
            let growth = tables.entry(table).or_insert(Growth {
                written: 0,
                analyze_after: FIRST_ANALYZE_AFTER,
                running: false,
            });
            growth.written = growth.written.saturating_add(rows);
            let due = !growth.running && growth.written >= growth.analyze_after;
            if due {
                growth.running = true;
                growth.written = 0;
            }
            due
        };
        // Outside a runtime (a synchronous test) there is nothing to run the analysis on; the
        // count is kept and the next write inside one starts it.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            if due {
                keeper.finished(table, None);
            }
            return;
        };
        if due {
            let keeper = Arc::clone(keeper);
            runtime.spawn(async move {
                let rows = keeper.analyze(table).await;
                keeper.finished(table, rows);
            });
        }
    }
}

impl Keeper {
    /// The table's estimated row count after the analysis, or `None` when it failed.
    async fn analyze(&self, table: &'static str) -> Option<u64> {
        let started = std::time::Instant::now();
        let analyzed = async {
            sqlx::query(sqlx::AssertSqlSafe(format!("ANALYZE {table}"))).execute(&self.pool).await?;
            sqlx::query_scalar::<_, f32>("SELECT reltuples FROM pg_class WHERE oid = to_regclass($1)")
                .bind(table)
                .fetch_optional(&self.pool)
                .await
        }
        .await;
        match analyzed {
            Ok(rows) => {
                // reltuples is -1 for a table never analysed, a float estimate otherwise.
                let rows = rows.filter(|r| *r > 0.0).map_or(0, |r| r as u64);
                tracing::debug!(
                    table,
                    rows,
                    elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                    "table analysed"
                );
                Some(rows)
            }
            Err(e) => {
                tracing::warn!(table, error = %e, "analysing a grown table failed");
                None
            }
        }
    }

    fn finished(&self, table: &'static str, rows: Option<u64>) {
        let Ok(mut tables) = self.tables.lock() else { return };
        if let Some(growth) = tables.get_mut(table) {
            growth.running = false;
            if let Some(rows) = rows {
                growth.analyze_after = rows.saturating_mul(GROWTH).max(FIRST_ANALYZE_AFTER);
            }
        }
    }
}

impl From<&PgPool> for Statistics {
    fn from(pool: &PgPool) -> Self {
        Self::postgres(pool.clone())
    }
}

impl From<&SqlitePool> for Statistics {
    fn from(_: &SqlitePool) -> Self {
        Self::none()
    }
}
