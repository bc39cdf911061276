//! `revocation`: the store (memory or Redis) and its Redis settings.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration;

/// Which revocation store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// Embedded, per replica.
    #[default]
    Memory,
    /// Shared Redis.
    Redis,
}

/// What to do when a dependency fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Fail closed.
    #[default]
    Deny,
    /// Fail open (an explicit operator choice).
    Allow,
}

/// Revocation settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationConfig {
    /// `memory` (default) or `redis`.
    #[serde(default)]
    pub store: StoreKind,
    /// Redis settings, used with `store: redis`.
    #[serde(default)]
    pub redis: Option<RedisConfig>,
    /// What a failed lookup means.
    #[serde(default)]
    pub on_error: OnError,
}

/// Redis connection settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://` or `rediss://` URL of a single node (a password in it is never printed).
    #[serde(default, serialize_with = "redact_opt_url")]
    pub url: Option<String>,
    /// Seed nodes of a Redis Cluster.
    #[serde(default, serialize_with = "redact_urls")]
    pub cluster_nodes: Vec<String>,
    /// Prefix of every key.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// How long a lookup result is cached locally.
    #[serde(default = "default_cache_ttl", with = "duration")]
    pub cache_ttl: Duration,
    /// Entries the local lookup cache holds at most.
    #[serde(default = "default_cache_capacity")]
    pub cache_capacity: u64,
    /// Timeout of establishing one connection.
    #[serde(default = "default_connect_timeout", with = "duration")]
    pub connect_timeout: Duration,
    /// Timeout of one command or pipeline (a lookup answers, as an error, within it).
    #[serde(default = "default_command_timeout", with = "duration")]
    pub command_timeout: Duration,
    /// PEM CA bundle trusted for `rediss://` instead of the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// File holding the ACL user name (overrides the URL's and `MESH_AUTHZ_REDIS_USERNAME`).
    #[serde(default)]
    pub username_file: Option<PathBuf>,
    /// File holding the password (overrides the URL's and `MESH_AUTHZ_REDIS_PASSWORD`).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Replicas that must hold a revocation (`WAIT`) before it is confirmed (0: the master's
    /// acknowledgement is enough).
    #[serde(default)]
    pub min_replicas: u32,
    /// How long a write waits for `min_replicas` before it is reported as not confirmed.
    #[serde(default = "default_replication_timeout", with = "duration")]
    pub replication_timeout: Duration,
}

fn default_replication_timeout() -> Duration {
    Duration::from_secs(1)
}

fn default_cache_capacity() -> u64 {
    100_000
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_command_timeout() -> Duration {
    Duration::from_millis(500)
}

/// A Redis URL with any password replaced by `***`, for printing and logs.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "<unparseable URL>".to_string(),
    }
}

fn redact_opt_url<S: serde::Serializer>(u: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match u {
        Some(u) => s.serialize_some(&redact_url(u)),
        None => s.serialize_none(),
    }
}

fn redact_urls<S: serde::Serializer>(urls: &[String], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(urls.iter().map(|u| redact_url(u)))
}

fn default_key_prefix() -> String {
    "mesh-authz:".to_string()
}
fn default_cache_ttl() -> Duration {
    Duration::from_secs(1)
}
