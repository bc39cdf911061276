//! Starting and stopping the server: listeners, background key refresh, health, graceful drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use envoy_types::ext_authz::v3::pb::AuthorizationServer;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use super::grpc::AuthzService;
use super::http::{HttpState, router};
use crate::check::Checker;
use crate::config::{Config, ConfigErrors, StoreKind, TlsConfig};
use crate::revocation::RevocationStore;
use crate::revocation::memory::MemoryStore;
use crate::revocation::redis::RedisStore;
use crate::telemetry::Metrics;
use crate::token::jwks::JwksError;
use crate::token::verify::Verifier;

/// The gRPC service name Envoy's health checks and Kubernetes gRPC probes may ask for.
const AUTHZ_SERVICE: &str = "envoy.service.auth.v3.Authorization";

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
    health: HealthReporter,
    state: Arc<HttpState>,
    grpc_task: JoinHandle<()>,
    http_task: JoinHandle<()>,
    grace: Duration,
}

impl Running {
    /// Drains and stops: readiness and gRPC health go NOT_SERVING first, then the listeners stop
    /// accepting and in-flight checks get up to `server.shutdown_grace` to finish.
    pub async fn shutdown(self) {
        self.state.draining.store(true, Ordering::Relaxed);
        set_health(&self.health, ServingStatus::NotServing).await;
        self.cancel.cancel();
        let drained = tokio::time::timeout(self.grace, async {
            let _ = self.grpc_task.await;
            let _ = self.http_task.await;
        })
        .await;
        if drained.is_err() {
            tracing::warn!("shutdown grace period ended with checks still in flight");
        }
    }
}

/// Binds the listeners, loads keys (first attempt) and serves in the background.
pub async fn start(config: &Config) -> Result<Running, ServeError> {
    let errors = crate::config::validate(config);
    if !errors.is_empty() {
        return Err(ServeError::Config(ConfigErrors(errors)));
    }
    let metrics = Metrics::new();
    let verifier = Arc::new(Verifier::new(
        &config.providers,
        &config.limits,
        metrics.clone(),
    )?);
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
    let cancel = CancellationToken::new();

    let grpc_listener = bind(config.server.grpc_addr).await?;
    let http_listener = bind(config.server.http_addr).await?;
    let grpc_addr = local_addr(&grpc_listener, config.server.grpc_addr)?;
    let http_addr = local_addr(&http_listener, config.server.http_addr)?;

    let (health, health_service) = tonic_health::server::health_reporter();
    set_health(&health, ServingStatus::NotServing).await;

    let mut builder = Server::builder()
        .timeout(Duration::from_secs(10))
        .tcp_nodelay(true);
    if let Some(tls) = &config.server.tls {
        builder = builder
            .tls_config(server_tls(tls)?)
            .map_err(|e| ServeError::Tls(e.to_string()))?;
    }
    let router = builder
        .add_service(health_service)
        .add_service(AuthorizationServer::new(AuthzService::new(checker.clone())));
    let incoming = TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
    let grpc_cancel = cancel.clone();
    let grpc_task = tokio::spawn(async move {
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming, grpc_cancel.cancelled())
            .await
        {
            tracing::error!(error = %e, "gRPC server failed");
        }
    });

    let state = Arc::new(HttpState {
        checker: checker.clone(),
        metrics: metrics.clone(),
        revocation: revocation.clone(),
        draining: Default::default(),
    });
    let http_cancel = cancel.clone();
    let app = router_for(state.clone());
    let http_task = tokio::spawn(async move {
        let shutdown = async move { http_cancel.cancelled().await };
        if let Err(e) = axum::serve(http_listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });

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

    verifier.start(cancel.clone()).await;
    tokio::spawn(report_readiness(verifier, health.clone(), cancel.clone()));
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
        grpc_task,
        http_task,
        grace: config.server.shutdown_grace,
    })
}

/// Serves until SIGTERM or Ctrl-C, then drains.
pub async fn run(config: &Config) -> Result<(), ServeError> {
    let running = start(config).await?;
    wait_for_shutdown_signal().await;
    tracing::info!("shutdown signal received; draining");
    running.shutdown().await;
    Ok(())
}

fn router_for(state: Arc<HttpState>) -> axum::Router {
    router(state)
}

/// Flips gRPC health to SERVING once every provider holds keys.
async fn report_readiness(
    verifier: Arc<Verifier>,
    health: HealthReporter,
    cancel: CancellationToken,
) {
    loop {
        if verifier.ready() {
            set_health(&health, ServingStatus::Serving).await;
            return;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
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

fn server_tls(tls: &TlsConfig) -> Result<ServerTlsConfig, ServeError> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| ServeError::Tls(format!("cannot read {}: {e}", p.display())))
    };
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(
        read(&tls.cert_file)?,
        read(&tls.key_file)?,
    ));
    if let Some(ca) = &tls.client_ca_file {
        config = config.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    Ok(config)
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
