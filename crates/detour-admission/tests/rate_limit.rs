#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! One suite for both rate limiters, so the in-process one stays a faithful stand-in for Redis:
//! the local limiter under paused time, the Redis one on the real clock with a rate of one token
//! a second (each Redis test waits at most about a second). Every Redis limiter gets a fresh key
//! prefix, so tests running in parallel, or again, never share buckets.

use std::time::Duration;

use detour_admission::{Limited, LocalRateLimiter, RateLimit, RateLimiter, RedisRateLimiter};
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use redis::aio::ConnectionManager;

const LIMIT: RateLimit = RateLimit { per_second: 1, burst: 3 };
const TOKEN: Duration = Duration::from_secs(1);

/// Redis measures on its wall clock, the test sleeps on the monotonic one, and the two may run
/// at slightly different speeds while NTP slews; a little extra wait absorbs that.
const CLOCK_MARGIN: Duration = Duration::from_millis(20);

fn redis_url() -> String {
    std::env::var("DETOUR_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn unique_prefix() -> String {
    format!("detour-test:{}", uuid::Uuid::now_v7().simple())
}

/// A limiter with a connection of its own, as each replica has.
async fn redis_limiter(prefix: &str, limit: RateLimit) -> RedisRateLimiter {
    let client = redis::Client::open(redis_url()).unwrap();
    let conn = ConnectionManager::new(client).await.unwrap();
    // Generous, so a slow test machine does not make the limiter fail open and pass requests.
    RedisRateLimiter::new(conn, prefix, limit).with_timeout(Duration::from_secs(5))
}

async fn spend(limiter: &dyn RateLimiter, source: &str, n: usize) {
    for i in 0..n {
        assert_eq!(limiter.check(source, 1).await, Ok(()), "request {i} from {source}");
    }
}

async fn limited(limiter: &dyn RateLimiter, source: &str, cost: u32) -> Limited {
    match limiter.check(source, cost).await {
        Err(limited) => limited,
        Ok(()) => panic!("{source} was not limited at cost {cost}"),
    }
}

fn assert_sensible(limited: Limited) {
    assert!(
        limited.retry_after > Duration::ZERO && limited.retry_after <= TOKEN,
        "retry after {:?}, expected within one token's time",
        limited.retry_after
    );
}

async fn burst_is_admitted_then_limited(limiter: &dyn RateLimiter) {
    spend(limiter, "partner:airline-ca", 3).await;
    assert_sensible(limited(limiter, "partner:airline-ca", 1).await);
}

async fn tokens_refill_over_time(limiter: &dyn RateLimiter) {
    spend(limiter, "channel:sms", 3).await;
    let first = limited(limiter, "channel:sms", 1).await;
    assert_sensible(first);
    // A refused request spends nothing, so asking again does not push the retry further out.
    for _ in 0..3 {
        assert!(limited(limiter, "channel:sms", 1).await.retry_after <= first.retry_after);
    }
    tokio::time::sleep(first.retry_after + CLOCK_MARGIN).await;
    spend(limiter, "channel:sms", 1).await;
}

async fn costs_are_charged(limiter: &dyn RateLimiter) {
    assert_eq!(limiter.check("partner:batch", 2).await, Ok(()));
    assert_sensible(limited(limiter, "partner:batch", 2).await);
    spend(limiter, "partner:batch", 1).await;
    assert_sensible(limited(limiter, "partner:batch", 1).await);
    assert_eq!(limiter.check("partner:batch", 0).await, Ok(()), "a free check always passes");

    // More than the burst could never be paid for, so it is charged the whole bucket.
    assert_eq!(limiter.check("partner:huge", 50).await, Ok(()));
    assert_sensible(limited(limiter, "partner:huge", 1).await);
}

async fn sources_are_independent(limiter: &dyn RateLimiter) {
    spend(limiter, "partner:airline-ca", 3).await;
    spend(limiter, "partner:airline-lh", 3).await;
    assert_sensible(limited(limiter, "partner:airline-ca", 1).await);
    assert_sensible(limited(limiter, "partner:airline-lh", 1).await);
}

macro_rules! rate_limiter_suite {
    ($name:ident, #[$test:meta], $limiter:expr) => {
        mod $name {
            use super::*;

            #[$test]
            async fn burst_is_admitted_then_limited() {
                super::burst_is_admitted_then_limited(&$limiter).await;
            }

            #[$test]
            async fn tokens_refill_over_time() {
                super::tokens_refill_over_time(&$limiter).await;
            }

            #[$test]
            async fn costs_are_charged() {
                super::costs_are_charged(&$limiter).await;
            }

            #[$test]
            async fn sources_are_independent() {
                super::sources_are_independent(&$limiter).await;
            }
        }
    };
}

rate_limiter_suite!(local, #[tokio::test(start_paused = true)], LocalRateLimiter::new(LIMIT));
rate_limiter_suite!(redis_shared, #[tokio::test], redis_limiter(&unique_prefix(), LIMIT).await);

#[tokio::test(start_paused = true)]
async fn local_retry_after_is_exact() {
    let limiter = LocalRateLimiter::new(RateLimit { per_second: 4, burst: 2 });
    spend(&limiter, "channel:web", 2).await;
    assert_eq!(limited(&limiter, "channel:web", 1).await.retry_after, Duration::from_millis(250));
    tokio::time::advance(Duration::from_millis(100)).await;
    assert_eq!(limited(&limiter, "channel:web", 1).await.retry_after, Duration::from_millis(150));
    assert_eq!(limited(&limiter, "channel:web", 2).await.retry_after, Duration::from_millis(400));
}

#[tokio::test]
async fn replicas_share_one_budget() {
    let prefix = unique_prefix();
    let one = RedisRateLimiter::connect(&redis_url(), prefix.as_str(), LIMIT).await.unwrap();
    let two = redis_limiter(&prefix, LIMIT).await;

    spend(&one, "partner:airline-ca", 1).await;
    spend(&two, "partner:airline-ca", 1).await;
    spend(&one, "partner:airline-ca", 1).await;
    assert_sensible(limited(&two, "partner:airline-ca", 1).await);
    assert_sensible(limited(&one, "partner:airline-ca", 1).await);

    // Another prefix is another budget.
    spend(&redis_limiter(&unique_prefix(), LIMIT).await, "partner:airline-ca", 3).await;
}

#[tokio::test]
async fn a_bucket_key_lives_only_until_the_bucket_is_full_again() {
    let prefix = unique_prefix();
    let limiter = redis_limiter(&prefix, LIMIT).await;
    assert_eq!(limiter.check("channel:sms", 2).await, Ok(()));

    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let ttl_ms: i64 =
        redis::cmd("PTTL").arg(format!("{prefix}:rl:channel:sms")).query_async(&mut conn).await.unwrap();
    assert!(
        ttl_ms > 0 && ttl_ms <= 2000,
        "two tokens take two seconds to come back, the key has {ttl_ms} ms"
    );
}

#[tokio::test]
async fn the_script_is_sent_again_when_redis_has_forgotten_it() {
    let limiter = redis_limiter(&unique_prefix(), LIMIT).await;
    assert_eq!(limiter.try_check("channel:sms", 1).await.unwrap(), Ok(()));

    // What a Redis restart or failover does to the script cache.
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut conn).await.unwrap();

    assert_eq!(limiter.try_check("channel:sms", 2).await.unwrap(), Ok(()));
    assert!(limiter.try_check("channel:sms", 1).await.unwrap().is_err());
}

#[tokio::test]
async fn an_unreachable_redis_fails_open_and_is_counted() {
    let mut registry = Registry::default();
    // Nothing listens on port 1.
    let limiter = RedisRateLimiter::connect(
        "redis://127.0.0.1:1",
        unique_prefix(),
        RateLimit { per_second: 1, burst: 1 },
    )
    .await
    .unwrap()
    .with_metrics(&mut registry);

    assert!(limiter.try_check("partner:airline-ca", 1).await.is_err());
    for _ in 0..3 {
        assert_eq!(limiter.check("partner:airline-ca", 1).await, Ok(()));
    }

    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    let line = r#"rate_limit_decisions_total{outcome="failed_open"} 3"#;
    assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
}

#[test]
fn a_limited_request_becomes_resource_exhausted_with_a_retry_hint() {
    use tonic_types::StatusExt;

    let status = tonic::Status::from(Limited { retry_after: Duration::from_millis(250) });
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert_eq!(status.message(), "rate limited: retry in 250 ms");
    assert_eq!(status.get_details_retry_info().unwrap().retry_delay, Some(Duration::from_millis(250)));
    let info = status.get_details_error_info().unwrap();
    assert_eq!((info.reason.as_str(), info.domain.as_str()), ("RATE_LIMITED", "detour"));
}
