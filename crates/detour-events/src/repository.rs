//! The part of every service's repository that is not the service's own: one struct per backend
//! holding the pool and the relay handle, the outbox functions and transaction start of each
//! backend, and the choice of backend for a database handle.

/// Generates a service's repository on PostgreSQL and on SQLite from one body, and `for_db`,
/// which answers the one for a database handle as `Arc<dyn $trait>`.
///
/// `body` names the service's own macro. It is called once per backend with
/// `($name, $db, $pool, $row, $enqueue, $mark_processed, $begin)`: the struct, the sqlx
/// database, pool and row types, this crate's outbox functions for that backend, and the
/// statement that opens a write transaction. It writes the struct's helpers and its `impl $trait`
/// with the same SQL for both. The struct comes from here: its `pool`, its `relay`, `new`,
/// `committed`, to call after a commit that wrote events, and `wrote`, to call after a commit
/// that added rows to a table that grows in bulk.
#[macro_export]
macro_rules! sql_repositories {
    ($trait:ident { postgres: $pg:ident, sqlite: $sqlite:ident, body: $body:ident $(,)? }) => {
        $crate::sql_repositories!(@struct $pg, $crate::__private::sqlx::PgPool);
        $crate::sql_repositories!(@struct $sqlite, $crate::__private::sqlx::SqlitePool);

        $body!(
            $pg,
            $crate::__private::sqlx::Postgres,
            $crate::__private::sqlx::PgPool,
            $crate::__private::sqlx::postgres::PgRow,
            $crate::outbox::enqueue_pg,
            $crate::outbox::mark_processed_pg,
            "BEGIN"
        );

        $body!(
            $sqlite,
            $crate::__private::sqlx::Sqlite,
            $crate::__private::sqlx::SqlitePool,
            $crate::__private::sqlx::sqlite::SqliteRow,
            $crate::outbox::enqueue_sqlite,
            $crate::outbox::mark_processed_sqlite,
            // Take the write lock up front: a deferred transaction that reads and then writes can
            // fail with SQLITE_BUSY instead of waiting when another writer got there first.
            "BEGIN IMMEDIATE"
        );

        /// The repository for a database handle.
        pub fn for_db(
            db: &$crate::__private::detour_storage::Db,
            relay: Option<$crate::outbox::RelayHandle>,
        ) -> ::std::sync::Arc<dyn $trait> {
            match db {
                $crate::__private::detour_storage::Db::Postgres(pool) => {
                    ::std::sync::Arc::new($pg::new(pool.clone(), relay))
                }
                $crate::__private::detour_storage::Db::Sqlite(pool) => {
                    ::std::sync::Arc::new($sqlite::new(pool.clone(), relay))
                }
            }
        }
    };
    (@struct $name:ident, $pool:ty) => {
        #[derive(Debug, Clone)]
        pub struct $name {
            pool: $pool,
            relay: Option<$crate::outbox::RelayHandle>,
            statistics: $crate::__private::detour_storage::Statistics,
        }

        impl $name {
            pub fn new(pool: $pool, relay: Option<$crate::outbox::RelayHandle>) -> Self {
                let statistics = $crate::__private::detour_storage::Statistics::from(&pool);
                Self { pool, relay, statistics }
            }

            /// Counts rows a committed transaction wrote to `table`, so the planner's statistics
            /// follow the table as it grows (see `detour_storage::statistics`).
            #[allow(dead_code, reason = "not every service writes in bulk")]
            fn wrote(&self, table: &'static str, rows: usize) {
                self.statistics.wrote(table, u64::try_from(rows).unwrap_or(u64::MAX));
            }

            /// Wakes the outbox relay after a commit that wrote events.
            fn committed(&self) {
                if let Some(relay) = &self.relay {
                    relay.notify();
                }
            }
        }
    };
}
