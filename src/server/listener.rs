//! Accepting and serving connections on the gRPC and HTTP listeners, bounded against slow and
//! idle clients.
//!
//! * At most `server.max_connections` connections per listener are open at once. A connection
//!   accepted at the cap makes room by closing the oldest connection that has not sent a request
//!   yet (dropped at once), else the one idle longest (closed gracefully); when every connection
//!   has a request in progress, it waits for one to finish. So an idle flood cannot lock out a
//!   fresh connection from Envoy, and at most one descriptor beyond the cap is held.
//! * A connection must deliver its first complete request (TLS handshake and headers included)
//!   within `server.header_read_timeout`, and may then stay open with no request in progress for
//!   at most `server.idle_timeout`; otherwise it is closed gracefully (HTTP/2 GOAWAY, so a request
//!   racing the close is still answered) and, if the client does not follow, dropped. Under
//!   HTTP/1 every request's headers must also arrive within `header_read_timeout` (hyper's timer).
//!
//! Together these make a slowloris or an idle-connection flood cost an attacker one descriptor
//! per connection for a bounded time, while connections that are serving checks are never cut.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use mesh_authz_core::config::ServerConfig;

/// After a graceful close, how long a connection with no request in progress may linger before
/// it is dropped (a client that never reads its GOAWAY).
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Pause after a failed accept (out of descriptors, say), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// At most one "connection limit reached" warning per listener in this period.
const LIMIT_WARN_EVERY: Duration = Duration::from_secs(10);

/// Descriptors kept out of the listeners' reach: Redis connections and their reconnects, JWKS
/// fetches, the admin API, logs and the runtime's own.
pub const DESCRIPTOR_RESERVE: u64 = 256;

/// The per-listener cap never goes below this, however low the open-files limit.
pub const MIN_CONNECTIONS: usize = 16;

/// The per-listener connection cap that fits an open-files limit of `open_files`: both
/// listeners at their cap, plus one descriptor each beyond it (see [`serve`]), leave
/// [`DESCRIPTOR_RESERVE`] free; never above `configured`, never below [`MIN_CONNECTIONS`].
pub fn connection_cap(configured: usize, open_files: u64) -> usize {
    let fits = open_files.saturating_sub(DESCRIPTOR_RESERVE + 2) / 2;
    let fits = usize::try_from(fits).unwrap_or(usize::MAX);
    configured.min(fits.max(MIN_CONNECTIONS))
}

/// The per-listener bounds (`server.max_connections`, `header_read_timeout`, `idle_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Time to the first complete request (and, under HTTP/1, to each request's headers).
    pub header_read_timeout: Duration,
    /// Time a connection may stay open with no request in progress.
    pub idle_timeout: Duration,
}

impl ListenerLimits {
    /// The configured bounds, with `max_connections` lowered to what fits in this process's
    /// open-files limit ([`connection_cap`]), so that the listeners cannot take the descriptors
    /// Redis, JWKS and new callers need. Logs a warning when it lowers the cap.
    pub fn fitted(s: &ServerConfig) -> Self {
        let mut limits = Self::from(s);
        let Ok((open_files, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) else {
            return limits;
        };
        let cap = connection_cap(s.max_connections, open_files);
        if cap < s.max_connections {
            tracing::warn!(
                open_files_limit = open_files,
                max_connections = s.max_connections,
                effective_max_connections = cap,
                reserve = DESCRIPTOR_RESERVE,
                "server.max_connections does not fit in the open-files limit on both listeners; each listener is capped lower (raise the hard limit to lift it)"
            );
            limits.max_connections = cap;
        }
        limits
    }
}

impl From<&ServerConfig> for ListenerLimits {
    fn from(s: &ServerConfig) -> Self {
        Self {
            max_connections: s.max_connections,
            header_read_timeout: s.header_read_timeout,
            idle_timeout: s.idle_timeout,
        }
    }
}

/// The protocols a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocols {
    /// HTTP/2 only (gRPC).
    Http2,
    /// HTTP/1.1 and HTTP/2 (cleartext prior knowledge), chosen per connection.
    Auto,
}

/// One listener's settings.
pub struct Listener {
    /// For logs: `grpc` or `http`.
    pub name: &'static str,
    /// Bounds on connections.
    pub limits: ListenerLimits,
    /// TLS, when configured.
    pub tls: Option<TlsAcceptor>,
    /// What is spoken.
    pub protocols: Protocols,
    /// When set, ext_authz Check (`POST` to [`super::grpc::CHECK_PATH`]) is answered through this
    /// gate directly, without the router: what every check would otherwise pay there is a clone
    /// of the router's and the handler's shared `Arc`s, reference counts all threads write.
    pub check: Option<Arc<super::gate::Gate>>,
}

/// Shared by one listener's connection tasks.
struct Shared {
    name: &'static str,
    open: Registry,
    limits: ListenerLimits,
    tls: Option<TlsAcceptor>,
    builder: Builder<TokioExecutor>,
    router: Router,
    check: Option<Arc<super::gate::Gate>>,
}

/// Serves `router` on `listener` until `cancel`, then closes every connection gracefully and
/// returns once they are all gone (the caller bounds that wait with `server.shutdown_grace`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: Listener,
    cancel: CancellationToken,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    if settings.protocols == Protocols::Http2 {
        builder = builder.http2_only();
    }
    let shared = Arc::new(Shared {
        name: settings.name,
        open: Registry::default(),
        limits: settings.limits,
        tls: settings.tls,
        builder,
        router,
        check: settings.check,
    });
    let permits = Arc::new(Semaphore::new(settings.limits.max_connections));
    let tracker = TaskTracker::new();
    let mut warned: Option<Instant> = None;
    // Failed accepts since the last one that succeeded (one warning per episode).
    let mut failing: u64 = 0;
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    if failing > 0 {
                        tracing::info!(listener = shared.name, failed = failing, "accepting connections again");
                        failing = 0;
                    }
                    stream
                }
                Err(e) => {
                    if failing == 0 {
                        tracing::warn!(
                            listener = shared.name,
                            error = %e,
                            "accept failed; retrying every 100ms until it succeeds"
                        );
                    }
                    failing += 1;
                    // Out of descriptors: closing an idle connection lets the next caller in.
                    if matches!(e.raw_os_error(), Some(libc_errno::EMFILE | libc_errno::ENFILE)) {
                        shared.open.evict_one();
                    }
                    tokio::select! {
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                        () = cancel.cancelled() => break,
                    }
                }
            },
            () = cancel.cancelled() => break,
        };
        let permit = match Arc::clone(&permits).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let evicted = shared.open.evict_one();
                if warned.is_none_or(|at| at.elapsed() >= LIMIT_WARN_EVERY) {
                    warned = Some(Instant::now());
                    tracing::warn!(
                        listener = shared.name,
                        max_connections = shared.limits.max_connections,
                        evicted,
                        "connection limit reached; closing an idle connection to make room"
                    );
                }
                tokio::select! {
                    p = Arc::clone(&permits).acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    () = cancel.cancelled() => break,
                }
            }
        };
        tracker.spawn(connection(
            stream,
            Arc::clone(&shared),
            cancel.clone(),
            permit,
        ));
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

/// One connection: TLS handshake (bounded by `header_read_timeout`), then HTTP.
async fn connection(
    stream: TcpStream,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    _permit: OwnedSemaphorePermit,
) {
    let handle = Arc::new(Handle {
        activity: Arc::new(Activity::new(Instant::now())),
        evict: CancellationToken::new(),
    });
    shared.open.register(&handle);
    let _ = stream.set_nodelay(true);
    match &shared.tls {
        None => serve_http(stream, &shared, &cancel, &handle).await,
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(shared.limits.header_read_timeout, acceptor.accept(stream));
            tokio::select! {
                r = handshake => match r {
                    Ok(Ok(tls)) => serve_http(tls, &shared, &cancel, &handle).await,
                    Ok(Err(e)) => {
                        tracing::debug!(listener = shared.name, error = %e, "TLS handshake failed");
                    }
                    Err(_) => tracing::debug!(listener = shared.name, "TLS handshake timed out"),
                },
                () = handle.evict.cancelled() => {}
                () = cancel.cancelled() => {}
            }
        }
    }
}

/// Serves HTTP on `io` until the client closes, the connection stays idle too long, or shutdown.
async fn serve_http<I>(io: I, shared: &Shared, cancel: &CancellationToken, handle: &Handle)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = &handle.activity;
    let service = {
        let activity = Arc::clone(activity);
        let router = shared.router.clone();
        // This connection's own handle on the gate: a request clones it (a count only this
        // connection touches), not the gate's shared one.
        let check = shared
            .check
            .clone()
            .map(|gate| Arc::new(ConnectionGate(gate)));
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let busy = activity.begin();
            let route = match check.as_ref() {
                Some(gate)
                    if req.method() == hyper::Method::POST
                        && req.uri().path() == super::grpc::CHECK_PATH =>
                {
                    Route::Check(Arc::clone(gate))
                }
                _ => Route::Router(router.clone()),
            };
            async move {
                let response = match route {
                    // Boxed, as the router boxes a handler's future: hyper moves its stream
                    // future into a task of its own (profiled: copying the whole check state
                    // machine was a tenth of a cache hit's CPU), and an allocation the size of
                    // that state machine per request, beside the token cache's long-lived
                    // entries, fragmented the heap (RSS 1.8 GB instead of 0.37 GB for a million
                    // cached tokens).
                    Route::Check(gate) => Ok(Box::pin(super::grpc::serve_check(
                        &gate.0,
                        req.map(axum::body::Body::new),
                    ))
                    .await),
                    Route::Router(mut router) => {
                        tower_service::Service::call(&mut router, req).await
                    }
                };
                drop(busy);
                response
            }
        })
    };
    let conn = shared.builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    // Set once the connection is being closed: when to drop it if it has not gone by then.
    let mut closing: Option<Instant> = None;
    loop {
        let wake = closing.unwrap_or_else(|| activity.idle_deadline(&shared.limits));
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(listener = shared.name, error = %e, "connection ended");
                }
                return;
            }
            () = cancel.cancelled(), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now() + CLOSE_GRACE);
            }
            () = handle.evict.cancelled(), if closing.is_none() => {
                if !activity.served() && !activity.busy() {
                    tracing::debug!(listener = shared.name, "evicted a connection without requests");
                    return;
                }
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now() + CLOSE_GRACE);
            }
            () = tokio::time::sleep_until(wake) => {
                let now = Instant::now();
                match closing {
                    // Never cut a request in progress; shutdown_grace bounds those.
                    Some(_) if activity.busy() => closing = Some(now + CLOSE_GRACE),
                    Some(_) => {
                        tracing::debug!(listener = shared.name, "connection dropped after close");
                        return;
                    }
                    None if !activity.busy() && activity.idle_deadline(&shared.limits) <= now => {
                        tracing::debug!(
                            listener = shared.name,
                            first_request = !activity.served(),
                            "closing a connection idle too long"
                        );
                        conn.as_mut().graceful_shutdown();
                        closing = Some(now + CLOSE_GRACE);
                    }
                    None => {}
                }
            }
        }
    }
}

/// Where one request goes.
enum Route {
    /// ext_authz Check, through the connection's handle on the gate.
    Check(Arc<ConnectionGate>),
    /// Everything else.
    Router(Router),
}

/// One connection's own handle on the gate: cloning it per request writes a reference count only
/// this connection uses.
struct ConnectionGate(Arc<super::gate::Gate>);

/// One open connection, as the accept loop sees it.
struct Handle {
    activity: Arc<Activity>,
    /// Cancelled to make room at the connection cap.
    evict: CancellationToken,
}

/// The open connections of one listener, oldest first.
#[derive(Default)]
struct Registry {
    open: Mutex<Vec<std::sync::Weak<Handle>>>,
}

impl Registry {
    fn register(&self, handle: &Arc<Handle>) {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        open.retain(|w| w.strong_count() > 0);
        open.push(Arc::downgrade(handle));
    }

    /// Closes the oldest connection that has not sent a request yet, else the oldest with no
    /// request in progress; false when every connection is busy.
    fn evict_one(&self) -> bool {
        let open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let candidates: Vec<Arc<Handle>> = open
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .filter(|h| !h.evict.is_cancelled() && !h.activity.busy())
            .collect();
        let pick = candidates
            .iter()
            .find(|h| !h.activity.served())
            .or_else(|| candidates.first());
        match pick {
            Some(h) => {
                h.evict.cancel();
                true
            }
            None => false,
        }
    }
}

/// Whether a connection has requests in progress, and since when it has had none.
struct Activity {
    busy: AtomicUsize,
    served: AtomicBool,
    idle_since: Mutex<Instant>,
}

/// A request in progress; dropping it ends it.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self
                .0
                .idle_since
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
        }
    }
}

impl Activity {
    fn new(opened: Instant) -> Self {
        Self {
            busy: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            idle_since: Mutex::new(opened),
        }
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.served.store(true, Ordering::Release);
        self.busy.fetch_add(1, Ordering::AcqRel);
        Busy(Arc::clone(self))
    }

    fn busy(&self) -> bool {
        self.busy.load(Ordering::Acquire) > 0
    }

    fn served(&self) -> bool {
        self.served.load(Ordering::Acquire)
    }

    /// When the connection is idle too long if nothing starts: `header_read_timeout` after it
    /// opened until a first request arrives, then `idle_timeout` after its last request ended.
    /// While a request is in progress, one idle period from now (checked again then).
    fn idle_deadline(&self, limits: &ListenerLimits) -> Instant {
        let limit = if self.served() {
            limits.idle_timeout
        } else {
            limits.header_read_timeout
        };
        if self.busy() {
            return Instant::now() + limit;
        }
        let since = *self
            .idle_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        since + limit
    }
}

/// The errno values for running out of descriptors (per process, system-wide), as on Linux and
/// the BSDs.
mod libc_errno {
    pub(super) const ENFILE: i32 = 23;
    pub(super) const EMFILE: i32 = 24;
}

/// Raises this process's soft limit on open files (`RLIMIT_NOFILE`) to its hard limit, so that
/// `server.max_connections` on each listener, JWKS fetches and Redis connections fit. Returns the
/// soft limit now in force.
pub fn raise_open_files_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

#[cfg(test)]
mod tests;
