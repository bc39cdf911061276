//! mesh-authz's check core: a transport-free request in, a decision out.
//!
//! This crate decides; hosts carry. The server (`mesh-authz`: ext_authz gRPC and HTTP, admin API,
//! Redis, JWKS fetching) and the Envoy dynamic module both drive the same [`check::Checker`], and
//! give it what it needs through traits this crate owns:
//!
//! | trait | what it brings | server's implementation |
//! |---|---|---|
//! | [`token::KeySource`] | a provider's current JWKS | `mesh_authz::jwks::JwksCache` (URL, discovery, file) |
//! | [`revocation::RevocationStore`] | revocation lookups | [`revocation::MemoryStore`], `RedisStore` |
//! | [`clock::Clock`] | the time | [`clock::SystemClock`] |
//! | [`metrics::MetricsSink`] | counts | Prometheus |
//!
//! The layout, leaves first (no module imports one after it):
//!
//! - [`algorithm`], [`request`], [`decision`], [`clock`], [`metrics`], [`spiffe`], [`prefix`]: leaves.
//! - [`config`]: the config schema, loading (YAML plus environment overrides) and syntax checks.
//! - [`identity`]: the peer's identity (SPIFFE ID, certificate, XFCC).
//! - [`token`]: Bearer extraction, JWK/JWS, claims, the verifier and its verified-token cache.
//! - [`revocation`]: the store trait, the revocation rule and the embedded memory store.
//! - [`policy`]: compiled rules (matchers and requirements).
//! - [`compile`]: the one compile step, config to [`compile::Compiled`].
//! - [`check`]: the pipeline that puts it all together.

pub mod algorithm;
pub mod check;
pub mod clock;
pub mod compile;
pub mod config;
pub mod decision;
pub mod identity;
pub mod metrics;
pub mod policy;
pub mod prefix;
pub mod request;
pub mod revocation;
pub mod spiffe;
pub mod token;
