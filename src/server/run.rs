//! Starting and stopping the server: listeners, background key refresh, health, graceful drain.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use super::gate::Gate;
use super::http::HttpState;
use super::listener::{self, ListenerLimits, Protocols};
use crate::check::Checker;
use crate::config::{Config, ConfigError, ConfigErrors, StoreKind, TlsConfig};
use crate::revocation::RevocationStore;
use crate::revocation::memory::MemoryStore;
use crate::revocation::redis::RedisStore;
use crate::telemetry::Metrics;
use crate::token::jwks::{JwksCache, JwksError};
use crate::token::verify::Verifier;

/// The gRPC service name Envoy's health checks and Kubernetes gRPC probes may ask for.
const AUTHZ_SERVICE: &str = "envoy.service.auth.v3.Authorization";

/// How often readiness (every provider holds keys) is re-evaluated for gRPC health.
const READINESS_POLL: Duration = Duration::from_millis(250);

/// The server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The config was refused.
    #[error("invalid config:\n{0}")]
    Config(#[from] ConfigErrors),
    /// A JWKS source could not be set up.
    #[error("JWKS setup failed: {0}")]
    Jwks(#[from] JwksError),
    /// TLS material could not be loaded.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// The Redis store could not be set up.
    #[error("Redis setup failed: {0}")]
    Redis(String),
    /// The OTLP trace exporter could not be set up.
    #[error("tracing setup failed: {0}")]
    Tracing(#[from] crate::otel::TracingError),
}

/// A started server.
pub struct Running {
    /// Where ext_authz gRPC listens.
    pub grpc_addr: SocketAddr,
    /// Where the HTTP listener listens.
    pub http_addr: SocketAddr,
    /// The revocation store in use (the embedded one unless configured otherwise).
    pub revocation: Arc<dyn RevocationStore>,
    /// The metrics registry.
    pub metrics: Metrics,
    /// Where the revocation admin API listens, when `server.admin` is set.
    pub admin_addr: Option<SocketAddr>,
    cancel: CancellationToken,
    health: Arc<Mutex<Health>>,
    state: Arc<HttpState>,
    gate: Arc<Gate>,
    tracing: Option<Arc<crate::otel::Tracing>>,
    reload: Mutex<ReloadState>,
    grpc_task: JoinHandle<()>,
    http_task: JoinHandle<()>,
    grace: Duration,
    drain_delay: Duration,
}

/// gRPC health, guarded so that the readiness poller can never flip it back to SERVING once
/// shutdown has begun.
struct Health {
    reporter: HealthReporter,
    /// What was last reported (`None`: nothing yet).
    serving: Option<bool>,
    draining: bool,
}

/// What a reload needs: the config in force and the running JWKS refresh loops.
struct ReloadState {
    config: Config,
    /// One refresh loop per JWKS cache in use; a cache dropped by a reload has its loop stopped.
    refreshers: Vec<(Arc<JwksCache>, CancellationToken)>,
}

impl Running {
    /// Drains and stops: readiness and gRPC health go NOT_SERVING first while the listeners keep
    /// answering for `server.drain_delay`, then the listeners stop accepting and in-flight checks
    /// get up to `server.shutdown_grace` to finish.
    pub async fn shutdown(self) {
        {
            let mut health = self.health.lock().await;
            health.draining = true;
            self.state.draining.store(true, Ordering::Relaxed);
            set_health(&health.reporter, ServingStatus::NotServing).await;
            health.serving = Some(false);
        }
        // Keep answering while health checkers notice NOT_SERVING and move traffic away.
        if !self.drain_delay.is_zero() {
            tracing::info!(drain_delay = ?self.drain_delay, "draining: health NOT_SERVING");
            tokio::time::sleep(self.drain_delay).await;
        }
        self.cancel.cancel();
        let drained = tokio::time::timeout(self.grace, async {
            let _ = self.grpc_task.await;
            let _ = self.http_task.await;
        })
        .await;
        if drained.is_err() {
            tracing::warn!("shutdown grace period ended with checks still in flight");
        }
        // Export the spans still buffered (blocking: the batch exporter has its own thread).
        if let Some(t) = self.tracing {
            let _ = tokio::task::spawn_blocking(move || t.shutdown()).await;
        }
    }

    /// Replaces the rules, providers, identity settings and limits with `config`'s, atomically:
    /// checks that start after the swap use the new config, checks in flight finish with the old.
    ///
    /// A config that does not validate (or whose JWKS sources cannot be set up) is refused with
    /// every error, each logged with its path, and the old config keeps serving. A provider whose
    /// name, issuer and `jwks` settings are unchanged keeps its key cache (no key is lost); a
    /// `file:` JWKS is re-read at once; a new provider's keys are loaded before the swap.
    /// Listener addresses, TLS, the admin API, the revocation store and logging are fixed at
    /// start: a change to them is logged and takes effect only after a restart.
    pub async fn reload(&self, config: Config) -> Result<(), ConfigErrors> {
        let mut state = self.reload.lock().await;
        let result = self.apply(&mut state, &config).await;
        match &result {
            Ok(()) => {
                self.metrics.config_reloads.with_label_values(&["ok"]).inc();
                warn_restart_only(&state.config, &config);
                state.config = config;
                tracing::info!("config reloaded");
            }
            Err(errors) => refused(&self.metrics, errors),
        }
        result
    }

    async fn apply(&self, state: &mut ReloadState, config: &Config) -> Result<(), ConfigErrors> {
        let errors = crate::config::validate(config);
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let old = self.gate.checker();
        let old_verifier = old.verifier();
        // Build (or reuse) every provider's key cache first, so each error has its path.
        let mut caches: Vec<Arc<JwksCache>> = Vec::with_capacity(config.providers.len());
        let mut errors = Vec::new();
        for (i, p) in config.providers.iter().enumerate() {
            let reused = old_verifier
                .providers()
                .find(|(c, _)| c.name == p.name && c.issuer == p.issuer && c.jwks == p.jwks)
                .map(|(_, cache)| Arc::clone(cache));
            match reused {
                Some(cache) => caches.push(cache),
                None => match JwksCache::new(p, self.metrics.clone()) {
                    Ok(cache) => caches.push(Arc::new(cache)),
                    Err(e) => errors.push(ConfigError::new(
                        format!("providers[{i}].jwks"),
                        e.to_string(),
                    )),
                },
            }
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let verifier = Verifier::with_jwks_caches(
            &config.providers,
            &config.limits,
            self.metrics.clone(),
            |p| {
                caches
                    .iter()
                    .find(|c| c.provider() == p.name)
                    .map(Arc::clone)
            },
        )
        .map_err(|e| ConfigErrors(vec![ConfigError::new("providers", e.to_string())]))?
        .keep_claims_for(config.rule_claim_paths());
        let verifier = Arc::new(verifier);
        let checker = Arc::new(Checker::new(
            config,
            verifier.clone(),
            self.revocation.clone(),
            self.metrics.clone(),
        )?);
        // New caches load their first key set, and file sources are re-read, before the swap.
        let loads = verifier.providers().filter_map(|(p, cache)| {
            let known = state.refreshers.iter().any(|(c, _)| Arc::ptr_eq(c, cache));
            (!known || p.jwks.file.is_some()).then(|| cache.refresh_now())
        });
        // Failures are logged by the cache; a provider without keys fails closed (not ready).
        let _ = futures_util::future::join_all(loads).await;

        self.gate.replace(checker, &config.limits);
        state.refreshers = track_refreshers(&verifier, &state.refreshers, &self.cancel);
        Ok(())
    }
}

/// Logs and counts a refused reload.
fn refused(metrics: &Metrics, errors: &ConfigErrors) {
    metrics.config_reloads.with_label_values(&["refused"]).inc();
    for e in &errors.0 {
        tracing::error!(path = %e.path, error = %e.message, "config reload refused");
    }
    tracing::error!(
        errors = errors.0.len(),
        "config reload refused; the previous config keeps serving"
    );
}

/// Warns about changes a reload cannot apply.
fn warn_restart_only(old: &Config, new: &Config) {
    for (section, changed) in [
        (
            "server (listener addresses, TLS, admin API, shutdown_grace)",
            old.server != new.server,
        ),
        ("revocation", old.revocation != new.revocation),
        ("logging", old.logging != new.logging),
        ("tracing", old.tracing != new.tracing),
    ] {
        if changed {
            tracing::warn!(
                section,
                "config section changed; it cannot change on reload and takes effect only after a restart"
            );
        }
    }
}

/// Keeps one refresh loop per JWKS cache `verifier` uses: loops of caches still in use go on,
/// new caches get one, and loops of caches no longer used are stopped.
fn track_refreshers(
    verifier: &Verifier,
    current: &[(Arc<JwksCache>, CancellationToken)],
    cancel: &CancellationToken,
) -> Vec<(Arc<JwksCache>, CancellationToken)> {
    let mut next = Vec::new();
    for (_, cache) in verifier.providers() {
        match current.iter().find(|(c, _)| Arc::ptr_eq(c, cache)) {
            Some((c, token)) => next.push((Arc::clone(c), token.clone())),
            None => {
                let token = cancel.child_token();
                cache.spawn_refresh(token.clone());
                next.push((Arc::clone(cache), token));
            }
        }
    }
    for (cache, token) in current {
        if !next.iter().any(|(c, _)| Arc::ptr_eq(c, cache)) {
            token.cancel();
        }
    }
    next
}

/// Binds the listeners, loads keys (first attempt) and serves in the background.
pub async fn start(config: &Config) -> Result<Running, ServeError> {
    let errors = crate::config::validate(config);
    if !errors.is_empty() {
        return Err(ServeError::Config(ConfigErrors(errors)));
    }
    let metrics = Metrics::new();
    let verifier = Arc::new(
        Verifier::new(&config.providers, &config.limits, metrics.clone())?
            .keep_claims_for(config.rule_claim_paths()),
    );
    let revocation: Arc<dyn RevocationStore> =
        match (config.revocation.store, &config.revocation.redis) {
            (StoreKind::Redis, Some(redis)) => Arc::new(
                RedisStore::connect(redis, metrics.clone())
                    .await
                    .map_err(|e| ServeError::Redis(e.to_string()))?,
            ),
            _ => Arc::new(MemoryStore::default()),
        };
    let checker = Arc::new(Checker::new(
        config,
        verifier.clone(),
        revocation.clone(),
        metrics.clone(),
    )?);
    let tracing = match &config.tracing {
        Some(t) => Some(Arc::new(crate::otel::Tracing::new(t)?)),
        None => None,
    };
    let gate =
        Arc::new(Gate::new(checker, &config.limits, metrics.clone()).with_tracing(tracing.clone()));
    let cancel = CancellationToken::new();

    let grpc_listener = bind(config.server.grpc_addr).await?;
    let http_listener = bind(config.server.http_addr).await?;
    let grpc_addr = local_addr(&grpc_listener, config.server.grpc_addr)?;
    let http_addr = local_addr(&http_listener, config.server.http_addr)?;

    let (reporter, health_service) = tonic_health::server::health_reporter();
    set_health(&reporter, ServingStatus::NotServing).await;
    let health = Arc::new(Mutex::new(Health {
        reporter,
        serving: Some(false),
        draining: false,
    }));

    // Check is served by our own handler (never a gRPC error, the gate owns the deadline); the
    // health service by tonic. No tonic `Server`: its per-call timer would answer a late body
    // with a gRPC error before the gate's deadline.
    let check_gate = gate.clone();
    let grpc_router = tonic::service::Routes::new(health_service)
        .into_axum_router()
        .route(
            super::grpc::CHECK_PATH,
            axum::routing::post(move |request: axum::extract::Request| async move {
                super::grpc::serve_check(&check_gate, request).await
            }),
        );
    let limits = ListenerLimits::fitted(&config.server);
    let grpc_settings = listener::Listener {
        name: "grpc",
        limits,
        tls: config.server.tls.as_ref().map(server_tls).transpose()?,
        protocols: Protocols::Http2,
    };
    let grpc_task = tokio::spawn(listener::serve(
        grpc_listener,
        grpc_router,
        grpc_settings,
        cancel.clone(),
    ));

    let state = Arc::new(HttpState {
        gate: gate.clone(),
        metrics: metrics.clone(),
        revocation: revocation.clone(),
        draining: Default::default(),
    });
    let http_settings = listener::Listener {
        name: "http",
        limits,
        tls: None,
        protocols: Protocols::Auto,
    };
    let http_task = tokio::spawn(listener::serve(
        http_listener,
        super::http::router(state.clone()),
        http_settings,
        cancel.clone(),
    ));

    let admin_addr = match &config.server.admin {
        Some(admin) => Some(
            super::admin::serve(admin, revocation.clone(), cancel.clone())
                .await
                .map_err(|e| match e {
                    super::admin::AdminError::Bind(addr, source) => {
                        ServeError::Bind { addr, source }
                    }
                    other => ServeError::Tls(other.to_string()),
                })?,
        ),
        None => None,
    };

    // First load of every provider (errors are logged by the cache; an unloaded provider fails
    // closed, not ready), then one refresh loop per cache.
    for (_, cache) in verifier.providers() {
        let _ = cache.refresh_now().await;
    }
    let refreshers = track_refreshers(&verifier, &[], &cancel);
    tokio::spawn(report_readiness(
        gate.clone(),
        health.clone(),
        cancel.clone(),
    ));
    tracing::info!(%grpc_addr, %http_addr, "mesh-authz serving");
    Ok(Running {
        grpc_addr,
        http_addr,
        revocation,
        metrics,
        admin_addr,
        cancel,
        health,
        state,
        gate,
        tracing,
        reload: Mutex::new(ReloadState {
            config: config.clone(),
            refreshers,
        }),
        grpc_task,
        http_task,
        grace: config.server.shutdown_grace,
        drain_delay: config.server.drain_delay,
    })
}

/// Where `run` gets a new config on SIGHUP: typically re-reading the config file with the
/// environment overrides. Its errors are logged and the old config keeps serving.
pub type ConfigSource = dyn Fn() -> Result<Config, ConfigErrors> + Send + Sync;

/// Serves until SIGTERM or Ctrl-C, then drains. SIGHUP is logged and ignored (there is no file
/// to re-read); use [`run_with_reload`] to reload on SIGHUP.
pub async fn run(config: &Config) -> Result<(), ServeError> {
    serve_until_signal(config, None, None).await
}

/// Serves until SIGTERM or Ctrl-C, then drains; on SIGHUP asks `source` for a new config and
/// [reloads](Running::reload) it (a bad one is refused and the old config keeps serving).
pub async fn run_with_reload(config: &Config, source: &ConfigSource) -> Result<(), ServeError> {
    serve_until_signal(config, Some(source), None).await
}

/// As [`run_with_reload`], and also reloads when the bytes of the config file or of a JWKS `file:`
/// source change, checked every `server.watch_interval` (`0s`: SIGHUP only).
pub async fn run_with_reload_and_watch(
    config: &Config,
    source: &ConfigSource,
    watch: WatchStart,
) -> Result<(), ServeError> {
    serve_until_signal(config, Some(source), Some(watch)).await
}

/// The config file's bytes as read *before* it was loaded: the watch compares against them, so a
/// change made while the server starts is reloaded rather than missed.
pub struct WatchStart {
    path: PathBuf,
    digest: Option<Digest>,
}

impl WatchStart {
    /// Reads `path` now; call it before loading the config from `path`.
    pub fn before_load(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            digest: std::fs::read(path).ok().and_then(|b| digest_of(&b)),
        }
    }
}

async fn serve_until_signal(
    config: &Config,
    source: Option<&ConfigSource>,
    watch_start: Option<WatchStart>,
) -> Result<(), ServeError> {
    // JWKS files are read before `start` loads them, for the same reason as WatchStart.
    let mut watch = match (source, watch_start) {
        (Some(_), Some(w)) if !config.server.watch_interval.is_zero() => {
            Some(FileWatch::new(w, config, config.server.watch_interval).await)
        }
        _ => None,
    };
    // Before `start` logs "serving": a SIGHUP sent once that line is seen must not meet the
    // default disposition (which ends the process).
    let mut hangup = Hangup::new();
    let running = start(config).await?;
    // Created once, so a SIGTERM that arrives during a reload is not lost.
    let shutdown = wait_for_shutdown_signal();
    tokio::pin!(shutdown);
    if let Some(w) = &watch {
        tracing::info!(
            path = %w.config_path.display(),
            interval = ?config.server.watch_interval,
            "watching the config file and JWKS file sources for changes"
        );
    }
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = hangup.recv() => {
                tracing::info!("SIGHUP received; reloading the config");
                match source {
                    None => tracing::warn!("no config file to reload (started without --config)"),
                    Some(source) => {
                        reload_from(&running, source).await;
                        if let Some(w) = watch.as_mut() {
                            // What SIGHUP just loaded is not a change for the watcher.
                            let config = running.reload.lock().await.config.clone();
                            w.seen = read_all(&watched_paths(&w.config_path, &config)).await;
                        }
                    }
                }
            }
            Some(changed) = next_change(watch.as_mut()) => {
                let (Some(w), Some(source)) = (watch.as_mut(), source) else { continue };
                tracing::info!(path = %changed.display(), "watched file changed; reloading the config");
                reload_from(&running, source).await;
                let config = running.reload.lock().await.config.clone();
                w.settle(&config).await;
            }
        }
    }
    tracing::info!("shutdown signal received; draining");
    running.shutdown().await;
    Ok(())
}

/// Asks `source` for a config and reloads it; either failure is logged and counted as refused.
async fn reload_from(running: &Running, source: &ConfigSource) {
    match source() {
        Ok(new) => {
            let _ = running.reload(new).await;
        }
        Err(errors) => refused(&running.metrics, &errors),
    }
}

/// How long a changed file must keep the same bytes before it is reloaded: a burst of writes (an
/// editor's save, a partly written file) becomes one reload of the final content.
const WATCH_DEBOUNCE: Duration = Duration::from_millis(300);

/// Polls the config file and the JWKS `file:` sources by content (SHA-256 of their bytes, read
/// through symlinks). Polling sees every way a file is replaced: in-place writes, an editor's
/// rename over the file, and Kubernetes' atomic swap of a ConfigMap volume's `..data` symlink,
/// which an inotify watch on the file itself misses. A touch (same bytes) is not a change.
struct FileWatch {
    config_path: PathBuf,
    interval: tokio::time::Interval,
    /// Each watched path and the digest of what was last acted on (`None`: unreadable).
    seen: Vec<(PathBuf, Option<Digest>)>,
    /// The digests that triggered the reload in progress.
    pending: Vec<(PathBuf, Option<Digest>)>,
}

type Digest = [u8; 32];

impl FileWatch {
    async fn new(start: WatchStart, config: &Config, every: Duration) -> Self {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick fires at once; start with the next one.
        interval.reset();
        let config_path = start.path;
        let mut seen = vec![(config_path.clone(), start.digest)];
        seen.extend(read_all(&watched_paths(&config_path, config)[1..]).await);
        Self {
            config_path,
            interval,
            seen,
            pending: Vec::new(),
        }
    }

    /// Waits for a tick at which some watched file's bytes differ from what was last acted on
    /// and stay the same for [`WATCH_DEBOUNCE`]; returns the first such path.
    async fn changed(&mut self) -> PathBuf {
        loop {
            self.interval.tick().await;
            let paths: Vec<PathBuf> = self.seen.iter().map(|(p, _)| p.clone()).collect();
            let now = read_all(&paths).await;
            if now == self.seen {
                continue;
            }
            tokio::time::sleep(WATCH_DEBOUNCE).await;
            let again = read_all(&paths).await;
            if again != now {
                // Still being written; look again at the next tick.
                continue;
            }
            let changed = again
                .iter()
                .zip(&self.seen)
                .find(|(a, b)| a.1 != b.1)
                .map(|(a, _)| a.0.clone())
                .unwrap_or_else(|| self.config_path.clone());
            self.pending = again;
            return changed;
        }
    }

    /// After a reload (applied or refused): the triggering bytes count as seen, and the watch
    /// follows the JWKS files of the config now in force.
    async fn settle(&mut self, config: &Config) {
        let paths = watched_paths(&self.config_path, config);
        let mut seen = Vec::with_capacity(paths.len());
        for p in paths {
            match self.pending.iter().find(|(q, _)| *q == p) {
                Some(known) => seen.push(known.clone()),
                None => seen.push((p.clone(), read_digest(&p).await)),
            }
        }
        self.seen = seen;
        self.pending.clear();
    }
}

/// [`FileWatch::changed`], or never when there is no watch.
async fn next_change(watch: Option<&mut FileWatch>) -> Option<PathBuf> {
    match watch {
        Some(w) => Some(w.changed().await),
        None => std::future::pending().await,
    }
}

/// The config file and every JWKS `file:` source of `config`.
fn watched_paths(config_path: &Path, config: &Config) -> Vec<PathBuf> {
    let mut paths = vec![config_path.to_path_buf()];
    for p in &config.providers {
        if let Some(f) = &p.jwks.file {
            if !paths.contains(f) {
                paths.push(f.clone());
            }
        }
    }
    paths
}

async fn read_all(paths: &[PathBuf]) -> Vec<(PathBuf, Option<Digest>)> {
    let mut out = Vec::with_capacity(paths.len());
    for p in paths {
        out.push((p.clone(), read_digest(p).await));
    }
    out
}

async fn read_digest(path: &Path) -> Option<Digest> {
    let bytes = tokio::fs::read(path).await.ok()?;
    digest_of(&bytes)
}

fn digest_of(bytes: &[u8]) -> Option<Digest> {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    d.as_ref().try_into().ok()
}

/// SIGHUP as a stream (never fires where there are no Unix signals).
struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    fn new() -> Self {
        #[cfg(unix)]
        {
            let signal =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            if signal.is_none() {
                tracing::warn!("cannot listen for SIGHUP; config reload by signal is off");
            }
            Self { signal }
        }
        #[cfg(not(unix))]
        Self {}
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(s) = &mut self.signal {
            if s.recv().await.is_some() {
                return;
            }
            self.signal = None;
        }
        std::future::pending::<()>().await
    }
}

/// Keeps gRPC health in step with readiness (every provider of the current config holds keys)
/// until shutdown begins.
async fn report_readiness(gate: Arc<Gate>, health: Arc<Mutex<Health>>, cancel: CancellationToken) {
    loop {
        {
            let mut h = health.lock().await;
            if h.draining {
                return;
            }
            let ready = gate.checker().verifier().ready();
            if h.serving != Some(ready) {
                let status = if ready {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                set_health(&h.reporter, status).await;
                h.serving = Some(ready);
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(READINESS_POLL) => {}
        }
    }
}

async fn set_health(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    health.set_service_status(AUTHZ_SERVICE, status).await;
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

fn local_addr(listener: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, ServeError> {
    listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })
}

/// The gRPC listener's TLS: the certificate chain and key, ALPN `h2`, and, with
/// `client_ca_file`, a client certificate chained to it required.
fn server_tls(tls: &TlsConfig) -> Result<TlsAcceptor, ServeError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, p: &std::path::Path, e: &dyn std::fmt::Display| {
        ServeError::Tls(format!("{what} {}: {e}", p.display()))
    };
    let certs = CertificateDer::pem_file_iter(&tls.cert_file)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad("cannot read certificates from", &tls.cert_file, &e))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key_file)
        .map_err(|e| bad("cannot read the private key from", &tls.key_file, &e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    let builder = match &tls.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca)
                .map_err(|e| bad("cannot read CA certificates from", ca, &e))?
            {
                let cert = cert.map_err(|e| bad("cannot read CA certificates from", ca, &e))?;
                roots
                    .add(cert)
                    .map_err(|e| bad("bad CA certificate in", ca, &e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| bad("cannot use the CA certificates in", ca, &e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| bad("cannot use the certificate and key in", &tls.cert_file, &e))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn wait_for_shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
