//! A stream's request headers and connection attributes as the core's transport-free
//! [`Request`]: what ext_authz's `CheckRequest` would have carried, as far as the check reads it.
//!
//! * headers: only those the checker reads (`Checker::headers_read`, held to by a property
//!   test), repeated values joined with `,` as ext_authz joins them; values that are not UTF-8
//!   kept lossily (they can only fail the checks that read them). Nothing else is copied: a copy
//!   of every header cost more than the rest of a cached check;
//! * method, host and path from `:method`, `:authority` (else `host`) and `:path` (query
//!   stripped); the request id from `x-request-id` (which Envoy sets), else `request.id`;
//! * the peer from the connection: URI SAN, DNS SAN, subject and SHA-256 digest become a
//!   [`ConnectionPeer`] (read by the `certificate` identity source, certificate-bound tokens), and
//!   [`PeerInfo::principal`] is what Envoy's `source.principal` is (URI SAN, else subject).

use std::collections::HashMap;

use mesh_authz_core::check::Checker;
use mesh_authz_core::request::{ConnectionPeer, Headers, PeerInfo, Request};

use crate::host::{Attribute, Stream};

/// The headers the core reads, copied out of Envoy's map (the check may finish on another
/// thread, after the hook that lent Envoy's map has returned).
#[derive(Debug, Default)]
pub(crate) struct CopiedHeaders(Vec<(&'static str, String)>);

impl Headers for CopiedHeaders {
    fn header(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Which of a checker's [`Checker::headers_written`] the request carried when it was read, so
/// that an answer given in the same hook can skip removing a header that is not there (an Envoy
/// call each). Only valid until the request headers change: the filter uses it only when it
/// answers in the hook that read them.
pub(crate) struct Carried<'w> {
    /// The checker's `headers_written()`.
    written: &'w [String],
    /// Bit `i`: `written[i]` is present. More than 64 names: all bits set.
    mask: u64,
}

impl<'w> Carried<'w> {
    fn of(entries: &[(&[u8], &[u8])], written: &'w [String]) -> Self {
        if written.len() > 64 {
            return Self {
                written,
                mask: u64::MAX,
            };
        }
        let mut mask = 0u64;
        for (i, name) in written.iter().enumerate() {
            if entries
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            {
                mask |= 1 << i;
            }
        }
        Self { written, mask }
    }

    /// Whether the request may carry `name` (`true` for a name not written by the checker:
    /// unknown means possibly there). `name` is one of the checker's own names, so it is found
    /// by exact comparison; any other spelling is unknown, and so possibly there.
    pub(crate) fn may_carry(&self, name: &str) -> bool {
        match self.written.iter().position(|w| w == name) {
            Some(i) if i < 64 => self.mask & (1 << i) != 0,
            _ => true,
        }
    }
}

/// Builds the request for `checker`: the headers it reads ([`Checker::headers_read`]), and
/// which of the headers it may write the request carries; `context_extensions` come from the
/// route's per-route config.
pub(crate) fn from_stream<'c>(
    stream: &Stream<'_>,
    checker: &'c Checker,
    context_extensions: &HashMap<String, String>,
) -> (Request<CopiedHeaders>, Carried<'c>) {
    let read = checker.headers_read();
    // One call for every entry (borrowed): cheaper than a lookup per name, each of which makes
    // Envoy build a lower-case key.
    let entries = stream.request_headers().entries();
    let carried = Carried::of(&entries, checker.headers_written());
    let text = |name: &str| text(&entries, name);
    let mut headers = Vec::with_capacity(read.len());
    for name in read {
        if let Some(value) = text(name) {
            headers.push((*name, value));
        }
    }
    let method = text(":method")
        .map(|mut m| {
            m.make_ascii_uppercase();
            m
        })
        .unwrap_or_default();
    let host = text(":authority")
        .or_else(|| text("host"))
        .unwrap_or_default();
    let path = text(":path")
        .map(|mut p| {
            if let Some(at) = p.find('?') {
                p.truncate(at);
            }
            p
        })
        .unwrap_or_default();
    // The header Envoy sets before any filter runs is its `request.id`: read from the listing in
    // hand, the attribute (an Envoy call) only without it.
    let request_id = text("x-request-id")
        .filter(|v| !v.is_empty())
        .or_else(|| attribute(stream, Attribute::RequestId));
    let request = Request {
        method,
        host,
        path,
        headers: CopiedHeaders(headers),
        peer: peer(stream),
        request_id,
        context_extensions: context_extensions.clone(),
    };
    (request, carried)
}

/// Header `name` among `entries`, repeated values joined with `,` (as ext_authz joins them), as
/// text (lossily).
fn text(entries: &[(&[u8], &[u8])], name: &str) -> Option<String> {
    let mut values = entries
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| *v);
    let first = values.next()?;
    let value: std::borrow::Cow<'_, [u8]> = match values.next() {
        None => first.into(),
        Some(second) => {
            let mut joined = [first, second].join(&b","[..]);
            for more in values {
                joined.push(b',');
                joined.extend_from_slice(more);
            }
            joined.into()
        }
    };
    // Valid UTF-8 (every well-formed request) is validated at vector speed and copied once;
    // the lossy path walks a token byte by byte.
    Some(match std::str::from_utf8(&value) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(&value).into_owned(),
    })
}

fn attribute(stream: &Stream<'_>, id: Attribute) -> Option<String> {
    stream
        .attribute_string(id)
        .and_then(|v| String::from_utf8(v).ok())
        .filter(|v| !v.is_empty())
}

/// The connection's peer certificate as facts; empty without one.
fn peer(stream: &Stream<'_>) -> PeerInfo {
    // `connection.mtls`: whether the TLS peer presented a certificate. Envoy 1.40 gives no value
    // without TLS, and reads the four certificate attributes from the same TLS connection, so
    // anything but `true` means there is no certificate to ask about (four calls saved on every
    // plaintext request). Fail closed either way: a peer not read is no peer.
    if stream.attribute_bool(Attribute::ConnectionMtls) != Some(true) {
        return PeerInfo::default();
    }
    let uri_san = attribute(stream, Attribute::ConnectionUriSanPeerCertificate);
    let dns_san = attribute(stream, Attribute::ConnectionDnsSanPeerCertificate);
    let subject = attribute(stream, Attribute::ConnectionSubjectPeerCertificate);
    let sha256 = attribute(stream, Attribute::ConnectionSha256PeerCertificateDigest)
        .and_then(|h| digest(&h));
    if uri_san.is_none() && dns_san.is_none() && subject.is_none() && sha256.is_none() {
        return PeerInfo::default();
    }
    let connection = ConnectionPeer {
        uri_san,
        dns_sans: dns_san.into_iter().collect(),
        subject,
        sha256,
    };
    PeerInfo {
        principal: connection.principal(),
        certificate: String::new(),
        connection: Some(connection),
    }
}

/// Envoy's hex SHA-256 digest as bytes (`None` unless exactly 32 bytes of hex).
fn digest(hex_text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(hex_text).ok()?;
    bytes.try_into().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use mesh_authz_core::request::Headers;

    use super::{Carried, CopiedHeaders, digest, text};

    #[test]
    fn digests_are_32_bytes_of_hex() {
        let hex_text = "ab".repeat(32);
        assert_eq!(digest(&hex_text), Some([0xab; 32]));
        assert_eq!(digest(&hex_text.to_uppercase()), Some([0xab; 32]));
        assert_eq!(digest("abcd"), None);
        assert_eq!(digest(&"zz".repeat(32)), None);
    }

    #[test]
    fn repeated_headers_are_joined_as_ext_authz_joins_them() {
        let entries: Vec<(&[u8], &[u8])> = vec![
            (b"authorization", b"Bearer a"),
            (b"x-other", b"x"),
            (b"Authorization", b"Bearer b"),
            (b"authorization", b"\xff"),
        ];
        // The core then refuses the joined value as more than one credential.
        assert_eq!(
            text(&entries, "authorization").as_deref(),
            Some("Bearer a,Bearer b,\u{fffd}")
        );
        assert_eq!(text(&entries, "x-other").as_deref(), Some("x"));
        assert_eq!(text(&entries, "x-absent"), None);
    }

    #[test]
    fn carried_names_are_found_in_any_case_and_unknown_ones_assumed() {
        let written: Vec<String> = ["x-spiffe-id", "x-auth-subject", "authorization"]
            .map(String::from)
            .to_vec();
        let entries: Vec<(&[u8], &[u8])> = vec![(b":path", b"/"), (b"X-Auth-Subject", b"smuggled")];
        let c = Carried::of(&entries, &written);
        assert!(c.may_carry("x-auth-subject"));
        assert!(!c.may_carry("x-spiffe-id"));
        assert!(!c.may_carry("authorization"));
        assert!(c.may_carry("x-not-written"));
        let many: Vec<String> = (0..65).map(|i| format!("x-h{i}")).collect();
        assert!(Carried::of(&entries, &many).may_carry("x-h0"));
    }

    #[test]
    fn copied_headers_answer_by_exact_name() {
        let h = CopiedHeaders(vec![("authorization", "Bearer t".into())]);
        assert_eq!(h.header("authorization"), Some("Bearer t"));
        assert_eq!(h.header("Authorization"), None);
        assert_eq!(h.header("x-forwarded-client-cert"), None);
    }
}
