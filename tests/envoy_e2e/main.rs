//! End to end through a real Envoy 1.40 binary.

// A test crate has no public API: the workspace's API lints do not apply.
#![allow(missing_docs, unreachable_pub)]
// Unwrapping is how a test says "this must hold".
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../common/mod.rs"]
mod common;

mod e2e;
