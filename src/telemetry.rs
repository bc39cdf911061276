//! Prometheus metrics and logging setup.
//!
//! Labels are bounded: decision, reason (a fixed set), provider (from config), outcome, source.
//! Never a label per user, token or path.
//!
//! The series every allowed check adds to — `checks_total{allow,ok}`, the check duration
//! histogram, `token_cache_total` and `revocation_lookups_total{active}` — are counted in
//! per-thread shards ([`hot`]) and summed when `/metrics` is read: a Prometheus counter or
//! histogram is a handful of atomics every worker thread would write on every check, so the cache
//! lines holding them would move between cores at each one. The exported names, labels, buckets
//! and values are the same.

use std::sync::Arc;

use mesh_authz_core::metrics::{CheckOutcome, MetricsSink};
use prometheus::core::Collector;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

mod hot;

use hot::{HotCounts, Series, WithHot};

/// Upper bounds of `mesh_authz_check_duration_seconds`, in seconds.
const DURATION_BUCKETS: [f64; 13] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// The revocation sources whose `outcome="active"` lookups are counted in shards.
const REVOCATION_SOURCES: [&str; 3] = ["memory", "cache", "redis"];

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
    pub token_cache: TokenCacheTotal,
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
    /// The per-thread counts of the hot series, added to them when read.
    hot: Arc<HotCounts>,
}

/// `mesh_authz_token_cache_total`, counted in per-thread shards.
#[derive(Clone)]
pub struct TokenCacheTotal {
    vec: IntCounterVec,
    hot: Arc<HotCounts>,
}

impl TokenCacheTotal {
    /// The series for `outcome` (`hit` or `miss`; any other value reads 0).
    pub fn with_label_values(&self, values: &[&str]) -> TokenCacheSeries {
        TokenCacheSeries {
            series: match values {
                ["hit"] => Some(Series::CacheHit),
                ["miss"] => Some(Series::CacheMiss),
                _ => None,
            },
            hot: self.hot.clone(),
        }
    }
}

/// One series of [`TokenCacheTotal`].
pub struct TokenCacheSeries {
    series: Option<Series>,
    hot: Arc<HotCounts>,
}

impl TokenCacheSeries {
    /// The count now.
    pub fn get(&self) -> u64 {
        self.series.map_or(0, |s| self.hot.sum(s))
    }
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
            HistogramOpts::new("check_duration_seconds", "Time to answer one check.")
                .buckets(DURATION_BUCKETS.to_vec()),
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
        let hot = Arc::new(HotCounts::new());
        let with_hot = |inner: Box<dyn Collector>| -> Box<dyn Collector> {
            Box::new(WithHot {
                inner,
                hot: hot.clone(),
            })
        };
        for c in [
            with_hot(Box::new(checks.clone())),
            with_hot(Box::new(check_duration.clone())),
            Box::new(jwks_refresh.clone()),
            Box::new(jwks_keys.clone()),
            Box::new(jwks_keys_dropped.clone()),
            with_hot(Box::new(token_cache.clone())),
            with_hot(Box::new(revocation_lookups.clone())),
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
            token_cache: TokenCacheTotal {
                vec: token_cache,
                hot: hot.clone(),
            },
            revocation_lookups,
            redis_errors,
            revocation_invalidations,
            config_reloads,
            checks_in_flight,
            token_cache_entries,
            hot,
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

/// [`MetricsSink`] for the check core: the series every allowed check touches are counted in
/// this thread's shard; the rest (denials by reason, other revocation outcomes) by label.
struct CoreSink {
    metrics: Metrics,
}

impl CoreSink {
    fn new(metrics: Metrics) -> Self {
        // The series a check may touch exist (at 0) from the start, as before sharding.
        metrics.checks.with_label_values(&["allow", "ok"]);
        metrics.check_duration.with_label_values(&["allow"]);
        metrics.check_duration.with_label_values(&["deny"]);
        metrics.token_cache.vec.with_label_values(&["hit"]);
        metrics.token_cache.vec.with_label_values(&["miss"]);
        Self { metrics }
    }
}

impl MetricsSink for CoreSink {
    fn check_answered(&self, outcome: CheckOutcome, reason: &'static str, seconds: Option<f64>) {
        let hot = &self.metrics.hot;
        match outcome {
            CheckOutcome::Allow => {
                hot.add(Series::Allowed);
                if let Some(s) = seconds {
                    hot.observe(0, s);
                }
            }
            CheckOutcome::Deny => {
                self.metrics
                    .checks
                    .with_label_values(&["deny", reason])
                    .inc();
                if let Some(s) = seconds {
                    hot.observe(1, s);
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
        self.metrics.hot.add(if hit {
            Series::CacheHit
        } else {
            Series::CacheMiss
        });
    }

    fn token_cache_entries(&self, entries: u64) {
        self.metrics
            .token_cache_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
    }

    fn revocation_lookup(&self, source: &'static str, outcome: &'static str) {
        match REVOCATION_SOURCES.iter().position(|s| *s == source) {
            Some(i) if outcome == "active" => self.metrics.hot.add(Series::RevocationActive(i)),
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

#[cfg(test)]
mod tests;
