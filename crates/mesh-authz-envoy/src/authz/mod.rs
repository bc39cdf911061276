//! The `mesh-authz` filter: mesh-authz's check core ([`mesh_authz_core`]) inside Envoy, with the
//! same config, decisions and answers as the ext_authz server.
//!
//! This module only translates. A stream's headers and connection attributes become a core
//! [`Request`](mesh_authz_core::request::Request); the core's
//! [`Checker`](mesh_authz_core::check::Checker) decides; the decision's answer
//! ([`mesh_authz_core::check::answer`]) becomes header mutations, a local reply and dynamic
//! metadata. No decision is made here.
//!
//! * [`config`]: one filter config (compile, JWKS caches, revocation store, checker, stats).
//! * [`filter`]: the per-stream filter and how a check is driven (inline, else on the runtime).
//! * [`request`] and [`answer`]: the two translations.
//! * [`route`]: per-route config (`disabled`, or a rule set).
//! * [`stats`]: the core's metrics sink over Envoy's stats, batched per thread and flushed from
//!   the main thread; [`durations`]: the per-thread duration histogram it keeps.
//! * [`runtime`] and [`logging`]: the process-wide tokio runtime, and `tracing` into Envoy's log.

pub(crate) mod answer;
pub(crate) mod config;
pub(crate) mod durations;
pub(crate) mod filter;
pub(crate) mod logging;
pub(crate) mod request;
pub(crate) mod route;
pub(crate) mod runtime;
pub(crate) mod stats;

/// `filter_name` of the mesh-authz filter (and of its per-route config).
pub(crate) const FILTER_NAME: &str = "mesh-authz";

pub(crate) use config::new_config;
pub(crate) use route::new_route_config;
