//! The embedded in-memory revocation store (the default).
//!
//! Everything is synchronous behind one `RwLock`; the trait's futures are ready at once. Revoked
//! `jti`s are kept until their token would have expired plus a retention grace (the verifier
//! accepts tokens up to `clock_skew` past `exp`, so dropping an entry exactly at `exp` would revive
//! a revoked token for that window). Expired entries are purged on every write, oldest first, so
//! memory stays bounded by the revocations of the last token lifetime. Subject cut-offs stay until
//! lifted: a token without `iat` is revoked by any cut-off of its subject (fail closed), so a
//! cut-off can never be known to be obsolete.

use std::collections::{BTreeSet, HashMap};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use super::{BoxFuture, RevocationStore, RevokedBy, Status, StoreError, TokenRef};

/// Default time a `jti` entry outlives its `expires_at`.
pub const DEFAULT_RETENTION_GRACE: Duration = Duration::from_secs(15 * 60);

/// One revocation, as listed by [`MemoryStore::list_recent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevocationEntry {
    /// A revoked token id.
    Jti {
        /// The token id.
        jti: String,
        /// When the token expires (unix seconds).
        expires_at: i64,
        /// When it was revoked (unix seconds).
        revoked_at: i64,
    },
    /// A subject cut-off.
    Subject {
        /// The subject.
        sub: String,
        /// Tokens issued at or before this time (unix seconds) are revoked.
        before: i64,
        /// When the cut-off was set (unix seconds).
        revoked_at: i64,
    },
}

impl RevocationEntry {
    /// Newest first, then jtis before subjects, then by name: a total, deterministic order.
    fn sort_key(&self) -> (std::cmp::Reverse<i64>, u8, &str) {
        match self {
            RevocationEntry::Jti {
                jti, revoked_at, ..
            } => (std::cmp::Reverse(*revoked_at), 0, jti),
            RevocationEntry::Subject {
                sub, revoked_at, ..
            } => (std::cmp::Reverse(*revoked_at), 1, sub),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct JtiEntry {
    expires_at: i64,
    revoked_at: i64,
}

#[derive(Debug, Clone, Copy)]
struct SubjectEntry {
    before: i64,
    revoked_at: i64,
}

#[derive(Debug, Default)]
struct Inner {
    jtis: HashMap<String, JtiEntry>,
    /// `(expires_at, jti)` for purging in expiry order.
    by_expiry: BTreeSet<(i64, String)>,
    subjects: HashMap<String, SubjectEntry>,
}

/// In-memory revocation store: per replica, lost on restart.
#[derive(Debug)]
pub struct MemoryStore {
    inner: RwLock<Inner>,
    grace_secs: i64,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store with [`DEFAULT_RETENTION_GRACE`].
    pub fn new() -> MemoryStore {
        Self::with_retention_grace(DEFAULT_RETENTION_GRACE)
    }

    /// An empty store keeping `jti` entries `grace` past their `expires_at`. Use at least the largest
    /// `clock_skew` of any provider.
    pub fn with_retention_grace(grace: Duration) -> MemoryStore {
        MemoryStore {
            inner: RwLock::new(Inner::default()),
            grace_secs: i64::try_from(grace.as_secs()).unwrap_or(i64::MAX),
        }
    }

    /// Number of revoked `jti`s held (expired ones included until the next purge).
    pub fn jti_count(&self) -> usize {
        self.read().jtis.len()
    }

    /// Number of subject cut-offs held.
    pub fn subject_count(&self) -> usize {
        self.read().subjects.len()
    }

    /// The `limit` most recent revocations, newest first.
    pub fn list_recent(&self, limit: usize) -> Vec<RevocationEntry> {
        let inner = self.read();
        let mut all: Vec<RevocationEntry> = inner
            .jtis
            .iter()
            .map(|(jti, e)| RevocationEntry::Jti {
                jti: jti.clone(),
                expires_at: e.expires_at,
                revoked_at: e.revoked_at,
            })
            .chain(
                inner
                    .subjects
                    .iter()
                    .map(|(sub, e)| RevocationEntry::Subject {
                        sub: sub.clone(),
                        before: e.before,
                        revoked_at: e.revoked_at,
                    }),
            )
            .collect();
        drop(inner);
        all.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        all.truncate(limit);
        all
    }

    /// The lookup, synchronous.
    pub fn status_now(&self, token: TokenRef<'_>) -> Status {
        let inner = self.read();
        if token.jti.is_some_and(|j| inner.jtis.contains_key(j)) {
            return Status::Revoked(RevokedBy::Jti);
        }
        if token.parent_jti.is_some_and(|p| inner.jtis.contains_key(p)) {
            return Status::Revoked(RevokedBy::Parent);
        }
        if let Some(cut) = token.sub.and_then(|s| inner.subjects.get(s)) {
            // No `iat`: counts as issued at -inf, so any cut-off revokes it.
            if token.iat.is_none_or(|iat| iat <= cut.before) {
                return Status::Revoked(RevokedBy::Subject);
            }
        }
        Status::Active
    }

    /// Revokes `jti` until `expires_at`, at time `now` (purges expired entries first).
    fn revoke_jti_at(&self, jti: &str, expires_at: i64, now: i64) {
        let mut inner = self.write();
        self.purge(&mut inner, now);
        let entry = match inner.jtis.get(jti) {
            // Revoking again can only lengthen the revocation.
            Some(old) if old.expires_at >= expires_at => return,
            Some(old) => {
                let old_exp = old.expires_at;
                inner.by_expiry.remove(&(old_exp, jti.to_string()));
                JtiEntry {
                    expires_at,
                    revoked_at: now,
                }
            }
            None => JtiEntry {
                expires_at,
                revoked_at: now,
            },
        };
        inner.jtis.insert(jti.to_string(), entry);
        inner.by_expiry.insert((expires_at, jti.to_string()));
    }

    /// Sets the cut-off of `sub`, at time `now` (a later cut-off replaces an earlier one, never
    /// the reverse; use unrevoke to lower it).
    fn revoke_subject_at(&self, sub: &str, before: i64, now: i64) {
        let mut inner = self.write();
        self.purge(&mut inner, now);
        let before = inner
            .subjects
            .get(sub)
            .map_or(before, |old| old.before.max(before));
        inner.subjects.insert(
            sub.to_string(),
            SubjectEntry {
                before,
                revoked_at: now,
            },
        );
    }

    fn unrevoke_jti_now(&self, jti: &str) {
        let mut inner = self.write();
        if let Some(old) = inner.jtis.remove(jti) {
            inner.by_expiry.remove(&(old.expires_at, jti.to_string()));
        }
    }

    fn unrevoke_subject_now(&self, sub: &str) {
        self.write().subjects.remove(sub);
    }

    /// Drops every `jti` entry whose `expires_at + grace` is before `now`.
    fn purge(&self, inner: &mut Inner, now: i64) {
        while let Some((exp, _)) = inner.by_expiry.first() {
            if exp.saturating_add(self.grace_secs) >= now {
                break;
            }
            if let Some((_, jti)) = inner.by_expiry.pop_first() {
                inner.jtis.remove(&jti);
            }
        }
    }

    // A poisoned lock only means another thread panicked mid-update; the maps stay usable (at worst
    // an index entry is missing), and refusing every lookup forever would be worse.
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

use crate::clock::unix_now;

impl RevocationStore for MemoryStore {
    fn status<'a>(&'a self, token: TokenRef<'a>) -> BoxFuture<'a, Result<Status, StoreError>> {
        let status = self.status_now(token);
        Box::pin(std::future::ready(Ok(status)))
    }

    fn revoke_jti<'a>(
        &'a self,
        jti: &'a str,
        expires_at: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.revoke_jti_at(jti, expires_at, unix_now());
        Box::pin(std::future::ready(Ok(())))
    }

    fn revoke_subject<'a>(
        &'a self,
        sub: &'a str,
        before: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.revoke_subject_at(sub, before, unix_now());
        Box::pin(std::future::ready(Ok(())))
    }

    fn unrevoke_jti<'a>(&'a self, jti: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        self.unrevoke_jti_now(jti);
        Box::pin(std::future::ready(Ok(())))
    }

    fn unrevoke_subject<'a>(&'a self, sub: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        self.unrevoke_subject_now(sub);
        Box::pin(std::future::ready(Ok(())))
    }

    fn list_recent(&self, limit: usize) -> BoxFuture<'_, Result<Vec<RevocationEntry>, StoreError>> {
        Box::pin(std::future::ready(Ok(MemoryStore::list_recent(
            self, limit,
        ))))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn tok<'a>(
        jti: Option<&'a str>,
        sub: Option<&'a str>,
        iat: Option<i64>,
        parent: Option<&'a str>,
    ) -> TokenRef<'a> {
        TokenRef {
            jti,
            sub,
            iat,
            parent_jti: parent,
        }
    }

    #[tokio::test]
    async fn jti_revoke_and_unrevoke() {
        let s = MemoryStore::new();
        let t = tok(Some("a"), Some("alice"), Some(100), None);
        assert_eq!(s.status(t).await.unwrap(), Status::Active);
        s.revoke_jti("a", i64::MAX).await.unwrap();
        assert_eq!(s.status(t).await.unwrap(), Status::Revoked(RevokedBy::Jti));
        assert_eq!(
            s.status(tok(Some("b"), None, None, None)).await.unwrap(),
            Status::Active
        );
        s.unrevoke_jti("a").await.unwrap();
        assert_eq!(s.status(t).await.unwrap(), Status::Active);
        assert_eq!(s.jti_count(), 0);
        // Unrevoking something unknown is fine.
        s.unrevoke_jti("nope").await.unwrap();
        s.unrevoke_subject("nope").await.unwrap();
    }

    #[tokio::test]
    async fn subject_cutoff() {
        let s = MemoryStore::new();
        s.revoke_subject("alice", 1000).await.unwrap();
        let at = |iat| tok(Some("j"), Some("alice"), iat, None);
        assert_eq!(
            s.status(at(Some(999))).await.unwrap(),
            Status::Revoked(RevokedBy::Subject)
        );
        assert_eq!(
            s.status(at(Some(1000))).await.unwrap(),
            Status::Revoked(RevokedBy::Subject)
        );
        assert_eq!(s.status(at(Some(1001))).await.unwrap(), Status::Active);
        // No iat: fail closed.
        assert_eq!(
            s.status(at(None)).await.unwrap(),
            Status::Revoked(RevokedBy::Subject)
        );
        // Other subjects, and tokens without sub, are untouched.
        assert_eq!(
            s.status(tok(None, Some("bob"), None, None)).await.unwrap(),
            Status::Active
        );
        assert_eq!(
            s.status(tok(None, None, None, None)).await.unwrap(),
            Status::Active
        );
        // A lower cut-off does not shorten the revocation.
        s.revoke_subject("alice", 500).await.unwrap();
        assert_eq!(
            s.status(at(Some(999))).await.unwrap(),
            Status::Revoked(RevokedBy::Subject)
        );
        s.revoke_subject("alice", 2000).await.unwrap();
        assert_eq!(
            s.status(at(Some(1500))).await.unwrap(),
            Status::Revoked(RevokedBy::Subject)
        );
        s.unrevoke_subject("alice").await.unwrap();
        assert_eq!(s.status(at(None)).await.unwrap(), Status::Active);
    }

    #[tokio::test]
    async fn parent_cascade_and_order() {
        let s = MemoryStore::new();
        s.revoke_jti("parent", i64::MAX).await.unwrap();
        let child = tok(Some("child"), Some("alice"), Some(10), Some("parent"));
        assert_eq!(
            s.status(child).await.unwrap(),
            Status::Revoked(RevokedBy::Parent)
        );

        // Jti before Parent before Subject.
        s.revoke_subject("alice", 100).await.unwrap();
        assert_eq!(
            s.status(child).await.unwrap(),
            Status::Revoked(RevokedBy::Parent)
        );
        s.revoke_jti("child", i64::MAX).await.unwrap();
        assert_eq!(
            s.status(child).await.unwrap(),
            Status::Revoked(RevokedBy::Jti)
        );
        s.unrevoke_jti("child").await.unwrap();
        s.unrevoke_jti("parent").await.unwrap();
        assert_eq!(
            s.status(child).await.unwrap(),
            Status::Revoked(RevokedBy::Subject)
        );

        // A token's own jti is not its parent: a revoked `parent_jti` value only matters as a jti.
        let orphan = tok(Some("x"), None, None, Some("unknown"));
        assert_eq!(s.status(orphan).await.unwrap(), Status::Active);
    }

    #[test]
    fn purge_respects_grace() {
        let s = MemoryStore::with_retention_grace(Duration::from_secs(60));
        s.revoke_jti_at("old", 1000, 900);
        s.revoke_jti_at("new", 5000, 900);
        let old = tok(Some("old"), None, None, None);

        // Still held through exp + grace (a verifier with skew may still accept the token).
        s.revoke_jti_at("x", 9000, 1060);
        assert_eq!(s.status_now(old), Status::Revoked(RevokedBy::Jti));
        assert_eq!(s.jti_count(), 3);

        // Purged on the next write after exp + grace.
        s.revoke_jti_at("y", 9000, 1061);
        assert_eq!(s.status_now(old), Status::Active);
        assert_eq!(s.jti_count(), 3);
        assert_eq!(
            s.status_now(tok(Some("new"), None, None, None)),
            Status::Revoked(RevokedBy::Jti)
        );

        // Subject writes purge too.
        s.revoke_subject_at("alice", 1, 100_000);
        assert_eq!(s.jti_count(), 0);
        assert_eq!(s.subject_count(), 1);
    }

    #[test]
    fn revoking_again_keeps_the_longer_expiry() {
        let s = MemoryStore::with_retention_grace(Duration::ZERO);
        s.revoke_jti_at("a", 2000, 0);
        s.revoke_jti_at("a", 1000, 0);
        s.revoke_jti_at("z", 9999, 1500);
        assert_eq!(
            s.status_now(tok(Some("a"), None, None, None)),
            Status::Revoked(RevokedBy::Jti)
        );
        s.revoke_jti_at("a", 3000, 1500);
        s.revoke_jti_at("z", 9999, 2500);
        assert_eq!(
            s.status_now(tok(Some("a"), None, None, None)),
            Status::Revoked(RevokedBy::Jti)
        );
        s.revoke_jti_at("z", 9999, 3001);
        assert_eq!(
            s.status_now(tok(Some("a"), None, None, None)),
            Status::Active
        );
        // The expiry index holds exactly the live entries.
        assert_eq!(s.read().by_expiry.len(), s.jti_count());
    }

    #[test]
    fn bounded_by_time() {
        let s = MemoryStore::with_retention_grace(Duration::from_secs(10));
        // Tokens living 60 s, one revocation per second for an hour.
        for now in 0..3600 {
            s.revoke_jti_at(&format!("j{now}"), now + 60, now);
        }
        assert!(s.jti_count() <= 72, "held {}", s.jti_count());
        assert_eq!(s.read().by_expiry.len(), s.jti_count());
    }

    #[test]
    fn extreme_values() {
        let s = MemoryStore::with_retention_grace(Duration::MAX);
        s.revoke_jti_at("max", i64::MAX, i64::MAX);
        s.revoke_jti_at("min", i64::MIN, i64::MAX);
        assert_eq!(s.jti_count(), 2);
        s.revoke_subject_at("s", i64::MIN, 0);
        assert_eq!(
            s.status_now(tok(None, Some("s"), Some(i64::MIN), None)),
            Status::Revoked(RevokedBy::Subject)
        );
        assert_eq!(
            s.status_now(tok(None, Some("s"), Some(i64::MIN + 1), None)),
            Status::Active
        );
    }

    #[test]
    fn list_recent_newest_first() {
        let s = MemoryStore::new();
        s.revoke_jti_at("a", 10_000, 100);
        s.revoke_subject_at("alice", 50, 200);
        s.revoke_jti_at("b", 10_000, 300);
        let all = s.list_recent(10);
        assert_eq!(
            all,
            vec![
                RevocationEntry::Jti {
                    jti: "b".into(),
                    expires_at: 10_000,
                    revoked_at: 300
                },
                RevocationEntry::Subject {
                    sub: "alice".into(),
                    before: 50,
                    revoked_at: 200
                },
                RevocationEntry::Jti {
                    jti: "a".into(),
                    expires_at: 10_000,
                    revoked_at: 100
                },
            ]
        );
        assert_eq!(s.list_recent(1).len(), 1);
        assert!(s.list_recent(0).is_empty());
    }

    #[tokio::test]
    async fn works_as_trait_object() {
        let s: Arc<dyn RevocationStore> = Arc::new(MemoryStore::new());
        s.revoke_jti("a", i64::MAX).await.unwrap();
        assert_eq!(
            s.status(tok(Some("a"), None, None, None)).await.unwrap(),
            Status::Revoked(RevokedBy::Jti)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrency_smoke() {
        let s = Arc::new(MemoryStore::new());
        let mut tasks = Vec::new();
        for t in 0..64 {
            let s = Arc::clone(&s);
            tasks.push(tokio::spawn(async move {
                for i in 0..200 {
                    let jti = format!("t{t}-{i}");
                    let r = tok(Some(&jti), Some("shared"), Some(1), None);
                    assert_eq!(s.status(r).await.unwrap(), Status::Active);
                    s.revoke_jti(&jti, i64::MAX).await.unwrap();
                    assert_eq!(s.status(r).await.unwrap(), Status::Revoked(RevokedBy::Jti));
                    if i % 50 == 0 {
                        s.revoke_subject(&format!("sub{t}"), i).await.unwrap();
                    }
                    tokio::task::yield_now().await;
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(s.jti_count(), 64 * 200);
        assert_eq!(s.subject_count(), 64);
        assert_eq!(s.read().by_expiry.len(), 64 * 200);
    }
}
