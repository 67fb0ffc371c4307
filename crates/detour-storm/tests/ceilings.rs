//! The two ceilings driven by the generator for a fixed number of requests: every request is
//! counted once, and what the generator says it did is what the server saw.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use detour_storm::load::{LoadPlan, Pacing, Stop};
use detour_storm::{measure_echo, measure_postgres};

fn plan(pacing: Pacing, requests: u64) -> LoadPlan {
    LoadPlan { name: "test".into(), pacing, stop: Stop::Requests(requests), progress: false }
}

#[tokio::test]
async fn echo_ceiling_counts_add_up() {
    let payload = vec![7u8; 400];
    let r = measure_echo(&plan(Pacing::Closed { concurrency: 16 }, 3_000), payload.clone(), 2).await.unwrap();
    assert_eq!(r.sent, 3_000);
    assert_eq!(r.completed, 3_000);
    assert_eq!(r.ok, 3_000, "{:?}", r.by_code);
    assert_eq!((r.shed, r.errors, r.not_sent), (0, 0, 0));
    assert_eq!(r.by_code.get("OK"), Some(&3_000));
    assert_eq!(r.latency_ms.count, 3_000);
    assert_eq!(r.series.iter().map(|s| s.ok).sum::<u64>(), 3_000);
    assert!(r.ok_per_sec > 0.0);
    assert!(r.latency_ms.p50_ms > 0.0 && r.latency_ms.p50_ms <= r.latency_ms.p99_ms);
    assert!(r.latency_ms.p99_ms <= r.latency_ms.p999_ms && r.latency_ms.p999_ms <= r.latency_ms.max_ms);

    // Open loop against the same server: the schedule's count, all answered.
    let open = Pacing::Open { rate_per_sec: 2_000.0, max_in_flight: 16 };
    let r = measure_echo(&plan(open, 1_000), payload, 2).await.unwrap();
    assert_eq!((r.sent, r.ok), (1_000, 1_000));
    assert!(r.elapsed_secs >= 0.45, "1000 calls at 2000/s take half a second, not {}", r.elapsed_secs);
}

#[tokio::test]
async fn postgres_ceiling_inserts_one_row_per_request() {
    let url = std::env::var("DETOUR_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".to_owned());
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let scratch = || {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name LIKE 'storm\\_scratch\\_%'",
        )
        .fetch_one(&pool)
    };
    let before = scratch().await.unwrap();

    let plan = plan(Pacing::Closed { concurrency: 8 }, 500);
    let (r, rows) = measure_postgres(&url, 4, &plan, vec![1u8; 300]).await.unwrap();
    assert_eq!((r.sent, r.completed, r.ok, r.errors), (500, 500, 500, 0), "{:?}", r.by_code);
    assert_eq!(rows, 500, "one row per acknowledged insert");
    assert_eq!(r.latency_ms.count, 500);

    // The run's scratch schema is dropped again.
    assert!(scratch().await.unwrap() <= before);
    pool.close().await;
}
