//! Token revocation: the store trait and its implementations.

mod memory;
mod rule;

pub use memory::{MemoryStore, RevocationEntry};
pub use rule::evaluate;

use std::future::Future;
use std::pin::Pin;

/// A boxed future, so stores can sit behind `dyn RevocationStore`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The facts of a token that revocation looks at.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenRef<'a> {
    /// `jti`.
    pub jti: Option<&'a str>,
    /// `sub`.
    pub sub: Option<&'a str>,
    /// `iat`; a token without one counts as issued at `-inf` for subject cut-offs (fail closed).
    pub iat: Option<i64>,
    /// `parent_jti`.
    pub parent_jti: Option<&'a str>,
}

/// Why a token is revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokedBy {
    /// Its own `jti`.
    Jti,
    /// A subject cut-off at or after its `iat`.
    Subject,
    /// Its `parent_jti` is revoked.
    Parent,
}

/// The answer of a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Not revoked.
    Active,
    /// Revoked.
    Revoked(RevokedBy),
}

/// A store could not answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("revocation store unavailable: {0}")]
pub struct StoreError(pub String);

/// A revocation store: memory (embedded default) or Redis.
pub trait RevocationStore: Send + Sync {
    /// A short name for metrics and logs (`memory`, `redis`).
    fn kind(&self) -> &'static str {
        "memory"
    }
    /// Looks up every fact of `token` (one round trip at most for a remote store).
    fn status<'a>(&'a self, token: TokenRef<'a>) -> BoxFuture<'a, Result<Status, StoreError>>;
    /// Revokes one token id until `expires_at` (unix seconds; after that the token is dead anyway).
    fn revoke_jti<'a>(
        &'a self,
        jti: &'a str,
        expires_at: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Revokes every token of `sub` issued at or before `before` (unix seconds).
    fn revoke_subject<'a>(
        &'a self,
        sub: &'a str,
        before: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Lifts a `jti` revocation.
    fn unrevoke_jti<'a>(&'a self, jti: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Lifts a subject cut-off.
    fn unrevoke_subject<'a>(&'a self, sub: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Like [`RevocationStore::status`], also naming where the answer came from (`cache`, or
    /// [`RevocationStore::kind`]) for the lookup metrics.
    fn lookup<'a>(
        &'a self,
        token: TokenRef<'a>,
    ) -> BoxFuture<'a, (Result<Status, StoreError>, &'static str)> {
        Box::pin(async move { (self.status(token).await, self.kind()) })
    }
    /// [`RevocationStore::lookup`]'s answer when it needs no I/O (the memory store always, a
    /// remote store from its local cache), so that a check can finish without awaiting; `None`
    /// sends the caller to `lookup`.
    fn lookup_now(
        &self,
        token: TokenRef<'_>,
    ) -> Option<(Result<Status, StoreError>, &'static str)> {
        let _ = token;
        None
    }
    /// The `limit` most recent revocations, newest first (empty where a store keeps no record).
    fn list_recent(&self, limit: usize) -> BoxFuture<'_, Result<Vec<RevocationEntry>, StoreError>> {
        let _ = limit;
        Box::pin(std::future::ready(Ok(Vec::new())))
    }
    /// Whether the store can answer right now (for `/readyz`).
    fn ready(&self) -> bool {
        true
    }
    /// Why the store is not ready (for `/readyz`), if it is not.
    fn not_ready_reason(&self) -> Option<String> {
        None
    }
}
