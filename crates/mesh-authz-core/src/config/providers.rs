//! `providers`: token issuers and their JWKS sources.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{duration, opt_duration};
use crate::algorithm::Algorithm;

/// One token issuer.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// A short name, used in metrics and logs.
    pub name: String,
    /// Must equal the token's `iss` exactly.
    pub issuer: String,
    /// Accepted audiences; the token's `aud` (string or array) must contain one (RFC 9068 §4).
    /// Required unless `allow_any_audience` is set.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Skip the `aud` check (an explicit opt-out; `check-config` and `serve` warn about it).
    /// Refused together with `audiences`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_any_audience: bool,
    /// Where the verification keys come from.
    pub jwks: JwksConfig,
    /// Accepted signature algorithms (asymmetric only).
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<Algorithm>,
    /// Allowed clock difference for `exp`, `nbf` and `iat`.
    #[serde(default = "default_clock_skew", with = "duration")]
    pub clock_skew: Duration,
    /// Keep the `authorization` header for the upstream.
    #[serde(default)]
    pub forward_token: bool,
    /// Claim (dotted path for nested claims) → request header set for the upstream.
    #[serde(default)]
    pub claims_to_headers: BTreeMap<String, String>,
    /// Put the token's whole claims set into the allow's dynamic metadata (`mesh_authz.claims`),
    /// for access logs and later filters. Off by default: it makes every allow response, and
    /// every cached token, larger.
    #[serde(default)]
    pub claims_to_metadata: bool,
    /// Claims that must be present.
    #[serde(default)]
    pub required_claims: Vec<String>,
    /// When set, `exp - iat` may not exceed it (and `iat` is required).
    #[serde(default, with = "opt_duration")]
    pub max_token_lifetime: Option<Duration>,
}

fn default_algorithms() -> Vec<Algorithm> {
    vec![Algorithm::RS256]
}
fn default_clock_skew() -> Duration {
    Duration::from_secs(30)
}

/// JWKS source: exactly one of `uri`, `discovery`, `file`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JwksConfig {
    /// `https://…/jwks.json` (plain `http://` is accepted for in-cluster and test use). Printed
    /// without its userinfo and query.
    #[serde(default, serialize_with = "redact_opt_uri")]
    pub uri: Option<String>,
    /// Find `jwks_uri` at `{issuer}/.well-known/openid-configuration`.
    #[serde(default)]
    pub discovery: bool,
    /// A local JWKS file, re-read every `refresh_interval`.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// How often keys are refreshed.
    #[serde(default = "default_refresh_interval", with = "duration")]
    pub refresh_interval: Duration,
    /// An unknown `kid` triggers at most one refetch per interval.
    #[serde(default = "default_min_refetch_interval", with = "duration")]
    pub min_refetch_interval: Duration,
    /// Timeout of one fetch.
    #[serde(default = "default_fetch_timeout", with = "duration")]
    pub fetch_timeout: Duration,
    /// Extra PEM CA bundle trusted for the JWKS and discovery endpoints.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// A token without `kid` is tried against every key that fits its `alg`, up to this many
    /// (each try is a signature verification).
    #[serde(default = "default_max_keys_without_kid")]
    pub max_keys_without_kid: usize,
}

/// Default of `jwks.max_keys_without_kid`: keys tried for a token without `kid`.
pub const DEFAULT_MAX_KEYS_WITHOUT_KID: usize = 32;

fn default_max_keys_without_kid() -> usize {
    DEFAULT_MAX_KEYS_WITHOUT_KID
}

/// A URI with its userinfo and query replaced by `***` and no fragment, for printing and logs.
/// Text that is not a URL is replaced as a whole.
pub fn redact_uri(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            if !u.username().is_empty() {
                let _ = u.set_username("***");
            }
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            if u.query().is_some() {
                u.set_query(Some("***"));
            }
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "<unparseable URL>".to_string(),
    }
}

fn redact_opt_uri<S: serde::Serializer>(u: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match u {
        Some(u) => s.serialize_some(&redact_uri(u)),
        None => s.serialize_none(),
    }
}

fn default_refresh_interval() -> Duration {
    Duration::from_secs(300)
}
fn default_min_refetch_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_fetch_timeout() -> Duration {
    Duration::from_secs(5)
}
