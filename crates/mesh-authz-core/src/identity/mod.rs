//! The caller's transport identity: SPIFFE ID, certificate facts, from the sources the config trusts.
//!
//! Sources, in the configured order: Envoy's `source.principal`, the forwarded peer certificate
//! (`source.certificate`), and — only with `identity.trust_xfcc: true` — the LAST element of
//! `x-forwarded-client-cert`, read as `identity.xfcc` says the proxy writes it (see `from_xfcc`:
//! no text inside a certificate may change the identity or thumbprint read). Trust-domain
//! filtering is the check pipeline's job ([`peer_in_trust_domains`]).

pub mod certificate;

pub mod xfcc;

use crate::config::{IdentityConfig, IdentitySource, XfccConfig, XfccFormat, XfccProxyMode};
use crate::request::{ConnectionPeer, Headers, PeerInfo};
pub use crate::spiffe::{self, SpiffeId};

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

/// Name of the XFCC request header (request header names are lower case).
pub const XFCC_HEADER: &str = crate::request::XFCC_HEADER;

/// Whether `id`'s trust domain is one of `cfg.trust_domains` (an empty list accepts any).
pub fn trust_domain_allowed(cfg: &IdentityConfig, id: &SpiffeId) -> bool {
    cfg.trust_domains.is_empty() || cfg.trust_domains.iter().any(|td| id.is_member_of(td))
}

/// Whether a resolved peer belongs to the configured trust domains. With a non-empty
/// `trust_domains`, a peer without a SPIFFE ID (a DNS-only certificate, a subject principal, a
/// non-SPIFFE URI) is foreign as much as one from another trust domain.
pub fn peer_in_trust_domains(cfg: &IdentityConfig, peer: &PeerIdentity) -> bool {
    match &peer.spiffe_id {
        Some(id) => trust_domain_allowed(cfg, id),
        None => cfg.trust_domains.is_empty(),
    }
}

/// What one source said about the peer.
#[derive(Debug, Default)]
struct Facts {
    spiffe_id: Option<SpiffeId>,
    cert_sha256: Option<[u8; 32]>,
    dns_sans: Vec<String>,
    subject: Option<String>,
}

impl Facts {
    fn is_empty(&self) -> bool {
        self.spiffe_id.is_none()
            && self.cert_sha256.is_none()
            && self.dns_sans.is_empty()
            && self.subject.is_none()
    }
}

/// Whether [`resolve`] reads the `x-forwarded-client-cert` header under `cfg`: only when it is a
/// source and trusted.
pub fn reads_xfcc(cfg: &IdentityConfig) -> bool {
    cfg.trust_xfcc && cfg.sources.contains(&IdentitySource::Xfcc)
}

/// Resolves the peer identity from the configured sources, in order. `Ok(None)`: no identity.
///
/// The first source yielding a SPIFFE ID sets `spiffe_id` and `source` (without any SPIFFE ID,
/// `source` is the first source that yielded anything); `cert_sha256`, `dns_sans` and `subject`
/// come from the first source that has them. A malformed input in any consulted source is an
/// error, and so is a principal whose SPIFFE ID differs from the certificate's (fail closed).
pub fn resolve<H: Headers + ?Sized>(
    cfg: &IdentityConfig,
    peer: &PeerInfo,
    headers: &H,
) -> Result<Option<PeerIdentity>, IdentityError> {
    resolve_with(cfg, peer, headers, None)
}

/// [`resolve`], with forwarded certificates parsed through `certs` (a connection's repeated
/// checks then parse its certificate once).
pub fn resolve_with<H: Headers + ?Sized>(
    cfg: &IdentityConfig,
    peer: &PeerInfo,
    headers: &H,
    certs: Option<&certificate::CertificateCache>,
) -> Result<Option<PeerIdentity>, IdentityError> {
    let mut out: Option<PeerIdentity> = None;
    let mut principal_id: Option<SpiffeId> = None;
    let mut certificate_id: Option<SpiffeId> = None;

    for src in &cfg.sources {
        let (source, facts) = match src {
            IdentitySource::Principal => (Source::Principal, from_principal(&peer.principal)?),
            IdentitySource::Certificate => match (&peer.connection, certs) {
                (Some(c), _) if peer.certificate.is_empty() => {
                    (Source::Certificate, from_connection(c)?)
                }
                (_, Some(cache)) => (
                    Source::Certificate,
                    from_parsed(cache.parse(&peer.certificate)?.as_deref()),
                ),
                (_, None) => (Source::Certificate, from_certificate(&peer.certificate)?),
            },
            IdentitySource::Xfcc => {
                // Without trust_xfcc the header is client-controlled: ignore it entirely.
                match cfg
                    .trust_xfcc
                    .then(|| headers.header(XFCC_HEADER))
                    .flatten()
                {
                    Some(h) => (Source::Xfcc, from_xfcc(h, &cfg.xfcc)?),
                    None => continue,
                }
            }
        };
        if facts.is_empty() {
            continue;
        }
        // Principal and certificate describe the same TLS connection: they must agree.
        let slot = match source {
            Source::Principal => Some(&mut principal_id),
            Source::Certificate => Some(&mut certificate_id),
            Source::Xfcc => None,
        };
        if let (Some(slot), Some(id)) = (slot, &facts.spiffe_id) {
            slot.get_or_insert_with(|| id.clone());
        }
        if let (Some(p), Some(c)) = (&principal_id, &certificate_id) {
            if p != c {
                return Err(IdentityError::InvalidCertificate(
                    "principal and certificate disagree".to_owned(),
                ));
            }
        }
        merge(&mut out, source, facts);
    }
    Ok(out)
}

fn merge(out: &mut Option<PeerIdentity>, source: Source, facts: Facts) {
    let id = out.get_or_insert_with(|| PeerIdentity {
        spiffe_id: None,
        source,
        cert_sha256: None,
        dns_sans: Vec::new(),
        subject: None,
    });
    if id.spiffe_id.is_none() && facts.spiffe_id.is_some() {
        id.spiffe_id = facts.spiffe_id;
        id.source = source;
    }
    if id.cert_sha256.is_none() {
        id.cert_sha256 = facts.cert_sha256;
    }
    if id.dns_sans.is_empty() {
        id.dns_sans = facts.dns_sans;
    }
    if id.subject.is_none() {
        id.subject = facts.subject;
    }
}

/// `source.principal`: a SPIFFE ID, or (Envoy's fallback) the certificate subject.
fn from_principal(principal: &str) -> Result<Facts, IdentityError> {
    if principal.is_empty() {
        return Ok(Facts::default());
    }
    // Any-case `spiffe:` goes to the strict parser, so `SPIFFE://…` errors instead of passing
    // as a subject.
    if certificate::is_spiffe_uri(principal) {
        return Ok(Facts {
            spiffe_id: Some(SpiffeId::parse(principal)?),
            ..Facts::default()
        });
    }
    Ok(Facts {
        subject: Some(principal.to_owned()),
        ..Facts::default()
    })
}

/// `source.certificate`: URL-encoded PEM of the peer certificate.
fn from_certificate(encoded: &str) -> Result<Facts, IdentityError> {
    if encoded.is_empty() {
        return Ok(Facts::default());
    }
    Ok(from_parsed(Some(&certificate::parse_forwarded(encoded)?)))
}

fn from_parsed(c: Option<&certificate::PeerCertificate>) -> Facts {
    match c {
        None => Facts::default(),
        Some(c) => Facts {
            spiffe_id: c.spiffe_id.clone(),
            cert_sha256: Some(c.sha256),
            dns_sans: c.dns_sans.clone(),
            subject: c.subject.clone(),
        },
    }
}

/// The connection's peer certificate as the proxy reported it: a `spiffe:` URI SAN must be a
/// valid SPIFFE ID (any case of the scheme goes to the strict parser, as for a forwarded
/// certificate); another URI SAN is not an identity.
fn from_connection(c: &ConnectionPeer) -> Result<Facts, IdentityError> {
    let spiffe_id = match c.uri_san.as_deref() {
        Some(u) if certificate::is_spiffe_uri(u) => Some(SpiffeId::parse(u)?),
        _ => None,
    };
    Ok(Facts {
        spiffe_id,
        cert_sha256: c.sha256,
        dns_sans: c.dns_sans.clone(),
        subject: c.subject.clone().filter(|s| !s.is_empty()),
    })
}

fn xfcc_err(msg: &str) -> IdentityError {
    IdentityError::InvalidXfcc(msg.to_owned())
}

/// `x-forwarded-client-cert` as `cfg` says the trusted proxy writes it: identity from the LAST
/// element (the one the nearest proxy appended), after the checks that keep certificate text from
/// forging it (Envoy writes URI and DNS SANs unescaped):
///
/// * `sanitize_set`: exactly one element, so a `,` in a SAN (which splits Envoy's element) is seen;
/// * every element carrying a `Cert` must agree with it: its `Hash`, and its `URI` and `DNS` fields
///   (when written) must be exactly the certificate's SANs. The element whose SAN was split or
///   had `;…` injected no longer does, even when the forged tail carries a victim's public
///   certificate;
/// * `require_cert`: the last element must carry a `Cert`; identity, thumbprint, DNS SANs and
///   subject are then read from the certificate, never from the other fields;
/// * text format, last element without `Cert`: keys in Envoy's order and at most one `URI`, so a
///   SAN cannot add a second URI or move one after the DNS fields.
fn from_xfcc(header: &str, cfg: &XfccConfig) -> Result<Facts, IdentityError> {
    let parsed = match cfg.format {
        XfccFormat::Text => xfcc::parse(header),
        XfccFormat::Json => xfcc::parse_json(header),
    };
    let mut elements = parsed.map_err(|e| IdentityError::InvalidXfcc(e.to_string()))?;
    if cfg.proxy_mode == XfccProxyMode::SanitizeSet && elements.len() > 1 {
        return Err(xfcc_err(
            "more than one element behind a sanitize_set proxy",
        ));
    }
    // Every element that carries a certificate must say what the certificate says.
    let mut last_cert = None;
    let count = elements.len();
    for (i, el) in elements.iter().enumerate() {
        if let Some(cert) = &el.cert {
            let c = certificate::parse_forwarded(cert)?;
            agrees_with_cert(el, &c)?;
            if i + 1 == count {
                last_cert = Some(c);
            }
        }
    }
    let Some(el) = elements.pop() else {
        return Ok(Facts::default());
    };
    if let Some(c) = last_cert {
        return Ok(Facts {
            spiffe_id: c.spiffe_id,
            cert_sha256: Some(c.sha256),
            dns_sans: c.dns_sans,
            subject: c.subject,
        });
    }
    if cfg.require_cert {
        return Err(xfcc_err("no Cert in the last element"));
    }
    if !el.envoy_order {
        return Err(xfcc_err("fields out of the order Envoy writes them"));
    }
    if !el.envoy_quoting {
        return Err(xfcc_err("a quoted value Envoy never quotes"));
    }
    if cfg.format == XfccFormat::Text && el.uris.len() > 1 {
        return Err(xfcc_err(
            "more than one URI in the last element without a Cert to check them",
        ));
    }

    // Envoy emits an empty `URI=` when the certificate has no URI SAN; that is not an identity.
    let mut spiffe = el.uris.iter().filter(|u| certificate::is_spiffe_uri(u));
    let spiffe_id = match (spiffe.next(), spiffe.next()) {
        (None, _) => None,
        (Some(u), None) => Some(SpiffeId::parse(u)?),
        (Some(_), Some(_)) => return Err(xfcc_err("more than one SPIFFE URI in the last element")),
    };
    let cert_sha256 = match &el.hash {
        Some(h) => Some(parse_hash(h)?),
        None => None,
    };
    Ok(Facts {
        spiffe_id,
        cert_sha256,
        dns_sans: el.dns.into_iter().filter(|d| !d.is_empty()).collect(),
        subject: el.subject.filter(|s| !s.is_empty()),
    })
}

/// An element's `Hash`, `URI` and `DNS` fields against its `Cert`. Fields the proxy was not told
/// to write are absent and not compared; a written list must be the certificate's SANs exactly
/// (as a multiset; Envoy writes a lone empty value when the certificate has none).
fn agrees_with_cert(
    el: &xfcc::XfccElement,
    c: &certificate::PeerCertificate,
) -> Result<(), IdentityError> {
    if let Some(h) = &el.hash
        && parse_hash(h)? != c.sha256
    {
        return Err(xfcc_err("Hash does not match Cert"));
    }
    if !same_sans(&el.uris, &c.uri_sans) {
        return Err(xfcc_err("URI does not match Cert"));
    }
    if !same_sans(&el.dns, &c.dns_sans) {
        return Err(xfcc_err("DNS does not match Cert"));
    }
    Ok(())
}

fn same_sans(fields: &[String], sans: &[String]) -> bool {
    if fields.is_empty() || (sans.is_empty() && fields.len() == 1 && fields[0].is_empty()) {
        return true;
    }
    let mut a: Vec<&str> = fields.iter().map(String::as_str).collect();
    let mut b: Vec<&str> = sans.iter().map(String::as_str).collect();
    a.sort_unstable();
    b.sort_unstable();
    a == b
}

/// XFCC `Hash`: 64 hex digits (SHA-256 of the DER).
fn parse_hash(h: &str) -> Result<[u8; 32], IdentityError> {
    let mut out = [0u8; 32];
    if h.len() != 64 {
        return Err(xfcc_err("Hash is not a hex SHA-256"));
    }
    hex::decode_to_slice(h, &mut out).map_err(|_| xfcc_err("Hash is not a hex SHA-256"))?;
    Ok(out)
}

#[cfg(test)]
mod tests;
