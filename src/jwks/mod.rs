//! JWKS sources (file, URI, OIDC discovery), the per-provider key cache and its refresh loop.
//!
//! One [`JwksCache`] per provider. Checks only ever call [`JwksCache::current`] (a lock-free
//! `Arc` clone) and, on an unknown `kid`, [`JwksCache::refetch_for_unknown_kid`], which is
//! rate-limited and single-flight. Fetches are serialized, size-limited and time-limited; a failed
//! or refused fetch never replaces the key set already held.

mod fetch;
mod verifier;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::telemetry::Metrics;
use fetch::{build_client, get_limited, parse_discovery, read_file_limited};
use mesh_authz_core::config::{JwksConfig, JwksSource, ProviderConfig};
use mesh_authz_core::token::KeySource;
use mesh_authz_core::token::jwk::{DroppedKey, KeySet};
pub use verifier::{build_verifier, build_verifier_with_sink, load_all, start_verifier};

/// Largest JWKS or discovery document accepted, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Dropped keys logged one by one per document; the rest are summed up in one line.
const MAX_DROPPED_LOGGED: usize = 16;

/// Most redirects followed by one request.
const MAX_REDIRECTS: usize = 5;

/// First retry delay of the refresh loop after a failure; doubles up to `refresh_interval`.
const INITIAL_BACKOFF: Duration = Duration::from_secs(1);

/// A JWKS source could not be set up or fetched.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// Bad source configuration (e.g. an unreadable CA file).
    #[error("{0}")]
    Config(String),
    /// A fetch failed (network, TLS, timeout, non-2xx status, unreadable file).
    #[error("fetch failed: {0}")]
    Fetch(String),
    /// The document is larger than [`MAX_DOCUMENT_BYTES`].
    #[error("document is larger than {limit} bytes")]
    TooLarge {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// The OIDC discovery document was refused (not JSON, no `jwks_uri`, issuer mismatch…).
    #[error("discovery document refused: {0}")]
    Discovery(String),
    /// The document was refused.
    #[error(transparent)]
    Document(#[from] mesh_authz_core::token::jwk::JwkError),
}

impl JwksError {
    /// The `outcome` label of `mesh_authz_jwks_refresh_total` for this error.
    pub fn outcome(&self) -> &'static str {
        match self {
            JwksError::Config(_) | JwksError::Fetch(_) => "fetch_error",
            JwksError::TooLarge { .. } | JwksError::Discovery(_) | JwksError::Document(_) => {
                "invalid"
            }
        }
    }
}

/// Where a provider's JWKS comes from.
enum Source {
    /// A local file, re-read on every refresh.
    File(PathBuf),
    /// A fixed JWKS URL.
    Uri { client: reqwest::Client, url: Url },
    /// `jwks_uri` found through OIDC discovery.
    Discovery {
        client: reqwest::Client,
        discovery_url: Url,
        issuer: String,
    },
}

/// The per-provider JWKS key cache. Cheap to read, shared by every check (`Send + Sync`).
pub struct JwksCache {
    provider: String,
    /// The provider name, issuer and `jwks` settings it was built for: a reload keeps the cache
    /// (and its keys) for a provider whose three are unchanged.
    serves: (String, String, JwksConfig),
    source: Source,
    keys: ArcSwapOption<KeySet>,
    metrics: Metrics,
    refresh_interval: Duration,
    min_refetch_interval: Duration,
    fetch_timeout: Duration,
    /// Serializes fetches (so an older fetch never overwrites a newer set) and holds the `jwks_uri`
    /// found by discovery.
    fetch: Mutex<Option<Url>>,
    /// When the last unknown-kid refetch started; also the single-flight gate for those refetches.
    refetch: Mutex<Option<Instant>>,
    /// Incremented on every successful load.
    generation: AtomicU64,
    /// What was last logged at warn level: the failure of the last attempt (`None` after a
    /// success) and the keys the last document dropped, so a repeated failure or the same
    /// dropped keys are logged once, not at every retry or refresh.
    last_logged: std::sync::Mutex<LastLogged>,
}

/// See [`JwksCache::last_logged`].
#[derive(Default)]
struct LastLogged {
    failure: Option<String>,
    dropped: Vec<DroppedKey>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("provider", &self.provider)
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

impl JwksCache {
    /// Builds the cache for `provider`, whose source the compile step has already checked
    /// ([`ProviderConfig`]'s `jwks` as a [`JwksSource`]): the HTTP client with rustls and the
    /// optional extra CA from `ca_file`. No network I/O. Fails only on an unreadable CA bundle or
    /// a client that cannot be built.
    pub fn new(
        provider: &ProviderConfig,
        source: &JwksSource,
        metrics: Metrics,
    ) -> Result<Self, JwksError> {
        let cfg = &provider.jwks;
        let source = match source {
            JwksSource::File(path) => Source::File(path.clone()),
            JwksSource::Uri(url) => Source::Uri {
                client: build_client(provider, cfg)?,
                url: url.clone(),
            },
            JwksSource::Discovery {
                discovery_url,
                issuer,
            } => Source::Discovery {
                client: build_client(provider, cfg)?,
                discovery_url: discovery_url.clone(),
                issuer: issuer.clone(),
            },
        };
        Ok(Self {
            provider: provider.name.clone(),
            serves: (provider.name.clone(), provider.issuer.clone(), cfg.clone()),
            source,
            keys: ArcSwapOption::empty(),
            metrics,
            refresh_interval: cfg.refresh_interval,
            min_refetch_interval: cfg.min_refetch_interval,
            fetch_timeout: cfg.fetch_timeout,
            fetch: Mutex::new(None),
            refetch: Mutex::new(None),
            generation: AtomicU64::new(0),
            last_logged: std::sync::Mutex::new(LastLogged::default()),
        })
    }

    /// [`JwksCache::new`] with the source read from `provider.jwks` by the same rule the compile
    /// step uses, for a provider that did not come through a compiled config (tools, tests).
    pub fn from_provider(provider: &ProviderConfig, metrics: Metrics) -> Result<Self, JwksError> {
        let source = provider.jwks.source(&provider.issuer).map_err(|problems| {
            let text: Vec<String> = problems
                .into_iter()
                .map(|p| {
                    if p.key.is_empty() {
                        format!("jwks: {}", p.message)
                    } else {
                        format!("jwks.{}: {}", p.key, p.message)
                    }
                })
                .collect();
            JwksError::Config(format!("provider {:?}: {}", provider.name, text.join("; ")))
        })?;
        Self::new(provider, &source, metrics)
    }

    /// Whether this cache can serve `provider` as it is configured now (same name, issuer and
    /// `jwks` settings).
    pub fn serves(&self, provider: &ProviderConfig) -> bool {
        let (name, issuer, jwks) = &self.serves;
        *name == provider.name && *issuer == provider.issuer && *jwks == provider.jwks
    }

    /// The provider name this cache serves (for logs and metrics).
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The current good key set; `None` until the first successful load. Lock-free.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.keys.load_full()
    }

    /// True when the current key set holds a key with this
    /// [fingerprint](mesh_authz_core::token::jwk::VerifyingKey::fingerprint). Lock-free, no reference count.
    pub fn holds(&self, fingerprint: u64) -> bool {
        self.keys
            .load()
            .as_ref()
            .is_some_and(|set| set.holds(fingerprint))
    }

    /// True once a key set is held.
    pub fn is_ready(&self) -> bool {
        self.keys.load().is_some()
    }

    /// One fetch now (discovery first if configured). A failed or garbage fetch never replaces a
    /// good key set. Logs and counts the outcome.
    pub async fn refresh_now(&self) -> Result<(), JwksError> {
        let mut discovered = self.fetch.lock().await;
        let (result, dropped) = self.fetch_and_parse(&mut discovered).await;
        if let Some(dropped) = &dropped {
            self.report_dropped(dropped);
        }
        let outcome = match &result {
            Ok(set) => {
                let count = set.len();
                self.keys.store(Some(Arc::clone(set)));
                self.generation.fetch_add(1, Ordering::AcqRel);
                self.metrics
                    .jwks_keys
                    .with_label_values(&[self.provider.as_str()])
                    .set(i64::try_from(count).unwrap_or(i64::MAX));
                let recovered = self.logged().failure.take().is_some();
                if recovered {
                    tracing::info!(provider = %self.provider, keys = count, "JWKS loaded again");
                } else {
                    tracing::debug!(provider = %self.provider, keys = count, "JWKS loaded");
                }
                "ok"
            }
            Err(e) => {
                // A jwks_uri that fails is re-discovered on the next attempt.
                *discovered = None;
                let text = e.to_string();
                let repeated = {
                    let mut last = self.logged();
                    let repeated = last.failure.as_deref() == Some(text.as_str());
                    last.failure = Some(text);
                    repeated
                };
                // The same failure again (every retry of the loop) is logged once, at warn.
                if repeated {
                    tracing::debug!(
                        provider = %self.provider,
                        error = %e,
                        kept_previous = self.is_ready(),
                        "JWKS refresh failed again"
                    );
                } else {
                    tracing::warn!(
                        provider = %self.provider,
                        error = %e,
                        kept_previous = self.is_ready(),
                        "JWKS refresh failed; keeping the previous key set"
                    );
                }
                e.outcome()
            }
        };
        drop(discovered);
        self.metrics
            .jwks_refresh
            .with_label_values(&[self.provider.as_str(), outcome])
            .inc();
        result.map(|_| ())
    }

    fn logged(&self) -> std::sync::MutexGuard<'_, LastLogged> {
        // A poisoned lock only means a panic while logging; the state is still usable.
        self.last_logged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts the keys a document dropped, and logs each (with its reason, never key material)
    /// when the list differs from the last document's.
    fn report_dropped(&self, dropped: &[DroppedKey]) {
        for d in dropped {
            self.metrics
                .jwks_keys_dropped
                .with_label_values(&[self.provider.as_str(), d.label()])
                .inc();
        }
        let changed = {
            let mut last = self.logged();
            let changed = last.dropped != dropped;
            if changed {
                last.dropped = dropped.to_vec();
            }
            changed
        };
        if changed {
            for d in dropped.iter().take(MAX_DROPPED_LOGGED) {
                tracing::warn!(
                    provider = %self.provider,
                    key = %d,
                    reason = d.label(),
                    "JWKS key dropped; tokens naming it are refused"
                );
            }
            if dropped.len() > MAX_DROPPED_LOGGED {
                tracing::warn!(
                    provider = %self.provider,
                    more = dropped.len() - MAX_DROPPED_LOGGED,
                    "more JWKS keys dropped (see mesh_authz_jwks_keys_dropped_total)"
                );
            }
        }
    }

    /// Called when a token names an unknown `kid`: refetches at most once per
    /// `min_refetch_interval`. Concurrent callers share one fetch, so a flood of unknown kids never
    /// causes more than one fetch per interval. Returns true if a new set was loaded by this or a
    /// concurrent call (including the refresh loop) while waiting.
    pub async fn refetch_for_unknown_kid(&self) -> bool {
        let seen = self.generation.load(Ordering::Acquire);
        let mut last = self.refetch.lock().await;
        if self.generation.load(Ordering::Acquire) != seen {
            return true;
        }
        if let Some(at) = *last
            && at.elapsed() < self.min_refetch_interval
        {
            return false;
        }
        *last = Some(Instant::now());
        // The gate stays held during the fetch: waiters then see the new generation.
        self.refresh_now().await.is_ok()
    }

    /// Background loop: refresh every `refresh_interval` (at once if no key set is held yet); after
    /// a failure retry sooner with backoff (1 s, 2 s, 4 s… capped at `refresh_interval`), until
    /// `cancel`. Checks never wait on this loop.
    pub fn spawn_refresh(
        self: &Arc<Self>,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut failures: u32 = 0;
            let mut delay = if this.is_ready() {
                this.refresh_interval
            } else {
                Duration::ZERO
            };
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
                let result = tokio::select! {
                    () = cancel.cancelled() => return,
                    r = this.refresh_now() => r,
                };
                delay = match result {
                    Ok(()) => {
                        failures = 0;
                        this.refresh_interval
                    }
                    Err(_) => {
                        failures = failures.saturating_add(1);
                        backoff(failures, this.refresh_interval)
                    }
                };
            }
        })
    }

    /// Fetches (and, with discovery, resolves `jwks_uri`) and parses one document; also returns
    /// the keys it dropped (`None` when no document was read).
    async fn fetch_and_parse(
        &self,
        discovered: &mut Option<Url>,
    ) -> (Result<Arc<KeySet>, JwksError>, Option<Vec<DroppedKey>>) {
        let body = match self.fetch_document(discovered).await {
            Ok(body) => body,
            Err(e) => return (Err(e), None),
        };
        let (result, dropped) = KeySet::parse_reporting(&body);
        (result.map(Arc::new).map_err(JwksError::from), Some(dropped))
    }

    async fn fetch_document(&self, discovered: &mut Option<Url>) -> Result<Vec<u8>, JwksError> {
        Ok(match &self.source {
            Source::File(path) => read_file_limited(path).await?,
            Source::Uri { client, url } => {
                get_limited(client, url, self.fetch_timeout, "application/json").await?
            }
            Source::Discovery {
                client,
                discovery_url,
                issuer,
            } => {
                let jwks_uri = match discovered.as_ref() {
                    Some(url) => url.clone(),
                    None => {
                        let doc = get_limited(
                            client,
                            discovery_url,
                            self.fetch_timeout,
                            "application/json",
                        )
                        .await?;
                        let url = parse_discovery(&doc, issuer, discovery_url)?;
                        *discovered = Some(url.clone());
                        url
                    }
                };
                get_limited(client, &jwks_uri, self.fetch_timeout, "application/json").await?
            }
        })
    }
}

/// Reads and parses a local JWKS file the way the `file:` source does, for `check-config`:
/// the keys it would drop, and whether any key survives.
pub fn inspect_file(path: &Path) -> (Result<usize, JwksError>, Vec<DroppedKey>) {
    let body = match std::fs::metadata(path) {
        Ok(meta) if meta.len() > MAX_DOCUMENT_BYTES as u64 => {
            return (
                Err(JwksError::TooLarge {
                    limit: MAX_DOCUMENT_BYTES,
                }),
                Vec::new(),
            );
        }
        Ok(_) => match std::fs::read(path) {
            Ok(body) => body,
            Err(e) => {
                return (
                    Err(JwksError::Fetch(format!("{}: {e}", path.display()))),
                    Vec::new(),
                );
            }
        },
        Err(e) => {
            return (
                Err(JwksError::Fetch(format!("{}: {e}", path.display()))),
                Vec::new(),
            );
        }
    };
    let (result, dropped) = KeySet::parse_reporting(&body);
    (
        result.map(|set| set.len()).map_err(JwksError::from),
        dropped,
    )
}

/// The retry delay after `failures` consecutive failures: 1 s, 2 s, 4 s… capped at `cap`.
fn backoff(failures: u32, cap: Duration) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    INITIAL_BACKOFF.saturating_mul(1u32 << exp).min(cap)
}

impl KeySource for JwksCache {
    fn current(&self) -> Option<Arc<KeySet>> {
        JwksCache::current(self)
    }
    fn holds(&self, fingerprint: u64) -> bool {
        JwksCache::holds(self, fingerprint)
    }
    fn is_ready(&self) -> bool {
        JwksCache::is_ready(self)
    }
    fn refetch_for_unknown_kid(&self) -> mesh_authz_core::token::BoxFuture<'_, bool> {
        Box::pin(JwksCache::refetch_for_unknown_kid(self))
    }
}

#[cfg(test)]
mod tests;
