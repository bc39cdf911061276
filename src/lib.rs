//! mesh-authz: an external authorization server for Envoy and Istio.
//!
//! The check core ([`check`], [`identity`], [`token`], [`revocation`], [`policy`]) knows nothing of
//! gRPC or HTTP; [`server`] adapts Envoy's ext_authz protocols to it.

pub mod check;
pub mod clock;
pub mod config;
pub mod dev;
pub mod identity;
pub mod issuer;
pub mod otel;
pub mod policy;
pub mod revocation;
pub mod server;
pub mod telemetry;
pub mod token;
