//! Feedback's integration tests: the repository contract against SQLite and PostgreSQL, and the
//! service through its real gRPC host.
//!
//! One test binary (not one per file) so the crate links its tests once.

// The helpers are test code too: a step that cannot be taken should fail the test on the spot.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod grpc;
mod repository;
