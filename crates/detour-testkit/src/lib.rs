//! Test support shared by every service's integration tests and the end-to-end suite (a
//! dev-dependency only; nothing in a shipped binary links it).
//!
//! - [`Server`]: a host in-process on `127.0.0.1:0` with given modules, settings and bus,
//!   stopped through the host's own shutdown sequence; [`Service`]: one service alone on a
//!   fresh SQLite file with an in-process bus and a typed client.
//! - [`TestDb`] and [`both_backends!`]: fresh migrated databases, and one suite run against
//!   SQLite and PostgreSQL.
//! - [`outbox`], [`outbox_rows`], [`outbox_count`], [`count_rows`]: what a `Db` holds.
//! - [`publish`], [`observe`], [`next_event`], [`event_id`], [`fresh_redis`]: the event bus.
//! - [`flight_segment`], [`violated_fields`]: proto values the suites keep building and reading.
//! - [`eventually`], [`test_settings`], [`sqlite_settings`].

// A test helper that cannot take its step fails the test on the spot, like the test itself.
// The workspace denies unwrap/expect/panic outside `#[test]` functions, and clippy's
// allow-*-in-tests settings do not reach helper functions in another crate, so they are allowed
// here, and only here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod auth;
mod bus;
mod db;
mod host;
mod proto;

use std::future::Future;
use std::time::Duration;

pub use auth::{Channel, jwks_issuer, test_issuer, token};
pub use bus::{event_id, fresh_redis, next_event, observe, publish};
pub use db::{OutboxRow, TestDb, count_rows, outbox, outbox_count, outbox_rows};
pub use detour_auth::Bearer;
pub use detour_auth::Role;
pub use detour_storage::Backend;
pub use host::{Server, Service, audit_summary, scrape_metrics, sqlite_settings, test_settings};
pub use proto::{flight_segment, violated_fields};

/// Polls `f` until it returns `Some`, failing the test with `what` after `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = f().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
