//! The shared revocation store on Redis or Redis Cluster.
//!
//! Data model (other tools may write it directly):
//! - `{prefix}jti:{jti}` exists → revoked; its TTL runs to the token's expiry plus
//!   [`JTI_GRACE_SECS`] (a token is still accepted within clock skew after `exp`).
//! - `{prefix}sub:{sub}` = unix seconds → tokens of `sub` issued at or before it are revoked.
//! - a token whose `parent_jti` is revoked is revoked.
//! - every write publishes `jti:{jti}` or `sub:{sub}` on `{prefix}events`.
//! - `{prefix}recent` is a capped list of recent revocations (JSON), for the admin API.
//!
//! A lookup sends only the facts the local cache lacks, in one pipeline (on a cluster: one
//! pipeline per hash slot touched, sent concurrently), bounded by `command_timeout`. Connections
//! reconnect by themselves; the events subscription is re-established after every drop, and the
//! cache is emptied and stops filling while it is down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Client, IntoConnectionInfo, Value};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::cache::{EVENT_JTI, EVENT_SUB, LookupCache, evaluate};
use super::{BoxFuture, RevocationEntry, RevocationStore, Status, StoreError, TokenRef};
use crate::config::RedisConfig;
use crate::telemetry::Metrics;

/// Seconds a `jti` key outlives the token's `exp` (the largest clock skew a provider may allow).
pub const JTI_GRACE_SECS: i64 = 300;
/// Shortest TTL given to a `jti` key, even for a token that has already expired.
pub const MIN_JTI_TTL_SECS: i64 = 60;
/// Longest TTL given to a `jti` key (100 years; Redis refuses expiries that overflow).
pub const MAX_JTI_TTL_SECS: i64 = 100 * 365 * 24 * 3600;
/// Entries kept in `{prefix}recent`.
pub const RECENT_MAX: usize = 1000;
/// Env var with the ACL user name (a `username_file` wins).
pub const ENV_USERNAME: &str = "MESH_AUTHZ_REDIS_USERNAME";
/// Env var with the password (a `password_file` wins).
pub const ENV_PASSWORD: &str = "MESH_AUTHZ_REDIS_PASSWORD";

/// The Redis store could not be set up. Messages never quote a URL or a credential.
#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    /// Neither `url` nor `cluster_nodes`, or both.
    #[error("set exactly one of url, cluster_nodes")]
    NoEndpoint,
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

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    async fn pipe(&self, pipe: &redis::Pipeline) -> redis::RedisResult<Vec<Value>> {
        match self {
            Conn::Single(c) => pipe.query_async(&mut c.clone()).await,
            Conn::Cluster(c) => pipe.query_async(&mut c.clone()).await,
        }
    }

    async fn cmd<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        match self {
            Conn::Single(c) => cmd.query_async(&mut c.clone()).await,
            Conn::Cluster(c) => cmd.query_async(&mut c.clone()).await,
        }
    }
}

struct Shared {
    conn: ArcSwapOption<Conn>,
    cluster: bool,
    cache: LookupCache,
    prefix: String,
    command_timeout: Duration,
    healthy: AtomicBool,
    metrics: Metrics,
}

/// Revocations in Redis (single node or cluster) with a local, event-invalidated cache.
pub struct RedisStore {
    shared: Arc<Shared>,
    _stop: DropGuard,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("cluster", &self.shared.cluster)
            .field("prefix", &self.shared.prefix)
            .finish_non_exhaustive()
    }
}

/// One fact a lookup needs.
#[derive(Clone, Copy)]
enum Fact<'a> {
    Jti(&'a str),
    Sub(&'a str),
}

impl RedisStore {
    /// Sets the store up from config and starts its background tasks (connection, events
    /// subscription, health pings); they stop when the store is dropped. It does not wait for
    /// Redis: until it is reachable, lookups fail (and `on_error` decides) and
    /// [`RevocationStore::ready`] is false.
    pub async fn connect(
        cfg: &RedisConfig,
        metrics: Metrics,
    ) -> Result<RedisStore, RedisSetupError> {
        let cluster = !cfg.cluster_nodes.is_empty();
        let urls: Vec<&String> = match (&cfg.url, cluster) {
            (Some(u), false) => vec![u],
            (None, true) => cfg.cluster_nodes.iter().collect(),
            _ => return Err(RedisSetupError::NoEndpoint),
        };
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
        let pubsub_clients = infos
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
            healthy: AtomicBool::new(false),
            metrics,
        });
        let cancel = CancellationToken::new();
        if cluster {
            let mut builder = redis::cluster::ClusterClientBuilder::new(infos)
                .connection_timeout(cfg.connect_timeout)
                .response_timeout(cfg.command_timeout)
                .retries(2)
                .min_retry_wait(10)
                .max_retry_wait(200);
            if let Some(ca) = &ca {
                builder = builder.certs(redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.clone()),
                });
            }
            let client = builder
                .build()
                .map_err(|e| RedisSetupError::Client(e.to_string()))?;
            tokio::spawn(connect_cluster(
                shared.clone(),
                client,
                cfg.connect_timeout,
                cancel.clone(),
            ));
        } else {
            let client = pubsub_clients
                .first()
                .cloned()
                .ok_or(RedisSetupError::NoEndpoint)?;
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
        tokio::spawn(subscribe_loop(
            shared.clone(),
            pubsub_clients,
            cfg.connect_timeout,
            cancel.clone(),
        ));
        tokio::spawn(health_loop(shared.clone(), cancel.clone()));
        Ok(RedisStore {
            shared,
            _stop: cancel.drop_guard(),
        })
    }

    /// The key of a revoked `jti`.
    pub fn jti_key(&self, jti: &str) -> String {
        format!("{}jti:{jti}", self.shared.prefix)
    }

    /// The key of a subject cut-off.
    pub fn sub_key(&self, sub: &str) -> String {
        format!("{}sub:{sub}", self.shared.prefix)
    }

    /// The pub/sub channel of invalidation events.
    pub fn events_channel(&self) -> String {
        format!("{}events", self.shared.prefix)
    }

    /// Waits up to `timeout` for a first successful `PING`; true when Redis answered.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self
                .run::<String>("ping", &redis::cmd("PING"))
                .await
                .is_ok()
            {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the events subscription is live (the local cache is in use).
    pub fn subscribed(&self) -> bool {
        self.shared.cache.enabled()
    }

    fn recent_key(&self) -> String {
        format!("{}recent", self.shared.prefix)
    }

    fn key(&self, fact: Fact<'_>) -> String {
        match fact {
            Fact::Jti(j) => self.jti_key(j),
            Fact::Sub(s) => self.sub_key(s),
        }
    }

    fn conn(&self) -> Result<Arc<Conn>, StoreError> {
        self.shared
            .conn
            .load_full()
            .ok_or_else(|| StoreError("redis: not connected yet".into()))
    }

    fn failed(&self, op: &str, e: &dyn std::fmt::Display) -> StoreError {
        self.shared.healthy.store(false, Ordering::Relaxed);
        self.shared
            .metrics
            .redis_errors
            .with_label_values(&[op])
            .inc();
        StoreError(format!("redis {op} failed: {e}"))
    }

    /// Runs one command within `command_timeout`.
    async fn run<T: redis::FromRedisValue>(
        &self,
        op: &str,
        cmd: &redis::Cmd,
    ) -> Result<T, StoreError> {
        let conn = self.conn()?;
        match tokio::time::timeout(self.shared.command_timeout, conn.cmd(cmd)).await {
            Ok(Ok(v)) => {
                self.shared.healthy.store(true, Ordering::Relaxed);
                Ok(v)
            }
            Ok(Err(e)) => Err(self.failed(op, &e)),
            Err(_) => Err(self.failed(op, &"timed out")),
        }
    }

    /// Fetches `facts` in one round trip (one per hash slot on a cluster, concurrently).
    async fn fetch(&self, facts: &[Fact<'_>]) -> Result<Vec<Value>, StoreError> {
        let conn = self.conn()?;
        let keys: Vec<String> = facts.iter().map(|f| self.key(*f)).collect();
        // Group by hash slot: a cluster refuses a pipeline spanning slots.
        let mut groups: Vec<(u16, Vec<usize>)> = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let slot = if self.shared.cluster {
                key_slot(k.as_bytes())
            } else {
                0
            };
            match groups.iter_mut().find(|(s, _)| *s == slot) {
                Some((_, idx)) => idx.push(i),
                None => groups.push((slot, vec![i])),
            }
        }
        let pipes = groups.iter().map(|(_, idx)| {
            let mut pipe = redis::pipe();
            for &i in idx {
                match (facts.get(i), keys.get(i)) {
                    (Some(Fact::Jti(_)), Some(k)) => pipe.exists(k),
                    (Some(Fact::Sub(_)), Some(k)) => pipe.get(k),
                    _ => &mut pipe,
                };
            }
            let conn = conn.clone();
            async move { conn.pipe(&pipe).await }
        });
        let all = futures_util::future::try_join_all(pipes);
        let answers = match tokio::time::timeout(self.shared.command_timeout, all).await {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => return Err(self.failed("lookup", &e)),
            Err(_) => return Err(self.failed("lookup", &"timed out")),
        };
        let mut out = vec![Value::Nil; facts.len()];
        for ((_, idx), values) in groups.iter().zip(answers) {
            if values.len() != idx.len() {
                return Err(self.failed("lookup", &"short pipeline reply"));
            }
            for (&i, v) in idx.iter().zip(values) {
                if let Some(slot) = out.get_mut(i) {
                    *slot = v;
                }
            }
        }
        self.shared.healthy.store(true, Ordering::Relaxed);
        Ok(out)
    }

    async fn lookup_inner(
        &self,
        token: TokenRef<'_>,
    ) -> (Result<Status, StoreError>, &'static str) {
        let cache = &self.shared.cache;
        let epoch = cache.epoch();
        let mut jti = token.jti.map(|j| (j, cache.jti(j)));
        let mut parent = token.parent_jti.map(|p| (p, cache.jti(p)));
        let mut cutoff = token.sub.map(|s| (s, cache.subject(s)));
        let known = |jti: &Option<(&str, Option<bool>)>,
                     parent: &Option<(&str, Option<bool>)>,
                     cutoff: &Option<(&str, Option<Option<i64>>)>| {
            evaluate(
                token,
                jti.is_some_and(|(_, r)| r == Some(true)),
                parent.is_some_and(|(_, r)| r == Some(true)),
                cutoff.and_then(|(_, c)| c.flatten()),
            )
        };
        // Anything cached that already revokes answers without a round trip.
        let early = known(&jti, &parent, &cutoff);
        let complete = jti.is_none_or(|(_, r)| r.is_some())
            && parent.is_none_or(|(_, r)| r.is_some())
            && cutoff.is_none_or(|(_, c)| c.is_some());
        if early != Status::Active || complete {
            return (Ok(early), "cache");
        }
        let mut facts = Vec::with_capacity(3);
        if let Some((j, None)) = jti {
            facts.push(Fact::Jti(j));
        }
        if let Some((p, None)) = parent {
            facts.push(Fact::Jti(p));
        }
        if let Some((s, None)) = cutoff {
            facts.push(Fact::Sub(s));
        }
        let values = match self.fetch(&facts).await {
            Ok(v) => v,
            Err(e) => return (Err(e), "redis"),
        };
        for (fact, value) in facts.iter().zip(values) {
            match *fact {
                Fact::Jti(name) => {
                    let Some(revoked) = as_exists(&value) else {
                        return (
                            Err(self.failed("lookup", &"unexpected EXISTS reply")),
                            "redis",
                        );
                    };
                    cache.put_jti(name, revoked, epoch);
                    for slot in [&mut jti, &mut parent] {
                        if let Some((n, r)) = slot
                            && *n == name
                        {
                            *r = Some(revoked);
                        }
                    }
                }
                Fact::Sub(name) => {
                    let Some(cut) = as_cutoff(&value) else {
                        // Fail closed: a garbage cut-off is an error, never "no cut-off".
                        return (
                            Err(self.failed("lookup", &"malformed subject cut-off")),
                            "redis",
                        );
                    };
                    cache.put_subject(name, cut, epoch);
                    if let Some((_, c)) = &mut cutoff {
                        *c = Some(cut);
                    }
                }
            }
        }
        (Ok(known(&jti, &parent, &cutoff)), "redis")
    }

    /// Records a revocation in `{prefix}recent` and announces the change; both best effort (the
    /// key is written; without the event, other replicas see it within `cache_ttl`).
    async fn announce(&self, event: String, entry: Option<serde_json::Value>) {
        self.shared.cache.invalidate_event(&event);
        if let Some(entry) = entry {
            let mut push = redis::cmd("LPUSH");
            push.arg(self.recent_key()).arg(entry.to_string());
            let mut trim = redis::cmd("LTRIM");
            trim.arg(self.recent_key()).arg(0).arg(RECENT_MAX - 1);
            if self.run::<i64>("write", &push).await.is_ok() {
                let _ = self.run::<()>("write", &trim).await;
            }
        }
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(self.events_channel()).arg(event);
        if let Err(e) = self.run::<i64>("write", &publish).await {
            tracing::warn!(error = %e, "revocation stored but its event was not published");
        }
    }

    async fn list(&self, limit: usize) -> Result<Vec<RevocationEntry>, StoreError> {
        let limit = limit.clamp(1, RECENT_MAX);
        let mut cmd = redis::cmd("LRANGE");
        cmd.arg(self.recent_key()).arg(0).arg(limit - 1);
        let raw: Vec<String> = self.run("list", &cmd).await?;
        Ok(raw.iter().filter_map(|r| parse_entry(r)).collect())
    }
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

fn as_exists(v: &Value) -> Option<bool> {
    match v {
        Value::Int(n) => Some(*n > 0),
        Value::Boolean(b) => Some(*b),
        _ => None,
    }
}

/// `None`: malformed. `Some(None)`: no cut-off.
fn as_cutoff(v: &Value) -> Option<Option<i64>> {
    let text = match v {
        Value::Nil => return Some(None),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?,
        Value::SimpleString(s) => s.as_str(),
        Value::Int(n) => return Some(Some(*n)),
        _ => return None,
    };
    text.trim().parse::<i64>().ok().map(Some)
}

fn entry_json(entry: &RevocationEntry) -> serde_json::Value {
    match entry {
        RevocationEntry::Jti {
            jti,
            expires_at,
            revoked_at,
        } => {
            serde_json::json!({"kind": "jti", "jti": jti, "expires_at": expires_at, "revoked_at": revoked_at})
        }
        RevocationEntry::Subject {
            sub,
            before,
            revoked_at,
        } => {
            serde_json::json!({"kind": "sub", "sub": sub, "before": before, "revoked_at": revoked_at})
        }
    }
}

fn parse_entry(raw: &str) -> Option<RevocationEntry> {
    let v: serde_json::Value = serde_json::from_str(raw).ok()?;
    let revoked_at = v.get("revoked_at")?.as_i64()?;
    match v.get("kind")?.as_str()? {
        "jti" => Some(RevocationEntry::Jti {
            jti: v.get("jti")?.as_str()?.to_string(),
            expires_at: v.get("expires_at")?.as_i64()?,
            revoked_at,
        }),
        "sub" => Some(RevocationEntry::Subject {
            sub: v.get("sub")?.as_str()?.to_string(),
            before: v.get("before")?.as_i64()?,
            revoked_at,
        }),
        _ => None,
    }
}

use crate::clock::unix_now;

/// TTL of a `jti` key: to the token's expiry plus the grace, never below the minimum.
pub fn jti_ttl(expires_at: i64, now: i64) -> i64 {
    expires_at
        .saturating_add(JTI_GRACE_SECS)
        .saturating_sub(now)
        .clamp(MIN_JTI_TTL_SECS, MAX_JTI_TTL_SECS)
}

/// Redis Cluster hash slot of a key (CRC16/XMODEM of the key or its `{hash tag}`, mod 16384).
pub fn key_slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = key.get(open + 1..)?;
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| rest.get(..close)).flatten()
    });
    crc16(tagged.unwrap_or(key)) % 16384
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

async fn connect_cluster(
    shared: Arc<Shared>,
    client: redis::cluster::ClusterClient,
    timeout: Duration,
    cancel: CancellationToken,
) {
    let mut delay = Duration::from_millis(100);
    loop {
        let attempt = tokio::time::timeout(timeout, client.get_async_connection());
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            r = attempt => r,
        };
        match result {
            Ok(Ok(conn)) => {
                shared.conn.store(Some(Arc::new(Conn::Cluster(conn))));
                tracing::info!("connected to Redis Cluster");
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "Redis Cluster connection failed; retrying");
            }
            Err(_) => tracing::warn!("Redis Cluster connection timed out; retrying"),
        }
        shared
            .metrics
            .redis_errors
            .with_label_values(&["connect"])
            .inc();
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// Keeps one subscription to the events channel, on the first reachable node (cluster pub/sub
/// is broadcast to every node), and invalidates the cache on each message.
async fn subscribe_loop(
    shared: Arc<Shared>,
    clients: Vec<Client>,
    timeout: Duration,
    cancel: CancellationToken,
) {
    let channel = format!("{}events", shared.prefix);
    let mut delay = Duration::from_millis(50);
    let mut next = 0usize;
    loop {
        let Some(client) = clients.get(next % clients.len().max(1)) else {
            return;
        };
        next = next.wrapping_add(1);
        let connected = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            r = tokio::time::timeout(timeout, connected) => r,
        };
        match result {
            Ok(Ok(pubsub)) => {
                delay = Duration::from_millis(50);
                // Whatever was cached may have missed events while we were not subscribed.
                shared.cache.invalidate_all();
                shared.cache.set_enabled(true);
                let mut messages = pubsub.into_on_message();
                loop {
                    let msg = tokio::select! {
                        _ = cancel.cancelled() => {
                            shared.cache.set_enabled(false);
                            return;
                        }
                        m = messages.next() => m,
                    };
                    let Some(msg) = msg else { break };
                    match std::str::from_utf8(msg.get_payload_bytes()) {
                        Ok(payload) => shared.cache.invalidate_event(payload),
                        Err(_) => shared.cache.invalidate_all(),
                    }
                }
                shared.cache.set_enabled(false);
                tracing::warn!("Redis events subscription lost; resubscribing");
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "Redis events subscription failed"),
            Err(_) => tracing::warn!("Redis events subscription timed out"),
        }
        shared
            .metrics
            .redis_errors
            .with_label_values(&["subscribe"])
            .inc();
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

/// Pings every 500 ms so readiness follows Redis even without traffic.
async fn health_loop(shared: Arc<Shared>, cancel: CancellationToken) {
    loop {
        let ok = match shared.conn.load_full() {
            Some(conn) => matches!(
                tokio::time::timeout(
                    shared.command_timeout,
                    conn.cmd::<String>(&redis::cmd("PING"))
                )
                .await,
                Ok(Ok(_))
            ),
            None => false,
        };
        if !ok {
            shared
                .metrics
                .redis_errors
                .with_label_values(&["ping"])
                .inc();
        }
        shared.healthy.store(ok, Ordering::Relaxed);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

impl RevocationStore for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn status<'a>(&'a self, token: TokenRef<'a>) -> BoxFuture<'a, Result<Status, StoreError>> {
        Box::pin(async move { self.lookup_inner(token).await.0 })
    }

    fn lookup<'a>(
        &'a self,
        token: TokenRef<'a>,
    ) -> BoxFuture<'a, (Result<Status, StoreError>, &'static str)> {
        Box::pin(self.lookup_inner(token))
    }

    fn revoke_jti<'a>(
        &'a self,
        jti: &'a str,
        expires_at: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let now = unix_now();
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.jti_key(jti))
                .arg(now)
                .arg("EX")
                .arg(jti_ttl(expires_at, now));
            self.run::<()>("write", &cmd).await?;
            let entry = RevocationEntry::Jti {
                jti: jti.to_string(),
                expires_at,
                revoked_at: now,
            };
            self.announce(format!("{EVENT_JTI}{jti}"), Some(entry_json(&entry)))
                .await;
            Ok(())
        })
    }

    fn revoke_subject<'a>(
        &'a self,
        sub: &'a str,
        before: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            // A later cut-off replaces an earlier one, never the reverse (as in memory).
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(
                "local c = tonumber(redis.call('GET', KEYS[1])) \
                 local n = tonumber(ARGV[1]) \
                 if c == nil or c < n then redis.call('SET', KEYS[1], ARGV[1]) return n end \
                 return c",
            )
            .arg(1)
            .arg(self.sub_key(sub))
            .arg(before);
            let stored: i64 = self.run("write", &cmd).await?;
            let entry = RevocationEntry::Subject {
                sub: sub.to_string(),
                before: stored,
                revoked_at: unix_now(),
            };
            self.announce(format!("{EVENT_SUB}{sub}"), Some(entry_json(&entry)))
                .await;
            Ok(())
        })
    }

    fn unrevoke_jti<'a>(&'a self, jti: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("DEL");
            cmd.arg(self.jti_key(jti));
            self.run::<i64>("write", &cmd).await?;
            self.announce(format!("{EVENT_JTI}{jti}"), None).await;
            Ok(())
        })
    }

    fn unrevoke_subject<'a>(&'a self, sub: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("DEL");
            cmd.arg(self.sub_key(sub));
            self.run::<i64>("write", &cmd).await?;
            self.announce(format!("{EVENT_SUB}{sub}"), None).await;
            Ok(())
        })
    }

    fn list_recent(&self, limit: usize) -> BoxFuture<'_, Result<Vec<RevocationEntry>, StoreError>> {
        Box::pin(self.list(limit))
    }

    fn ready(&self) -> bool {
        self.shared.healthy.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b""), 0);
    }

    #[test]
    fn ttl_covers_expiry_and_grace() {
        assert_eq!(jti_ttl(1_000, 0), 1_000 + JTI_GRACE_SECS);
        assert_eq!(jti_ttl(0, 1_000_000), MIN_JTI_TTL_SECS);
        assert_eq!(jti_ttl(i64::MAX, 0), MAX_JTI_TTL_SECS);
        assert_eq!(jti_ttl(i64::MIN, i64::MAX), MIN_JTI_TTL_SECS);
    }

    #[test]
    fn replies_parse_fail_closed() {
        assert_eq!(as_exists(&Value::Int(1)), Some(true));
        assert_eq!(as_exists(&Value::Int(0)), Some(false));
        assert_eq!(as_exists(&Value::Nil), None);
        assert_eq!(as_cutoff(&Value::Nil), Some(None));
        assert_eq!(
            as_cutoff(&Value::BulkString(b"42".to_vec())),
            Some(Some(42))
        );
        assert_eq!(as_cutoff(&Value::BulkString(b"soon".to_vec())), None);
    }

    #[test]
    fn recent_entries_round_trip() {
        let e = RevocationEntry::Subject {
            sub: "alice".into(),
            before: 5,
            revoked_at: 6,
        };
        assert_eq!(parse_entry(&entry_json(&e).to_string()), Some(e));
        assert_eq!(parse_entry("{}"), None);
        assert_eq!(parse_entry("not json"), None);
    }
}
