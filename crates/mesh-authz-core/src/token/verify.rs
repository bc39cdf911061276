//! Compact JWS parsing, signature verification and claim validation, with the verified-token cache.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest;
use serde_json::{Map, Value};

use super::claims::{
    check_audience, check_required, check_time, parse_claims, parse_claims_keeping,
};
use super::jwk::KeySet;
use super::jws::{self, CompactJws, KeyOutcome};
use super::source::KeySource;
use crate::config::{LimitsConfig, ProviderConfig};
use crate::metrics::MetricsSink;

/// The registered claims mesh-authz reads, type-checked, plus the claims something reads as JSON.
#[derive(Debug, Clone)]
pub struct Claims {
    /// `iss`.
    pub iss: String,
    /// `sub`.
    pub sub: Option<String>,
    /// `aud`, a string or an array in the token.
    pub aud: Vec<String>,
    /// `exp` (required).
    pub exp: i64,
    /// `nbf`.
    pub nbf: Option<i64>,
    /// `iat`.
    pub iat: Option<i64>,
    /// `jti`.
    pub jti: Option<String>,
    /// `parent_jti`: the token this one was derived from (revocation cascade).
    pub parent_jti: Option<String>,
    /// Scopes from `scope` (space-separated string) or `scp` (array or string).
    pub scopes: Vec<String>,
    /// RFC 8705 `cnf.x5t#S256` (base64url SHA-256 of the bound certificate).
    pub cnf_x5t_s256: Option<String>,
    /// The claims as JSON: every claim from [`parse_claims`](super::claims::parse_claims), only
    /// the kept ones from [`parse_claims_keeping`](super::claims::parse_claims_keeping).
    pub raw: Map<String, Value>,
}

pub use super::verified::{KeptClaims, VerifiedToken};

/// Why a token was refused. `reason()` is a fixed, low-cardinality label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Over `limits.max_token_bytes`.
    #[error("token larger than the limit")]
    TooLarge,
    /// Not a compact JWS, bad base64url, bad JSON, wrong claim types…
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// An opaque (non-JWT) bearer token: no `.` at all, so not a JWS (e.g. an OAuth reference
    /// token, which would need introspection).
    #[error("opaque token (not a JWT)")]
    Opaque,
    /// `alg` is not a supported asymmetric algorithm (`none`, HMAC, unknown).
    #[error("unsupported algorithm")]
    UnsupportedAlgorithm,
    /// `alg` is supported but not in the provider's allow-list.
    #[error("algorithm not allowed for this provider")]
    AlgorithmNotAllowed,
    /// A `crit` header names an extension we do not understand.
    #[error("unsupported critical header")]
    UnsupportedCrit,
    /// No provider has this `iss`.
    #[error("unknown issuer")]
    UnknownIssuer,
    /// The `kid` is not in the provider's key set (after an allowed refetch).
    #[error("unknown key id")]
    UnknownKid,
    /// No key of the set fits the token's `alg`/`kty`.
    #[error("no key matches the token algorithm")]
    KeyMismatch,
    /// The signature did not verify.
    #[error("bad signature")]
    BadSignature,
    /// `exp` passed (beyond skew).
    #[error("token expired")]
    Expired,
    /// `nbf` (or `iat`) in the future (beyond skew).
    #[error("token not yet valid")]
    NotYetValid,
    /// `exp - iat` over `max_token_lifetime`.
    #[error("token lifetime too long")]
    LifetimeTooLong,
    /// `aud` does not contain an accepted audience.
    #[error("audience not accepted")]
    WrongAudience,
    /// A required claim is absent (`exp`, or `required_claims`).
    #[error("missing claim")]
    MissingClaim,
    /// The provider has no keys yet (JWKS never loaded): a dependency failure.
    #[error("verification keys unavailable")]
    KeysUnavailable,
}

impl TokenError {
    /// Fixed label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::TooLarge => "token_too_large",
            TokenError::Malformed(_) => "token_malformed",
            TokenError::Opaque => "token_opaque",
            TokenError::UnsupportedAlgorithm => "token_alg_unsupported",
            TokenError::AlgorithmNotAllowed => "token_alg_not_allowed",
            TokenError::UnsupportedCrit => "token_crit_unsupported",
            TokenError::UnknownIssuer => "token_unknown_issuer",
            TokenError::UnknownKid => "token_unknown_kid",
            TokenError::KeyMismatch => "token_key_mismatch",
            TokenError::BadSignature => "token_bad_signature",
            TokenError::Expired => "token_expired",
            TokenError::NotYetValid => "token_not_yet_valid",
            TokenError::LifetimeTooLong => "token_lifetime_too_long",
            TokenError::WrongAudience => "token_wrong_audience",
            TokenError::MissingClaim => "token_missing_claim",
            TokenError::KeysUnavailable => "jwks_unavailable",
        }
    }

    /// True for failures of a dependency rather than of the token.
    pub fn is_dependency_failure(&self) -> bool {
        matches!(self, TokenError::KeysUnavailable)
    }
}

/// Longest time a verified token stays cached, whatever its `exp`.
const MAX_CACHE_SECS: i64 = 24 * 3600;

/// Per-provider state: its config, key cache and pre-computed limits.
struct Provider {
    config: ProviderConfig,
    name: Arc<str>,
    keys: Arc<dyn KeySource>,
    skew: i64,
    max_lifetime: Option<i64>,
    /// Which claims its verified tokens keep.
    keep: KeptClaims,
}

/// A cached verification and the unix second from which it is no longer used ([`MAX_CACHE_SECS`]
/// after insertion). The token's own times are re-checked on every hit, so an expired token is
/// refused from the cache without signature work; quick_cache has no expiry of its own, and its
/// capacity bounds what stays.
///
/// `key` is the [fingerprint](super::jwk::VerifyingKey::fingerprint) of the key that verified the
/// token: a hit counts only while the provider's current key set still holds that key, so a key
/// removed from the JWKS takes its cached tokens with it at the refresh that drops it.
#[derive(Clone)]
struct CacheEntry {
    token: Arc<VerifiedToken>,
    until: i64,
    key: u64,
}

/// Tokens each thread keeps in its [front cache](Front).
const FRONT_CAPACITY: usize = 256;

/// One thread's front of the verified-token cache: the tokens this thread has seen hit the
/// shared cache, keyed by the token text itself.
///
/// Why: the shared cache is one structure every worker thread reads. A hit there takes its
/// shard's lock and clones the entry's `Arc`, two writes to cache lines all threads share, and
/// first hashes the token with SHA-256; under a hot token on several cores those lines move
/// between cores at every check. A hit here touches only this thread's memory: its own copy of
/// the verified token (so even the reference count is this thread's), found by a keyed hash.
///
/// Collision safety: the key is the whole token and a hit needs the stored token to be *equal*
/// (the map's hasher, foldhash seeded per process, only picks the slot), so no chosen token can
/// ever be answered with another token's verification. Only verified tokens are inserted, so an
/// attacker cannot fill the map with colliding keys either. The shared cache keeps its SHA-256 key
/// (collision resistant, 32 bytes a token instead of the token's length).
///
/// Bounded: at most [`FRONT_CAPACITY`] tokens per thread, an arbitrary one evicted when full. A
/// token enters on a shared-cache hit only (seen twice), so a stream of fresh tokens never
/// churns it. Entries carry the shared entry's limit and key fingerprint and are re-checked
/// exactly like a shared hit (time, key still in the JWKS); a config reload builds a new
/// verifier and so new fronts.
struct Front {
    entries: HashMap<Box<str>, CacheEntry, foldhash::fast::RandomState>,
}

impl Front {
    fn new() -> Self {
        Self {
            entries: HashMap::with_capacity_and_hasher(16, foldhash::fast::RandomState::default()),
        }
    }

    fn insert(&mut self, token: &str, entry: CacheEntry) {
        if self.entries.len() >= FRONT_CAPACITY {
            // Iteration order is the (randomly keyed) hash order: a random victim.
            if let Some(victim) = self.entries.keys().next().cloned() {
                self.entries.remove(&victim);
            }
        }
        self.entries.insert(token.into(), entry);
    }
}

/// The verifier could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifierError {
    /// Each provider needs exactly one key source.
    #[error("{providers} providers but {sources} key sources")]
    SourceCount {
        /// Providers configured.
        providers: usize,
        /// Key sources given.
        sources: usize,
    },
}

/// Verifies tokens for every configured provider. Cheap to share (`Arc`).
pub struct Verifier {
    providers: Vec<Provider>,
    by_issuer: HashMap<String, usize>,
    max_token_bytes: usize,
    /// Which claims parsing builds as JSON: what any provider keeps, requires or renders.
    parse_keep: KeptClaims,
    cache: quick_cache::sync::Cache<[u8; 32], CacheEntry>,
    /// Each thread's front of `cache` (see [`Front`]).
    fronts: thread_local::ThreadLocal<RefCell<Front>>,
    metrics: Arc<dyn MetricsSink>,
}

fn secs_i64(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

impl Verifier {
    /// Builds the verifier: one key source per provider, in config order (no I/O: the host
    /// loads and refreshes the sources). Panics never; a source list of the wrong length is
    /// reported as [`VerifierError::SourceCount`].
    pub fn new(
        providers: &[ProviderConfig],
        limits: &LimitsConfig,
        sources: Vec<Arc<dyn KeySource>>,
        metrics: Arc<dyn MetricsSink>,
    ) -> Result<Self, VerifierError> {
        if sources.len() != providers.len() {
            return Err(VerifierError::SourceCount {
                providers: providers.len(),
                sources: sources.len(),
            });
        }
        let mut states = Vec::with_capacity(providers.len());
        let mut by_issuer = HashMap::new();
        for (index, (p, keys)) in providers.iter().zip(sources).enumerate() {
            // Config validation refuses duplicate issuers; should one slip through, the first wins.
            by_issuer.entry(p.issuer.clone()).or_insert(index);
            states.push(Provider {
                config: p.clone(),
                name: Arc::from(p.name.as_str()),
                keys,
                skew: secs_i64(p.clock_skew),
                max_lifetime: p.max_token_lifetime.map(secs_i64),
                keep: KeptClaims::All,
            });
        }
        let capacity = usize::try_from(limits.token_cache_capacity)
            .unwrap_or(usize::MAX)
            .max(1);
        Ok(Self {
            providers: states,
            by_issuer,
            max_token_bytes: limits.max_token_bytes,
            parse_keep: KeptClaims::All,
            cache: quick_cache::sync::Cache::new(capacity),
            fronts: thread_local::ThreadLocal::new(),
            metrics,
        })
    }

    /// Keeps, of the claims beyond the registered ones, only the top-level claims that `paths`
    /// (the claim paths the rules read) can reach, except for providers with
    /// `claims_to_metadata`, which keep all. Without this call every claim is kept.
    pub fn keep_claims_for<'a>(mut self, paths: impl IntoIterator<Item = &'a str>) -> Self {
        let paths: Vec<&str> = paths.into_iter().collect();
        let keep = KeptClaims::for_paths(paths.iter().copied());
        for p in &mut self.providers {
            p.keep = if p.config.claims_to_metadata {
                KeptClaims::All
            } else {
                keep.clone()
            };
        }
        // Parsing runs before the issuer is known, so it builds what any provider reads.
        self.parse_keep = if self.providers.iter().any(|p| p.keep == KeptClaims::All) {
            KeptClaims::All
        } else {
            KeptClaims::for_paths(paths.iter().copied().chain(self.providers.iter().flat_map(
                |p| {
                    p.config
                        .required_claims
                        .iter()
                        .chain(p.config.claims_to_headers.keys())
                        .map(String::as_str)
                },
            )))
        };
        self
    }

    /// True once every provider holds keys.
    pub fn ready(&self) -> bool {
        self.providers.iter().all(|p| p.keys.is_ready())
    }

    /// Every provider's config and key source, in config order.
    pub fn providers(&self) -> impl Iterator<Item = (&ProviderConfig, &Arc<dyn KeySource>)> {
        self.providers.iter().map(|p| (&p.config, &p.keys))
    }

    /// The provider config at `index` (a [`VerifiedToken::provider`]), if any.
    pub fn provider(&self, index: usize) -> Option<&ProviderConfig> {
        self.providers.get(index).map(|p| &p.config)
    }

    /// Verified tokens held in the cache now.
    pub fn cached_tokens(&self) -> usize {
        self.cache.len()
    }

    /// The provider's name at `index` (a [`VerifiedToken::provider`]), if any.
    pub fn provider_name(&self, index: usize) -> Option<&Arc<str>> {
        self.providers.get(index).map(|p| &p.name)
    }

    /// [`Verifier::verify`]'s answer from this thread's front alone, without I/O: `Some` when the
    /// front holds `token` and its entry may still be used at `now` (then the answer is exactly
    /// what `verify` gives), `None` otherwise: then [`Verifier::verify_beyond_front`] gives
    /// `verify`'s answer without asking the front again. A `Some` also means the token was
    /// verified before, so it is a well-formed token68: one lookup answers both questions.
    pub fn verify_here(
        &self,
        token: &str,
        now: i64,
    ) -> Option<Result<Arc<VerifiedToken>, TokenError>> {
        let front = self.fronts.get()?;
        let answer = self.cached(front.borrow().entries.get(token)?, now);
        if answer.is_none() {
            // Expired from the cache, or its key left the JWKS: verified again past the front.
            front.borrow_mut().entries.remove(token);
        }
        answer
    }

    /// Verifies one token at time `now` (unix seconds).
    pub async fn verify(&self, token: &str, now: i64) -> Result<Arc<VerifiedToken>, TokenError> {
        // This thread's front first: no shared memory written, no SHA-256.
        match self.verify_here(token, now) {
            Some(answer) => answer,
            None => self.verify_beyond_front(token, now).await,
        }
    }

    /// [`Verifier::verify`] for a token [`Verifier::verify_here`] just found no answer for: the
    /// shared cache, else a full verification.
    pub async fn verify_beyond_front(
        &self,
        token: &str,
        now: i64,
    ) -> Result<Arc<VerifiedToken>, TokenError> {
        // The front never holds a token over the limit, so checking it here is checking first.
        if token.len() > self.max_token_bytes {
            return Err(TokenError::TooLarge);
        }
        let front = self.fronts.get_or(|| RefCell::new(Front::new()));
        let key: [u8; 32] = {
            let d = digest::digest(&digest::SHA256, token.as_bytes());
            let mut k = [0u8; 32];
            k.copy_from_slice(d.as_ref());
            k
        };
        if let Some(hit) = self.cache.get(&key)
            && let Some(result) = self.cached(&hit, now)
        {
            // Seen at least twice: worth a copy of this thread's own (see `Front`).
            let own = CacheEntry {
                token: Arc::new(VerifiedToken::clone(&hit.token)),
                until: hit.until,
                key: hit.key,
            };
            front.borrow_mut().insert(token, own);
            return result;
        }
        self.metrics.token_cache(false);

        let jws = jws::parse(token)?;
        let claims = parse_claims_keeping(&jws.payload, &self.parse_keep)?;
        let index = *self
            .by_issuer
            .get(&claims.iss)
            .ok_or(TokenError::UnknownIssuer)?;
        let provider = self.providers.get(index).ok_or(TokenError::UnknownIssuer)?;
        if !provider.config.algorithms.contains(&jws.header.alg) {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        let key_fingerprint = self.check_signature(provider, &jws).await?;
        check_time(claims.times(), now, provider.skew, provider.max_lifetime)?;
        check_audience(
            &claims,
            &provider.config.audiences,
            provider.config.allow_any_audience,
        )?;
        check_required(&claims, &provider.config.required_claims)?;

        let until = now.saturating_add(MAX_CACHE_SECS);
        let verified = Arc::new(VerifiedToken::new(
            index,
            jws.header.alg,
            claims,
            &provider.config.claims_to_headers,
            &provider.keep,
        ));
        self.cache.insert(
            key,
            CacheEntry {
                token: verified.clone(),
                until,
                key: key_fingerprint,
            },
        );
        // Only on this path, where a signature check has just cost far more than the count.
        self.metrics
            .token_cache_entries(u64::try_from(self.cache.len()).unwrap_or(u64::MAX));
        Ok(verified)
    }

    /// A cache hit's answer at `now`, or `None` when the entry may not be used (past its cache
    /// lifetime, or the key that verified it is gone from the provider's JWKS).
    fn cached(&self, hit: &CacheEntry, now: i64) -> Option<Result<Arc<VerifiedToken>, TokenError>> {
        if now >= hit.until {
            return None;
        }
        let Some(provider) = self.providers.get(hit.token.provider()) else {
            return Some(Err(TokenError::UnknownIssuer));
        };
        // A key gone from the JWKS: verify from scratch (and be refused like a new token).
        if !provider.keys.holds(hit.key) {
            return None;
        }
        self.metrics.token_cache(true);
        // The cache only skips signature work: time is re-checked against this `now`.
        Some(
            check_time(hit.token.times(), now, provider.skew, provider.max_lifetime)
                .map(|()| hit.token.clone()),
        )
    }

    /// Finds the key and checks the signature; an unknown `kid` may trigger one (rate-limited)
    /// refetch of the provider's keys. Returns the fingerprint of the key that verified.
    async fn check_signature(
        &self,
        provider: &Provider,
        jws: &CompactJws<'_>,
    ) -> Result<u64, TokenError> {
        let max = provider.config.jwks.max_keys_without_kid;
        let keys = provider.keys.current().ok_or(TokenError::KeysUnavailable)?;
        match jws::verify_signature_with(jws, &keys, max) {
            Ok(key) => return Ok(key.fingerprint()),
            Err(KeyOutcome::UnknownKid) => {}
            Err(other) => return Err(other.into()),
        }
        drop(keys);
        if !provider.keys.refetch_for_unknown_kid().await {
            return Err(TokenError::UnknownKid);
        }
        let keys = provider.keys.current().ok_or(TokenError::KeysUnavailable)?;
        jws::verify_signature_with(jws, &keys, max)
            .map(|k| k.fingerprint())
            .map_err(TokenError::from)
    }
}

/// Verifies `token` against one provider's config and an explicit key set, at time `now`: the
/// same checks as [`Verifier::verify`] minus the cache and key refetch (the result's `provider`
/// index is 0). For tools and tests.
pub fn verify_with_keys(
    token: &str,
    keys: &KeySet,
    provider: &ProviderConfig,
    max_token_bytes: usize,
    now: i64,
) -> Result<VerifiedToken, TokenError> {
    if token.len() > max_token_bytes {
        return Err(TokenError::TooLarge);
    }
    let jws = jws::parse(token)?;
    let claims = parse_claims(&jws.payload)?;
    if claims.iss != provider.issuer {
        return Err(TokenError::UnknownIssuer);
    }
    if !provider.algorithms.contains(&jws.header.alg) {
        return Err(TokenError::AlgorithmNotAllowed);
    }
    jws::verify_signature_with(&jws, keys, provider.jwks.max_keys_without_kid)?;
    check_time(
        claims.times(),
        now,
        secs_i64(provider.clock_skew),
        provider.max_token_lifetime.map(secs_i64),
    )?;
    check_audience(&claims, &provider.audiences, provider.allow_any_audience)?;
    check_required(&claims, &provider.required_claims)?;
    Ok(VerifiedToken::new(
        0,
        jws.header.alg,
        claims,
        &provider.claims_to_headers,
        &KeptClaims::All,
    ))
}

#[cfg(test)]
mod tests;
