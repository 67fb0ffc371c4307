//! What the end-to-end test binaries share besides `detour-testkit`: clients of every service and
//! the case lifecycle driven through them.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

pub mod lifecycle;
