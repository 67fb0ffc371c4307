//! detour-auth's integration tests: one binary, so the test keys and the link are shared.

// A test helper that cannot take its step fails the test on the spot, like the test itself;
// clippy's allow-*-in-tests settings do not reach helper functions outside `#[test]`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod dev_issuer;
mod layer;
mod policy;
mod support;
mod verify;
