//! Fresh, empty databases for tests: every test gets its own, so tests never see each other's
//! rows and can run in parallel.

use sqlx::postgres::PgPool;
use sqlx::{AssertSqlSafe, Executor};

use crate::StorageError;

/// The server tests create their databases on. The test script exports it; the default is the
/// local trust-auth server.
pub fn postgres_admin_url() -> String {
    std::env::var("DETOUR_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Redis for transport tests.
pub fn redis_url() -> String {
    std::env::var("DETOUR_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Creates a new PostgreSQL database named `detour_test_<random>` and returns its URL.
pub async fn fresh_postgres_url() -> Result<String, StorageError> {
    let admin = postgres_admin_url();
    let pool = PgPool::connect(&admin).await?;
    let name = format!("detour_test_{}", uuid::Uuid::now_v7().simple());
    pool.execute(AssertSqlSafe(format!("CREATE DATABASE {name}"))).await?;
    pool.close().await;
    Ok(replace_database(&admin, &name))
}

/// A SQLite URL for a new file in `dir`.
pub fn fresh_sqlite_url(dir: &std::path::Path) -> String {
    format!("sqlite://{}/{}.db", dir.display(), uuid::Uuid::now_v7().simple())
}

fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[authority_end..].find('/') {
        Some(i) => &base[..authority_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{database}?{q}"),
        None => format!("{base}/{database}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_is_replaced_and_query_kept() {
        assert_eq!(replace_database("postgres://u@h:5432/postgres", "x"), "postgres://u@h:5432/x");
        assert_eq!(replace_database("postgres://u@h:5432", "x"), "postgres://u@h:5432/x");
        assert_eq!(
            replace_database("postgres://u@h/db?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
    }
}
