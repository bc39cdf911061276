//! The server through its doors: gRPC Check, the HTTP door, admin API, CLI, listener limits,
//! overload, faults, reload and tracing, each file a module.

// A test crate has no public API: the workspace's API lints do not apply.
#![allow(missing_docs, unreachable_pub)]
// Unwrapping is how a test says "this must hold".
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../common/mod.rs"]
mod common;

mod admin_api;
mod attacks_listener;
mod cli;
mod context_and_dry_run;
mod faults;
mod grpc_check;
mod overload;
mod reload;
mod request_hygiene;
mod tracing_otlp;
