//! The front door both ext_authz adapters share: the current [`Checker`] (swapped atomically on a
//! config reload), a concurrency limit and a per-check deadline.
//!
//! Overload and slowness are answered, never piled up or turned into transport errors: a check
//! over `limits.max_concurrent_checks` is denied at once (503, reason `overloaded`), and a check
//! that cannot finish within its budget — `limits.check_timeout`, or less when Envoy's gRPC
//! deadline is shorter — is denied (503, reason `deadline_exceeded`). Both are ordinary
//! decisions, so the gRPC adapter still answers with a `CheckResponse`: a gRPC error status is
//! what Envoy's `failure_mode_allow` would turn into an allow.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::time::Instant;

use crate::otel::Tracing;
use crate::telemetry::Metrics;
use mesh_authz_core::check::{self, Checker, Decision, Denied, DenyStatus};
use mesh_authz_core::clock::unix_now;
use mesh_authz_core::config::LimitsConfig;

/// Reason of a check refused because `limits.max_concurrent_checks` were in flight.
pub(crate) const REASON_OVERLOADED: &str = "overloaded";

/// Reason of a check that did not finish within its deadline.
pub(crate) const REASON_DEADLINE: &str = mesh_authz_core::decision::REASON_DEADLINE_EXCEEDED;

/// Reason of a check whose request could not be read: a malformed `grpc-timeout`, a body that is
/// not one uncompressed gRPC message, a message over the size limit, or one that does not decode
/// (a string that is not UTF-8, nesting past the decoder's depth limit).
pub(crate) const REASON_REQUEST_INVALID: &str = "request_invalid";

/// The least and most time kept back from the caller's deadline, so that our answer (rather
/// than the caller's own timeout, which it may treat as a failure) arrives first.
const MIN_MARGIN: Duration = Duration::from_millis(5);
const MAX_MARGIN: Duration = Duration::from_millis(100);

/// The admission limits in force (replaced as a whole on reload).
struct Limits {
    /// 0: no concurrency limit.
    max_concurrent: usize,
    check_timeout: Duration,
}

impl Limits {
    fn new(config: &LimitsConfig) -> Self {
        Self {
            max_concurrent: config.max_concurrent_checks,
            check_timeout: config.check_timeout,
        }
    }
}

/// Decides checks through the current checker, within the admission limits.
///
/// What every check touches is kept off shared cache lines where it can be: the checker and the
/// limits are borrowed through `arc_swap` guards (a per-thread slot, no reference count on the
/// shared `Arc`), and the one count all threads must share, checks in flight, is the
/// `mesh_authz_checks_in_flight` gauge itself (one atomic add and one subtract per check; it is
/// also what `limits.max_concurrent_checks` is enforced on).
pub struct Gate {
    checker: ArcSwap<Checker>,
    limits: ArcSwap<Limits>,
    metrics: Metrics,
    /// `None` (the default): checks are not traced, and nothing of tracing runs.
    tracing: Option<Arc<Tracing>>,
}

/// One admitted check: keeps `mesh_authz_checks_in_flight` right even when a check's future is
/// dropped.
struct InFlight<'a> {
    metrics: &'a Metrics,
}

impl<'a> InFlight<'a> {
    /// Admits a check when fewer than `max` (0: no limit) are in flight. The gauge is raised
    /// first and read back, so that concurrent admissions can never exceed `max` together (at
    /// worst two racing for the last place are both refused, and a refused check shows in the
    /// gauge for the instant before it is lowered again).
    fn admit(metrics: &'a Metrics, max: usize) -> Option<Self> {
        metrics.checks_in_flight.inc();
        let admitted = Self { metrics };
        if max > 0 && usize::try_from(metrics.checks_in_flight.get()).unwrap_or(0) > max {
            return None;
        }
        Some(admitted)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.metrics.checks_in_flight.dec();
    }
}

/// `fut`'s output, or `None` when `until` comes first. A future that is ready at once (a cache
/// hit, a request whose body has arrived) is answered without creating a timer: a tokio timer
/// takes a reference to the runtime, one more count every worker thread would share.
pub(super) async fn within<F: Future>(until: Instant, fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let first = std::future::poll_fn(|cx| match fut.as_mut().poll(cx) {
        Poll::Ready(v) => Poll::Ready(Some(v)),
        Poll::Pending => Poll::Ready(None),
    })
    .await;
    match first {
        Some(v) => Some(v),
        // The future registered this task's waker; the timeout polls it on from here.
        None => tokio::time::timeout_at(until, fut).await.ok(),
    }
}

impl Gate {
    /// A gate in front of `checker` with `limits`.
    pub fn new(checker: Arc<Checker>, limits: &LimitsConfig, metrics: Metrics) -> Self {
        Self {
            checker: ArcSwap::new(checker),
            limits: ArcSwap::from_pointee(Limits::new(limits)),
            metrics,
            tracing: None,
        }
    }

    /// Traces every check with `tracing` (a span per check, its trace id in denial log lines).
    pub fn with_tracing(mut self, tracing: Option<Arc<Tracing>>) -> Self {
        self.tracing = tracing;
        self
    }

    /// The checker in force now.
    pub fn checker(&self) -> Arc<Checker> {
        self.checker.load_full()
    }

    /// Replaces the checker and limits atomically for every check that starts from now on;
    /// checks already running finish with the checker they started with.
    pub fn replace(&self, checker: Arc<Checker>, limits: &LimitsConfig) {
        // Checks already in flight keep counting against the new limit: the count is the gauge.
        self.limits.store(Arc::new(Limits::new(limits)));
        self.checker.store(checker);
    }

    /// Decides `req`. `deadline` is the time the caller will wait (gRPC `grpc-timeout`), if it
    /// said; the check gets the smaller of it (minus a margin) and `limits.check_timeout`.
    pub async fn check(&self, req: &check::Request, deadline: Option<Duration>) -> Decision {
        self.check_until(req, self.deadline(deadline)).await
    }

    /// When a check that arrives now must be answered: now plus [`budget`] of
    /// `limits.check_timeout` and the caller's `deadline`. Taken when the request's headers
    /// arrive, so time spent waiting for its body counts.
    pub fn deadline(&self, deadline: Option<Duration>) -> Instant {
        Instant::now() + budget(self.limits.load().check_timeout, deadline)
    }

    /// Decides `req`, answering by `until` (see [`Gate::deadline`]).
    pub async fn check_until(&self, req: &check::Request, until: Instant) -> Decision {
        // Off: one branch, no span and no header parsing.
        let Some(tracing) = &self.tracing else {
            return self.decide(req, until, None).await;
        };
        let span = tracing.start(req);
        let decision = self.decide(req, until, Some(span.trace_id())).await;
        span.finish(&decision);
        decision
    }

    async fn decide(
        &self,
        req: &check::Request,
        until: Instant,
        trace_id: Option<&str>,
    ) -> Decision {
        let max = self.limits.load().max_concurrent;
        // No queue: under overload an immediate answer beats a pile-up of waiting checks.
        let Some(_in_flight) = InFlight::admit(&self.metrics, max) else {
            return self.refuse(req, REASON_OVERLOADED, trace_id);
        };
        // A guard, not a clone: no shared reference count is touched per check. A reload stores
        // a new checker; this check finishes with the one it started with.
        let checker = self.checker.load();
        let checked = checker.check_traced(req, unix_now(), trace_id);
        match within(until, checked).await {
            Some(decision) => decision,
            None => self.refuse(req, REASON_DEADLINE, trace_id),
        }
    }

    /// A denial of a request that could not be read (no [`check::Request`] exists): 403
    /// [`REASON_REQUEST_INVALID`], or 503 [`REASON_DEADLINE`] when it did not arrive in time.
    /// Counted and logged like the checker's own.
    pub fn reject(&self, reason: &'static str) -> Decision {
        self.refuse(&check::Request::default(), reason, None)
    }

    /// A denial the checker never saw, counted and logged like its own: 403 for
    /// [`REASON_REQUEST_INVALID`], 503 otherwise.
    fn refuse(
        &self,
        req: &check::Request,
        reason: &'static str,
        trace_id: Option<&str>,
    ) -> Decision {
        let status = if reason == REASON_REQUEST_INVALID {
            DenyStatus::Forbidden
        } else {
            DenyStatus::Unavailable
        };
        self.metrics
            .checks
            .with_label_values(&["deny", reason])
            .inc();
        let denied = Denied::new(status, reason, None);
        check::log_refused(
            &denied,
            &req.method,
            &req.host,
            &req.path,
            req.request_id.as_deref(),
            trace_id,
        );
        Decision::Deny(denied)
    }
}

/// The time one check may take: `check_timeout`, or the caller's deadline minus a margin (10 %,
/// between 5 ms and 100 ms) when that is shorter.
pub(crate) fn budget(check_timeout: Duration, deadline: Option<Duration>) -> Duration {
    match deadline {
        None => check_timeout,
        Some(d) => {
            let margin = (d / 10).clamp(MIN_MARGIN, MAX_MARGIN);
            d.saturating_sub(margin).min(check_timeout)
        }
    }
}

/// Parses a gRPC `grpc-timeout` header value: at most 8 ASCII digits and a unit (`H`, `M`, `S`,
/// `m`, `u`, `n`). `None` when absent or malformed (the configured timeout then applies).
pub(crate) fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let unit = value.chars().last()?;
    let digits = value.get(..value.len().checked_sub(unit.len_utf8())?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        'H' => Duration::from_secs(n.checked_mul(3600)?),
        'M' => Duration::from_secs(n.checked_mul(60)?),
        'S' => Duration::from_secs(n),
        'm' => Duration::from_millis(n),
        'u' => Duration::from_micros(n),
        'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_values() {
        let ms = Duration::from_millis;
        assert_eq!(parse_grpc_timeout("200m"), Some(ms(200)));
        assert_eq!(parse_grpc_timeout("1S"), Some(ms(1000)));
        assert_eq!(parse_grpc_timeout("2M"), Some(ms(120_000)));
        assert_eq!(parse_grpc_timeout("1H"), Some(ms(3_600_000)));
        assert_eq!(parse_grpc_timeout("5000u"), Some(ms(5)));
        assert_eq!(
            parse_grpc_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in [
            "",
            "m",
            "200",
            "123456789m",
            "-1m",
            "1.5S",
            "20x",
            "2 m",
            "1é",
        ] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn budget_is_the_smaller_of_timeout_and_deadline_minus_margin() {
        let ms = Duration::from_millis;
        assert_eq!(budget(ms(1000), None), ms(1000));
        assert_eq!(budget(ms(1000), Some(ms(200))), ms(180));
        assert_eq!(budget(ms(1000), Some(ms(20))), ms(15));
        assert_eq!(budget(ms(1000), Some(ms(3))), ms(0));
        assert_eq!(budget(ms(1000), Some(ms(5000))), ms(1000));
        assert_eq!(budget(ms(10_000), Some(ms(5000))), ms(4900));
    }
}
