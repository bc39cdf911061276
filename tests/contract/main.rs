//! The check core's contract: conformance vectors, token and identity attacks, policy rules,
//! properties, JWKS sources and the issuer tooling, each file a module.

// A test crate has no public API: the workspace's API lints do not apply.
#![allow(missing_docs, unreachable_pub)]
// Unwrapping is how a test says "this must hold".
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../common/mod.rs"]
mod common;

mod attacks_identity;
mod house;
mod identity_vectors;
mod issuer_roundtrip;
mod jwks_sources;
mod policy_rules;
mod properties;
mod token_attacks;
mod token_vectors;
