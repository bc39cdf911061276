//! Typed configuration: a YAML (or JSON) file plus `MESH_AUTHZ_` environment overrides, validated
//! with path-qualified errors.

use serde::{Deserialize, Serialize};

mod durations;
mod identity;
mod load;
mod providers;
mod revocation;
mod rules;
mod server;
mod settings;
mod sources;
mod validate;

pub use durations::{duration, opt_duration};
pub use identity::*;
pub use load::{ENV_PREFIX, from_str_with_env, load};
pub use providers::*;
pub use revocation::*;
pub use rules::*;
pub use server::*;
pub use settings::*;

pub use sources::{DISCOVERY_PATH, JwksSource, RedisEndpoints, SourceProblem, parse_http_url};
pub use validate::validate;

/// One config problem, with the path of the offending key (`providers[0].jwks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path with list indices; empty for the whole document.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: String) -> Self {
        Self {
            path: path.into(),
            message,
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a config, one per line when displayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listeners.
    #[serde(default)]
    pub server: ServerConfig,
    /// Token issuers; a token's `iss` selects its provider.
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
    /// Where the caller's transport identity comes from.
    #[serde(default)]
    pub identity: IdentityConfig,
    /// The revocation store.
    #[serde(default)]
    pub revocation: RevocationConfig,
    /// Per-route rules; the first match wins.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// What happens to a request no rule matches.
    #[serde(default)]
    pub default_action: Action,
    /// Input size limits and cache bounds.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Log format and level.
    #[serde(default)]
    pub logging: LoggingConfig,
    /// OpenTelemetry spans of checks, exported over OTLP/HTTP. Off when absent.
    #[serde(default)]
    pub tracing: Option<TracingConfig>,
}

impl Config {
    /// Every claim path a rule's `require.claims` reads (what a cached token must keep).
    pub fn rule_claim_paths(&self) -> impl Iterator<Item = &str> {
        self.rules
            .iter()
            .flat_map(|r| r.require.claims.keys().map(String::as_str))
    }
}
