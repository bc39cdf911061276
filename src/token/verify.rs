//! Compact JWS parsing, signature verification and claim validation, with the verified-token cache.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest;
use prometheus::{IntCounter, IntGauge};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::claims::{
    check_audience, check_required, check_time, parse_claims, parse_claims_keeping,
};
use super::jwk::KeySet;
use super::jwks::JwksCache;
use super::jws::{self, CompactJws, KeyOutcome};
use crate::config::{LimitsConfig, ProviderConfig};
use crate::telemetry::Metrics;

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
    jwks: Arc<JwksCache>,
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

/// Verifies tokens for every configured provider. Cheap to share (`Arc`).
pub struct Verifier {
    providers: Vec<Provider>,
    by_issuer: HashMap<String, usize>,
    max_token_bytes: usize,
    /// Which claims parsing builds as JSON: what any provider keeps, requires or renders.
    parse_keep: KeptClaims,
    cache: quick_cache::sync::Cache<[u8; 32], CacheEntry>,
    cache_hits: IntCounter,
    cache_misses: IntCounter,
    cache_entries: IntGauge,
}

fn secs_i64(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

impl Verifier {
    /// Builds the verifier (no I/O yet; call [`Verifier::start`]).
    pub fn new(
        providers: &[ProviderConfig],
        limits: &LimitsConfig,
        metrics: Metrics,
    ) -> Result<Self, crate::token::jwks::JwksError> {
        Self::with_jwks_caches(providers, limits, metrics, |_| None)
    }

    /// Like [`Verifier::new`], but a provider for which `reuse` returns a cache keeps that cache
    /// (and so its keys): a config reload builds a new verifier without losing good key sets.
    /// The verified-token cache is always new, since validation rules may have changed.
    pub fn with_jwks_caches(
        providers: &[ProviderConfig],
        limits: &LimitsConfig,
        metrics: Metrics,
        reuse: impl Fn(&ProviderConfig) -> Option<Arc<JwksCache>>,
    ) -> Result<Self, crate::token::jwks::JwksError> {
        let mut states = Vec::with_capacity(providers.len());
        let mut by_issuer = HashMap::new();
        for (index, p) in providers.iter().enumerate() {
            let jwks = match reuse(p) {
                Some(cache) => cache,
                None => Arc::new(JwksCache::new(p, metrics.clone())?),
            };
            // Config validation refuses duplicate issuers; should one slip through, the first wins.
            by_issuer.entry(p.issuer.clone()).or_insert(index);
            states.push(Provider {
                config: p.clone(),
                name: Arc::from(p.name.as_str()),
                jwks,
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
            cache_hits: metrics.token_cache.with_label_values(&["hit"]),
            cache_misses: metrics.token_cache.with_label_values(&["miss"]),
            cache_entries: metrics.token_cache_entries.clone(),
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

    /// Loads every provider's keys once, then keeps refreshing them in the background until
    /// `cancel` fires. Returns after the first load attempt of every provider.
    pub async fn start(&self, cancel: CancellationToken) {
        for p in &self.providers {
            // Errors are logged by the JWKS cache; an unloaded provider fails closed (not ready).
            let _ = p.jwks.refresh_now().await;
        }
        for p in &self.providers {
            p.jwks.spawn_refresh(cancel.clone());
        }
    }

    /// True once every provider holds keys.
    pub fn ready(&self) -> bool {
        self.providers.iter().all(|p| p.jwks.is_ready())
    }

    /// Every provider's config and JWKS cache, in config order.
    pub fn providers(&self) -> impl Iterator<Item = (&ProviderConfig, &Arc<JwksCache>)> {
        self.providers.iter().map(|p| (&p.config, &p.jwks))
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

    /// Verifies one token at time `now` (unix seconds).
    pub async fn verify(&self, token: &str, now: i64) -> Result<Arc<VerifiedToken>, TokenError> {
        if token.len() > self.max_token_bytes {
            return Err(TokenError::TooLarge);
        }
        let key: [u8; 32] = {
            let d = digest::digest(&digest::SHA256, token.as_bytes());
            let mut k = [0u8; 32];
            k.copy_from_slice(d.as_ref());
            k
        };
        if let Some(hit) = self.cache.get(&key)
            && now < hit.until
        {
            let provider = self
                .providers
                .get(hit.token.provider())
                .ok_or(TokenError::UnknownIssuer)?;
            // A key gone from the JWKS: verify from scratch (and be refused like a new token).
            if provider.jwks.holds(hit.key) {
                self.cache_hits.inc();
                // The cache only skips signature work: time is re-checked against this `now`.
                check_time(hit.token.times(), now, provider.skew, provider.max_lifetime)?;
                return Ok(hit.token);
            }
        }
        self.cache_misses.inc();

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
        self.cache_entries
            .set(i64::try_from(self.cache.len()).unwrap_or(i64::MAX));
        Ok(verified)
    }

    /// Finds the key and checks the signature; an unknown `kid` may trigger one (rate-limited)
    /// refetch of the provider's keys. Returns the fingerprint of the key that verified.
    async fn check_signature(
        &self,
        provider: &Provider,
        jws: &CompactJws<'_>,
    ) -> Result<u64, TokenError> {
        let max = provider.config.jwks.max_keys_without_kid;
        let keys = provider.jwks.current().ok_or(TokenError::KeysUnavailable)?;
        match jws::verify_signature_with(jws, &keys, max) {
            Ok(key) => return Ok(key.fingerprint()),
            Err(KeyOutcome::UnknownKid) => {}
            Err(other) => return Err(other.into()),
        }
        drop(keys);
        if !provider.jwks.refetch_for_unknown_kid().await {
            return Err(TokenError::UnknownKid);
        }
        let keys = provider.jwks.current().ok_or(TokenError::KeysUnavailable)?;
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
mod tests {
    use super::*;

    #[test]
    fn reasons_are_distinct_and_only_keys_unavailable_is_a_dependency_failure() {
        use TokenError::*;
        let all = [
            TooLarge,
            Malformed("x"),
            Opaque,
            UnsupportedAlgorithm,
            AlgorithmNotAllowed,
            UnsupportedCrit,
            UnknownIssuer,
            UnknownKid,
            KeyMismatch,
            BadSignature,
            Expired,
            NotYetValid,
            LifetimeTooLong,
            WrongAudience,
            MissingClaim,
            KeysUnavailable,
        ];
        let reasons: std::collections::HashSet<_> = all.iter().map(TokenError::reason).collect();
        assert_eq!(reasons.len(), all.len());
        for e in &all {
            assert_eq!(e.is_dependency_failure(), *e == KeysUnavailable);
        }
    }

    #[test]
    fn verify_with_keys_checks_issuer_and_size() {
        let provider: ProviderConfig = serde_json::from_value(serde_json::json!({
            "name": "p", "issuer": "https://i", "jwks": {"file": "/nonexistent"}}))
        .unwrap();
        let keys = KeySet::default();
        let t = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL28iLCJleHAiOjF9.c2ln";
        assert_eq!(
            verify_with_keys(t, &keys, &provider, 8192, 0).unwrap_err(),
            TokenError::UnknownIssuer
        );
        assert_eq!(
            verify_with_keys(t, &keys, &provider, 10, 0).unwrap_err(),
            TokenError::TooLarge
        );
    }
}
