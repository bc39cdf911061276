//! The caller's transport identity: SPIFFE ID, certificate facts, from the sources the config trusts.
//!
//! Sources, in the configured order: Envoy's `source.principal`, the forwarded peer certificate
//! (`source.certificate`), and — only with `identity.trust_xfcc: true` — the LAST element of
//! `x-forwarded-client-cert`. Trust-domain filtering is the check pipeline's job
//! ([`trust_domain_allowed`]).

pub mod certificate;
pub mod spiffe;
pub mod xfcc;

use std::collections::HashMap;

use crate::check::PeerInfo;
use crate::config::{IdentityConfig, IdentitySource};
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

/// Name of the XFCC request header (request header names are lower case).
pub const XFCC_HEADER: &str = "x-forwarded-client-cert";

/// Whether `id`'s trust domain is one of `cfg.trust_domains` (an empty list accepts any).
pub fn trust_domain_allowed(cfg: &IdentityConfig, id: &SpiffeId) -> bool {
    cfg.trust_domains.is_empty() || cfg.trust_domains.iter().any(|td| id.is_member_of(td))
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

/// Resolves the peer identity from the configured sources, in order. `Ok(None)`: no identity.
///
/// The first source yielding a SPIFFE ID sets `spiffe_id` and `source` (without any SPIFFE ID,
/// `source` is the first source that yielded anything); `cert_sha256`, `dns_sans` and `subject`
/// come from the first source that has them. A malformed input in any consulted source is an
/// error, and so is a principal whose SPIFFE ID differs from the certificate's (fail closed).
pub fn resolve(
    cfg: &IdentityConfig,
    peer: &PeerInfo,
    headers: &HashMap<String, String>,
) -> Result<Option<PeerIdentity>, IdentityError> {
    let mut out: Option<PeerIdentity> = None;
    let mut principal_id: Option<SpiffeId> = None;
    let mut certificate_id: Option<SpiffeId> = None;

    for src in &cfg.sources {
        let (source, facts) = match src {
            IdentitySource::Principal => (Source::Principal, from_principal(&peer.principal)?),
            IdentitySource::Certificate => {
                (Source::Certificate, from_certificate(&peer.certificate)?)
            }
            IdentitySource::Xfcc => {
                // Without trust_xfcc the header is client-controlled: ignore it entirely.
                match headers.get(XFCC_HEADER).filter(|_| cfg.trust_xfcc) {
                    Some(h) => (Source::Xfcc, from_xfcc(h)?),
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
    let c = certificate::parse_forwarded(encoded)?;
    Ok(Facts {
        spiffe_id: c.spiffe_id,
        cert_sha256: Some(c.sha256),
        dns_sans: c.dns_sans,
        subject: c.subject,
    })
}

fn xfcc_err(msg: &str) -> IdentityError {
    IdentityError::InvalidXfcc(msg.to_owned())
}

/// The LAST element of `x-forwarded-client-cert` (the one the nearest proxy appended).
fn from_xfcc(header: &str) -> Result<Facts, IdentityError> {
    let el = match xfcc::last_element(header) {
        Ok(Some(el)) => el,
        Ok(None) => return Ok(Facts::default()),
        Err(e) => return Err(IdentityError::InvalidXfcc(e.to_string())),
    };

    // Envoy emits an empty `URI=` when the certificate has no URI SAN; that is not an identity.
    let mut spiffe = el.uris.iter().filter(|u| certificate::is_spiffe_uri(u));
    let mut spiffe_id = match (spiffe.next(), spiffe.next()) {
        (None, _) => None,
        (Some(u), None) => Some(SpiffeId::parse(u)?),
        (Some(_), Some(_)) => return Err(xfcc_err("more than one SPIFFE URI in the last element")),
    };

    let mut cert_sha256 = match &el.hash {
        Some(h) => Some(parse_hash(h)?),
        None => None,
    };
    let mut dns_sans: Vec<String> = el.dns.into_iter().filter(|d| !d.is_empty()).collect();
    let mut subject = el.subject.filter(|s| !s.is_empty());

    if let Some(cert) = &el.cert {
        let c = certificate::parse_forwarded(cert)?;
        // Hash and URI were written from the same certificate; a mismatch means tampering.
        if cert_sha256.is_some_and(|h| h != c.sha256) {
            return Err(xfcc_err("Hash does not match Cert"));
        }
        if spiffe_id.is_some() && c.spiffe_id.is_some() && spiffe_id != c.spiffe_id {
            return Err(xfcc_err("URI does not match Cert"));
        }
        cert_sha256 = Some(c.sha256);
        spiffe_id = spiffe_id.or(c.spiffe_id);
        if dns_sans.is_empty() {
            dns_sans = c.dns_sans;
        }
        subject = subject.or(c.subject);
    }

    Ok(Facts {
        spiffe_id,
        cert_sha256,
        dns_sans,
        subject,
    })
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
mod tests {
    use super::*;
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

    const ALICE: &str = "spiffe://cluster.local/ns/a/sa/alice";
    const BOB: &str = "spiffe://cluster.local/ns/b/sa/bob";

    /// Returns (URL-encoded PEM, DER SHA-256).
    fn cert(uris: &[&str], dns: &[&str]) -> (String, [u8; 32]) {
        let mut params = CertificateParams::default();
        params.subject_alt_names = uris
            .iter()
            .map(|u| SanType::URI((*u).try_into().unwrap()))
            .chain(
                dns.iter()
                    .map(|d| SanType::DnsName((*d).try_into().unwrap())),
            )
            .collect();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "workload");
        params.distinguished_name = dn;
        let c = params.self_signed(&KeyPair::generate().unwrap()).unwrap();
        let enc = utf8_percent_encode(&c.pem(), NON_ALPHANUMERIC).to_string();
        (enc, certificate::sha256(c.der()))
    }

    fn cfg(sources: &[IdentitySource], trust_xfcc: bool) -> IdentityConfig {
        IdentityConfig {
            sources: sources.to_vec(),
            trust_xfcc,
            ..IdentityConfig::default()
        }
    }

    fn peer(principal: &str, certificate: &str) -> PeerInfo {
        PeerInfo {
            principal: principal.to_owned(),
            certificate: certificate.to_owned(),
        }
    }

    fn xfcc(h: &str) -> HashMap<String, String> {
        HashMap::from([(XFCC_HEADER.to_owned(), h.to_owned())])
    }

    fn id(s: &str) -> Option<SpiffeId> {
        Some(SpiffeId::parse(s).unwrap())
    }

    use IdentitySource::{Certificate as C, Principal as P, Xfcc as X};
    const ALL: &[IdentitySource] = &[P, C, X];
    const H64: &str = "468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688";

    #[test]
    fn nothing_is_none() {
        let none = HashMap::new();
        assert_eq!(resolve(&cfg(ALL, true), &peer("", ""), &none), Ok(None));
        assert_eq!(
            resolve(
                &cfg(&[], true),
                &peer(ALICE, ""),
                &xfcc("URI=spiffe://td/x")
            ),
            Ok(None)
        );
        assert_eq!(
            resolve(&IdentityConfig::default(), &peer("", ""), &none),
            Ok(None)
        );
        // An empty XFCC header is absent.
        assert_eq!(resolve(&cfg(ALL, true), &peer("", ""), &xfcc("")), Ok(None));
        // An element with nothing usable (By only, empty URI) is no identity.
        let h = xfcc("By=spiffe://td/gw;URI=");
        assert_eq!(resolve(&cfg(ALL, true), &peer("", ""), &h), Ok(None));
    }

    #[test]
    fn principal_spiffe() {
        let got = resolve(
            &IdentityConfig::default(),
            &peer(ALICE, ""),
            &HashMap::new(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            got,
            PeerIdentity {
                spiffe_id: id(ALICE),
                source: Source::Principal,
                cert_sha256: None,
                dns_sans: vec![],
                subject: None,
            }
        );
    }

    #[test]
    fn principal_invalid_spiffe_is_error() {
        for bad in [
            "spiffe://cluster.local/ns/../x",
            "SPIFFE://td/x",
            "spiffe://TD/x",
            "spiffe:",
        ] {
            let err =
                resolve(&IdentityConfig::default(), &peer(bad, ""), &HashMap::new()).unwrap_err();
            assert!(
                matches!(err, IdentityError::InvalidSpiffeId(_)),
                "{bad}: {err}"
            );
            assert_eq!(err.reason(), "peer_invalid_spiffe_id");
        }
    }

    #[test]
    fn principal_subject_dn() {
        let dn = "CN=client,O=Acme";
        let got = resolve(&IdentityConfig::default(), &peer(dn, ""), &HashMap::new())
            .unwrap()
            .unwrap();
        assert_eq!(got.spiffe_id, None);
        assert_eq!(got.source, Source::Principal);
        assert_eq!(got.subject.as_deref(), Some(dn));
    }

    #[test]
    fn certificate_source() {
        let (pem, sha) = cert(&[ALICE], &["a.example"]);
        let got = resolve(&IdentityConfig::default(), &peer("", &pem), &HashMap::new())
            .unwrap()
            .unwrap();
        assert_eq!(got.spiffe_id, id(ALICE));
        assert_eq!(got.source, Source::Certificate);
        assert_eq!(got.cert_sha256, Some(sha));
        assert_eq!(got.dns_sans, ["a.example"]);
        assert_eq!(got.subject.as_deref(), Some("CN=workload"));
    }

    #[test]
    fn principal_and_certificate_agree() {
        let (pem, sha) = cert(&[ALICE], &[]);
        let got = resolve(
            &IdentityConfig::default(),
            &peer(ALICE, &pem),
            &HashMap::new(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(got.spiffe_id, id(ALICE));
        assert_eq!(got.source, Source::Principal);
        assert_eq!(got.cert_sha256, Some(sha));
        assert_eq!(got.subject.as_deref(), Some("CN=workload"));
        // Reversed order: the certificate is the source.
        let got = resolve(&cfg(&[C, P], false), &peer(ALICE, &pem), &HashMap::new())
            .unwrap()
            .unwrap();
        assert_eq!(got.source, Source::Certificate);
    }

    #[test]
    fn principal_and_certificate_disagree_is_error() {
        let (pem, _) = cert(&[BOB], &[]);
        for order in [&[P, C][..], &[C, P][..]] {
            let err = resolve(&cfg(order, false), &peer(ALICE, &pem), &HashMap::new()).unwrap_err();
            assert_eq!(
                err,
                IdentityError::InvalidCertificate("principal and certificate disagree".into())
            );
        }
    }

    #[test]
    fn subject_principal_with_spiffe_certificate() {
        let (pem, sha) = cert(&[ALICE], &[]);
        let got = resolve(
            &IdentityConfig::default(),
            &peer("CN=x", &pem),
            &HashMap::new(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(got.spiffe_id, id(ALICE));
        assert_eq!(got.source, Source::Certificate);
        assert_eq!(got.cert_sha256, Some(sha));
        // The first source with a subject wins.
        assert_eq!(got.subject.as_deref(), Some("CN=x"));
    }

    #[test]
    fn invalid_certificate_is_error_even_with_a_good_principal() {
        let err = resolve(
            &IdentityConfig::default(),
            &peer(ALICE, "garbage"),
            &HashMap::new(),
        )
        .unwrap_err();
        assert_eq!(err.reason(), "peer_invalid_certificate");
        let (two, _) = cert(&[ALICE, BOB], &[]);
        let err = resolve(
            &IdentityConfig::default(),
            &peer(ALICE, &two),
            &HashMap::new(),
        )
        .unwrap_err();
        assert_eq!(err.reason(), "peer_invalid_certificate");
    }

    #[test]
    fn unlisted_source_is_not_read() {
        // Principal only: a garbage certificate is never looked at.
        let got = resolve(&cfg(&[P], false), &peer(ALICE, "garbage"), &HashMap::new())
            .unwrap()
            .unwrap();
        assert_eq!(got.spiffe_id, id(ALICE));
        // Certificate only: the principal is never looked at.
        assert_eq!(
            resolve(&cfg(&[C], false), &peer(ALICE, ""), &HashMap::new()),
            Ok(None)
        );
    }

    #[test]
    fn untrusted_xfcc_ignored() {
        let spoof = xfcc(&format!("URI={BOB};Hash={H64}"));
        // Listed as a source, but trust_xfcc is false: ignored, even when malformed.
        assert_eq!(resolve(&cfg(&[X], false), &peer("", ""), &spoof), Ok(None));
        assert_eq!(
            resolve(&cfg(&[X], false), &peer("", ""), &xfcc("Hash=\"")),
            Ok(None)
        );
        let got = resolve(&cfg(&[X, P], false), &peer(ALICE, ""), &spoof)
            .unwrap()
            .unwrap();
        assert_eq!(got.spiffe_id, id(ALICE));
        assert_eq!(got.cert_sha256, None);
        // trust_xfcc true but xfcc not listed: ignored too.
        assert_eq!(
            resolve(&cfg(&[P, C], true), &peer("", ""), &spoof),
            Ok(None)
        );
    }

    #[test]
    fn trusted_xfcc_reads_the_last_element() {
        let h = xfcc(&format!(
            "URI={BOB},By=spiffe://td/ns/app/sa/app;Hash={H64};Subject=\"\";URI={ALICE};DNS=a.example"
        ));
        let got = resolve(&cfg(&[X], true), &peer("", ""), &h)
            .unwrap()
            .unwrap();
        assert_eq!(got.spiffe_id, id(ALICE));
        assert_eq!(got.source, Source::Xfcc);
        assert_eq!(got.cert_sha256.map(hex::encode).as_deref(), Some(H64));
        assert_eq!(got.dns_sans, ["a.example"]);
        assert_eq!(got.subject, None);
        // Upper-case hex is accepted.
        let h = xfcc(&format!("URI={ALICE};Hash={}", H64.to_uppercase()));
        let got = resolve(&cfg(&[X], true), &peer("", ""), &h)
            .unwrap()
            .unwrap();
        assert_eq!(got.cert_sha256.map(hex::encode).as_deref(), Some(H64));
    }

    #[test]
    fn trusted_xfcc_errors() {
        let c = cfg(&[X], true);
        let cases = [
            "Hash=abcdefg".to_owned(),
            "Hash=".to_owned(),
            format!("Hash={}0", H64),
            format!("Hash={}", &H64[..62]),
            format!("Hash={}zz", &H64[..62]),
            "URI=spiffe://td/a;URI=spiffe://td/b".to_owned(),
            "URI=spiffe://td/a;".to_owned(),
            "URI=spiffe://td/a b".to_owned(),
            "Subject=\"x".to_owned(),
            "Hash=a;Hash=b".to_owned(),
        ];
        for h in &cases {
            let err = resolve(&c, &peer("", ""), &xfcc(h)).unwrap_err();
            assert_eq!(err.reason(), "peer_invalid_xfcc", "{h}: {err}");
        }
        let err = resolve(&c, &peer("", ""), &xfcc("URI=spiffe://td/a/")).unwrap_err();
        assert_eq!(err.reason(), "peer_invalid_spiffe_id");
        let err = resolve(&c, &peer("", ""), &xfcc("Cert=\"junk\"")).unwrap_err();
        assert_eq!(err.reason(), "peer_invalid_certificate");
    }

    #[test]
    fn trusted_xfcc_cert_field() {
        let c = cfg(&[X], true);
        let (pem, sha) = cert(&[ALICE], &["w.example"]);
        // Cert alone: SHA-256, SPIFFE ID, DNS and subject from the certificate.
        let got = resolve(&c, &peer("", ""), &xfcc(&format!("Cert=\"{pem}\"")))
            .unwrap()
            .unwrap();
        assert_eq!(got.spiffe_id, id(ALICE));
        assert_eq!(got.cert_sha256, Some(sha));
        assert_eq!(got.dns_sans, ["w.example"]);
        assert_eq!(got.subject.as_deref(), Some("CN=workload"));
        // Consistent Hash and URI.
        let h = format!("Hash={};URI={ALICE};Cert=\"{pem}\"", hex::encode(sha));
        let got = resolve(&c, &peer("", ""), &xfcc(&h)).unwrap().unwrap();
        assert_eq!(got.cert_sha256, Some(sha));
        // Inconsistent Hash or URI: error.
        let h = format!("Hash={H64};Cert=\"{pem}\"");
        assert_eq!(
            resolve(&c, &peer("", ""), &xfcc(&h)),
            Err(xfcc_err("Hash does not match Cert"))
        );
        let h = format!("URI={BOB};Cert=\"{pem}\"");
        assert_eq!(
            resolve(&c, &peer("", ""), &xfcc(&h)),
            Err(xfcc_err("URI does not match Cert"))
        );
    }

    #[test]
    fn merge_order_and_fill() {
        let (pem, sha) = cert(&[ALICE], &[]);
        let h = xfcc(&format!(
            "URI={BOB};Hash={H64};DNS=x.example;Subject=\"CN=x\""
        ));
        // Principal first: its ID wins over XFCC's; the rest is filled from the certificate,
        // then XFCC for what the certificate lacks (DNS).
        let got = resolve(&cfg(ALL, true), &peer(ALICE, &pem), &h)
            .unwrap()
            .unwrap();
        assert_eq!(got.spiffe_id, id(ALICE));
        assert_eq!(got.source, Source::Principal);
        assert_eq!(got.cert_sha256, Some(sha));
        assert_eq!(got.subject.as_deref(), Some("CN=workload"));
        assert_eq!(got.dns_sans, ["x.example"]);
        // XFCC first.
        let got = resolve(&cfg(&[X, P, C], true), &peer(ALICE, &pem), &h)
            .unwrap()
            .unwrap();
        assert_eq!(got.spiffe_id, id(BOB));
        assert_eq!(got.source, Source::Xfcc);
        assert_eq!(got.cert_sha256.map(hex::encode).as_deref(), Some(H64));
        // XFCC with DNS only, then a principal with a SPIFFE ID: source follows the SPIFFE ID.
        let got = resolve(
            &cfg(&[X, P], true),
            &peer(ALICE, ""),
            &xfcc("DNS=d.example"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(got.source, Source::Principal);
        assert_eq!(got.dns_sans, ["d.example"]);
        // Without any SPIFFE ID, the source is the first that said anything.
        let got = resolve(
            &cfg(&[X, P], true),
            &peer("CN=p", ""),
            &xfcc("DNS=d.example"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(got.spiffe_id, None);
        assert_eq!(got.source, Source::Xfcc);
        assert_eq!(got.subject.as_deref(), Some("CN=p"));
    }

    #[test]
    fn trust_domains() {
        let alice = SpiffeId::parse(ALICE).unwrap();
        let mut c = IdentityConfig::default();
        assert!(trust_domain_allowed(&c, &alice));
        c.trust_domains = vec!["other".into(), "cluster.local".into()];
        assert!(trust_domain_allowed(&c, &alice));
        c.trust_domains = vec!["cluster.local.evil".into(), "local".into()];
        assert!(!trust_domain_allowed(&c, &alice));
    }

    #[test]
    fn reasons_are_fixed() {
        let e = IdentityError::InvalidXfcc("x".into());
        assert_eq!(e.reason(), "peer_invalid_xfcc");
    }
}
