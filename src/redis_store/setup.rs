//! Setting the store up: clients, credentials, background tasks, and the epoch marker of a new
//! deployment.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, IntoConnectionInfo};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::cache::LookupCache;
use super::cluster::{self, ClusterSetup};
use super::{Conn, RedisStore, Shared, epoch, subscription};
use crate::telemetry::Metrics;
use mesh_authz_core::config::RedisConfig;
use mesh_authz_core::revocation::StoreError;

/// Env var with the ACL user name (a `username_file` wins).
pub const ENV_USERNAME: &str = "MESH_AUTHZ_REDIS_USERNAME";
/// Env var with the password (a `password_file` wins).
pub const ENV_PASSWORD: &str = "MESH_AUTHZ_REDIS_PASSWORD";

/// The Redis store could not be set up. Messages never quote a URL or a credential.
#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    /// `url` / `cluster_nodes` do not name endpoints.
    #[error("{0}")]
    Endpoints(String),
    /// A URL did not parse.
    #[error("invalid Redis URL (#{0})")]
    Url(usize),
    /// A CA or secret file could not be read.
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    /// The client could not be built.
    #[error("Redis client setup failed: {0}")]
    Client(String),
}

/// Reads a secret from a file (trailing newline dropped) or else from an env var.
fn secret(file: Option<&std::path::Path>, env: &str) -> Result<Option<String>, RedisSetupError> {
    if let Some(p) = file {
        let s = std::fs::read_to_string(p)
            .map_err(|e| RedisSetupError::Read(p.display().to_string(), e))?;
        return Ok(Some(s.trim_end_matches(['\r', '\n']).to_string()));
    }
    Ok(std::env::var(env).ok().filter(|v| !v.is_empty()))
}

impl RedisStore {
    /// Sets the store up from config and starts its background tasks (connection and, on a
    /// cluster, topology supervision; the events subscription; health pings and the epoch
    /// marker); they stop when the store is dropped. It does not wait for Redis: until it is
    /// reachable, lookups fail (and `on_error` decides) and `ready` is false.
    pub async fn connect(
        cfg: &RedisConfig,
        metrics: Metrics,
    ) -> Result<RedisStore, RedisSetupError> {
        // The same rule the compile step checked the config with.
        let endpoints = cfg.endpoints().map_err(|problems| {
            let text: Vec<String> = problems.into_iter().map(|(_, m)| m).collect();
            RedisSetupError::Endpoints(text.join("; "))
        })?;
        let cluster = endpoints.is_cluster();
        let urls = endpoints.urls();
        let ca = match &cfg.ca_file {
            Some(p) => Some(
                std::fs::read(p).map_err(|e| RedisSetupError::Read(p.display().to_string(), e))?,
            ),
            None => None,
        };
        let username = secret(cfg.username_file.as_deref(), ENV_USERNAME)?;
        let password = secret(cfg.password_file.as_deref(), ENV_PASSWORD)?;
        let mut infos = Vec::new();
        for (i, u) in urls.iter().enumerate() {
            let info = u
                .as_str()
                .into_connection_info()
                .map_err(|_| RedisSetupError::Url(i))?;
            let mut settings = info.redis_settings().clone();
            if let Some(user) = &username {
                settings = settings.set_username(user);
            }
            if let Some(pass) = &password {
                settings = settings.set_password(pass);
            }
            infos.push(info.set_redis_settings(settings));
        }
        let client_for = |info: redis::ConnectionInfo| -> Result<Client, RedisSetupError> {
            let tls = matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. });
            match (&ca, tls) {
                (Some(ca), true) => Client::build_with_tls(
                    info,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(ca.clone()),
                    },
                ),
                _ => Client::open(info),
            }
            .map_err(|e| RedisSetupError::Client(e.to_string()))
        };
        let clients = infos
            .iter()
            .cloned()
            .map(client_for)
            .collect::<Result<Vec<_>, _>>()?;

        let shared = Arc::new(Shared {
            conn: ArcSwapOption::empty(),
            cluster,
            cache: LookupCache::new(cfg.cache_ttl, cfg.cache_capacity, metrics.clone()),
            prefix: cfg.key_prefix.clone(),
            command_timeout: cfg.command_timeout,
            min_replicas: cfg.min_replicas,
            replication_timeout: cfg.replication_timeout,
            healthy: AtomicBool::new(false),
            epoch: epoch::EpochGuard::default(),
            markers: epoch::LazyMarkers::new(),
            heartbeat: subscription::Heartbeat::new(),
            subscription_error: std::sync::Mutex::new(None),
            refresh: Notify::new(),
            breaker: std::sync::Mutex::new(cluster::Breaker::default()),
            metrics,
        });
        let cancel = CancellationToken::new();
        if cluster {
            // Build the slot markers' names off the async threads (about 170k hashes).
            let prefix = cfg.key_prefix.clone();
            let markers = tokio::task::spawn_blocking(move || epoch::SlotMarkers::new(&prefix))
                .await
                .map_err(|e| RedisSetupError::Client(e.to_string()))?;
            let _ = shared.markers.set(markers);
            tokio::spawn(cluster::supervise(
                shared.clone(),
                ClusterSetup {
                    seeds: infos,
                    probes: clients.clone(),
                    ca,
                    connect_timeout: cfg.connect_timeout,
                },
                cancel.clone(),
            ));
        } else {
            let client = clients
                .first()
                .cloned()
                .ok_or_else(|| RedisSetupError::Client("no endpoint".into()))?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(cfg.connect_timeout))
                .set_response_timeout(Some(cfg.command_timeout))
                .set_min_delay(Duration::from_millis(50))
                .set_max_delay(Duration::from_millis(500))
                .set_number_of_retries(0);
            let manager = ConnectionManager::new_lazy_with_config(client, config)
                .map_err(|e| RedisSetupError::Client(e.to_string()))?;
            shared.conn.store(Some(Arc::new(Conn::Single(manager))));
        }
        tokio::spawn(subscription::run(
            shared.clone(),
            clients,
            cfg.connect_timeout,
            cancel.clone(),
        ));
        tokio::spawn(super::health::health_loop(shared.clone(), cancel.clone()));
        Ok(RedisStore {
            shared,
            _stop: cancel.drop_guard(),
        })
    }
}

/// Writes `id` into every slot's copy of the marker (a cluster only; a single node has one).
pub(super) async fn write_slot_markers(shared: &Shared, id: &str) -> Result<(), StoreError> {
    if !shared.cluster {
        return Ok(());
    }
    let markers = shared
        .markers
        .get_or_init(|| epoch::SlotMarkers::new(&shared.prefix));
    let mut pending = futures_util::stream::FuturesUnordered::new();
    for name in markers.all() {
        let mut set = redis::cmd("SET");
        set.arg(name).arg(id);
        pending.push(async move { super::commands::run::<()>(shared, "epoch", &set).await });
        if pending.len() >= 256
            && let Some(r) = pending.next().await
        {
            r?;
        }
    }
    while let Some(r) = pending.next().await {
        r?;
    }
    Ok(())
}

/// Creates the marker of a new deployment: one replica (holding `{prefix}epoch-init`) writes
/// every slot's copy, then `{prefix}epoch`; the others learn it on a later read.
pub(super) async fn init_epoch(shared: &Shared) {
    let id = epoch::new_id(false);
    let mut lock = redis::cmd("SET");
    lock.arg(format!("{}epoch-init", shared.prefix))
        .arg(&id)
        .arg("NX")
        .arg("EX")
        .arg(60);
    match super::commands::run::<Option<String>>(shared, "epoch", &lock).await {
        Ok(Some(_)) => {}
        // Another replica is initialising.
        _ => return,
    }
    if let Err(e) = write_slot_markers(shared, &id).await {
        tracing::warn!(error = %e, "cannot initialise the Redis epoch marker; retrying");
        return;
    }
    let mut set = redis::cmd("SET");
    set.arg(shared.epoch_key()).arg(&id).arg("NX");
    match super::commands::run::<Option<String>>(shared, "epoch", &set).await {
        Ok(Some(_)) => tracing::info!("initialised the Redis epoch marker (new deployment)"),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "cannot initialise the Redis epoch marker"),
    }
}
