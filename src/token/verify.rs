//! Compact JWS parsing, signature verification and claim validation, with the verified-token cache.

use std::sync::Arc;

use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::Algorithm;
use crate::config::{LimitsConfig, ProviderConfig};
use crate::telemetry::Metrics;

/// The registered claims mesh-authz reads, type-checked, plus every claim as JSON.
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
    /// Every claim.
    pub raw: Map<String, Value>,
}

/// A token whose signature and claims passed.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// Index of the provider in the config.
    pub provider: usize,
    /// The provider's name.
    pub provider_name: Arc<str>,
    /// Signature algorithm.
    pub alg: Algorithm,
    /// Key id, if the header had one.
    pub kid: Option<String>,
    /// The claims.
    pub claims: Claims,
}

/// Why a token was refused. `reason()` is a fixed, low-cardinality label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Over `limits.max_token_bytes`.
    #[error("token larger than the limit")]
    TooLarge,
    /// Not a compact JWS, bad base64url, bad JSON, wrong claim types…
    #[error("malformed token: {0}")]
    Malformed(&'static str),
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

/// Verifies tokens for every configured provider. Cheap to share (`Arc`).
pub struct Verifier {
    _private: (),
}

impl Verifier {
    /// Builds the verifier (no I/O yet; call [`Verifier::start`]).
    pub fn new(
        providers: &[ProviderConfig],
        limits: &LimitsConfig,
        metrics: Metrics,
    ) -> Result<Self, crate::token::jwks::JwksError> {
        let _ = (providers, limits, metrics);
        todo!()
    }

    /// Loads every provider's keys once, then keeps refreshing them in the background until
    /// `cancel` fires. Returns after the first load attempt of every provider.
    pub async fn start(&self, cancel: CancellationToken) {
        let _ = cancel;
        todo!()
    }

    /// True once every provider holds keys.
    pub fn ready(&self) -> bool {
        todo!()
    }

    /// The provider config at `index`.
    pub fn provider(&self, index: usize) -> &ProviderConfig {
        let _ = index;
        todo!()
    }

    /// Verifies one token at time `now` (unix seconds).
    pub async fn verify(&self, token: &str, now: i64) -> Result<Arc<VerifiedToken>, TokenError> {
        let _ = (token, now);
        todo!()
    }
}
