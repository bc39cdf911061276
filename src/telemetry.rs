//! Prometheus metrics and logging setup.
//!
//! Labels are bounded: decision, reason (a fixed set), provider (from config), outcome, source.
//! Never a label per user, token or path.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
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
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
