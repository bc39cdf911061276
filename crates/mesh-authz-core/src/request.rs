//! What the proxy tells the core about one request: a transport-free view that identity and
//! policy read and every host (ext_authz gRPC, HTTP, the Envoy module) fills in.

use std::collections::HashMap;

/// Request headers as the core reads them: one value per lower-case name, repeated headers
/// joined with `,` (as Envoy's ext_authz sends them). The server hands over the map ext_authz
/// carried; the Envoy module copies only [`HEADERS_READ`] out of Envoy's header map.
pub trait Headers {
    /// The value of header `name` (lower case), if the request has it.
    fn header(&self, name: &str) -> Option<&str>;
}

/// The header a Bearer token is read from.
pub const AUTHORIZATION_HEADER: &str = "authorization";
/// Envoy's forwarded client certificate header (read only when `identity.trust_xfcc`).
pub const XFCC_HEADER: &str = "x-forwarded-client-cert";

/// Every header name the check can read through [`Headers::header`]; a checker's own list is
/// `Checker::headers_read`, which a property test holds the check to.
pub const HEADERS_READ: &[&str] = &[AUTHORIZATION_HEADER, XFCC_HEADER];

impl Headers for HashMap<String, String> {
    fn header(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// What the proxy tells us about the connection the request came on.
#[derive(Debug, Clone, Default)]
pub struct PeerInfo {
    /// Envoy's `attributes.source.principal` (Istio's `source.principal`): the peer certificate's
    /// URI SAN (a SPIFFE ID under Istio) or, failing that, its subject. Empty if none.
    pub principal: String,
    /// Envoy's `attributes.source.certificate`: the URL-encoded PEM of the peer certificate, sent
    /// when the ext_authz filter sets `include_peer_certificate`. Empty if none.
    pub certificate: String,
    /// The peer certificate as facts the proxy read itself, for a host that has no PEM (the Envoy
    /// module reads connection attributes). Used by the `certificate` identity source when
    /// `certificate` is empty.
    pub connection: Option<ConnectionPeer>,
}

/// The peer certificate of the connection, as the proxy (which validated the chain) reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionPeer {
    /// The first URI SAN (Envoy reports only the first).
    pub uri_san: Option<String>,
    /// DNS SANs.
    pub dns_sans: Vec<String>,
    /// Subject (RFC 4514 string).
    pub subject: Option<String>,
    /// SHA-256 of the certificate's DER.
    pub sha256: Option<[u8; 32]>,
}

/// A plain view of one HTTP request, as the proxy forwarded it. `H` holds the headers: the map
/// ext_authz carried by default, or a host's own [`Headers`].
#[derive(Debug, Clone, Default)]
pub struct Request<H = HashMap<String, String>> {
    /// HTTP method, upper case.
    pub method: String,
    /// `:authority` / `Host`.
    pub host: String,
    /// Path without the query string.
    pub path: String,
    /// Request headers, names lower case. Envoy joins repeated headers with `,`.
    pub headers: H,
    /// Transport identity facts.
    pub peer: PeerInfo,
    /// `x-request-id`, for log correlation.
    pub request_id: Option<String>,
    /// Envoy's per-route `attributes.context_extensions` (route config, never the client). Empty
    /// when the route sets none and on the HTTP door, which cannot carry them.
    pub context_extensions: HashMap<String, String>,
}

impl ConnectionPeer {
    /// What Envoy reports as `source.principal` for this certificate: the URI SAN, else the
    /// subject, else empty. A host that reads the certificate as facts fills
    /// [`PeerInfo::principal`] with this, so the `principal` identity source works as under
    /// ext_authz.
    pub fn principal(&self) -> String {
        self.uri_san
            .as_deref()
            .filter(|u| !u.is_empty())
            .or(self.subject.as_deref())
            .unwrap_or_default()
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_is_the_uri_san_else_the_subject() {
        let mut c = ConnectionPeer {
            uri_san: Some("spiffe://td/ns/a".into()),
            subject: Some("CN=client".into()),
            ..Default::default()
        };
        assert_eq!(c.principal(), "spiffe://td/ns/a");
        c.uri_san = None;
        assert_eq!(c.principal(), "CN=client");
        c.subject = None;
        assert_eq!(c.principal(), "");
    }
}
