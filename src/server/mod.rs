//! Transport adapters: Envoy ext_authz over gRPC, and the HTTP listener; [`run`] wires them up.

pub mod admin;
pub(crate) mod gate;
pub(crate) mod grpc;
pub(crate) mod http;
pub(crate) mod http_authz;
pub mod listener;
mod reload;
mod run;
mod serve;

pub use run::{Running, ServeError, start};
pub use serve::{
    ConfigSource, WatchStart, run, run_with_reload, run_with_reload_and_watch,
    wait_for_shutdown_signal,
};
