//! Fresh, migrated databases on either backend, one suite run on both, and what a database's
//! outbox holds.

use std::ops::Deref;

use detour_proto::events::v1::Envelope;
use detour_storage::{Backend, Db, DbSettings, MigrationStep};
use prost::Message;

/// A fresh database, migrated for one service (the platform tables and `migrations`), that
/// lives as long as this value: on SQLite a new file in a temp dir kept with it, on PostgreSQL a
/// new database. Dereferences to its [`Db`].
pub struct TestDb {
    db: Db,
    // Dropped after the pool (fields drop in order).
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A new database on `backend` for the service `schema`, migrated with `migrations`.
    pub async fn fresh(backend: Backend, schema: &str, migrations: &[MigrationStep]) -> TestDb {
        let (url, dir) = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                (detour_storage::testing::fresh_sqlite_url(dir.path()), Some(dir))
            }
            Backend::Postgres => (detour_storage::testing::fresh_postgres_url().await.unwrap(), None),
        };
        let db = detour_storage::connect(&DbSettings::new(url, schema)).await.unwrap();
        detour_storage::migrate(&db, schema, migrations).await.unwrap();
        TestDb { db, _dir: dir }
    }
}

impl Deref for TestDb {
    type Target = Db;

    fn deref(&self) -> &Db {
        &self.db
    }
}

/// Runs each named async suite function once per backend, as `#[tokio::test]`s named
/// `sqlite::<suite fn>` and `postgres::<suite fn>` (or in modules named as given first).
/// `fixture` is an `async fn(Backend) -> F` in the calling module and each suite function an
/// `async fn(F)`:
///
/// ```text
/// async fn fixture(backend: Backend) -> Fixture { ... }
/// async fn a_case_is_stored_once(f: Fixture) { ... }
///
/// detour_testkit::both_backends!(fixture; a_case_is_stored_once);
/// detour_testkit::both_backends!(on_sqlite, on_postgres; fixture; a_case_is_stored_once);
/// ```
#[macro_export]
macro_rules! both_backends {
    ($sqlite:ident, $postgres:ident; $fixture:ident; $($test:ident),+ $(,)?) => {
        mod $sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(super::$fixture($crate::Backend::Sqlite).await).await;
                }
            )+
        }

        mod $postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(super::$fixture($crate::Backend::Postgres).await).await;
                }
            )+
        }
    };
    ($fixture:ident; $($test:ident),+ $(,)?) => {
        $crate::both_backends!(sqlite, postgres; $fixture; $($test),+);
    };
}

/// One row of a service's outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub stream: String,
    pub event_id: String,
    pub payload: Vec<u8>,
}

impl OutboxRow {
    /// The stored envelope.
    pub fn envelope(&self) -> Envelope {
        Envelope::decode(self.payload.as_slice()).unwrap()
    }
}

/// Every outbox row, oldest first.
pub async fn outbox_rows(db: &Db) -> Vec<OutboxRow> {
    const SQL: &str = "SELECT stream, event_id, payload FROM outbox ORDER BY seq";
    let rows: Vec<(String, String, Vec<u8>)> = match db {
        Db::Postgres(pool) => sqlx::query_as(SQL).fetch_all(pool).await.unwrap(),
        Db::Sqlite(pool) => sqlx::query_as(SQL).fetch_all(pool).await.unwrap(),
    };
    rows.into_iter().map(|(stream, event_id, payload)| OutboxRow { stream, event_id, payload }).collect()
}

/// Every outbox row, oldest first: its stream and its decoded envelope.
pub async fn outbox(db: &Db) -> Vec<(String, Envelope)> {
    outbox_rows(db).await.into_iter().map(|row| (row.stream.clone(), row.envelope())).collect()
}

/// How many rows the outbox holds.
pub async fn outbox_count(db: &Db) -> i64 {
    count_rows(db, "outbox").await
}

/// How many rows `table` holds.
pub async fn count_rows(db: &Db, table: &str) -> i64 {
    assert!(
        !table.is_empty() && table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.'),
        "not a table name: {table:?}"
    );
    let sql = sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"));
    match db {
        Db::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
        Db::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
    }
}

#[cfg(test)]
mod tests {
    use detour_proto::common::v1::EventId;

    use super::*;

    /// A database with the platform tables only.
    async fn platform(backend: Backend) -> TestDb {
        TestDb::fresh(backend, "testkit", &[]).await
    }

    async fn the_outbox_reads_back_what_was_enqueued_oldest_first(db: TestDb) {
        assert_eq!((outbox_count(&db).await, count_rows(&db, "processed_events").await), (0, 0));
        assert!(outbox_rows(&db).await.is_empty());
        let envelopes: Vec<Envelope> = ["evt-1", "evt-2"]
            .map(|id| Envelope {
                event_id: Some(EventId { value: id.into() }),
                producer: "testkit".into(),
                ..Default::default()
            })
            .into();
        for env in &envelopes {
            match &*db {
                Db::Postgres(pool) => {
                    let mut conn = pool.acquire().await.unwrap();
                    detour_events::outbox::enqueue_pg(&mut conn, "a.stream", env).await.unwrap();
                }
                Db::Sqlite(pool) => {
                    let mut conn = pool.acquire().await.unwrap();
                    detour_events::outbox::enqueue_sqlite(&mut conn, "a.stream", env).await.unwrap();
                }
            }
        }
        assert_eq!(outbox_count(&db).await, 2);
        let rows = outbox_rows(&db).await;
        assert_eq!(rows.iter().map(|r| r.event_id.as_str()).collect::<Vec<_>>(), ["evt-1", "evt-2"]);
        let decoded = outbox(&db).await;
        assert_eq!(decoded.len(), 2);
        for ((stream, env), sent) in decoded.iter().zip(&envelopes) {
            assert_eq!(stream, "a.stream");
            assert_eq!((&env.event_id, &env.producer), (&sent.event_id, &sent.producer));
        }
    }

    both_backends!(platform; the_outbox_reads_back_what_was_enqueued_oldest_first);
}
