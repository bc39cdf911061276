//! Where a provider's verification keys come from: a trait the host implements (the server
//! fetches JWKS over HTTPS, discovery or a file; a test hands over a fixed set).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::jwk::KeySet;

/// A boxed future, so key sources can sit behind `dyn KeySource`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One provider's current keys.
pub trait KeySource: Send + Sync {
    /// The keys held now; `None` until the first successful load.
    fn current(&self) -> Option<Arc<KeySet>>;
    /// Whether the keys held now include the key with this
    /// [fingerprint](super::jwk::VerifyingKey::fingerprint). A verified-token cache hit counts only
    /// while this holds, so a key removed from the JWKS takes its cached tokens with it.
    fn holds(&self, fingerprint: u64) -> bool;
    /// True once keys are held.
    fn is_ready(&self) -> bool {
        self.current().is_some()
    }
    /// A token named a `kid` the current keys lack: fetch again if the source allows it now
    /// (rate-limited). Resolves to true when the keys may have changed.
    fn refetch_for_unknown_kid(&self) -> BoxFuture<'_, bool> {
        Box::pin(std::future::ready(false))
    }
}

/// A fixed key set (tools, tests, and a host that manages keys itself).
#[derive(Debug, Clone)]
pub struct StaticKeys(pub Arc<KeySet>);

impl KeySource for StaticKeys {
    fn current(&self) -> Option<Arc<KeySet>> {
        Some(self.0.clone())
    }
    fn holds(&self, fingerprint: u64) -> bool {
        self.0.holds(fingerprint)
    }
}
