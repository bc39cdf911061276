//! The peer certificate Envoy forwards (`include_peer_certificate`): URL-encoded PEM.
//!
//! Envoy has already validated the chain; here we only decode the leaf and read the facts the
//! checks need: its SPIFFE ID (at most one `spiffe://` URI SAN, X509-SVID spec §2), DNS SANs,
//! subject and the SHA-256 of its DER (RFC 8705 `x5t#S256`).

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use x509_parser::extensions::GeneralName;
use x509_parser::objects::oid_registry;

use super::IdentityError;
use crate::spiffe::SpiffeId;

/// Largest encoded certificate input accepted, in bytes.
pub const MAX_CERT_INPUT_LEN: usize = 64 * 1024;

/// Facts read from a peer certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    /// The SPIFFE ID from the certificate's single `spiffe://` URI SAN, if it has one.
    pub spiffe_id: Option<SpiffeId>,
    /// Every URI SAN, in certificate order.
    pub uri_sans: Vec<String>,
    /// DNS SANs, in certificate order.
    pub dns_sans: Vec<String>,
    /// Subject as a string (x509-parser's RFC 4514-style rendering); `None` if empty.
    pub subject: Option<String>,
    /// SHA-256 of the certificate's DER.
    pub sha256: [u8; 32],
}

fn invalid(msg: &str) -> IdentityError {
    IdentityError::InvalidCertificate(msg.to_owned())
}

/// Decodes a URL-encoded (or plain) PEM and returns the DER of its first `CERTIFICATE` block.
pub fn decode_der(encoded: &str) -> Result<CertificateDer<'static>, IdentityError> {
    if encoded.len() > MAX_CERT_INPUT_LEN {
        return Err(invalid("input too large"));
    }
    // Percent-decoding, not form-decoding: a '+' in base64 must stay a '+'. Plain PEM has no '%'
    // and passes through unchanged.
    let pem: Vec<u8> = percent_encoding::percent_decode_str(encoded).collect();
    // The error's text is not passed on: it could quote certificate content.
    CertificateDer::from_pem_slice(&pem).map_err(|_| invalid("no decodable PEM CERTIFICATE block"))
}

/// SHA-256 of a DER encoding.
pub fn sha256(der: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, der).as_ref());
    out
}

/// The RFC 8705 `x5t#S256` form of a thumbprint: base64url without padding.
pub fn thumbprint_b64url(sha256: &[u8; 32]) -> String {
    URL_SAFE_NO_PAD.encode(sha256)
}

/// SHA-256 of the DER of the first certificate in a PEM (plain or URL-encoded); the certificate
/// must parse as X.509. Used to bind a token to a certificate (`mint --bind-cert`).
pub fn sha256_of_pem(pem: &str) -> Result<[u8; 32], IdentityError> {
    let der = decode_der(pem)?;
    parse_x509(&der)?;
    Ok(sha256(&der))
}

fn parse_x509(der: &[u8]) -> Result<x509_parser::certificate::X509Certificate<'_>, IdentityError> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(invalid("trailing data after the certificate")),
        Err(_) => Err(invalid("not a valid X.509 certificate")),
    }
}

/// Whether a URI has the `spiffe` scheme (any case, so `SPIFFE://` is caught and then rejected by
/// the strict parser instead of slipping past as "not SPIFFE").
pub fn is_spiffe_uri(uri: &str) -> bool {
    uri.get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("spiffe:"))
}

/// Parsed forwarded certificates, keyed by their encoded form. Envoy forwards the same PEM on
/// every check of a connection; this keeps each one's facts so it is decoded and parsed once.
///
/// The key is the whole encoded text, compared exactly (the cache's hasher only picks the slot),
/// so one certificate can never be answered with another's facts, however its text was chosen.
/// Bounded: at most `capacity` certificates (each a few KiB), least recently used out first.
/// Failures are not kept (the input comes from the proxy's own TLS handshake).
pub struct CertificateCache {
    entries: quick_cache::sync::Cache<String, std::sync::Arc<PeerCertificate>>,
}

impl std::fmt::Debug for CertificateCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateCache")
            .field("entries", &self.entries.len())
            .finish()
    }
}

/// Certificates a [`CertificateCache`] keeps by default: a few thousand callers' connections.
pub const DEFAULT_CERTIFICATE_CACHE_CAPACITY: usize = 4096;

impl CertificateCache {
    /// An empty cache holding at most `capacity` certificates.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: quick_cache::sync::Cache::new(capacity.max(1)),
        }
    }

    /// The facts of `encoded` (`None` for an empty input), parsed at most once while cached.
    pub fn parse(
        &self,
        encoded: &str,
    ) -> Result<Option<std::sync::Arc<PeerCertificate>>, IdentityError> {
        if encoded.is_empty() {
            return Ok(None);
        }
        if let Some(hit) = self.entries.get(encoded) {
            return Ok(Some(hit));
        }
        let parsed = std::sync::Arc::new(parse_forwarded(encoded)?);
        self.entries.insert(encoded.to_owned(), parsed.clone());
        Ok(Some(parsed))
    }

    /// Certificates held now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.entries.len() == 0
    }
}

/// Decodes and parses the certificate Envoy forwards as `attributes.source.certificate`.
pub fn parse_forwarded(encoded: &str) -> Result<PeerCertificate, IdentityError> {
    let der = decode_der(encoded)?;
    let cert = parse_x509(&der)?;

    let mut uri_sans = Vec::new();
    let mut dns_sans = Vec::new();
    let san = cert
        .subject_alternative_name()
        .map_err(|_| invalid("invalid or duplicate subjectAltName extension"))?;
    if let Some(san) = san {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(u) => uri_sans.push((*u).to_owned()),
                GeneralName::DNSName(d) => dns_sans.push((*d).to_owned()),
                GeneralName::Invalid(..) => return Err(invalid("malformed subjectAltName entry")),
                _ => {}
            }
        }
    }

    let mut spiffe = uri_sans.iter().filter(|u| is_spiffe_uri(u));
    let spiffe_id = match (spiffe.next(), spiffe.next()) {
        (None, _) => None,
        (Some(u), None) => Some(SpiffeId::parse(u)?),
        (Some(_), Some(_)) => return Err(invalid("more than one SPIFFE URI SAN")),
    };

    let subject = cert
        .subject()
        .to_string_with_registry(oid_registry())
        .map_err(|_| invalid("undecodable subject"))?;

    Ok(PeerCertificate {
        spiffe_id,
        uri_sans,
        dns_sans,
        subject: (!subject.is_empty()).then_some(subject),
        sha256: sha256(&der),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

    fn cert(sans: Vec<SanType>, cn: Option<&str>) -> rcgen::Certificate {
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans;
        let mut dn = DistinguishedName::new();
        if let Some(cn) = cn {
            dn.push(DnType::CommonName, cn);
            dn.push(DnType::OrganizationName, "Acme");
        }
        params.distinguished_name = dn;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap()
    }

    fn uri(s: &str) -> SanType {
        SanType::URI(s.try_into().unwrap())
    }
    fn dns(s: &str) -> SanType {
        SanType::DnsName(s.try_into().unwrap())
    }
    fn url_encode(pem: &str) -> String {
        utf8_percent_encode(pem, NON_ALPHANUMERIC).to_string()
    }

    #[test]
    fn spiffe_uri_dns_subject_thumbprint() {
        let c = cert(
            vec![
                uri("spiffe://cluster.local/ns/a/sa/b"),
                uri("https://example.com/x"),
                dns("a.example.com"),
                dns("b.example.com"),
            ],
            Some("svc"),
        );
        let want = sha256(c.der());
        let expected_digest = digest::digest(&digest::SHA256, c.der());
        assert_eq!(&want[..], expected_digest.as_ref());
        for input in [url_encode(&c.pem()), c.pem()] {
            let p = parse_forwarded(&input).unwrap();
            assert_eq!(
                p.spiffe_id.as_ref().map(|s| s.as_str()),
                Some("spiffe://cluster.local/ns/a/sa/b")
            );
            assert_eq!(p.uri_sans.len(), 2);
            assert_eq!(p.dns_sans, ["a.example.com", "b.example.com"]);
            assert_eq!(p.subject.as_deref(), Some("CN=svc, O=Acme"));
            assert_eq!(p.sha256, want);
            assert_eq!(sha256_of_pem(&input).unwrap(), want);
        }
        let tp = thumbprint_b64url(&want);
        assert_eq!(tp.len(), 43);
        assert!(!tp.contains(['=', '+', '/']));
        assert_eq!(URL_SAFE_NO_PAD.decode(&tp).unwrap(), want);
    }

    #[test]
    fn thumbprint_known_answer() {
        // SHA-256("abc"), FIPS 180-2 example, in x5t#S256 form.
        let d = sha256(b"abc");
        assert_eq!(
            hex::encode(d),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            thumbprint_b64url(&d),
            "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
        );
    }

    #[test]
    fn no_sans_no_subject() {
        let c = cert(vec![], None);
        let p = parse_forwarded(&c.pem()).unwrap();
        assert_eq!(p.spiffe_id, None);
        assert!(p.uri_sans.is_empty() && p.dns_sans.is_empty());
        assert_eq!(p.subject, None);
    }

    #[test]
    fn non_spiffe_uri_only() {
        let c = cert(vec![uri("https://example.com/svc")], Some("x"));
        let p = parse_forwarded(&url_encode(&c.pem())).unwrap();
        assert_eq!(p.spiffe_id, None);
        assert_eq!(p.uri_sans, ["https://example.com/svc"]);
    }

    #[test]
    fn two_spiffe_uris_rejected() {
        let c = cert(vec![uri("spiffe://td/a"), uri("spiffe://td/b")], Some("x"));
        let err = parse_forwarded(&url_encode(&c.pem())).unwrap_err();
        assert_eq!(err, invalid("more than one SPIFFE URI SAN"));
        assert_eq!(err.reason(), "peer_invalid_certificate");
        // An upper-case scheme still counts as SPIFFE.
        let c = cert(vec![uri("spiffe://td/a"), uri("SPIFFE://td/b")], None);
        assert!(parse_forwarded(&c.pem()).is_err());
    }

    #[test]
    fn invalid_spiffe_uri_rejected() {
        for bad in [
            "spiffe://td/a/../b",
            "SPIFFE://td/a",
            "spiffe://TD/a",
            "spiffe://td/a/",
        ] {
            let c = cert(vec![uri(bad)], None);
            let err = parse_forwarded(&c.pem()).unwrap_err();
            assert!(
                matches!(err, IdentityError::InvalidSpiffeId(_)),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn plus_sign_survives_decoding() {
        // A PEM whose base64 contains '+' must decode identically with and without encoding of it.
        for _ in 0..8 {
            let c = cert(vec![uri("spiffe://td/x")], Some("plus"));
            let pem = c.pem();
            if pem.contains('+') {
                let enc = url_encode(&pem).replace("%2B", "+");
                assert_eq!(sha256_of_pem(&enc).unwrap(), sha256(c.der()));
                return;
            }
        }
    }

    #[test]
    fn garbage_rejected() {
        let c = cert(vec![], Some("x"));
        let pem = c.pem();
        let truncated = &pem[..pem.len() / 2];
        let mut der_with_trailer = c.der().to_vec();
        der_with_trailer.push(0);
        let trailer_pem = pem::encode(&pem::Pem::new("CERTIFICATE", der_with_trailer));
        let not_x509 = pem::encode(&pem::Pem::new("CERTIFICATE", vec![0x30, 0x03, 1, 2, 3]));
        let key_only = pem::encode(&pem::Pem::new("PRIVATE KEY", vec![1, 2, 3]));
        let too_big = format!("{pem}{}", " ".repeat(MAX_CERT_INPUT_LEN));
        let cases = [
            "",
            "garbage",
            "%ZZ%",
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
            truncated,
            &trailer_pem,
            &not_x509,
            &key_only,
            &too_big,
        ];
        for input in cases {
            let err = parse_forwarded(input).unwrap_err();
            assert!(matches!(err, IdentityError::InvalidCertificate(_)), "{err}");
            assert!(sha256_of_pem(input).is_err());
        }
    }

    #[test]
    fn first_certificate_block_is_used() {
        let a = cert(vec![uri("spiffe://td/a")], None);
        let b = cert(vec![uri("spiffe://td/b")], None);
        let both = format!("{}{}", a.pem(), b.pem());
        let p = parse_forwarded(&url_encode(&both)).unwrap();
        assert_eq!(p.spiffe_id.unwrap().as_str(), "spiffe://td/a");
        assert_eq!(p.sha256, sha256(a.der()));
    }
}
