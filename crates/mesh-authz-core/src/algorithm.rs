//! The JWS algorithms mesh-authz accepts: a leaf type that config and token verification share.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The asymmetric JWS algorithms mesh-authz accepts. `none` and HMAC are not representable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// ECDSA P-384 with SHA-384.
    ES384,
    /// EdDSA (RFC 8037), polymorphic; only Ed25519 keys are accepted.
    EdDSA,
    /// Ed25519 (RFC 9864 fully-specified name): an OKP key with `crv: Ed25519`.
    Ed25519,
    /// ECDSA P-256 with SHA-256 (RFC 9864 fully-specified name; same signature as ES256).
    ESP256,
    /// ECDSA P-384 with SHA-384 (RFC 9864 fully-specified name; same signature as ES384).
    ESP384,
}

impl Algorithm {
    /// Every supported algorithm.
    pub const ALL: [Algorithm; 12] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
        Algorithm::Ed25519,
        Algorithm::ESP256,
        Algorithm::ESP384,
    ];

    /// The JOSE name, e.g. `RS256`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
            Algorithm::Ed25519 => "Ed25519",
            Algorithm::ESP256 => "ESP256",
            Algorithm::ESP384 => "ESP384",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An algorithm name that is unknown or refused (`none`, HMAC, any casing variant).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("algorithm {0:?} is not supported (asymmetric JWS algorithms only, exact case)")]
pub struct UnsupportedAlgorithm(pub String);

impl FromStr for Algorithm {
    type Err = UnsupportedAlgorithm;

    /// Exact, case-sensitive JOSE names only: `rs256` or `None` are refused.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnsupportedAlgorithm(s.to_string()))
    }
}
