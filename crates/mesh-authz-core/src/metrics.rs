//! The metrics sink: what the core counts, named by event, so that each host keeps its own
//! registry (Prometheus in the server, Envoy stats in the module).
//!
//! Every label value passed here is bounded: a fixed reason or outcome, or a source name.

/// How a check ended, for `mesh_authz_checks_total{decision}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    /// Allowed.
    Allow,
    /// Denied.
    Deny,
    /// A dry-run rule would have denied (the request went on to the next rule).
    DryRunDeny,
}

impl CheckOutcome {
    /// The label value: `allow`, `deny` or `dry_run_deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckOutcome::Allow => "allow",
            CheckOutcome::Deny => "deny",
            CheckOutcome::DryRunDeny => "dry_run_deny",
        }
    }
}

/// Receives the core's counts. Implementations must be cheap: the allow path calls
/// [`MetricsSink::check_answered`] and [`MetricsSink::token_cache`] once per check.
pub trait MetricsSink: Send + Sync {
    /// A check ended with `outcome` for `reason` (`ok` on allow); `seconds` is the time it took
    /// (absent for dry-run denials, which are not answers).
    fn check_answered(&self, outcome: CheckOutcome, reason: &'static str, seconds: Option<f64>);
    /// A token was looked up in the verified-token cache.
    fn token_cache(&self, hit: bool);
    /// The verified-token cache now holds `entries` tokens.
    fn token_cache_entries(&self, entries: u64);
    /// A revocation lookup answered from `source` (`memory`, `cache`, `redis`) with `outcome`
    /// (`active`, `revoked`, `error`).
    fn revocation_lookup(&self, source: &'static str, outcome: &'static str);
}

/// A sink that drops everything (tools and tests that count nothing).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMetrics;

impl MetricsSink for NoMetrics {
    fn check_answered(&self, _: CheckOutcome, _: &'static str, _: Option<f64>) {}
    fn token_cache(&self, _: bool) {}
    fn token_cache_entries(&self, _: u64) {}
    fn revocation_lookup(&self, _: &'static str, _: &'static str) {}
}
