//! JWKS sources (file, URI, OIDC discovery), the per-provider key cache and its refresh loop.
//!
//! One [`JwksCache`] per provider. Checks only ever call [`JwksCache::current`] (a lock-free
//! `Arc` clone) and, on an unknown `kid`, [`JwksCache::refetch_for_unknown_kid`], which is
//! rate-limited and single-flight. Fetches are serialized, size-limited and time-limited; a failed
//! or refused fetch never replaces the key set already held.

use std::error::Error as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use reqwest::redirect;
use tokio::io::AsyncReadExt;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::jwk::{DroppedKey, KeySet};
use crate::config::{JwksConfig, ProviderConfig};
use crate::telemetry::Metrics;

/// Largest JWKS or discovery document accepted, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Dropped keys logged one by one per document; the rest are summed up in one line.
const MAX_DROPPED_LOGGED: usize = 16;

/// Most redirects followed by one request.
const MAX_REDIRECTS: usize = 5;

/// First retry delay of the refresh loop after a failure; doubles up to `refresh_interval`.
const INITIAL_BACKOFF: Duration = Duration::from_secs(1);

/// The path appended to the issuer for OIDC discovery.
const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

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
    Document(#[from] super::jwk::JwkError),
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
    /// Builds the source (HTTP client with rustls + optional extra CA from `ca_file`); no network
    /// I/O. Fails on an inconsistent source (none or several of `uri`, `discovery`, `file`), an
    /// unusable URL, a zero interval or an unreadable CA bundle.
    pub fn new(provider: &ProviderConfig, metrics: Metrics) -> Result<Self, JwksError> {
        let cfg = &provider.jwks;
        if cfg.refresh_interval.is_zero() {
            return Err(config_err(
                provider,
                "jwks.refresh_interval must be above zero",
            ));
        }
        if cfg.fetch_timeout.is_zero() {
            return Err(config_err(
                provider,
                "jwks.fetch_timeout must be above zero",
            ));
        }
        let chosen = [cfg.uri.is_some(), cfg.discovery, cfg.file.is_some()]
            .into_iter()
            .filter(|set| *set)
            .count();
        if chosen != 1 {
            return Err(config_err(
                provider,
                "exactly one of jwks.uri, jwks.discovery, jwks.file must be set",
            ));
        }
        let source = if let Some(path) = &cfg.file {
            if cfg.ca_file.is_some() {
                return Err(config_err(
                    provider,
                    "jwks.ca_file applies only to jwks.uri or jwks.discovery",
                ));
            }
            Source::File(path.clone())
        } else if let Some(uri) = &cfg.uri {
            let url =
                parse_http_url(uri).map_err(|e| config_err(provider, &format!("jwks.uri: {e}")))?;
            Source::Uri {
                client: build_client(provider, cfg)?,
                url,
            }
        } else {
            let base = parse_http_url(&provider.issuer)
                .map_err(|e| config_err(provider, &format!("issuer (for discovery): {e}")))?;
            if base.query().is_some() || base.fragment().is_some() {
                return Err(config_err(
                    provider,
                    "issuer (for discovery) must not carry a query or fragment",
                ));
            }
            let discovery_url = discovery_url(&provider.issuer)
                .map_err(|e| config_err(provider, &format!("issuer (for discovery): {e}")))?;
            Source::Discovery {
                client: build_client(provider, cfg)?,
                discovery_url,
                issuer: provider.issuer.clone(),
            }
        };
        Ok(Self {
            provider: provider.name.clone(),
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

    /// The provider name this cache serves (for logs and metrics).
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The current good key set; `None` until the first successful load. Lock-free.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.keys.load_full()
    }

    /// True when the current key set holds a key with this
    /// [fingerprint](super::jwk::VerifyingKey::fingerprint). Lock-free, no reference count.
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

fn config_err(provider: &ProviderConfig, msg: &str) -> JwksError {
    JwksError::Config(format!("provider {:?}: {msg}", provider.name))
}

/// Parses an absolute `http`/`https` URL with a host.
fn parse_http_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme {:?} is not http or https", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("URL has no host".to_string());
    }
    Ok(url)
}

/// `{issuer without trailing slash}/.well-known/openid-configuration`.
fn discovery_url(issuer: &str) -> Result<Url, String> {
    let base = issuer.trim_end_matches('/');
    parse_http_url(&format!("{base}{DISCOVERY_PATH}"))
}

/// Validates an OIDC discovery document (§4.3: `issuer` must equal the configured issuer) and
/// returns its `jwks_uri`. An `https` discovery endpoint may not point to a plain `http` JWKS.
fn parse_discovery(doc: &[u8], issuer: &str, discovery_url: &Url) -> Result<Url, JwksError> {
    let value: serde_json::Value = serde_json::from_slice(doc)
        .map_err(|_| JwksError::Discovery("not valid JSON".to_string()))?;
    let obj = value
        .as_object()
        .ok_or_else(|| JwksError::Discovery("not a JSON object".to_string()))?;
    match obj.get("issuer") {
        Some(serde_json::Value::String(s)) if s == issuer => {}
        Some(serde_json::Value::String(found)) => {
            // Both values, quoted (the found one cut short: it comes from the network).
            let found: String = found.chars().take(200).collect();
            return Err(JwksError::Discovery(format!(
                "issuer {found:?} does not equal the configured issuer {issuer:?} \
                 (compared exactly, trailing slash included)"
            )));
        }
        _ => {
            return Err(JwksError::Discovery(
                "issuer is missing or not a string".to_string(),
            ));
        }
    }
    let jwks_uri = match obj.get("jwks_uri") {
        Some(serde_json::Value::String(s)) => s,
        _ => {
            return Err(JwksError::Discovery(
                "jwks_uri is missing or not a string".to_string(),
            ));
        }
    };
    let url =
        parse_http_url(jwks_uri).map_err(|e| JwksError::Discovery(format!("jwks_uri: {e}")))?;
    if discovery_url.scheme() == "https" && url.scheme() != "https" {
        return Err(JwksError::Discovery(
            "jwks_uri downgrades https to http".to_string(),
        ));
    }
    Ok(url)
}

/// The HTTP client for one provider: rustls, the system roots plus `ca_file`, a bounded redirect
/// policy that never leaves http(s) or downgrades https, per-request timeouts and a User-Agent.
fn build_client(provider: &ProviderConfig, cfg: &JwksConfig) -> Result<reqwest::Client, JwksError> {
    let policy = redirect::Policy::custom(|attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            return attempt.error("too many redirects");
        }
        let scheme = attempt.url().scheme();
        if !matches!(scheme, "http" | "https") {
            return attempt.error("redirect to a non-http(s) scheme refused");
        }
        let was_https = attempt.previous().iter().any(|u| u.scheme() == "https");
        if was_https && scheme != "https" {
            return attempt.error("redirect from https to http refused");
        }
        attempt.follow()
    });
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("mesh-authz/", env!("CARGO_PKG_VERSION")))
        .redirect(policy)
        .timeout(cfg.fetch_timeout)
        .connect_timeout(cfg.fetch_timeout)
        .tls_backend_rustls();
    if let Some(ca_file) = &cfg.ca_file {
        builder = builder.tls_certs_merge(load_ca_bundle(provider, ca_file)?);
    }
    builder
        .build()
        .map_err(|e| config_err(provider, &format!("HTTP client: {}", error_chain(&e))))
}

/// Reads a PEM CA bundle; at least one certificate is required.
fn load_ca_bundle(
    provider: &ProviderConfig,
    path: &Path,
) -> Result<Vec<reqwest::Certificate>, JwksError> {
    let pem = std::fs::read(path)
        .map_err(|e| config_err(provider, &format!("jwks.ca_file {}: {e}", path.display())))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|_| {
        config_err(
            provider,
            &format!(
                "jwks.ca_file {}: not a PEM certificate bundle",
                path.display()
            ),
        )
    })?;
    if certs.is_empty() {
        return Err(config_err(
            provider,
            &format!("jwks.ca_file {}: no certificate found", path.display()),
        ));
    }
    Ok(certs)
}

/// GET with a whole-request deadline, 2xx required, and the body capped at
/// [`MAX_DOCUMENT_BYTES`] (checked against `Content-Length` and while streaming).
async fn get_limited(
    client: &reqwest::Client,
    url: &Url,
    timeout: Duration,
    accept: &str,
) -> Result<Vec<u8>, JwksError> {
    let shown = display_url(url);
    let fetch = async {
        let mut resp = client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, accept)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| JwksError::Fetch(format!("{shown}: {}", error_chain(&e))))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(JwksError::Fetch(format!("{shown}: HTTP status {status}")));
        }
        if resp
            .content_length()
            .is_some_and(|len| len > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(JwksError::TooLarge {
                limit: MAX_DOCUMENT_BYTES,
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| JwksError::Fetch(format!("{shown}: {}", error_chain(&e))))?
        {
            if body.len().saturating_add(chunk.len()) > MAX_DOCUMENT_BYTES {
                return Err(JwksError::TooLarge {
                    limit: MAX_DOCUMENT_BYTES,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    // reqwest's timeout covers the body too; this outer deadline is the guarantee.
    tokio::time::timeout(timeout, fetch)
        .await
        .unwrap_or_else(|_| {
            Err(JwksError::Fetch(format!(
                "{shown}: timed out after {timeout:?}"
            )))
        })
}

/// Reads a local JWKS file, refusing more than [`MAX_DOCUMENT_BYTES`].
async fn read_file_limited(path: &Path) -> Result<Vec<u8>, JwksError> {
    let io_err = |e: std::io::Error| JwksError::Fetch(format!("{}: {e}", path.display()));
    let file = tokio::fs::File::open(path).await.map_err(io_err)?;
    let meta = file.metadata().await.map_err(io_err)?;
    if meta.len() > MAX_DOCUMENT_BYTES as u64 {
        return Err(JwksError::TooLarge {
            limit: MAX_DOCUMENT_BYTES,
        });
    }
    // The file may grow between stat and read (or be a special file): cap the read too.
    let mut body = Vec::new();
    file.take(MAX_DOCUMENT_BYTES as u64 + 1)
        .read_to_end(&mut body)
        .await
        .map_err(io_err)?;
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err(JwksError::TooLarge {
            limit: MAX_DOCUMENT_BYTES,
        });
    }
    Ok(body)
}

/// A URL for messages: scheme, host, port and path only (no credentials, query or fragment).
fn display_url(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}{}", url.scheme(), url.path()),
        None => format!("{}://{host}{}", url.scheme(), url.path()),
    }
}

/// A reqwest error with its causes (TLS and I/O details live in the source chain), without the URL.
/// A TLS certificate problem is also said in words first ([`tls_words`]).
fn error_chain(e: &reqwest::Error) -> String {
    let mut msg = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_redirect() {
        "redirect refused".to_string()
    } else if e.is_connect() {
        "connect error".to_string()
    } else {
        "request error".to_string()
    };
    let mut words = None;
    let mut source = e.source();
    while let Some(cause) = source {
        if words.is_none() {
            words = rustls_error(cause).and_then(tls_words);
        }
        let text = cause.to_string();
        // hyper and reqwest repeat causes at several levels; keep each once.
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = cause.source();
    }
    match words {
        Some(words) => format!("TLS: {words} ({msg})"),
        None => msg,
    }
}

/// The rustls error in `cause`, directly or inside (possibly nested) `io::Error`s, whose
/// `source()` skips the error they wrap, so a walk of the chain alone never meets it.
fn rustls_error<'a>(cause: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(r) = cause.downcast_ref::<rustls::Error>() {
        return Some(r);
    }
    let mut io = cause.downcast_ref::<std::io::Error>()?;
    // hyper-util wraps tokio-rustls's io::Error in another one; a few levels at most.
    for _ in 0..4 {
        let inner = io.get_ref()?;
        if let Some(r) = inner.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        io = inner.downcast_ref::<std::io::Error>()?;
    }
    None
}

/// What a TLS failure to a JWKS or discovery endpoint means, in words, with the usual fix.
fn tls_words(e: &rustls::Error) -> Option<String> {
    use rustls::CertificateError as C;
    let words = match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => {
                "the server's certificate is not signed by a trusted CA (unknown issuer); \
                 set jwks.ca_file to the CA that issued it"
            }
            C::Expired | C::ExpiredContext { .. } => "the server's certificate has expired",
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet (check the clocks)"
            }
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "the server's certificate does not name the host of the URL"
            }
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
                "the server's certificate is not for TLS server authentication (extended key usage)"
            }
            C::BadSignature => "the server's certificate has a bad signature",
            C::Revoked => "the server's certificate is revoked",
            C::BadEncoding => "the server's certificate is not valid DER",
            C::UnhandledCriticalExtension => {
                "the server's certificate has an unsupported critical extension"
            }
            C::Other(other) if format!("{other:?}").contains("CaUsedAsEndEntity") => {
                "the server presented a CA certificate as its own certificate; a server needs a \
                 leaf certificate issued by a CA (trust that CA with jwks.ca_file)"
            }
            _ => "the server's certificate was refused",
        },
        rustls::Error::NoCertificatesPresented => "the server presented no certificate",
        rustls::Error::AlertReceived(alert) => {
            return Some(format!(
                "the server refused the TLS handshake (alert {alert:?})"
            ));
        }
        rustls::Error::PeerIncompatible(_) => {
            "the server supports no TLS version or cipher suite in common with mesh-authz"
        }
        rustls::Error::InvalidMessage(_) | rustls::Error::PeerMisbehaved(_) => {
            "the server does not speak TLS correctly (is it plain HTTP?)"
        }
        _ => return None,
    };
    Some(words.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(jwks: JwksConfig) -> ProviderConfig {
        ProviderConfig {
            name: "corp".to_string(),
            issuer: "https://auth.example.com/".to_string(),
            audiences: vec!["api".to_string()],
            allow_any_audience: false,
            jwks,
            algorithms: vec![crate::token::Algorithm::RS256],
            clock_skew: Duration::from_secs(30),
            forward_token: false,
            claims_to_headers: Default::default(),
            claims_to_metadata: false,
            required_claims: Vec::new(),
            max_token_lifetime: None,
        }
    }

    fn jwks_config() -> JwksConfig {
        JwksConfig {
            uri: None,
            discovery: false,
            file: None,
            refresh_interval: Duration::from_secs(300),
            min_refetch_interval: Duration::from_secs(10),
            fetch_timeout: Duration::from_secs(5),
            ca_file: None,
            max_keys_without_kid: 32,
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let cap = Duration::from_secs(10);
        let got: Vec<u64> = (1..=6).map(|n| backoff(n, cap).as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 8, 10, 10]);
        assert_eq!(backoff(u32::MAX, cap), cap);
        assert_eq!(
            backoff(1, Duration::from_millis(200)),
            Duration::from_millis(200)
        );
    }

    #[test]
    fn discovery_url_strips_trailing_slash() {
        let u = discovery_url("https://auth.example.com/").unwrap();
        assert_eq!(
            u.as_str(),
            "https://auth.example.com/.well-known/openid-configuration"
        );
        let u = discovery_url("https://auth.example.com/tenant/a").unwrap();
        assert_eq!(
            u.as_str(),
            "https://auth.example.com/tenant/a/.well-known/openid-configuration"
        );
    }

    #[test]
    fn source_must_be_exactly_one() {
        let none = jwks_config();
        assert!(matches!(
            JwksCache::new(&provider(none), Metrics::new()),
            Err(JwksError::Config(_))
        ));
        let mut two = jwks_config();
        two.uri = Some("https://a.example/jwks".to_string());
        two.discovery = true;
        assert!(matches!(
            JwksCache::new(&provider(two), Metrics::new()),
            Err(JwksError::Config(_))
        ));
    }

    #[test]
    fn bad_uris_and_intervals_are_refused() {
        for uri in [
            "ftp://a.example/jwks",
            "file:///etc/passwd",
            "not a url",
            "https://",
        ] {
            let mut c = jwks_config();
            c.uri = Some(uri.to_string());
            assert!(
                matches!(
                    JwksCache::new(&provider(c), Metrics::new()),
                    Err(JwksError::Config(_))
                ),
                "{uri}"
            );
        }
        let mut c = jwks_config();
        c.uri = Some("https://a.example/jwks".to_string());
        c.refresh_interval = Duration::ZERO;
        assert!(JwksCache::new(&provider(c), Metrics::new()).is_err());
    }

    #[test]
    fn unreadable_or_empty_ca_file_is_a_config_error() {
        let mut c = jwks_config();
        c.uri = Some("https://a.example/jwks".to_string());
        c.ca_file = Some(PathBuf::from("/nonexistent/ca.pem"));
        assert!(matches!(
            JwksCache::new(&provider(c.clone()), Metrics::new()),
            Err(JwksError::Config(_))
        ));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, b"no pem here").unwrap();
        c.ca_file = Some(path);
        assert!(matches!(
            JwksCache::new(&provider(c), Metrics::new()),
            Err(JwksError::Config(_))
        ));
    }

    #[test]
    fn new_does_no_io_and_is_not_ready() {
        let mut c = jwks_config();
        c.uri = Some("http://127.0.0.1:9/jwks".to_string());
        let cache = JwksCache::new(&provider(c), Metrics::new()).unwrap();
        assert!(!cache.is_ready());
        assert!(cache.current().is_none());
    }

    #[test]
    fn discovery_document_rules() {
        let https =
            Url::parse("https://auth.example.com/.well-known/openid-configuration").unwrap();
        let iss = "https://auth.example.com";
        let ok =
            br#"{"issuer":"https://auth.example.com","jwks_uri":"https://auth.example.com/keys"}"#;
        assert_eq!(
            parse_discovery(ok, iss, &https).unwrap().as_str(),
            "https://auth.example.com/keys"
        );
        let cases: [&[u8]; 7] = [
            b"not json",
            b"[]",
            br#"{"jwks_uri":"https://auth.example.com/keys"}"#,
            br#"{"issuer":"https://evil.example.com","jwks_uri":"https://auth.example.com/keys"}"#,
            br#"{"issuer":"https://auth.example.com"}"#,
            br#"{"issuer":"https://auth.example.com","jwks_uri":42}"#,
            br#"{"issuer":"https://auth.example.com","jwks_uri":"http://auth.example.com/keys"}"#,
        ];
        for doc in cases {
            assert!(
                matches!(
                    parse_discovery(doc, iss, &https),
                    Err(JwksError::Discovery(_))
                ),
                "{}",
                String::from_utf8_lossy(doc)
            );
        }
        // Exact issuer match: a trailing-slash difference is a mismatch, and both values are shown.
        let slash = br#"{"issuer":"https://auth.example.com/","jwks_uri":"https://a/keys"}"#;
        let err = parse_discovery(slash, iss, &https).unwrap_err().to_string();
        assert!(
            err.contains(r#"issuer "https://auth.example.com/" does not equal the configured issuer "https://auth.example.com""#),
            "{err}"
        );
    }

    #[test]
    fn display_url_hides_credentials_and_query() {
        let u = Url::parse("https://user:pw@a.example:8443/keys?token=x#f").unwrap();
        assert_eq!(display_url(&u), "https://a.example:8443/keys");
    }

    #[test]
    fn outcome_labels() {
        assert_eq!(JwksError::Fetch("x".into()).outcome(), "fetch_error");
        assert_eq!(JwksError::TooLarge { limit: 1 }.outcome(), "invalid");
        assert_eq!(JwksError::Discovery("x".into()).outcome(), "invalid");
        assert_eq!(
            JwksError::Document(crate::token::jwk::JwkError::NoUsableKeys).outcome(),
            "invalid"
        );
    }

    #[test]
    fn cache_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<JwksCache>();
    }
}
