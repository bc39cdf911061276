//! Prometheus metrics and logging setup.
//!
//! Labels are bounded: decision, reason (a fixed set), provider (from config), outcome, source.
//! Never a label per user, token or path.

use std::sync::{Arc, OnceLock};

use mesh_authz_core::metrics::{CheckOutcome, MetricsSink};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric mesh-authz exports, registered in its own registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `mesh_authz_checks_total{decision, reason}`.
    pub checks: IntCounterVec,
    /// `mesh_authz_check_duration_seconds{decision}`.
    pub check_duration: HistogramVec,
    /// `mesh_authz_jwks_refresh_total{provider, outcome}`.
    pub jwks_refresh: IntCounterVec,
    /// `mesh_authz_jwks_keys{provider}`: keys currently held.
    pub jwks_keys: IntGaugeVec,
    /// `mesh_authz_jwks_keys_dropped_total{provider, reason}`: keys a loaded JWKS held that were
    /// not used, counted at every load, by a bounded reason (`weak_key`, `duplicate_kid`,
    /// `not_for_signing`, `unsupported`, `invalid`).
    pub jwks_keys_dropped: IntCounterVec,
    /// `mesh_authz_token_cache_total{outcome="hit"|"miss"}`.
    pub token_cache: IntCounterVec,
    /// `mesh_authz_revocation_lookups_total{source, outcome}`.
    pub revocation_lookups: IntCounterVec,
    /// `mesh_authz_redis_errors_total{op="lookup"|"write"|"subscribe"|"ping"}`.
    pub redis_errors: IntCounterVec,
    /// `mesh_authz_revocation_invalidations_total{kind="jti"|"sub"|"all"}`: cache entries dropped
    /// on an event (`all`: after a resubscribe, when events may have been missed).
    pub revocation_invalidations: IntCounterVec,
    /// `mesh_authz_config_reloads_total{outcome="ok"|"refused"}`.
    pub config_reloads: IntCounterVec,
    /// `mesh_authz_checks_in_flight`: checks being answered now (admitted, not yet answered).
    pub checks_in_flight: IntGauge,
    /// `mesh_authz_token_cache_entries`: verified tokens held in the cache (at most
    /// `limits.token_cache_capacity`).
    pub token_cache_entries: IntGauge,
}

impl Metrics {
    /// Creates and registers every metric.
    // The definitions are constants (valid names, fixed labels): they cannot fail, and every
    // metric is rendered by the tests.
    #[allow(clippy::expect_used)]
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("mesh_authz".into()), None)
            .unwrap_or_else(|_| Registry::new());
        let checks = IntCounterVec::new(
            Opts::new("checks_total", "Checks answered, by decision and reason."),
            &["decision", "reason"],
        )
        .expect("static metric definition");
        let check_duration = HistogramVec::new(
            HistogramOpts::new("check_duration_seconds", "Time to answer one check.").buckets(
                vec![
                    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
                    0.1, 0.25, 1.0,
                ],
            ),
            &["decision"],
        )
        .expect("static metric definition");
        let jwks_refresh = IntCounterVec::new(
            Opts::new(
                "jwks_refresh_total",
                "JWKS fetches, by provider and outcome.",
            ),
            &["provider", "outcome"],
        )
        .expect("static metric definition");
        let jwks_keys = IntGaugeVec::new(
            Opts::new("jwks_keys", "Verification keys held, by provider."),
            &["provider"],
        )
        .expect("static metric definition");
        let jwks_keys_dropped = IntCounterVec::new(
            Opts::new(
                "jwks_keys_dropped_total",
                "JWKS keys not used, counted at every load, by provider and reason.",
            ),
            &["provider", "reason"],
        )
        .expect("static metric definition");
        let token_cache = IntCounterVec::new(
            Opts::new(
                "token_cache_total",
                "Verified-token cache lookups, by outcome.",
            ),
            &["outcome"],
        )
        .expect("static metric definition");
        let revocation_lookups = IntCounterVec::new(
            Opts::new(
                "revocation_lookups_total",
                "Revocation lookups, by source (cache, memory, redis) and outcome.",
            ),
            &["source", "outcome"],
        )
        .expect("static metric definition");
        let redis_errors = IntCounterVec::new(
            Opts::new("redis_errors_total", "Redis errors, by operation."),
            &["op"],
        )
        .expect("static metric definition");
        let revocation_invalidations = IntCounterVec::new(
            Opts::new(
                "revocation_invalidations_total",
                "Revocation cache invalidations, by kind (jti, sub, all).",
            ),
            &["kind"],
        )
        .expect("static metric definition");
        let config_reloads = IntCounterVec::new(
            Opts::new(
                "config_reloads_total",
                "Config reloads, by outcome (ok, refused).",
            ),
            &["outcome"],
        )
        .expect("static metric definition");
        let checks_in_flight =
            IntGauge::new("checks_in_flight", "Checks admitted and not yet answered.")
                .expect("static metric definition");
        let token_cache_entries = IntGauge::new(
            "token_cache_entries",
            "Verified tokens held in the token cache.",
        )
        .expect("static metric definition");
        for c in [
            Box::new(checks.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(check_duration.clone()),
            Box::new(jwks_refresh.clone()),
            Box::new(jwks_keys.clone()),
            Box::new(jwks_keys_dropped.clone()),
            Box::new(token_cache.clone()),
            Box::new(revocation_lookups.clone()),
            Box::new(redis_errors.clone()),
            Box::new(revocation_invalidations.clone()),
            Box::new(config_reloads.clone()),
            Box::new(checks_in_flight.clone()),
            Box::new(token_cache_entries.clone()),
        ] {
            // Names are static and distinct, so registration cannot collide.
            let _ = registry.register(c);
        }
        Self {
            registry,
            checks,
            check_duration,
            jwks_refresh,
            jwks_keys,
            jwks_keys_dropped,
            token_cache,
            revocation_lookups,
            redis_errors,
            revocation_invalidations,
            config_reloads,
            checks_in_flight,
            token_cache_entries,
        }
    }

    /// The text exposition format for `/metrics`.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if encoder.encode(&self.registry.gather(), &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    /// The core's metrics sink over these metrics, with the allow path's series looked up once.
    pub fn core_sink(&self) -> Arc<dyn MetricsSink> {
        Arc::new(CoreSink::new(self.clone()))
    }
}

/// [`MetricsSink`] for the check core: the series every allowed check touches are resolved once
/// instead of by label on every check.
struct CoreSink {
    metrics: Metrics,
    allowed: IntCounter,
    allow_duration: Histogram,
    deny_duration: Histogram,
    cache_hits: IntCounter,
    cache_misses: IntCounter,
    /// `revocation_lookups_total{outcome="active"}` by source, created on a source's first
    /// lookup so that `/metrics` shows no series for sources the configured store never uses.
    revocation_active: [(&'static str, OnceLock<IntCounter>); 3],
}

impl CoreSink {
    fn new(metrics: Metrics) -> Self {
        let active = |source: &'static str| (source, OnceLock::new());
        Self {
            allowed: metrics.checks.with_label_values(&["allow", "ok"]),
            allow_duration: metrics.check_duration.with_label_values(&["allow"]),
            deny_duration: metrics.check_duration.with_label_values(&["deny"]),
            cache_hits: metrics.token_cache.with_label_values(&["hit"]),
            cache_misses: metrics.token_cache.with_label_values(&["miss"]),
            revocation_active: [active("memory"), active("cache"), active("redis")],
            metrics,
        }
    }
}

impl MetricsSink for CoreSink {
    fn check_answered(&self, outcome: CheckOutcome, reason: &'static str, seconds: Option<f64>) {
        match outcome {
            CheckOutcome::Allow => {
                self.allowed.inc();
                if let Some(s) = seconds {
                    self.allow_duration.observe(s);
                }
            }
            CheckOutcome::Deny => {
                self.metrics
                    .checks
                    .with_label_values(&["deny", reason])
                    .inc();
                if let Some(s) = seconds {
                    self.deny_duration.observe(s);
                }
            }
            CheckOutcome::DryRunDeny => self
                .metrics
                .checks
                .with_label_values(&["dry_run_deny", reason])
                .inc(),
        }
    }

    fn token_cache(&self, hit: bool) {
        if hit {
            self.cache_hits.inc();
        } else {
            self.cache_misses.inc();
        }
    }

    fn token_cache_entries(&self, entries: u64) {
        self.metrics
            .token_cache_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
    }

    fn revocation_lookup(&self, source: &'static str, outcome: &'static str) {
        match self.revocation_active.iter().find(|(s, _)| *s == source) {
            Some((_, counter)) if outcome == "active" => counter
                .get_or_init(|| {
                    self.metrics
                        .revocation_lookups
                        .with_label_values(&[source, "active"])
                })
                .inc(),
            _ => self
                .metrics
                .revocation_lookups
                .with_label_values(&[source, outcome])
                .inc(),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
