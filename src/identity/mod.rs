//! The caller's transport identity: SPIFFE ID, certificate facts, from the sources the config trusts.

pub mod certificate;
pub mod spiffe;
pub mod xfcc;

use std::collections::HashMap;

use crate::check::PeerInfo;
use crate::config::IdentityConfig;
pub use spiffe::SpiffeId;

/// Which source an identity came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `attributes.source.principal`.
    Principal,
    /// `attributes.source.certificate`.
    Certificate,
    /// `x-forwarded-client-cert`.
    Xfcc,
}

/// What we know about the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The SPIFFE ID, if the peer has one.
    pub spiffe_id: Option<SpiffeId>,
    /// Where the SPIFFE ID (or, without one, the identity) came from.
    pub source: Source,
    /// SHA-256 of the peer certificate's DER, when a certificate or an XFCC `Hash` was seen.
    pub cert_sha256: Option<[u8; 32]>,
    /// DNS SANs of the certificate.
    pub dns_sans: Vec<String>,
    /// Certificate subject (RFC 4514 string), when known.
    pub subject: Option<String>,
}

/// A presented identity was malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// A `spiffe://` principal or URI SAN that is not a valid SPIFFE ID.
    #[error("invalid SPIFFE ID: {0}")]
    InvalidSpiffeId(#[from] spiffe::SpiffeIdError),
    /// The forwarded certificate could not be decoded or parsed.
    #[error("invalid peer certificate: {0}")]
    InvalidCertificate(String),
    /// The XFCC header could not be parsed.
    #[error("invalid x-forwarded-client-cert: {0}")]
    InvalidXfcc(String),
}

impl IdentityError {
    /// Fixed label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            IdentityError::InvalidSpiffeId(_) => "peer_invalid_spiffe_id",
            IdentityError::InvalidCertificate(_) => "peer_invalid_certificate",
            IdentityError::InvalidXfcc(_) => "peer_invalid_xfcc",
        }
    }
}

/// Resolves the peer identity from the configured sources, in order. `Ok(None)`: no identity.
pub fn resolve(
    cfg: &IdentityConfig,
    peer: &PeerInfo,
    headers: &HashMap<String, String>,
) -> Result<Option<PeerIdentity>, IdentityError> {
    let _ = (cfg, peer, headers);
    todo!()
}

/// Whether `id`'s trust domain is accepted by `cfg.trust_domains` (empty: any).
pub fn trust_domain_allowed(cfg: &IdentityConfig, id: &SpiffeId) -> bool {
    cfg.trust_domains.is_empty() || cfg.trust_domains.iter().any(|td| td == id.trust_domain())
}
