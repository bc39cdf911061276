//! Starting and stopping the server: listeners, background key refresh, health, graceful drain.

use std::net::SocketAddr;
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
use super::reload::{ReloadState, track_refreshers};
use crate::jwks::{JwksError, build_verifier, load_all};
use crate::redis_store::RedisStore;
use crate::telemetry::Metrics;
use mesh_authz_core::check::Checker;
use mesh_authz_core::compile::Compiled;
use mesh_authz_core::config::{ConfigErrors, TlsConfig};
use mesh_authz_core::revocation::{MemoryStore, RevocationStore};

/// The gRPC service name Envoy's health checks and Kubernetes gRPC probes may ask for.
pub(super) const AUTHZ_SERVICE: &str = "envoy.service.auth.v3.Authorization";

/// How often readiness (every provider holds keys) is re-evaluated for gRPC health.
pub(super) const READINESS_POLL: Duration = Duration::from_millis(250);

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
    pub(super) cancel: CancellationToken,
    pub(super) health: Arc<Mutex<Health>>,
    pub(super) state: Arc<HttpState>,
    pub(super) gate: Arc<Gate>,
    pub(super) tracing: Option<Arc<crate::otel::Tracing>>,
    pub(super) reload: Mutex<ReloadState>,
    pub(super) grpc_task: JoinHandle<()>,
    pub(super) http_task: JoinHandle<()>,
    pub(super) grace: Duration,
    pub(super) drain_delay: Duration,
}

/// gRPC health, guarded so that the readiness poller can never flip it back to SERVING once
/// shutdown has begun.
pub(super) struct Health {
    reporter: HealthReporter,
    /// What was last reported (`None`: nothing yet).
    serving: Option<bool>,
    draining: bool,
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
}

/// Binds the listeners, loads keys (first attempt) and serves in the background.
pub async fn start(compiled: &Compiled) -> Result<Running, ServeError> {
    let config = compiled.config();
    let metrics = Metrics::new();
    let (verifier, caches) = build_verifier(compiled, &metrics, &[])?;
    let revocation: Arc<dyn RevocationStore> =
        match (&config.revocation.redis, compiled.redis_endpoints()) {
            (Some(redis), Some(_)) => Arc::new(
                RedisStore::connect(redis, metrics.clone())
                    .await
                    .map_err(|e| ServeError::Redis(e.to_string()))?,
            ),
            _ => Arc::new(MemoryStore::default()),
        };
    let checker = Arc::new(Checker::new(
        compiled,
        Arc::new(verifier),
        revocation.clone(),
        metrics.core_sink(),
    ));
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
        check: Some(gate.clone()),
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
        check: None,
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
    load_all(&caches).await;
    let refreshers = track_refreshers(&caches, &[], &cancel);
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

/// Keeps gRPC health in step with readiness (every provider of the current config holds keys)
/// until shutdown begins.
pub(super) async fn report_readiness(
    gate: Arc<Gate>,
    health: Arc<Mutex<Health>>,
    cancel: CancellationToken,
) {
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

pub(super) async fn set_health(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    health.set_service_status(AUTHZ_SERVICE, status).await;
}

pub(super) async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

pub(super) fn local_addr(
    listener: &TcpListener,
    addr: SocketAddr,
) -> Result<SocketAddr, ServeError> {
    listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })
}

/// The gRPC listener's TLS: the certificate chain and key, ALPN `h2`, and, with
/// `client_ca_file`, a client certificate chained to it required.
pub(super) fn server_tls(tls: &TlsConfig) -> Result<TlsAcceptor, ServeError> {
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
