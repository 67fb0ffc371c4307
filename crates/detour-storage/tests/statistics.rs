//! Tables grown by bulk writes are analysed on the doubling schedule, so PostgreSQL plans
//! against their real size rather than an empty table's.

use std::time::Duration;

use detour_storage::statistics::{FIRST_ANALYZE_AFTER, GROWTH};
use detour_storage::testing::fresh_postgres_url;
use detour_storage::{Statistics, StorageError};
use sqlx::postgres::PgPool;

type TestResult = Result<(), Box<dyn std::error::Error>>;

async fn insert(pool: &PgPool, rows: u64) -> Result<(), StorageError> {
    sqlx::query("INSERT INTO grown (id) SELECT g FROM generate_series(1, $1::bigint) g")
        .bind(i64::try_from(rows).unwrap_or(i64::MAX))
        .execute(pool)
        .await?;
    Ok(())
}

/// The planner's row count for the table: -1 until it is first analysed.
async fn planner_rows(pool: &PgPool) -> Result<i64, StorageError> {
    Ok(sqlx::query_scalar("SELECT reltuples::bigint FROM pg_class WHERE oid = 'grown'::regclass")
        .fetch_one(pool)
        .await?)
}

/// Waits for the background analysis to report `rows`; answers what the planner last saw.
async fn wait_for_rows(pool: &PgPool, rows: i64) -> Result<i64, StorageError> {
    let mut seen = planner_rows(pool).await?;
    for _ in 0..100 {
        if seen == rows {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        seen = planner_rows(pool).await?;
    }
    Ok(seen)
}

#[tokio::test]
async fn a_table_is_analysed_each_time_it_quadruples() -> TestResult {
    let pool = PgPool::connect(&fresh_postgres_url().await?).await?;
    sqlx::query("CREATE TABLE grown (id BIGINT PRIMARY KEY)").execute(&pool).await?;
    let statistics = Statistics::from(&pool);

    let first = FIRST_ANALYZE_AFTER;
    insert(&pool, first - 1).await?;
    statistics.wrote("grown", first - 1);
    // Below the first threshold nothing runs: give a wrongly started analysis time to show.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(planner_rows(&pool).await? < 0, "analysed before {first} rows were written");

    insert_more(&pool, first - 1, 1).await?;
    statistics.wrote("grown", 1);
    assert_eq!(wait_for_rows(&pool, 1_000).await?, 1_000);

    // The next analysis waits until the table has grown to four times its size (GROWTH
    // times as many rows again as it had).
    let more = first * GROWTH;
    insert_more(&pool, first, more - 1).await?;
    statistics.wrote("grown", more - 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(planner_rows(&pool).await?, 1_000, "analysed before the table quadrupled");

    insert_more(&pool, first + more - 1, 1).await?;
    statistics.wrote("grown", 1);
    assert_eq!(wait_for_rows(&pool, 4_000).await?, 4_000);
    pool.close().await;
    Ok(())
}

#[tokio::test]
async fn a_name_that_is_not_a_plain_table_is_never_run() -> TestResult {
    let pool = PgPool::connect(&fresh_postgres_url().await?).await?;
    sqlx::query("CREATE TABLE grown (id BIGINT PRIMARY KEY)").execute(&pool).await?;
    insert(&pool, FIRST_ANALYZE_AFTER).await?;
    let statistics = Statistics::from(&pool);
    statistics.wrote("grown; DROP TABLE grown", FIRST_ANALYZE_AFTER);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(planner_rows(&pool).await? < 0);
    pool.close().await;
    Ok(())
}

async fn insert_more(pool: &PgPool, after: u64, rows: u64) -> Result<(), StorageError> {
    sqlx::query("INSERT INTO grown (id) SELECT $1::bigint + g FROM generate_series(1, $2::bigint) g")
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(i64::try_from(rows).unwrap_or(i64::MAX))
        .execute(pool)
        .await?;
    Ok(())
}
