//! The per-stream filter and how it drives a check.
//!
//! The check is the core's future over an owned request and the config's shared checker. It is
//! polled once, inline, on Envoy's worker (inside the runtime's context, with a no-op waker): with
//! the memory store, a cached token and loaded keys it is ready at once and the request is answered
//! in the same hook, without pausing. Otherwise (a Redis lookup, a JWKS refetch for an unknown
//! `kid`) the request is held (`StopAllIterationAndBuffer`: no byte reaches the upstream), the
//! future finishes on the module's runtime within what remains of `limits.check_timeout` (past it:
//! 503 `deadline_exceeded`, as the server's gate answers), the verdict is left in a shared slot,
//! and the stream's scheduler wakes the filter on its worker, which answers. A stream gone in the
//! meantime is harmless: the commit is a no-op, and the task is aborted when the filter drops.

use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use mesh_authz_core::check::Checker;
use mesh_authz_core::clock::unix_now;
use mesh_authz_core::decision::{Decision, Denied};
use mesh_authz_core::metrics::{CheckOutcome, MetricsSink};
use mesh_authz_core::request::Request;
use tokio::task::AbortHandle;

use super::answer;
use super::config::{AuthzConfig, RouteChoice};
use super::request::{Carried, CopiedHeaders};
use super::route::RouteSpec;
use crate::filter::{Filter, HeadersStatus};
use crate::host::Stream;

/// The event id the runtime commits when a verdict is ready.
const VERDICT_READY: u64 = 1;

/// `%RESPONSE_CODE_DETAILS%` when a route's rule set does not compile against the filter config.
pub(crate) const ROUTE_INVALID_DETAILS: &str = "mesh_authz_route_config_invalid";
/// `%RESPONSE_CODE_DETAILS%` when the stream cannot wait for a check (no scheduler).
pub(crate) const CANNOT_WAIT_DETAILS: &str = "mesh_authz_cannot_wait";

/// A check's outcome, as the runtime hands it over.
enum Verdict {
    Decided(Decision),
    /// `limits.check_timeout` passed first.
    TimedOut,
}

/// What a stream waiting on the runtime holds.
struct Waiting {
    slot: Arc<Mutex<Option<Verdict>>>,
    task: AbortHandle,
}

/// The `mesh-authz` filter of one stream.
pub(crate) struct AuthzFilter {
    config: Arc<AuthzConfig>,
    waiting: Option<Waiting>,
}

impl AuthzFilter {
    pub(crate) fn new(config: Arc<AuthzConfig>) -> Self {
        Self {
            config,
            waiting: None,
        }
    }

    /// Answers `decision` in the hook that read the request: the request goes on (allow) or was
    /// answered locally (deny).
    fn answer_now(
        stream: &mut Stream<'_>,
        decision: &Decision,
        carried: &Carried<'_>,
    ) -> HeadersStatus {
        if answer::apply(stream, decision, Some(carried)) {
            HeadersStatus::Continue
        } else {
            HeadersStatus::StopIteration
        }
    }

    fn start(
        &mut self,
        stream: &mut Stream<'_>,
        checker: &Arc<Checker>,
        req: Request<CopiedHeaders>,
        carried: &Carried<'_>,
    ) -> HeadersStatus {
        let deadline = tokio::time::Instant::now() + self.config.check_timeout;
        let checker = Arc::clone(checker);
        // One future owns the request and runs the whole check: polled once here, inline, and
        // only if that is not enough, spawned on the runtime, where it waits under the deadline
        // (no timer and no second allocation on the inline path).
        let mut check = Box::pin(async move {
            let mut decide = std::pin::pin!(checker.check_traced(&req, unix_now(), None));
            if let Some(decision) = first_poll(decide.as_mut()).await {
                return Verdict::Decided(decision);
            }
            match tokio::time::timeout_at(deadline, decide).await {
                Ok(decision) => Verdict::Decided(decision),
                Err(_) => {
                    // Logged and counted here, where the request still is.
                    let denied = Denied::deadline_exceeded();
                    mesh_authz_core::check::log_refused(
                        &denied,
                        &req.method,
                        &req.host,
                        &req.path,
                        req.request_id.as_deref(),
                        None,
                    );
                    checker
                        .metrics()
                        .check_answered(CheckOutcome::Deny, denied.reason, None);
                    Verdict::TimedOut
                }
            }
        });
        let runtime = self.config.runtime;
        let polled = {
            // Tokio resources the check creates (timers, sockets) register with the runtime.
            let _context = runtime.enter();
            check.as_mut().poll(&mut Context::from_waker(Waker::noop()))
        };
        match polled {
            Poll::Ready(Verdict::Decided(decision)) => {
                return Self::answer_now(stream, &decision, carried);
            }
            // The deadline is only awaited on the runtime, never on this first poll; fail closed.
            Poll::Ready(Verdict::TimedOut) => {
                return Self::answer_now(
                    stream,
                    &Decision::Deny(Denied::deadline_exceeded()),
                    carried,
                );
            }
            Poll::Pending => {}
        }
        let Some(scheduler) = stream.scheduler() else {
            tracing::error!(
                "no scheduler for the stream: cannot wait for the check; answering 503"
            );
            stream.send_local_reply(
                503,
                &[("content-type", b"application/json")],
                mesh_authz_core::decision::DenyStatus::Unavailable
                    .body()
                    .as_bytes(),
                CANNOT_WAIT_DETAILS,
            );
            return HeadersStatus::StopIteration;
        };
        let slot = Arc::new(Mutex::new(None));
        let task = {
            let slot = Arc::clone(&slot);
            runtime.spawn(async move {
                let verdict = check.await;
                *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(verdict);
                // A no-op when the stream is gone.
                scheduler.commit(VERDICT_READY);
            })
        };
        self.waiting = Some(Waiting {
            slot,
            task: task.abort_handle(),
        });
        HeadersStatus::StopAllIterationAndBuffer
    }
}

/// Polls `future` once: its answer, if it has one at once; otherwise `None`, after handing back
/// `Pending` once, so that whatever follows runs on the next poll, which the runtime makes when
/// the filter spawns the check (a new task is always polled). The inner future has registered
/// its waker by then and re-registers the runtime's on that next poll.
async fn first_poll<F: Future>(mut future: std::pin::Pin<&mut F>) -> Option<F::Output> {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return Poll::Ready(None);
        }
        match future.as_mut().poll(cx) {
            Poll::Ready(out) => Poll::Ready(Some(out)),
            Poll::Pending => {
                yielded = true;
                Poll::Pending
            }
        }
    })
    .await
}

impl Filter for AuthzFilter {
    fn on_request_headers(
        &mut self,
        stream: &mut Stream<'_>,
        _end_of_stream: bool,
    ) -> HeadersStatus {
        let route = stream.route_config::<RouteSpec>();
        let checker = match self.config.choose(route.as_ref()) {
            RouteChoice::Disabled => return HeadersStatus::Continue,
            RouteChoice::Check(c) => c,
            RouteChoice::Broken => {
                stream.send_local_reply(
                    503,
                    &[("content-type", b"application/json")],
                    mesh_authz_core::decision::DenyStatus::Unavailable
                        .body()
                        .as_bytes(),
                    ROUTE_INVALID_DETAILS,
                );
                return HeadersStatus::StopIteration;
            }
        };
        let empty = std::collections::HashMap::new();
        let extensions = route.as_ref().map_or(&empty, |r| &r.context_extensions);
        let (req, carried) = super::request::from_stream(stream, &checker, extensions);
        self.start(stream, &checker, req, &carried)
    }

    fn on_scheduled(&mut self, stream: &mut Stream<'_>, event_id: u64) {
        if event_id != VERDICT_READY {
            return;
        }
        let Some(waiting) = self.waiting.take() else {
            return;
        };
        let verdict = waiting
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let decision = match verdict {
            Some(Verdict::Decided(d)) => d,
            // The task logged and counted it.
            Some(Verdict::TimedOut) => Decision::Deny(Denied::deadline_exceeded()),
            // Committed only after the slot is filled; kept fail-closed all the same.
            None => {
                let denied = Denied::deadline_exceeded();
                tracing::error!("woken without a verdict; answering 503");
                self.config
                    .stats
                    .sink()
                    .check_answered(CheckOutcome::Deny, denied.reason, None);
                Decision::Deny(denied)
            }
        };
        // Later than the hook that read the request: every written header is set or removed.
        if answer::apply(stream, &decision, None) {
            stream.continue_decoding();
        }
    }

    fn on_stream_complete(&mut self, _stream: &mut Stream<'_>) {
        if let Some(w) = self.waiting.take() {
            w.task.abort();
        }
    }
}

impl Drop for AuthzFilter {
    fn drop(&mut self) {
        if let Some(w) = self.waiting.take() {
            w.task.abort();
        }
    }
}
