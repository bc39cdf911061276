//! A stream's request headers and connection attributes as the core's transport-free
//! [`Request`]: what ext_authz's `CheckRequest` would have carried.
//!
//! * headers: every entry (pseudo-headers included, as ext_authz sends them), names lower case,
//!   repeated headers joined with `,`; values that are not UTF-8 kept lossily (they can only fail
//!   the checks that read them);
//! * method, host and path from `:method`, `:authority` (else `host`) and `:path` (query
//!   stripped); the request id from `request.id` (else `x-request-id`);
//! * the peer from the connection: URI SAN, DNS SAN, subject and SHA-256 digest become a
//!   [`ConnectionPeer`] (read by the `certificate` identity source, certificate-bound tokens), and
//!   [`PeerInfo::principal`] is what Envoy's `source.principal` is (URI SAN, else subject).

use std::collections::HashMap;

use mesh_authz_core::request::{ConnectionPeer, PeerInfo, Request};

use crate::host::{Attribute, Stream};

/// Builds the request; `context_extensions` come from the route's per-route config.
pub(crate) fn from_stream(
    stream: &Stream<'_>,
    context_extensions: &HashMap<String, String>,
) -> Request {
    let mut headers: HashMap<String, String> = HashMap::new();
    for (name, value) in stream.request_headers().entries() {
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        let value = String::from_utf8_lossy(value);
        headers
            .entry(name)
            .and_modify(|v| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    let method = headers
        .get(":method")
        .map(|m| m.to_ascii_uppercase())
        .unwrap_or_default();
    let host = headers
        .get(":authority")
        .or_else(|| headers.get("host"))
        .cloned()
        .unwrap_or_default();
    let path = headers
        .get(":path")
        .map(|p| p.split_once('?').map_or(p.as_str(), |(p, _)| p).to_string())
        .unwrap_or_default();
    let request_id =
        attribute(stream, Attribute::RequestId).or_else(|| headers.get("x-request-id").cloned());
    Request {
        method,
        host,
        path,
        headers,
        peer: peer(stream),
        request_id,
        context_extensions: context_extensions.clone(),
    }
}

fn attribute(stream: &Stream<'_>, id: Attribute) -> Option<String> {
    stream
        .attribute_string(id)
        .and_then(|v| String::from_utf8(v).ok())
        .filter(|v| !v.is_empty())
}

/// The connection's peer certificate as facts; empty without one.
fn peer(stream: &Stream<'_>) -> PeerInfo {
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
    use super::digest;

    #[test]
    fn digests_are_32_bytes_of_hex() {
        let hex_text = "ab".repeat(32);
        assert_eq!(digest(&hex_text), Some([0xab; 32]));
        assert_eq!(digest(&hex_text.to_uppercase()), Some([0xab; 32]));
        assert_eq!(digest("abcd"), None);
        assert_eq!(digest(&"zz".repeat(32)), None);
    }
}
