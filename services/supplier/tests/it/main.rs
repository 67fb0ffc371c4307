//! Integration tests: the repository contract on a SQLite file and on PostgreSQL, and the
//! service through its real gRPC server and event bus. One test binary, so the crate's tests
//! link once.

// Helpers fail the test by panicking, like the tests themselves; clippy's allow-*-in-tests
// settings cover only `#[test]` functions, not the helpers they call.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod grpc;
mod repository;
