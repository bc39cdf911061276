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
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use super::{BoxFuture, RevocationStore, Status, StoreError, TokenRef};

/// Default time a `jti` entry outlives its `expires_at`.
pub(crate) const DEFAULT_RETENTION_GRACE: Duration = Duration::from_secs(15 * 60);

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
    /// Revoked `jti`s plus subject cut-offs held, published by every write before it unlocks.
    /// While it is 0 a lookup answers without the lock: taking even a read lock writes the
    /// lock's word, a cache line every worker thread would share on every check.
    held: AtomicUsize,
    grace_secs: i64,
}

/// A write lock on the store that publishes [`MemoryStore::held`] when released, whichever way
/// the write ends.
struct WriteGuard<'a> {
    inner: RwLockWriteGuard<'a, Inner>,
    held: &'a AtomicUsize,
}

impl Deref for WriteGuard<'_> {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl DerefMut for WriteGuard<'_> {
    fn deref_mut(&mut self) -> &mut Inner {
        &mut self.inner
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        // Before the lock is released (the guard's field drops after this): a lookup that sees
        // 0 saw every revocation made before it.
        self.held.store(
            self.inner.jtis.len() + self.inner.subjects.len(),
            Ordering::Release,
        );
    }
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
            held: AtomicUsize::new(0),
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
        if self.held.load(Ordering::Acquire) == 0 {
            // Nothing revoked: the same rule with nothing found, without the lock.
            return super::rule::evaluate(token, false, false, None);
        }
        let inner = self.read();
        super::rule::evaluate(
            token,
            token.jti.is_some_and(|j| inner.jtis.contains_key(j)),
            token.parent_jti.is_some_and(|p| inner.jtis.contains_key(p)),
            token
                .sub
                .and_then(|s| inner.subjects.get(s))
                .map(|c| c.before),
        )
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

    fn write(&self) -> WriteGuard<'_> {
        WriteGuard {
            inner: self.inner.write().unwrap_or_else(PoisonError::into_inner),
            held: &self.held,
        }
    }
}

use crate::clock::unix_now;

impl RevocationStore for MemoryStore {
    fn status<'a>(&'a self, token: TokenRef<'a>) -> BoxFuture<'a, Result<Status, StoreError>> {
        let status = self.status_now(token);
        Box::pin(std::future::ready(Ok(status)))
    }

    fn lookup_now(
        &self,
        token: TokenRef<'_>,
    ) -> Option<(Result<Status, StoreError>, &'static str)> {
        Some((Ok(self.status_now(token)), self.kind()))
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
mod tests;
