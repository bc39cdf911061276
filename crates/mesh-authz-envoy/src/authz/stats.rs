//! The core's [`MetricsSink`] over Envoy's stats, with the Prometheus names of the server
//! (`mesh_authz_checks_total{decision,reason}` …); Envoy shows them under
//! `dynamicmodulescustom.`.
//!
//! Envoy 1.40 resolves a labelled stat on every call (the label values are interned in its
//! symbol table and the tagged stat looked up), which cost more than a cached check itself. So a
//! check does not call Envoy: the sink adds to its thread's [`Shard`] (a thread-local, an
//! uncontended lock), wherever the check runs (an Envoy worker, or the module's runtime), and
//! every [`FLUSH_INTERVAL`] the config's scheduler runs [`Stats::flush`] on Envoy's main thread,
//! which sums the shards into one call per series. Counts reach `/stats` within a second.
//!
//! `mesh_authz_check_duration_us` has no labels (the decision split is in
//! `mesh_authz_checks_total`): each value is recorded individually, and without labels that is
//! a plain histogram insert.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mesh_authz_core::metrics::{CheckOutcome, MetricsSink};
use thread_local::ThreadLocal;

use super::durations::Durations;
use crate::host::{
    ConfigContext, CounterId, GaugeId, HistogramId, MainThread, MetricsError, RecordStats,
};

/// How often the counts of every thread are flushed to Envoy.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// The stats one filter config defines (in `on_http_filter_config_new`), and what its checks
/// counted since the last flush.
pub(crate) struct Stats {
    checks: CounterId,
    duration: HistogramId,
    token_cache: CounterId,
    token_cache_entries: GaugeId,
    revocation: CounterId,
    batch: Arc<Batch>,
}

impl Stats {
    /// Defines every stat.
    pub(crate) fn define(ctx: &mut ConfigContext<'_>) -> Result<Stats, MetricsError> {
        Ok(Stats {
            checks: ctx.define_counter("mesh_authz_checks_total", &["decision", "reason"])?,
            // Envoy histograms take integers: microseconds rather than the server's seconds.
            duration: ctx.define_histogram("mesh_authz_check_duration_us", &[])?,
            token_cache: ctx.define_counter("mesh_authz_token_cache_total", &["outcome"])?,
            token_cache_entries: ctx.define_gauge("mesh_authz_token_cache_entries", &[])?,
            revocation: ctx.define_counter(
                "mesh_authz_revocation_lookups_total",
                &["source", "outcome"],
            )?,
            batch: Arc::new(Batch::default()),
        })
    }

    /// The sink the config's checkers count into.
    pub(crate) fn sink(&self) -> BatchSink {
        BatchSink(Arc::clone(&self.batch))
    }

    /// Sends everything counted since the last flush to Envoy (main thread).
    pub(crate) fn flush(&self, main: &mut MainThread<'_>) {
        let mut counts: Vec<(Key, u64)> = Vec::new();
        let mut durations = Durations::default();
        let mut entries = None;
        for shard in self.batch.shards.iter() {
            let mut s = shard.lock().unwrap_or_else(PoisonError::into_inner);
            for (key, n) in s.counts.drain(..) {
                add(&mut counts, key, n);
            }
            if !s.durations.is_empty() {
                for (value, n) in s.durations.drain() {
                    durations.record_n(value, n);
                }
            }
            if let Some(e) = s.entries.take() {
                entries = Some(e);
            }
        }
        for (key, n) in counts {
            let r = match key {
                Key::Check(outcome, reason) => {
                    main.increment_counter(self.checks, &[outcome.as_str(), reason], n)
                }
                Key::TokenCache(hit) => {
                    main.increment_counter(self.token_cache, &[if hit { "hit" } else { "miss" }], n)
                }
                Key::Revocation(source, outcome) => {
                    main.increment_counter(self.revocation, &[source, outcome], n)
                }
            };
            if let Err(e) = r {
                tracing::debug!(error = %e, "stat not recorded");
            }
        }
        for (value, n) in durations.drain() {
            for _ in 0..n {
                if let Err(e) = main.record_histogram(self.duration, &[], value) {
                    tracing::debug!(error = %e, "stat not recorded");
                    break;
                }
            }
        }
        if let Some(e) = entries
            && let Err(e) = main.set_gauge(self.token_cache_entries, &[], e)
        {
            tracing::debug!(error = %e, "stat not recorded");
        }
    }
}

/// One counted series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    /// `mesh_authz_checks_total{decision,reason}`.
    Check(CheckOutcome, &'static str),
    /// `mesh_authz_token_cache_total{outcome}`.
    TokenCache(bool),
    /// `mesh_authz_revocation_lookups_total{source,outcome}`.
    Revocation(&'static str, &'static str),
}

fn add(counts: &mut Vec<(Key, u64)>, key: Key, n: u64) {
    // A handful of series: a linear scan beats hashing.
    match counts.iter_mut().find(|(k, _)| *k == key) {
        Some((_, c)) => *c += n,
        None => counts.push((key, n)),
    }
}

/// What one thread counted since the last flush.
#[derive(Default)]
struct Shard {
    counts: Vec<(Key, u64)>,
    durations: Durations,
    entries: Option<u64>,
}

/// Every thread's shard of one config.
#[derive(Default)]
pub(crate) struct Batch {
    shards: ThreadLocal<Mutex<Shard>>,
}

impl Batch {
    fn with(&self, f: impl FnOnce(&mut Shard)) {
        let shard = self.shards.get_or(|| Mutex::new(Shard::default()));
        // Only the flush on the main thread ever contends for this lock.
        f(&mut shard.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

/// The sink every checker of one config counts into: the calling thread's shard.
#[derive(Clone)]
pub(crate) struct BatchSink(Arc<Batch>);

impl MetricsSink for BatchSink {
    fn check_answered(&self, outcome: CheckOutcome, reason: &'static str, seconds: Option<f64>) {
        self.0.with(|s| {
            add(&mut s.counts, Key::Check(outcome, reason), 1);
            if let Some(seconds) = seconds {
                // Whole microseconds; the cast saturates (and a NaN becomes 0).
                s.durations.record((seconds * 1e6) as u64);
            }
        });
    }

    fn token_cache(&self, hit: bool) {
        self.0.with(|s| add(&mut s.counts, Key::TokenCache(hit), 1));
    }

    fn token_cache_entries(&self, entries: u64) {
        self.0.with(|s| s.entries = Some(entries));
    }

    fn revocation_lookup(&self, source: &'static str, outcome: &'static str) {
        self.0
            .with(|s| add(&mut s.counts, Key::Revocation(source, outcome), 1));
    }
}
