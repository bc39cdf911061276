//! The local lookup cache in front of a shared (remote) revocation store.
//!
//! Facts are cached one by one — "is this `jti` revoked", "what is this subject's cut-off" — for at
//! most `cache_ttl`, so a repeated token costs no round trip. Every revocation is announced on the
//! store's events channel and the affected entry is dropped at once; a lost message is bounded by
//! `cache_ttl`. The cache only fills while the events subscription is live: without it, an
//! invalidation could be missed for the whole TTL, so every lookup goes to the store instead.
//!
//! A lookup racing an invalidation must not put a stale answer back: every invalidation bumps an
//! epoch first, and a fill re-checks the epoch after inserting and removes its entry if it moved.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mesh_authz_core::revocation::{Status, TokenRef, evaluate};
use quick_cache::sync::Cache;

use crate::telemetry::Metrics;

/// Event payload prefix of a `jti` change (`jti:{jti}`), the key's suffix in the data model.
pub(super) const EVENT_JTI: &str = "jti:";
/// Event payload prefix of a subject change (`sub:{sub}`).
pub(super) const EVENT_SUB: &str = "sub:";

/// One kind of fact, each kept until its own deadline. A bounded map (quick_cache, its keys
/// hashed with a per-process random seed) whose entries carry the instant they stop being used:
/// a read is one hash and a shard read-lock, which is what a request pays on a cache hit. (A
/// cache with its own expiry and eviction bookkeeping cost a request several times that.) An
/// expired entry is never answered and is dropped when read; capacity bounds what stays.
struct Facts<T> {
    map: Cache<String, (T, Instant)>,
    ttl: Duration,
}

impl<T: Clone> Facts<T> {
    fn new(ttl: Duration, capacity: u64) -> Self {
        Self {
            map: Cache::new(usize::try_from(capacity).unwrap_or(usize::MAX).max(1)),
            ttl,
        }
    }

    fn get(&self, key: &str, now: Instant) -> Option<T> {
        let (value, until) = self.map.get(key)?;
        if now < until {
            return Some(value);
        }
        self.map.remove(key);
        None
    }

    fn insert(&self, key: &str, value: T) {
        let until = Instant::now() + self.ttl;
        self.map.insert(key.to_string(), (value, until));
    }

    fn remove(&self, key: &str) {
        self.map.remove(key);
    }

    fn clear(&self) {
        self.map.clear();
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// Cached facts, dropped on invalidation events.
pub(super) struct LookupCache {
    jtis: Facts<bool>,
    subjects: Facts<Option<i64>>,
    epoch: AtomicU64,
    enabled: AtomicBool,
    metrics: Metrics,
}

impl std::fmt::Debug for LookupCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LookupCache")
            .field("jtis", &self.jtis.len())
            .field("subjects", &self.subjects.len())
            .field("enabled", &self.enabled.load(Ordering::Relaxed))
            .finish()
    }
}

impl LookupCache {
    /// A cache keeping each fact for `ttl`, at most `capacity` facts of each kind. It starts
    /// disabled (see [`LookupCache::set_enabled`]).
    pub(super) fn new(ttl: Duration, capacity: u64, metrics: Metrics) -> LookupCache {
        LookupCache {
            jtis: Facts::new(ttl, capacity),
            subjects: Facts::new(ttl, capacity),
            epoch: AtomicU64::new(0),
            enabled: AtomicBool::new(false),
            metrics,
        }
    }

    /// Turns filling on (the invalidation feed is live) or off (it is not; everything cached is
    /// dropped, since invalidations may be missed from now on).
    pub(super) fn set_enabled(&self, enabled: bool) {
        let was = self.enabled.swap(enabled, Ordering::SeqCst);
        if was != enabled {
            self.invalidate_all();
        }
    }

    /// Whether the cache is filling.
    pub(super) fn enabled(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }

    /// The invalidation epoch; read it before a fetch and pass it to the `put_*` calls.
    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Whether `jti` is revoked, if known at `now`.
    pub(super) fn jti(&self, jti: &str, now: Instant) -> Option<bool> {
        self.jtis.get(jti, now)
    }

    /// The cut-off of `sub` (`None`: no cut-off), if known at `now`.
    pub(super) fn subject(&self, sub: &str, now: Instant) -> Option<Option<i64>> {
        self.subjects.get(sub, now)
    }

    /// Caches a fetched `jti` fact unless an invalidation happened since `epoch`.
    pub(super) fn put_jti(&self, jti: &str, revoked: bool, epoch: u64) {
        if !self.enabled() || self.epoch() != epoch {
            return;
        }
        self.jtis.insert(jti, revoked);
        if self.epoch() != epoch {
            self.jtis.remove(jti);
        }
    }

    /// Caches a fetched subject fact unless an invalidation happened since `epoch`.
    pub(super) fn put_subject(&self, sub: &str, cutoff: Option<i64>, epoch: u64) {
        if !self.enabled() || self.epoch() != epoch {
            return;
        }
        self.subjects.insert(sub, cutoff);
        if self.epoch() != epoch {
            self.subjects.remove(sub);
        }
    }

    /// Applies one event payload: `jti:{jti}` or `sub:{sub}`; anything else drops everything.
    pub(super) fn invalidate_event(&self, payload: &str) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        if let Some(jti) = payload.strip_prefix(EVENT_JTI) {
            self.jtis.remove(jti);
            self.count("jti");
        } else if let Some(sub) = payload.strip_prefix(EVENT_SUB) {
            self.subjects.remove(sub);
            self.count("sub");
        } else {
            self.clear();
        }
    }

    /// Drops every entry.
    pub(super) fn invalidate_all(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.clear();
    }

    fn clear(&self) {
        self.jtis.clear();
        self.subjects.clear();
        self.count("all");
    }

    fn count(&self, kind: &str) {
        self.metrics
            .revocation_invalidations
            .with_label_values(&[kind])
            .inc();
    }
}

/// What the local cache knows of a token's facts: per fact its name and, when cached, its value
/// (`jti` and `parent`: revoked or not; `cutoff`: the subject's cut-off, if any).
pub(super) struct CacheView<'t> {
    pub(super) jti: Option<(&'t str, Option<bool>)>,
    pub(super) parent: Option<(&'t str, Option<bool>)>,
    pub(super) cutoff: Option<(&'t str, Option<Option<i64>>)>,
}

impl<'t> CacheView<'t> {
    pub(super) fn read(cache: &LookupCache, token: TokenRef<'t>) -> Self {
        let now = Instant::now();
        Self {
            jti: token.jti.map(|j| (j, cache.jti(j, now))),
            parent: token.parent_jti.map(|p| (p, cache.jti(p, now))),
            cutoff: token.sub.map(|s| (s, cache.subject(s, now))),
        }
    }

    /// The rule applied to what is known (a fact not cached counts as not revoking).
    pub(super) fn status(&self, token: TokenRef<'_>) -> Status {
        evaluate(
            token,
            self.jti.is_some_and(|(_, r)| r == Some(true)),
            self.parent.is_some_and(|(_, r)| r == Some(true)),
            self.cutoff.and_then(|(_, c)| c.flatten()),
        )
    }

    /// The answer without a round trip, when there is one: a cached fact already revokes, or
    /// every fact is cached.
    pub(super) fn answer(&self, token: TokenRef<'_>) -> Option<Status> {
        let status = self.status(token);
        let complete = self.jti.is_none_or(|(_, r)| r.is_some())
            && self.parent.is_none_or(|(_, r)| r.is_some())
            && self.cutoff.is_none_or(|(_, c)| c.is_some());
        (status != Status::Active || complete).then_some(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> LookupCache {
        let c = LookupCache::new(Duration::from_secs(60), 100, Metrics::new());
        c.set_enabled(true);
        c
    }

    #[test]
    fn fills_only_when_enabled() {
        let c = LookupCache::new(Duration::from_secs(60), 100, Metrics::new());
        c.put_jti("a", false, c.epoch());
        assert_eq!(c.jti("a", Instant::now()), None);
        c.set_enabled(true);
        c.put_jti("a", false, c.epoch());
        assert_eq!(c.jti("a", Instant::now()), Some(false));
        c.set_enabled(false);
        assert_eq!(
            c.jti("a", Instant::now()),
            None,
            "disabling drops everything"
        );
    }

    #[test]
    fn events_drop_the_named_entry() {
        let c = cache();
        c.put_jti("a", false, c.epoch());
        c.put_jti("b", false, c.epoch());
        c.put_subject("alice", None, c.epoch());
        c.invalidate_event("jti:a");
        assert_eq!(c.jti("a", Instant::now()), None);
        assert_eq!(c.jti("b", Instant::now()), Some(false));
        assert_eq!(c.subject("alice", Instant::now()), Some(None));
        c.invalidate_event("sub:alice");
        assert_eq!(c.subject("alice", Instant::now()), None);
        c.invalidate_event("garbage");
        assert_eq!(
            c.jti("b", Instant::now()),
            None,
            "an unknown event drops everything"
        );
    }

    #[test]
    fn stale_fill_after_invalidation_is_refused() {
        let c = cache();
        let before = c.epoch();
        c.invalidate_event("jti:x");
        c.put_jti("x", false, before);
        assert_eq!(c.jti("x", Instant::now()), None);
        c.put_subject("s", None, before);
        assert_eq!(c.subject("s", Instant::now()), None);
    }

    #[test]
    fn a_zero_ttl_caches_nothing_and_capacity_bounds_the_rest() {
        let c = LookupCache::new(Duration::ZERO, 100, Metrics::new());
        c.set_enabled(true);
        c.put_jti("a", true, c.epoch());
        assert_eq!(c.jti("a", Instant::now()), None);
        let c = cache();
        for i in 0..1000 {
            c.put_jti(&format!("j{i}"), false, c.epoch());
        }
        assert!(c.jtis.len() <= 100, "{} facts kept", c.jtis.len());
        // A fact is answered only before its deadline, whatever clock the reader passes.
        c.put_subject("alice", Some(7), c.epoch());
        let now = Instant::now();
        assert_eq!(c.subject("alice", now), Some(Some(7)));
        assert_eq!(c.subject("alice", now + Duration::from_secs(61)), None);
        assert_eq!(
            c.subject("alice", now),
            None,
            "an expired fact is dropped when read"
        );
    }

    #[test]
    fn entries_expire() {
        let c = LookupCache::new(Duration::from_millis(50), 100, Metrics::new());
        c.set_enabled(true);
        c.put_jti("a", false, c.epoch());
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(c.jti("a", Instant::now()), None);
    }
}
