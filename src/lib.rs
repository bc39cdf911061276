//! mesh-authz: an external authorization server for Envoy and Istio.
//!
//! The decisions are made by [`mesh_authz_core`] (identity, tokens, revocation rule, policy,
//! config), which knows nothing of gRPC, HTTP or Redis. This crate is the host around it:
//!
//! - [`server`]: the ext_authz gRPC and HTTP doors, the admin API, listeners, start-up, reload.
//! - [`jwks`]: fetching and caching each provider's JWKS (URL, OIDC discovery, file): the core's
//!   key source.
//! - [`redis_store`]: the Redis / Redis Cluster revocation store.
//! - [`telemetry`]: Prometheus metrics (the core's metrics sink) and logging.
//! - [`otel`]: OpenTelemetry tracing of checks.
//! - [`tools`]: operator tooling (key generation and token minting for tests and dev).
//! - [`dev`]: the `serve --dev` setup.

pub mod dev;
pub mod jwks;
pub mod otel;
pub mod redis_store;
pub mod server;
pub mod telemetry;
pub mod tools;
