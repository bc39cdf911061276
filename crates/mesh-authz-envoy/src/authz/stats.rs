//! The core's [`MetricsSink`] over Envoy's stats, with the Prometheus names of the server
//! (`mesh_authz_checks_total{decision,reason}` …); Envoy shows them under
//! `dynamicmodulescustom.`.
//!
//! Envoy's stat calls need the stream, and a check may finish on the module's runtime, so the
//! sink does not call Envoy: each check runs inside a task-local [`Recorder`] that collects its
//! events, and the filter replays them on the stream's worker when it answers ([`Recorder::flush`]).
//! Events outside a check (none today) are dropped.

use std::sync::{Arc, Mutex, PoisonError};

use mesh_authz_core::metrics::{CheckOutcome, MetricsSink};

use crate::host::{ConfigContext, CounterId, GaugeId, HistogramId, MetricsError, Stream};

tokio::task_local! {
    static RECORDER: Recorder;
}

/// The stats one filter config defines (in `on_http_filter_config_new`).
pub(crate) struct Stats {
    checks: CounterId,
    duration: HistogramId,
    token_cache: CounterId,
    token_cache_entries: GaugeId,
    revocation: CounterId,
}

impl Stats {
    /// Defines every stat.
    pub(crate) fn define(ctx: &mut ConfigContext<'_>) -> Result<Stats, MetricsError> {
        Ok(Stats {
            checks: ctx.define_counter("mesh_authz_checks_total", &["decision", "reason"])?,
            // Envoy histograms take integers: microseconds rather than the server's seconds.
            duration: ctx.define_histogram("mesh_authz_check_duration_us", &["decision"])?,
            token_cache: ctx.define_counter("mesh_authz_token_cache_total", &["outcome"])?,
            token_cache_entries: ctx.define_gauge("mesh_authz_token_cache_entries", &[])?,
            revocation: ctx.define_counter(
                "mesh_authz_revocation_lookups_total",
                &["source", "outcome"],
            )?,
        })
    }
}

/// One thing the core counted.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Event {
    /// `check_answered`.
    Check {
        outcome: CheckOutcome,
        reason: &'static str,
        micros: Option<u64>,
    },
    /// `token_cache`.
    TokenCache(bool),
    /// `token_cache_entries`.
    TokenCacheEntries(u64),
    /// `revocation_lookup`.
    Revocation(&'static str, &'static str),
}

/// The events of one check, collected wherever it runs and replayed on the stream's worker.
#[derive(Clone, Default)]
pub(crate) struct Recorder(Arc<Mutex<Vec<Event>>>);

impl Recorder {
    /// Adds an event.
    pub(crate) fn push(&self, event: Event) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event);
    }

    /// Runs `fut` with this recorder as the current check's.
    pub(crate) fn scope<F: Future>(self, fut: F) -> impl Future<Output = F::Output> {
        RECORDER.scope(self, fut)
    }

    /// Replays the collected events into Envoy's stats through `stream` (its worker thread).
    pub(crate) fn flush(&self, stream: &mut Stream<'_>, stats: &Stats) {
        let events = std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner));
        for event in events {
            let r = match event {
                Event::Check {
                    outcome,
                    reason,
                    micros,
                } => {
                    let r = stream.increment_counter(stats.checks, &[outcome.as_str(), reason], 1);
                    match micros {
                        Some(us) => {
                            r.and(stream.record_histogram(stats.duration, &[outcome.as_str()], us))
                        }
                        None => r,
                    }
                }
                Event::TokenCache(hit) => stream.increment_counter(
                    stats.token_cache,
                    &[if hit { "hit" } else { "miss" }],
                    1,
                ),
                Event::TokenCacheEntries(n) => stream.set_gauge(stats.token_cache_entries, &[], n),
                Event::Revocation(source, outcome) => {
                    stream.increment_counter(stats.revocation, &[source, outcome], 1)
                }
            };
            if let Err(e) = r {
                tracing::debug!(error = %e, "stat not recorded");
            }
        }
    }
}

/// The sink every checker of this module counts into: the current check's [`Recorder`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TaskSink;

fn record(event: Event) {
    let _ = RECORDER.try_with(|r| r.push(event));
}

impl MetricsSink for TaskSink {
    fn check_answered(&self, outcome: CheckOutcome, reason: &'static str, seconds: Option<f64>) {
        // Whole microseconds; the cast saturates (and a NaN becomes 0).
        let micros = seconds.map(|s| (s * 1e6) as u64);
        record(Event::Check {
            outcome,
            reason,
            micros,
        });
    }

    fn token_cache(&self, hit: bool) {
        record(Event::TokenCache(hit));
    }

    fn token_cache_entries(&self, entries: u64) {
        record(Event::TokenCacheEntries(entries));
    }

    fn revocation_lookup(&self, source: &'static str, outcome: &'static str) {
        record(Event::Revocation(source, outcome));
    }
}
