//! `limits`, `logging` and `tracing`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration;

/// Limits on input sizes and cache bounds.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// A longer token is refused before any parsing.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// Verified tokens kept in the cache at most.
    #[serde(default = "default_token_cache_capacity")]
    pub token_cache_capacity: u64,
    /// Checks answered at once at most; a check over the limit is denied at once (503,
    /// reason `overloaded`) instead of queueing. `0` turns the limit off.
    #[serde(default = "default_max_concurrent_checks")]
    pub max_concurrent_checks: usize,
    /// Longest time one check may take; a slower one is denied (503, reason
    /// `deadline_exceeded`). A shorter gRPC deadline (`grpc-timeout`) from Envoy wins.
    #[serde(default = "default_check_timeout", with = "duration")]
    pub check_timeout: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_token_bytes: default_max_token_bytes(),
            token_cache_capacity: default_token_cache_capacity(),
            max_concurrent_checks: default_max_concurrent_checks(),
            check_timeout: default_check_timeout(),
        }
    }
}

fn default_max_concurrent_checks() -> usize {
    1024
}
fn default_check_timeout() -> Duration {
    Duration::from_secs(1)
}

fn default_max_token_bytes() -> usize {
    8192
}
fn default_token_cache_capacity() -> u64 {
    100_000
}

/// Log output.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    /// `json` (default) or `text`.
    #[serde(default)]
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `mesh_authz=debug`.
    #[serde(default = "default_log_level")]
    pub level: String,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::default(),
            level: default_log_level(),
        }
    }
}

fn default_log_level() -> String {
    "info".to_string()
}

/// Tracing of checks (OpenTelemetry, OTLP/HTTP protobuf).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// The collector's OTLP/HTTP base URL, e.g. `http://collector:4318`; spans are POSTed to
    /// `{otlp_endpoint}/v1/traces`.
    pub otlp_endpoint: String,
    /// `service.name` of the exported spans.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Share of new traces sampled (0.0 to 1.0); a check whose `traceparent` says sampled is
    /// always sampled, one that says not sampled never is.
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
}

fn default_service_name() -> String {
    "mesh-authz".to_string()
}

fn default_sample_ratio() -> f64 {
    1.0
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// Human-readable.
    Text,
}
