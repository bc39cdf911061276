//! Transport adapters: Envoy ext_authz over gRPC, and the HTTP listener; [`run`] wires them up.

pub mod admin;
pub mod gate;
pub mod grpc;
pub mod http;
pub mod http_authz;
pub mod listener;
mod reload;
mod run;
mod serve;

pub use run::{Running, ServeError, start};
pub use serve::{
    ConfigSource, WatchStart, run, run_with_reload, run_with_reload_and_watch,
    wait_for_shutdown_signal,
};
