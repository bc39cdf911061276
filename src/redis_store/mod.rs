//! The shared revocation store on Redis or Redis Cluster.
//!
//! Data model (other tools may write it directly):
//! - `{prefix}jti:{jti}` exists → revoked; its TTL runs to the token's expiry plus
//!   [`JTI_GRACE_SECS`] (a token is still accepted within clock skew after `exp`).
//! - `{prefix}sub:{sub}` = unix seconds → tokens of `sub` issued at or before it are revoked.
//! - a token whose `parent_jti` is revoked is revoked.
//! - every write publishes `jti:{jti}` or `sub:{sub}` on `{prefix}events`.
//! - `{prefix}recent` is a capped list of recent revocations (JSON), for the admin API.
//! - `{prefix}epoch` (and its copies per hash slot on a cluster) marks the set's generation:
//!   see [`epoch`].
//! - replicas publish heartbeats on `{prefix}heartbeat`: see [`subscription`].
//!
//! A lookup sends only the facts the local cache lacks, in one pipeline with the epoch marker (on
//! a cluster: one pipeline per hash slot touched, sent concurrently), bounded by
//! `command_timeout`. A write is confirmed only once `WAIT` counts `min_replicas` replicas
//! holding it.

mod cache;
mod cluster;
mod commands;
pub mod epoch;
mod health;
mod keys;
mod setup;
pub mod subscription;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{FromRedisValue, Value};
use tokio::sync::Notify;
use tokio_util::sync::DropGuard;

use crate::telemetry::Metrics;
use cache::{CacheView, EVENT_JTI, EVENT_SUB, LookupCache};
use commands::{failed, run, write};
use epoch::{EpochGuard, LazyMarkers};
pub use keys::{JTI_GRACE_SECS, MAX_JTI_TTL_SECS, MIN_JTI_TTL_SECS, jti_ttl, key_slot};
use keys::{as_cutoff, as_exists, as_opt_string, entry_json, parse_entry};
use mesh_authz_core::clock::unix_now;
use mesh_authz_core::revocation::{
    BoxFuture, RevocationEntry, RevocationStore, Status, StoreError, TokenRef,
};
pub use setup::{ENV_PASSWORD, ENV_USERNAME, RedisSetupError};

/// Entries kept in `{prefix}recent`.
pub const RECENT_MAX: usize = 1000;

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

    async fn cmd<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
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
    min_replicas: u32,
    replication_timeout: Duration,
    healthy: AtomicBool,
    epoch: EpochGuard,
    markers: LazyMarkers,
    heartbeat: subscription::Heartbeat,
    subscription_error: Mutex<Option<String>>,
    /// Wakes the cluster supervisor at once (a lookup timed out).
    refresh: Notify,
    /// Per-master circuit breaking (a cluster only).
    breaker: Mutex<cluster::Breaker>,
    metrics: Metrics,
}

impl Shared {
    /// The epoch marker read beside facts stored in `slot`.
    fn marker_for_slot(&self, slot: u16) -> String {
        if self.cluster {
            self.markers
                .get_or_init(|| epoch::SlotMarkers::new(&self.prefix))
                .for_slot(slot)
                .to_string()
        } else {
            self.epoch_key()
        }
    }

    /// A single node's health follows its answers; a cluster's is set by its supervisor.
    fn answered(&self, ok: bool) {
        if !self.cluster {
            self.healthy.store(ok, Ordering::Relaxed);
        }
    }

    fn epoch_key(&self) -> String {
        format!("{}epoch", self.prefix)
    }
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
            // A cluster is up once its supervisor connected (a `PING` would go to every master
            // and fail while any one hangs).
            let up = if self.shared.cluster {
                self.shared.conn.load().is_some() && self.shared.healthy.load(Ordering::Relaxed)
            } else {
                self.run::<String>("ping", &redis::cmd("PING"))
                    .await
                    .is_ok()
            };
            if up {
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

    /// Why the revocation set is considered lost (see [`epoch`]), if it is.
    pub fn epoch_lost(&self) -> Option<String> {
        self.shared.epoch.reason()
    }

    /// The epoch id this store expects, once learnt.
    pub fn epoch_known(&self) -> Option<String> {
        self.shared.epoch.known()
    }

    /// Writes a new, operator-confirmed epoch id (every slot's copy first, then the main key),
    /// so replicas that failed closed on a lost set serve again. Returns the id.
    pub async fn confirm_epoch(&self) -> Result<String, StoreError> {
        let id = epoch::new_id(true);
        setup::write_slot_markers(&self.shared, &id).await?;
        let mut set = redis::cmd("SET");
        set.arg(self.shared.epoch_key()).arg(&id);
        self.write::<()>(set).await?;
        Ok(id)
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
        failed(&self.shared, op, e)
    }

    /// Runs one command within `command_timeout`.
    async fn run<T: FromRedisValue>(&self, op: &str, cmd: &redis::Cmd) -> Result<T, StoreError> {
        run(&self.shared, op, cmd).await
    }

    /// Runs one write and, with `min_replicas`, `WAIT`s for it in the same pipeline (on a
    /// cluster the pipeline goes to the key's master): confirmed only once enough replicas
    /// hold it.
    async fn write<T: FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, StoreError> {
        write(&self.shared, cmd).await
    }

    /// Fetches `facts` in one round trip (one per hash slot on a cluster, concurrently), each
    /// pipeline with the epoch marker of its slot, which is checked here.
    async fn fetch(&self, facts: &[Fact<'_>]) -> Result<Vec<Value>, StoreError> {
        if let Some(why) = self.shared.epoch.reason() {
            return Err(StoreError(format!("redis: revocation set lost: {why}")));
        }
        let conn = self.conn()?;
        let keys: Vec<String> = facts.iter().map(|f| self.key(*f)).collect();
        // Group by slot: a cluster pipeline must stay within one slot (one node).
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
        if self.shared.cluster
            && let Ok(b) = self.shared.breaker.lock()
            && let Some(node) = groups.iter().find_map(|(slot, _)| b.blocked(*slot))
        {
            drop(b);
            self.shared.refresh.notify_one();
            return Err(self.failed("lookup", &format!("node {node} not answering (skipped)")));
        }
        let pipes = groups.iter().map(|(slot, idx)| {
            let mut pipe = redis::pipe();
            for &i in idx {
                match (facts.get(i), keys.get(i)) {
                    (Some(Fact::Jti(_)), Some(k)) => pipe.exists(k),
                    (Some(Fact::Sub(_)), Some(k)) => pipe.get(k),
                    _ => &mut pipe,
                };
            }
            pipe.get(self.shared.marker_for_slot(*slot));
            let conn = conn.clone();
            let shared = &self.shared;
            let slot = *slot;
            async move {
                let r = tokio::time::timeout(shared.command_timeout, conn.pipe(&pipe)).await;
                if shared.cluster
                    && let Ok(mut b) = shared.breaker.lock()
                {
                    match &r {
                        Ok(Ok(_)) => b.answered(slot),
                        Err(_) => b.trip(slot),
                        Ok(Err(_)) => {}
                    }
                }
                r
            }
        });
        let mut answers = Vec::with_capacity(groups.len());
        for r in futures_util::future::join_all(pipes).await {
            match r {
                Ok(Ok(a)) => answers.push(a),
                Ok(Err(e)) => return Err(self.failed("lookup", &e)),
                Err(_) => {
                    self.shared.refresh.notify_one();
                    return Err(self.failed("lookup", &"timed out"));
                }
            }
        }
        let mut out = vec![Value::Nil; facts.len()];
        for ((_, idx), mut values) in groups.iter().zip(answers) {
            if values.len() != idx.len() + 1 {
                return Err(self.failed("lookup", &"short pipeline reply"));
            }
            let marker = values.pop().unwrap_or(Value::Nil);
            let marker = as_opt_string(&marker)
                .map_err(|()| self.failed("lookup", &"unexpected epoch marker reply"))?;
            if let Err(why) = self.shared.epoch.check(marker.as_deref()) {
                self.lost_metric();
                return Err(StoreError(format!("redis: revocation set lost: {why}")));
            }
            for (&i, v) in idx.iter().zip(values) {
                if let Some(slot) = out.get_mut(i) {
                    *slot = v;
                }
            }
        }
        self.shared.answered(true);
        Ok(out)
    }

    fn lost_metric(&self) {
        self.shared
            .metrics
            .redis_errors
            .with_label_values(&["epoch"])
            .inc();
    }

    /// The answer from the local cache alone, when that is enough (see [`CacheView::answer`]).
    fn cached_answer(&self, token: TokenRef<'_>) -> Option<Status> {
        CacheView::read(&self.shared.cache, token).answer(token)
    }

    async fn lookup_inner(
        &self,
        token: TokenRef<'_>,
    ) -> (Result<Status, StoreError>, &'static str) {
        let cache = &self.shared.cache;
        let epoch = cache.epoch();
        // Anything cached that already revokes, or every fact cached, answers without a round
        // trip.
        let mut view = CacheView::read(cache, token);
        if let Some(status) = view.answer(token) {
            return (Ok(status), "cache");
        }
        let mut facts = Vec::with_capacity(3);
        if let Some((j, None)) = view.jti {
            facts.push(Fact::Jti(j));
        }
        if let Some((p, None)) = view.parent {
            facts.push(Fact::Jti(p));
        }
        if let Some((s, None)) = view.cutoff {
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
                    for slot in [&mut view.jti, &mut view.parent] {
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
                    if let Some((_, c)) = &mut view.cutoff {
                        *c = Some(cut);
                    }
                }
            }
        }
        (Ok(view.status(token)), "redis")
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

    fn lookup_now(
        &self,
        token: TokenRef<'_>,
    ) -> Option<(Result<Status, StoreError>, &'static str)> {
        self.cached_answer(token).map(|s| (Ok(s), "cache"))
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
            self.write::<()>(cmd).await?;
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
            let stored: i64 = self.write(cmd).await?;
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
            // As a script so that it is routed by its key on a cluster (with `WAIT`).
            let mut cmd = redis::cmd("EVAL");
            cmd.arg("return redis.call('DEL', KEYS[1])")
                .arg(1)
                .arg(self.jti_key(jti));
            self.write::<i64>(cmd).await?;
            self.announce(format!("{EVENT_JTI}{jti}"), None).await;
            Ok(())
        })
    }

    fn unrevoke_subject<'a>(&'a self, sub: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            // As a script so that it is routed by its key on a cluster (with `WAIT`).
            let mut cmd = redis::cmd("EVAL");
            cmd.arg("return redis.call('DEL', KEYS[1])")
                .arg(1)
                .arg(self.sub_key(sub));
            self.write::<i64>(cmd).await?;
            self.announce(format!("{EVENT_SUB}{sub}"), None).await;
            Ok(())
        })
    }

    fn list_recent(&self, limit: usize) -> BoxFuture<'_, Result<Vec<RevocationEntry>, StoreError>> {
        Box::pin(self.list(limit))
    }

    fn ready(&self) -> bool {
        self.not_ready_reason().is_none()
    }

    fn not_ready_reason(&self) -> Option<String> {
        if !self.shared.healthy.load(Ordering::Relaxed) {
            return Some("revocation store unreachable".into());
        }
        if let Some(why) = self.shared.epoch.reason() {
            return Some(format!("revocation set lost ({why})"));
        }
        if !self.shared.cache.enabled() {
            let why = self
                .shared
                .subscription_error
                .lock()
                .ok()
                .and_then(|w| w.clone())
                .unwrap_or_else(|| "not subscribed yet".into());
            return Some(format!("revocation events subscription down ({why})"));
        }
        None
    }
}
