//! Integration tests against real PostgreSQL, SQLite files and Redis.
//!
//! One test binary (not one per file) so the crate links its tests once.

// Test code: a failed expectation is meant to abort the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bus_contract;
mod common;
mod outbox_relay;
mod transport_specific;
